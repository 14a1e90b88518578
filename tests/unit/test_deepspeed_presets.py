"""train/deepspeed.py presets, and the shipped real-model recipes that use them."""

from __future__ import annotations

import json

import pytest

from vittle_cli.errors import UsageError
from vittle_cli.recipe import DEEPSPEED_PRESETS, load_recipe, recipes_dir
from vittle_cli.train.deepspeed import presets_dir, resolve_deepspeed_config, zero_stage

AUTO_KEYS = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping")


@pytest.mark.parametrize(("name", "stage"), [("zero2", 2), ("zero3", 3), ("zero3_offload", 3)])
def test_presets_resolve(name, stage):
    config = resolve_deepspeed_config(name)
    assert zero_stage(config) == stage
    assert "optimizer" not in config and "scheduler" not in config  # Trainer builds torch AdamW + schedule
    # DeepSpeed derives the global batch from micro batch x accumulation x its own world size; an "auto"
    # value would be filled from TrainingArguments.world_size, which can still read 1 at that point.
    assert "train_batch_size" not in config
    for key in AUTO_KEYS:
        assert config[key] == "auto", key
    assert config["bf16"]["enabled"] == "auto" and config["fp16"]["enabled"] == "auto"
    zero = config["zero_optimization"]
    if stage == 3:
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    if name == "zero3_offload":
        assert zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
        # Without an optimizer block DeepSpeed would refuse torch AdamW under offload.
        assert config["zero_force_ds_cpu_optimizer"] is False


def test_every_preset_file_is_known():
    assert sorted(p.stem for p in presets_dir().glob("*.json")) == sorted(DEEPSPEED_PRESETS)


@pytest.mark.parametrize("name", DEEPSPEED_PRESETS)
def test_presets_are_valid_deepspeed_configs(name):
    """DeepSpeed's own parser accepts each preset once the Trainer has filled in the "auto" values."""
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.config import DeepSpeedConfig

    config = resolve_deepspeed_config(name)
    filled = json.loads(
        json.dumps(config)
        .replace('"train_micro_batch_size_per_gpu": "auto"', '"train_micro_batch_size_per_gpu": 4')
        .replace('"gradient_accumulation_steps": "auto"', '"gradient_accumulation_steps": 2')
        .replace('"gradient_clipping": "auto"', '"gradient_clipping": 1.0')
        .replace('"enabled": "auto"', '"enabled": false')
        .replace('"auto"', "1000000")
    )
    parsed = DeepSpeedConfig(filled)
    assert parsed.zero_optimization_stage == zero_stage(config)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(UsageError, match=r"zero3x.*did you mean 'zero3'.*zero2, zero3, zero3_offload"):
        resolve_deepspeed_config("zero3x")


def test_json_path(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}, "optimizer": {"type": "AdamW"}}))
    assert resolve_deepspeed_config(str(path))["optimizer"] == {"type": "AdamW"}
    assert zero_stage(resolve_deepspeed_config(str(path))) == 1
    path.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON.*line 1"):
        resolve_deepspeed_config(str(path))
    path.write_text("[1, 2]")
    with pytest.raises(UsageError, match="must be a JSON object"):
        resolve_deepspeed_config(str(path))
    with pytest.raises(UsageError, match="neither a preset nor an existing JSON file"):
        resolve_deepspeed_config(str(tmp_path / "missing.json"))


# ----------------------------------------------------------------------------------------------------------
# Shipped real-model recipes (they only need to parse here; nothing is loaded)

REAL_RECIPES = sorted(
    p for p in recipes_dir().glob("*.yaml") if p.stem.startswith(("llava15_", "qwen2vl_", "llava_next_"))
)


def test_real_model_recipes_are_shipped():
    names = {p.stem for p in REAL_RECIPES}
    assert {
        "llava15_7b_vittle_f_zero3", "llava15_7b_vittle_l_zero3", "llava15_7b_baseline_zero3",
        "llava15_13b_vittle_f_zero3", "llava15_7b_vittle_f_lora", "llava15_7b_vittle_f_qlora",
        "llava15_7b_stage1_projector",
    } <= names  # fmt: skip
    assert any(n.startswith(("qwen2vl_", "llava_next_")) for n in names), "no second-family recipe"


@pytest.mark.parametrize("path", REAL_RECIPES, ids=lambda p: p.stem)
def test_real_model_recipe_validates_and_starts_with_its_command(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and f"recipes/{path.name}" in first and "vittle train" in first
    recipe = load_recipe(path)
    if recipe.train.deepspeed:
        resolve_deepspeed_config(recipe.train.deepspeed)
    assert recipe.train.max_steps is None  # real runs are defined by epochs, as in the paper


def test_paper_recipes_follow_method_section_5():
    for name, prior, enabled in [
        ("llava15_7b_vittle_f_zero3", "F", True),
        ("llava15_7b_vittle_l_zero3", "L", True),
        ("llava15_7b_baseline_zero3", "F", False),
    ]:
        r = load_recipe(recipes_dir() / f"{name}.yaml")
        assert r.model.name == "llava-hf/llava-1.5-7b-hf"
        assert (r.train.lr, r.train.scheduler, r.train.warmup_ratio, r.train.weight_decay) == (
            2e-5,
            "cosine",
            0.03,
            0.0,
        )
        assert r.train.per_device_batch_size * 8 * r.train.gradient_accumulation_steps == 128
        assert (r.train.epochs, r.train.precision, r.train.deepspeed) == (1.0, "bf16", "zero3")
        assert r.train.gradient_checkpointing and r.data.max_length == 2048
        assert not r.model.train_vision_tower and r.model.train_projector and r.model.train_language_model
        assert r.bottleneck.enabled is enabled and r.bottleneck.prior == prior
        assert (r.bottleneck.beta_v, r.bottleneck.beta_t, r.bottleneck.layer_v, r.bottleneck.alpha_end) == (
            0.1, 0.1, 24, 0.5,
        )  # fmt: skip


def test_stage1_recipe_trains_only_the_projector():
    r = load_recipe(recipes_dir() / "llava15_7b_stage1_projector.yaml")
    assert r.model.compose is not None and not r.bottleneck.enabled
    assert (r.model.train_language_model, r.model.train_vision_tower, r.model.train_projector) == (
        False,
        False,
        True,
    )
    assert r.train.lr == 1e-3
    assert r.train.per_device_batch_size * 8 * r.train.gradient_accumulation_steps == 256
