"""Each train.optimizer trains the tiny model on CPU, and the bottleneck's parameters change.

The bitsandbytes optimizers run on bitsandbytes' CPU backend where it supports them; where it does not, the
test is skipped with the reason (checked on one small tensor first, so a skip never hides a vittle bug). On CPU
bitsandbytes runs the paged variants unpaged (it warns "Paged optimizers are not supported on CPU"): the option
reaches the optimizer (is_paged is set), the paging itself needs CUDA.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_runner import run_cli

from vittle_cli.recipe import OPTIMIZERS
from vittle_cli.train.optim import BITSANDBYTES_OPTIMIZERS

FAST = [
    "train.max_steps=2",
    "output.save_steps=2",
    "train.logging_steps=1",
    "train.per_device_batch_size=4",
    "data.limit=8",
    "output.report_to=[]",
    "train.warmup_ratio=0",
]


def _bnb_supported(name: str) -> str | None:
    """None if bitsandbytes can step `name` on CPU here, else why not."""
    try:
        import bitsandbytes as bnb

        cls = {
            "adamw_8bit": bnb.optim.AdamW8bit,
            "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
            "paged_adamw_32bit": bnb.optim.PagedAdamW32bit,
        }[name]
        p = torch.nn.Parameter(torch.randn(64, 128))  # >= 4096 values: 8-bit states are really used
        opt = cls([p], lr=1e-3)
        p.grad = torch.randn_like(p)
        opt.step()
    except Exception as err:  # ImportError, NotImplementedError, RuntimeError from a missing kernel
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


EXPECTED = {
    "adamw_torch": "torch AdamW", "adamw_torch_fused": "torch AdamW fused", "adafactor": "Adafactor",
    "sgd": "torch SGD", "adamw_8bit": "bitsandbytes AdamW 8-bit", "paged_adamw_8bit": "bitsandbytes AdamW 8-bit paged",
    "paged_adamw_32bit": "bitsandbytes AdamW 32-bit paged",
}  # fmt: skip


def describe(optimizer) -> str:
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
    if type(inner).__module__.startswith("bitsandbytes"):
        paged = " paged" if inner.is_paged else ""
        return f"bitsandbytes {type(inner).__name__} {inner.args.optim_bits}-bit{paged}"
    if type(inner).__module__.startswith("torch"):
        fused = " fused" if inner.defaults.get("fused") else ""
        return f"torch {type(inner).__name__}{fused}"
    return type(inner).__name__


def state_dtypes(optimizer) -> frozenset:
    inner = getattr(optimizer, "optimizer", optimizer)
    return frozenset(v.dtype for state in inner.state.values() for v in state.values() if torch.is_tensor(v))


def bottleneck_tensors(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_trains_the_tiny_model_and_the_bottleneck(optimizer, tmp_path, monkeypatch):
    if optimizer in BITSANDBYTES_OPTIMIZERS and (why := _bnb_supported(optimizer)):
        pytest.skip(f"bitsandbytes' CPU backend cannot run {optimizer} here ({why})")
    from vittle_cli.model.attach import get_bottleneck
    from vittle_cli.train.trainer import VittleTrainer

    before: dict[str, torch.Tensor] = {}
    seen: list[tuple[str, frozenset]] = []  # (optimizer, dtypes of its state) at each training step
    original = VittleTrainer.training_step

    def recording_step(self, model, inputs, *a, **k):
        if not before:  # the bottleneck as it starts, before the first optimizer step
            before.update({n: p.detach().clone() for n, p in get_bottleneck(self.model).named_parameters()})
        seen.append((describe(self.optimizer), state_dtypes(self.optimizer)))
        return original(self, model, inputs, *a, **k)

    monkeypatch.setattr(VittleTrainer, "training_step", recording_step)
    code = run_cli(["train", "recipes/tiny.yaml", *FAST, f"train.optimizer={optimizer}",
                    f"output.dir={tmp_path}", "output.run_name=run"])  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert {name for name, _ in seen} == {EXPECTED[optimizer]}
    if optimizer in ("adamw_8bit", "paged_adamw_8bit"):  # after step 1 the big tensors' moments are 8-bit
        assert torch.uint8 in seen[-1][1]
    after = bottleneck_tensors(tmp_path / "run" / "final" / "vittle_bottleneck.safetensors")
    assert before and set(after) >= set(before)
    changed = [n for n in before if not torch.equal(before[n], after[n].to(before[n].dtype))]
    assert changed == list(before), f"not updated by {optimizer}: {sorted(set(before) - set(changed))}"


@pytest.mark.slow
def test_peak_memory_reaches_metrics_and_inspect_run(tmp_path, monkeypatch, capsys):
    """The wiring on CPU: with the CUDA reading faked, every log row carries it and `inspect run` shows the peak."""
    from vittle_cli.train import memory_callbacks

    readings = iter([{"max_mem_allocated_gib": 1.5, "max_mem_reserved_gib": 2.0},
                     {"max_mem_allocated_gib": 1.25, "max_mem_reserved_gib": 2.5}])  # fmt: skip
    monkeypatch.setattr(memory_callbacks, "peak_memory_gib", lambda *a: next(readings, None))
    code = run_cli(["train", "recipes/tiny.yaml", *FAST, f"output.dir={tmp_path}", "output.run_name=run"])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["max_mem_allocated_gib"], r["max_mem_reserved_gib"]) for r in rows] == [
        (1.5, 2.0),
        (1.25, 2.5),
    ]
    capsys.readouterr()
    assert run_cli(["inspect", "run", str(tmp_path / "run")]) == 0
    assert "peak GPU memory per device: 1.5 GiB allocated, 2.5 GiB reserved" in capsys.readouterr().out


@pytest.mark.slow
def test_the_gpu_comparison_script_runs_its_tiny_case(tmp_path):
    """benchmarks/memory_plan_vs_peak.py end to end on CPU (nothing measured there): the GPU check script
    calls the same function, so its plumbing is tested before any GPU time is spent."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from memory_plan_vs_peak import compare_plan_with_peak

    result = compare_plan_with_peak("tiny", "full", work=tmp_path, batch=2, steps=2, limit=16)
    assert result["plan_gib"] > 0 and result["seq_len"] < 256  # the data's longest sample, not max_length
    assert "activations: decoder" in result["plan_rows_gib"]
    if not torch.cuda.is_available():
        assert result["peak_allocated_gib"] == 0 and result["plan_over_peak"] is None
