"""`vittle train` in its other modes: LoRA, QLoRA (bitsandbytes CPU backend) and the baseline.

Each run is 2 optimizer steps; LoRA B starts at zero, so LoRA A gets its first gradient in step 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_runner import run_cli

RECIPE = "recipes/tiny.yaml"
FAST = [
    "train.max_steps=2",
    "output.save_steps=2",
    "train.logging_steps=1",
    "train.per_device_batch_size=4",
    "data.limit=16",
    "output.report_to=[]",
    "train.warmup_ratio=0",  # with warmup, step 1 runs at lr 0 and LoRA B would still be 0 in step 2
]


def vittle(*args: str) -> int:
    return run_cli(args)


def safetensor_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def lora_grad_recorder(monkeypatch) -> tuple[set[str], set[str]]:
    """Patch the trainer to record (all LoRA parameter names, those that got a nonzero gradient)."""
    from vittle_cli.train.trainer import VittleTrainer

    every, nonzero = set(), set()
    original = VittleTrainer.training_step

    def recording_step(self, model, inputs, *a, **k):
        loss = original(self, model, inputs, *a, **k)
        for name, p in self.model.named_parameters():
            if "lora_" in name and p.requires_grad:
                every.add(name)
                if p.grad is not None and p.grad.abs().sum().item() > 0:
                    nonzero.add(name)
        return loss

    monkeypatch.setattr(VittleTrainer, "training_step", recording_step)
    return every, nonzero


def check_adapter_run(run: Path) -> None:
    for d in (run / "checkpoint-2", run / "final"):
        assert (d / "adapter_config.json").is_file() and (d / "adapter_model.safetensors").is_file()
        # the bottleneck is saved beside the adapter in every checkpoint, not only at the end
        assert (d / "vittle_config.json").is_file() and (d / "vittle_bottleneck.safetensors").is_file()
        assert any("vittle_bottleneck" in k for k in safetensor_keys(d / "adapter_model.safetensors"))
        assert not (d / "model.safetensors").exists()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2] and all(math.isfinite(r["loss"]) for r in logged)


@pytest.mark.slow
def test_lora_trains_every_adapter_and_saves_the_bottleneck(tmp_path, monkeypatch):
    every, nonzero = lora_grad_recorder(monkeypatch)
    code = vittle("train", RECIPE, *FAST, "train.lora.enabled=true", "train.lora.r=8", "train.lora.alpha=16",
                  f"output.dir={tmp_path}", "output.run_name=lora")  # fmt: skip
    assert code == 0
    assert every and nonzero == every, sorted(every - nonzero)[:5]
    check_adapter_run(tmp_path / "lora")


@pytest.mark.slow
def test_qlora_trains_every_adapter(tmp_path, monkeypatch):
    pytest.importorskip("bitsandbytes")
    every, nonzero = lora_grad_recorder(monkeypatch)
    code = vittle("train", RECIPE, *FAST, "train.lora.enabled=true", "train.qlora.enabled=true", "train.lora.r=8",
                  "train.lora.alpha=16", "train.qlora.compute_dtype=float32", f"output.dir={tmp_path}",
                  "output.run_name=qlora")  # fmt: skip
    assert code == 0
    assert every and nonzero == every, sorted(every - nonzero)[:5]
    check_adapter_run(tmp_path / "qlora")


@pytest.mark.slow
def test_baseline_overwrites_and_trains_without_bottleneck(tmp_path):
    run = tmp_path / "tiny_baseline"
    run.mkdir()
    (run / "stale.txt").write_text("from an older run")
    (run / ".vittle-run").write_text("{}")  # --overwrite deletes only folders vittle made
    # epoch-based length: the Trainer's step count must equal the one --dry-run prints
    code = vittle("train", "recipes/tiny_baseline.yaml", *FAST, "train.max_steps=null", "train.epochs=1",
                  "data.limit=8", f"output.dir={tmp_path}", "--overwrite")  # fmt: skip
    assert code == 0
    from vittle_cli.train.plan import total_optimizer_steps

    assert not (run / "stale.txt").exists()
    state = json.loads((run / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["max_steps"] == total_optimizer_steps(8, 4, 1, 1, 1.0, None) == 2
    for d in (run / "checkpoint-2", run / "final"):
        assert (d / "model.safetensors").is_file() and not (d / "vittle_config.json").exists()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 2
    for r in logged:
        assert r["kl_v"] is None and r["kl_t"] is None and r["alpha"] is None
        assert r["loss"] == pytest.approx(r["ce"], rel=1e-6)
