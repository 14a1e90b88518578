"""Third-party warnings (DeepSpeed's accelerator line, torch's FutureWarnings, bitsandbytes' kernels check)
are shown with --debug only: one tiny ZeRO-3 step on CPU printed 186 lines before, 91 of them warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")
REPO = Path(__file__).resolve().parents[2]


def _one_zero3_step(tmp_path: Path, *extra: str) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "VITTLE_DEBUG"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "vittle_cli", *extra, "train", "tiny", "train.deepspeed=zero3",
           "train.max_steps=1", "train.per_device_batch_size=2", "data.limit=4", f"output.dir={tmp_path / 'runs'}",
           "output.report_to=[]", "--overwrite"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (proc.stdout + proc.stderr).splitlines()


@pytest.mark.slow
def test_one_zero3_step_prints_only_vittle_lines_and_debug_shows_the_rest(tmp_path):
    lines = _one_zero3_step(tmp_path)
    # vittle's progress bar and "trained ..." line, transformers' "Writing model shards" bar (2 lines)
    assert len(lines) <= 5, "\n".join(lines)
    noise = ("Warning", "[WARNING]", "built successfully", "publisher trust check")
    assert not [line for line in lines if any(word in line for word in noise)], "\n".join(lines)
    assert any(line.startswith("trained 1/1 steps") for line in lines)
    debug_lines = _one_zero3_step(tmp_path, "--debug")
    assert any("FutureWarning" in line for line in debug_lines)
    assert any("Setting accelerator to CPU" in line for line in debug_lines)
    assert any("publisher trust check" in line for line in debug_lines)
