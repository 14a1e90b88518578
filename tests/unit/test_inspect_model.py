"""`vittle inspect model`: layout, hook placement and parameter accounting."""

from __future__ import annotations

import pytest

from vittle_cli.inspect.model_view import describe_model
from vittle_cli.model.attach import attach_bottleneck
from vittle_cli.model.bottleneck import VittleConfig

D = 96  # builtin:tiny-llava hidden size


def test_plain_model_reports_no_bottleneck(tiny_llava):
    model, _ = tiny_llava
    r = describe_model(model, "tiny")
    assert r.family == "llava" and r.n_layers == 8 and r.hidden_size == D and r.dtype == "float32"
    assert r.decoder_layers_path == "model.language_model.layers"
    assert r.bottleneck is None and r.bottleneck_parameters == 0
    assert r.total_parameters == sum(p.numel() for p in model.parameters())
    assert {row["component"] for row in r.parameters} == {
        "vision_tower",
        "projector",
        "language_model",
        "lm_head",
    }


@pytest.mark.parametrize("prior,extra", [("F", 0), ("L", 4 * D)])
def test_bottleneck_layers_hooks_and_share(tiny_llava, prior, extra):
    model, _ = tiny_llava
    base_total = sum(p.numel() for p in model.parameters())
    attach_bottleneck(model, VittleConfig(layer_v=-3, layer_t=6, prior=prior))
    r = describe_model(model, "tiny")
    hooks = r.bottleneck["hooks"]
    assert hooks["visual"] == {"layer": 5, "hook_module": "model.language_model.layers.5"}
    assert hooks["text"] == {"layer": 6, "hook_module": "model.language_model.layers.6"}
    assert r.bottleneck["module"] == "vittle_bottleneck" and r.bottleneck["prior"] == prior
    # METHOD.md §2: 3d^2 + 3d per modality (+ the learnable prior's mean and log-variance per modality)
    assert r.bottleneck_parameters == 2 * (3 * D * D + 3 * D) + extra
    assert r.total_parameters == base_total + r.bottleneck_parameters
    assert r.bottleneck_share == pytest.approx(100 * r.bottleneck_parameters / r.total_parameters)
    row = next(x for x in r.parameters if x["component"] == "bottleneck")
    assert row["total"] == r.bottleneck_parameters


def test_trainable_counts_follow_the_run_recipe(tiny_llava, tmp_path):
    model, _ = tiny_llava
    attach_bottleneck(model, VittleConfig())
    (tmp_path / "config.yaml").write_text(
        "model: {train_vision_tower: false, train_projector: true, train_language_model: false}\n"
    )
    (tmp_path / "final").mkdir()
    r = describe_model(model, str(tmp_path / "final"))
    rows = {x["component"]: x for x in r.parameters}
    assert r.trainable_basis == "per the run's recipe"
    assert rows["vision_tower"]["trainable"] == 0 and rows["language_model"]["trainable"] == 0
    assert rows["projector"]["trainable"] == rows["projector"]["total"] > 0
    assert rows["bottleneck"]["trainable"] == rows["bottleneck"]["total"]
