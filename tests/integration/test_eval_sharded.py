"""`vittle eval --nproc-per-node 2`: two CPU processes (torchrun, gloo) write the same files as one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VARIANTS = [
    {"name": "clean", "group": "clean"},
    {"group": "visual", "visual": {"name": "contrast", "severity": 3}},
    {"group": "text", "text": {"name": "keyboard", "rate": 3}},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_eval_cli(out: Path, suite: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VITTLE_DEBUG": "1", "PYTHONPATH": str(REPO)}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "vittle_cli", "eval", "--suite", str(suite), "--model", "builtin:tiny-llava",
           "--out", str(out), "--limit", "4", "--batch-size", "4", "--device", "cpu", "--dtype", "auto", *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_equal_one_byte_for_byte(tmp_path, tiny_model_dir):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(yaml.safe_dump({"name": "tiny", "data": "builtin:shapes", "variants": VARIANTS}))
    one = run_eval_cli(tmp_path / "one", suite)
    assert one.returncode == 0, one.stderr[-4000:]
    two = run_eval_cli(tmp_path / "two", suite, "--nproc-per-node", "2", "--master-port", str(free_port()))
    assert two.returncode == 0, two.stderr[-6000:]
    assert "launching:" in two.stderr and "torch.distributed.run" in two.stderr

    a, b = (tmp_path / d / "predictions.jsonl" for d in ("one", "two"))
    assert a.read_bytes() == b.read_bytes() and len(a.read_text().splitlines()) == 3 * 3 * 4
    assert not list((tmp_path / "two").glob("predictions.part-*.jsonl"))  # parts merged and removed
    ra, rb = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert ra["metrics"] == rb["metrics"] and ra["summary"] == rb["summary"]
    assert (ra["processes"], rb["processes"]) == (1, 2)
    assert ra["device"] == rb["device"] == "cpu" and ra["dtype"] == "float32"  # auto on a CPU
    assert rb["answers_computed"] == 3 * 3 * 4
