"""CUDA paths that need a package a bare GPU machine may lack; each skips with the wheel to pass.

`vittle train` reads its data through `datasets` (vittle_cli/data/sources.py), so every run through the CLI
needs the datasets wheel; QLoRA needs bitsandbytes, ZeRO-3 needs deepspeed.
"""

from __future__ import annotations

import json

from cli_runner import run_cli
from gpu_fixtures import GPU_ONLY, needs

FAST = ["train.max_steps=4", "train.logging_steps=1", "output.report_to=[]", "data.limit=16"]

pytestmark = GPU_ONLY


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def test_vittle_train_in_bf16_on_cuda(tmp_path):
    needs("datasets", "datasets")
    code = run_cli(
        ["train", "tiny", *FAST, "train.precision=bf16", f"output.dir={tmp_path}", "output.run_name=bf16"]
    )
    assert code == 0
    rows = _rows(tmp_path / "bf16")
    assert len(rows) == 4 and all(r["loss"] == r["loss"] for r in rows)  # finite, not NaN
    assert all(r["kl_v"] > 0 for r in rows)


def test_qlora_4bit_with_cuda_kernels_trains(tmp_path):
    needs("datasets", "datasets")
    needs("bitsandbytes", "bitsandbytes")
    code = run_cli(["train", "tiny", *FAST, "train.lora.enabled=true", "train.qlora.enabled=true", "train.lora.r=8",
                    "train.lora.alpha=16", "train.precision=bf16", f"output.dir={tmp_path}", "output.run_name=q"])  # fmt: skip
    assert code == 0
    rows = _rows(tmp_path / "q")
    assert len(rows) == 4 and rows[-1]["grad_norm"] > 0


def test_single_gpu_zero3(tmp_path):
    needs("datasets", "datasets")
    needs("deepspeed", "deepspeed")
    code = run_cli(["train", "tiny", *FAST, "train.deepspeed=zero3", "train.precision=bf16", f"output.dir={tmp_path}",
                    "output.run_name=z3"])  # fmt: skip
    assert code == 0
    assert len(_rows(tmp_path / "z3")) == 4
