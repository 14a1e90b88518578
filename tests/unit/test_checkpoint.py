"""save_vittle / load_vittle_model: exact round trips and clear errors for every kind of model reference."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from vittle_cli.errors import ModelError, UsageError
from vittle_cli.layout import VITTLE_CONFIG, VITTLE_WEIGHTS
from vittle_cli.model.attach import attach_bottleneck, attached_layers, get_bottleneck
from vittle_cli.model.bottleneck import VittleConfig
from vittle_cli.model.checkpoint import load_vittle_model, save_vittle, strip_vittle_keys


def _inputs(processor):
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (48, 48, 3), dtype=np.uint8))
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a star?"}]}],
        add_generation_prompt=True,
    )
    return processor(images=[image], text=[text], return_tensors="pt")


def _trained_looking(model, config: VittleConfig):
    """Attach a bottleneck and move its weights away from their init, as training would."""
    bn = attach_bottleneck(model, config)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in bn.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return bn


def _save_model_dir(model, processor, directory):
    model.save_pretrained(directory, state_dict=strip_vittle_keys(model.state_dict()))
    processor.save_pretrained(directory)
    save_vittle(model, directory)


def test_save_then_load_reproduces_eval_logits_exactly(tiny_llava, tmp_path):
    model, processor = tiny_llava
    _trained_looking(model, VittleConfig(prior="L", layer_v=3, beta_t=0.2))
    inputs = _inputs(processor)
    with torch.no_grad():
        expected = model(**inputs).logits
    _save_model_dir(model, processor, tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert VITTLE_CONFIG in files and VITTLE_WEIGHTS in files
    assert not [f for f in files if f.startswith(".")]  # no temp files left behind
    saved = json.loads((tmp_path / "m" / VITTLE_CONFIG).read_text())
    assert (
        saved["layer_v"] == 3
        and saved["layer_t"] == 3  # unset: follows layer_v
        and saved["prior"] == "L"
        and saved["hidden_size"] == 96
    )

    loaded, _ = load_vittle_model(tmp_path / "m")
    assert not loaded.training and not get_bottleneck(loaded).training
    assert attached_layers(loaded) == (3, 3) and get_bottleneck(loaded).config.beta_t == 0.2
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, expected)


def test_base_weight_files_never_hold_bottleneck_keys(tiny_llava, tmp_path):
    from safetensors import safe_open

    model, processor = tiny_llava
    attach_bottleneck(model, VittleConfig())
    _save_model_dir(model, processor, tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "vittle" in k]
    with safe_open(str(tmp_path / VITTLE_WEIGHTS), "pt") as f:
        assert set(f.keys()) == set(get_bottleneck(model).state_dict())


def test_strip_vittle_keys_handles_plain_and_peft_names():
    state = {
        "model.language_model.layers.0.mlp.up_proj.weight": 1,
        "vittle_bottleneck.visual_net.0.weight": 2,
        "base_model.model.vittle_bottleneck.modules_to_save.default.text_net.2.bias": 3,
        "base_model.model.lm_head.weight": 4,
        "model.not_vittle_bottleneck_like.weight": 5,
    }
    assert strip_vittle_keys(state) == {
        "model.language_model.layers.0.mlp.up_proj.weight": 1,
        "base_model.model.lm_head.weight": 4,
        "model.not_vittle_bottleneck_like.weight": 5,
    }


def test_save_from_a_peft_style_state_dict_prefers_the_trained_copy(tiny_llava, tmp_path):
    from safetensors.torch import load_file

    model, _ = tiny_llava
    bn = attach_bottleneck(model, VittleConfig())
    trained = {k: torch.full_like(v, 0.5) for k, v in bn.state_dict().items()}
    state = {f"base_model.model.vittle_bottleneck.original_module.{k}": v for k, v in bn.state_dict().items()}
    state.update(
        {f"base_model.model.vittle_bottleneck.modules_to_save.default.{k}": v for k, v in trained.items()}
    )
    state["base_model.model.lm_head.weight"] = torch.zeros(1)
    save_vittle(model, tmp_path, state_dict=state)
    written = load_file(str(tmp_path / VITTLE_WEIGHTS))
    assert set(written) == set(trained) and all(torch.equal(written[k], trained[k]) for k in trained)
    with pytest.raises(ModelError, match="incomplete"):
        save_vittle(model, tmp_path, state_dict={"vittle_bottleneck.visual_net.0.weight": torch.zeros(1)})


def test_plain_model_dir_builtin_and_run_dir(tiny_llava, tiny_model_dir, tmp_path):
    model, processor = tiny_llava
    inputs = _inputs(processor)
    with torch.no_grad():
        plain = model(**inputs).logits
    baseline, _ = load_vittle_model(str(tiny_model_dir))  # no vittle files: the baseline, no bottleneck
    builtin, _ = load_vittle_model("builtin:tiny-llava")
    assert get_bottleneck(baseline) is None and get_bottleneck(builtin) is None
    with torch.no_grad():
        assert torch.equal(baseline(**inputs).logits, plain)
    _trained_looking(model, VittleConfig())
    _save_model_dir(model, processor, tmp_path / "run" / "final")
    from_run, _ = load_vittle_model(tmp_path / "run")
    assert get_bottleneck(from_run) is not None


def test_bad_references_give_clear_errors(tiny_llava, tmp_path):
    model, processor = tiny_llava
    with pytest.raises(UsageError, match="missing: no such directory"):
        load_vittle_model(tmp_path / "missing")
    with pytest.raises(ModelError, match="cannot load model"):  # offline in tests: never downloads
        load_vittle_model("nobody-vittle-test/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a model, adapter or run directory"):
        load_vittle_model(tmp_path / "empty")
    attach_bottleneck(model, VittleConfig())
    _save_model_dir(model, processor, tmp_path / "m")
    shutil.copytree(tmp_path / "m", tmp_path / "no_weights")
    (tmp_path / "no_weights" / VITTLE_WEIGHTS).unlink()
    with pytest.raises(ModelError, match=f"no {VITTLE_WEIGHTS}"):
        load_vittle_model(tmp_path / "no_weights")
    (tmp_path / "m" / VITTLE_CONFIG).unlink()
    with pytest.raises(ModelError, match=f"no {VITTLE_CONFIG}"):
        load_vittle_model(tmp_path / "m")


def test_save_without_bottleneck_is_an_error(tiny_llava, tmp_path):
    model, _ = tiny_llava
    with pytest.raises(ModelError, match="no Vittle bottleneck"):
        save_vittle(model, tmp_path)
