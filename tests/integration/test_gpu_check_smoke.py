"""`make gpu-check` on CPU (--cpu-smoke, tiny shapes): the script itself is tested everywhere; on a CUDA
machine the same script runs the real sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gpu_check(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("GPU_CHECK_WHEELS", None)
    cmd = [sys.executable, "scripts/gpu_check.py", "--out", str(out), *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_cpu_smoke_runs_every_part_and_writes_json_and_table(tmp_path):
    proc = _gpu_check(tmp_path / "out", "--cpu-smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    parts = {p["name"]: p for p in report["parts"]}
    assert report["mode"] == "cpu-smoke" and parts["wheels"]["status"] == "skip"
    assert set(parts) == {
        "wheels",
        "gpu tests",
        "step_overhead",
        "mfu",
        "eval_throughput",
        "memory plan vs peak",
    }
    # Without CUDA every gpu test is collected and skipped with its reason.
    tests = parts["gpu tests"]["tests"]
    assert len(tests) >= 7 and all(t["status"] == "skip" and t["reason"] for t in tests)
    assert any("qlora" in t["test"] for t in tests) and any("zero3" in t["test"] for t in tests)
    step = parts["step_overhead"]
    assert step["status"] == "pass" and step["clock"] == "process CPU time" and step["ratio"] > 0
    assert step["target"] == "ratio <= 1.02" and isinstance(step["target_met"], bool)
    assert parts["mfu"]["status"] == "skip" and "peak FLOP/s unknown" in parts["mfu"]["reason"]
    assert parts["mfu"]["achieved_tflops"] > 0
    evaluation = parts["eval_throughput"]
    assert evaluation["status"] == "pass" and evaluation["engine_speedup"] > 1
    assert evaluation["agreement_pct"]["engine (prefix reuse)"] == 100.0  # float32: exact
    assert (
        parts["memory plan vs peak"]["status"] == "skip" and "CUDA" in parts["memory plan vs peak"]["reason"]
    )
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| step_overhead | pass | step ratio" in table and "| mfu | skip |" in table
    assert table in proc.stdout


def test_without_cuda_the_real_mode_and_a_bad_wheel_folder_are_reported_not_crashes(tmp_path):
    empty = tmp_path / "wheels"
    empty.mkdir()
    proc = _gpu_check(tmp_path / "out", "--wheels", str(empty))
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    parts = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["parts"]
    assert [(p["name"], p["status"]) for p in parts] == [("wheels", "fail"), ("environment", "fail")]
    assert "*.whl" in parts[0]["reason"] and "no CUDA GPU visible" in parts[1]["reason"]
    assert "| environment | fail |" in (tmp_path / "out" / "gpu_check.md").read_text()
