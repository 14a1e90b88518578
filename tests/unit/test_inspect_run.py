"""`vittle inspect run`: recipe summary, checkpoint listing, last metrics, loss curve."""

from __future__ import annotations

import json

import pytest

from vittle_cli.errors import UsageError
from vittle_cli.inspect.run_view import checkpoint_kind, run_inspect_run


@pytest.fixture()
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        "model: {name: builtin:tiny-llava}\n"
        "bottleneck: {prior: L, beta_v: 0.2}\n"
        "train: {max_steps: 30, lr: 0.001, lora: {enabled: true}}\n"
    )
    rows = [
        {"step": s, "epoch": s / 30, "loss": 3.0 - s / 20, "ce": 2.9 - s / 20, "kl_v": 0.5, "kl_t": 0.4,
         "alpha": 0.5 * s / 30, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 900.0}
        for s in (10, 20, 30)
    ]  # fmt: skip
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 31, "lo'  # killed mid-write
    (run / "metrics.jsonl").write_text(text)
    adapter = run / "checkpoint-10"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "vittle_config.json").write_text("{}")
    (adapter / "vittle_bottleneck.safetensors").write_bytes(b"")
    (run / "checkpoint-20" / "global_step20").mkdir(parents=True)
    (run / "checkpoint-3").mkdir()
    final = run / "final"
    final.mkdir()
    (final / "model.safetensors").write_bytes(b"")
    return run


def test_run_report(run_dir):
    r = run_inspect_run(str(run_dir))
    assert r.recipe["model"] == "builtin:tiny-llava" and r.recipe["tuning"] == "lora"
    assert "L beta_v=0.2" in r.recipe["bottleneck"] and r.recipe["steps"] == 30
    got = [(c.name, c.step, c.kind, c.has_vittle) for c in r.checkpoints]
    assert got == [
        ("checkpoint-3", 3, "empty", False),
        ("checkpoint-10", 10, "adapter", True),
        ("checkpoint-20", 20, "zero", False),
        ("final", None, "full", False),
    ]
    assert r.n_metric_rows == 3 and r.last_metrics["step"] == 30
    png = run_dir / "inspect" / "loss.png"
    assert r.loss_png == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_report_custom_out_and_no_metrics(run_dir, tmp_path):
    r = run_inspect_run(str(run_dir), out=str(tmp_path / "views"))
    assert (tmp_path / "views" / "loss.png").is_file()
    (run_dir / "metrics.jsonl").unlink()
    r = run_inspect_run(str(run_dir))
    assert r.last_metrics is None and r.loss_png is None


def test_checkpoint_kind(tmp_path):
    assert checkpoint_kind(tmp_path) == "empty"
    (tmp_path / "pytorch_model-00001-of-00002.bin").write_bytes(b"")
    assert checkpoint_kind(tmp_path) == "full"


def test_not_a_run(tmp_path):
    with pytest.raises(UsageError, match="no such run"):
        run_inspect_run(str(tmp_path / "nope"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="inspect model"):
        run_inspect_run(str(tmp_path))


def test_run_report_shows_the_layers_and_deepspeed_the_run_used(run_dir):
    # Issue 11: not "layer_v=default" and "deepspeed None" but what the run actually used.
    (run_dir / "checkpoint-10" / "vittle_config.json").write_text(json.dumps({"layer_v": 6, "layer_t": 5}))
    r = run_inspect_run(str(run_dir))
    assert "layer_v=6 layer_t=5" in r.recipe["bottleneck"]
    assert r.recipe["deepspeed"] == "off"
    (run_dir / "config.yaml").write_text(
        "model: {name: builtin:tiny-llava}\nbottleneck: {layer_v: 3}\ntrain: {max_steps: 30, deepspeed: zero3}\n"
    )
    for folder in ("checkpoint-10", "checkpoint-20", "checkpoint-3", "final"):
        (run_dir / folder / "vittle_config.json").unlink(missing_ok=True)
    r = run_inspect_run(str(run_dir))
    assert r.recipe["deepspeed"] == "zero3"
    assert "layer_v=3 layer_t=3" in r.recipe["bottleneck"]
