"""Evaluation while training on a tiny run: eval loss on data.eval and the in-training shift curve of
train.eval_suite, in metrics.jsonl and loss.png."""

from __future__ import annotations

import json

import pytest
from cli_runner import run_cli

pytestmark = pytest.mark.slow


def test_eval_loss_and_the_shift_curve_appear_in_metrics_and_the_png(tmp_path):
    from vittle_cli.data.shapes import resolve_builtin_data

    shapes = resolve_builtin_data("builtin:shapes")
    code = run_cli([
        "train", "recipes/tiny.yaml", f"output.dir={tmp_path}", "output.run_name=r",
        "train.max_steps=4", "train.logging_steps=2", "train.per_device_batch_size=4", "output.save_steps=100",
        "data.limit=16", "data.num_workers=0",
        f"data.eval=[{{path: {shapes.train_json}, limit: 8, shuffle: true}}]", f"data.image_root={shapes.image_root}",
        "train.eval_steps=2", "train.eval_suite.name=shapes-shift", "train.eval_suite.limit=2",
        "train.eval_suite.variants=[gaussian_noise@3,keyboard@3]",
    ])  # fmt: skip
    assert code == 0
    run = tmp_path / "r"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    eval_loss = [r for r in rows if "eval_loss" in r]
    suite = [r for r in rows if "suite_clean_accuracy" in r]
    assert [r["step"] for r in eval_loss] == [2, 4] and all(r["eval_loss"] > 0 for r in eval_loss)
    assert [r["step"] for r in suite] == [2, 4]
    assert all(0 <= r["suite_clean_accuracy"] <= 1 and 0 <= r["suite_shift_accuracy"] <= 1 for r in suite)
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]  # training rows unchanged
    results = json.loads((run / "eval_suite" / "step-4" / "results.json").read_text())
    assert [v["name"] for v in results["variants"]] == ["clean", "gaussian_noise@3", "keyboard@3"]
    assert results["questions_per_variant"] == 6  # 2 per split x 3 splits
    from PIL import Image

    with Image.open(run / "loss.png") as im:
        assert im.width > 1400  # three panels: loss (+ eval loss), alpha, the robustness curve
