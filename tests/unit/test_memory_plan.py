"""The memory plan's arithmetic against independent figures: the real modules (built on the meta device),
DeepSpeed's own estimators, and published numbers (each test names its source)."""

from __future__ import annotations

import pytest
import torch

from vittle_cli.train.memory import (
    GIB,
    QUANT_BITS,
    ParamGroup,
    PlanSettings,
    activation_rows,
    lora_params,
    model_state_rows,
    optimizer_state_bytes,
    parameter_groups,
    plan_memory,
)
from vittle_cli.train.model_shapes import (
    KNOWN_CONFIGS,
    ModelShapes,
    TextShapes,
    VisionShapes,
    bottleneck_params,
    known_shapes,
    shapes_from_config,
)


def llava_config(name: str):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    known = KNOWN_CONFIGS[name]
    return LlavaConfig(
        text_config=LlamaConfig(**known["text_config"]),
        vision_config=CLIPVisionConfig(**known["vision_config"]),
        image_seq_length=known["image_seq_length"],
    )


def component_counts(config) -> dict[str, int]:
    from transformers import LlavaForConditionalGeneration

    from vittle_cli.model.components import component_of

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        counts[component_of(name)] = counts.get(component_of(name), 0) + p.numel()
    return counts


@pytest.mark.parametrize("which", ["tiny", "llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-13b-hf"])
def test_parameter_counts_match_the_real_modules(which, tiny_model_dir):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dir) if which == "tiny" else llava_config(which)
    shapes = shapes_from_config(config)
    real = component_counts(config)
    assert shapes.vision.params() == real["vision_tower"]
    assert shapes.projector_params() == real["projector"]
    t = shapes.text
    assert t.linear_params() + t.other_params() == real["language_model"]
    assert t.lm_head_params() == real.get("lm_head", 0)
    if which != "tiny":  # the table's shapes are the config's shapes
        assert known_shapes(which).text == shapes.text and known_shapes(which).vision == shapes.vision


@pytest.mark.parametrize("prior", ["F", "L"])
def test_bottleneck_params_match_the_module(prior):
    from vittle_cli.model.bottleneck import VittleBottleneck, VittleConfig

    module = VittleBottleneck(VittleConfig(prior=prior), hidden_size=48)
    assert bottleneck_params(48, prior == "L") == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("targets", [["language_model"], ["language_model", "projector"], ["vision_tower"]])
def test_lora_params_match_peft(targets, tiny_model_dir):
    from transformers import AutoConfig

    from vittle_cli.model.load import load_model_for_recipe
    from vittle_cli.recipe import load_recipe

    # tiny_model_dir is builtin:tiny-llava (the demo recipe's own model is tiny-llava-demo)
    recipe = load_recipe("recipes/tiny.yaml", ["model.name=builtin:tiny-llava", "train.lora.enabled=true",
                                               "train.lora.r=4", f"train.lora.targets={targets}"])  # fmt: skip
    model, _ = load_model_for_recipe(recipe)
    real = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    shapes = shapes_from_config(AutoConfig.from_pretrained(tiny_model_dir))
    assert lora_params(shapes, PlanSettings.from_recipe(recipe)) == real


# ---- DeepSpeed's own estimators --------------------------------------------------------------------------


@pytest.mark.parametrize("stage, offload_opt, offload_params", [(2, False, False), (2, True, False),
                                                                (3, False, False), (3, True, False), (3, True, True)])  # fmt: skip
@pytest.mark.parametrize("gpus", [1, 8])
def test_model_states_equal_deepspeeds_estimators(stage, offload_opt, offload_params, gpus):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    params, largest = 7_000_000_000, 131_334_144
    s = PlanSettings(
        zero_stage=stage, offload_optimizer=offload_opt, offload_params=offload_params, world_size=gpus
    )
    rows, _ = model_state_rows([ParamGroup("all", params, 2, True)], s, largest)
    if stage == 2:
        _, expected = estimate_zero2_model_states_mem_needs(params, gpus, 1, offload_opt)
    else:
        _, expected, _ = estimate_zero3_model_states_mem_needs(
            params, largest, gpus, 1, offload_opt, offload_params
        )
    assert sum(rows.values()) == pytest.approx(expected, rel=1e-9)


# ---- published figures -------------------------------------------------------------------------------------


def test_zero_stage_1_keeps_every_16bit_gradient():
    group = [ParamGroup("all", 1000, 2, True)]
    one, _ = model_state_rows(group, PlanSettings(zero_stage=1, world_size=4), 0)
    two, _ = model_state_rows(group, PlanSettings(zero_stage=2, world_size=4), 0)
    assert one["gradients"] - two["gradients"] == 1000 * 2 * (1 - 1 / 4)
    assert one["optimizer states"] == two["optimizer states"] == 1000 * 12 / 4


def test_zero_paper_figure_1():
    """ZeRO (Rajbhandari et al., 2020, arXiv:1910.02054), Figure 1: a 7.5B model on 64 GPUs with mixed-precision
    Adam (K = 12) needs 120 GB per GPU in plain data parallelism, 16.6 GB with ZeRO-2 (P_os+g) and 1.9 GB with
    ZeRO-3 (P_os+g+p). DeepSpeed's implementation (whose accounting the plan uses) also keeps an fp32 copy of
    each gradient partition: +4 bytes per parameter / 64 for ZeRO-2, +2 for ZeRO-3 (which keeps no 16-bit one)."""
    psi, nd = 7.5e9, 64
    group = [ParamGroup("all", int(psi), 4, True)]
    baseline, _ = model_state_rows(group, PlanSettings(weight_bytes=4), 0)  # fp32 weights, torch AdamW
    assert (
        baseline["weights"] + baseline["gradients"] + baseline["optimizer states"]
    ) / 1e9 == pytest.approx(120)
    group = [ParamGroup("all", int(psi), 2, True)]
    zero2, _ = model_state_rows(group, PlanSettings(zero_stage=2, world_size=nd), 0)
    assert (sum(zero2.values()) - 4 * psi / nd) / 1e9 == pytest.approx(16.6, abs=0.05)
    zero3, _ = model_state_rows(group, PlanSettings(zero_stage=3, world_size=nd), 0)
    assert (sum(zero3.values()) - 2 * psi / nd) / 1e9 == pytest.approx(1.9, abs=0.05)


@pytest.mark.parametrize("name", ["llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-13b-hf"])
def test_qlora_paper_bits_per_parameter(name):
    """QLoRA (Dettmers et al., 2023, arXiv:2305.14314), section 3: NF4 with a float32 absmax per 64 weights costs
    32/64 = 0.5 extra bits per parameter; double quantisation brings it to 8/64 + 32/(64*256) = 0.127."""
    assert QUANT_BITS[(4, False)] - 4 == pytest.approx(0.5)
    assert QUANT_BITS[(4, True)] - 4 == pytest.approx(0.127, abs=5e-4)
    shapes = known_shapes(name)
    groups = parameter_groups(shapes, PlanSettings(mode="qlora"))
    quantised = next(g for g in groups if "quantised" in g.name)
    assert quantised.count * quantised.weight_bytes == pytest.approx(
        shapes.text.linear_params() * 4.127 / 8, rel=1e-4
    )


def test_eight_bit_optimizer_states_are_a_quarter():
    """bitsandbytes (README): 8-bit optimizers use 75% less memory for the states than 32-bit ones."""
    assert optimizer_state_bytes("adamw_8bit", 4) / optimizer_state_bytes("paged_adamw_32bit", 4) == 0.25
    assert optimizer_state_bytes("adamw_torch", 4) == 8 and optimizer_state_bytes("adamw_torch", 2) == 4


# ---- the activation formulas -------------------------------------------------------------------------------


def small_shapes() -> ModelShapes:
    text = TextShapes(hidden=8, intermediate=16, layers=3, heads=2, kv_heads=2, vocab=10)
    return ModelShapes(text, VisionShapes(hidden=4, intermediate=8, layers=2, image_size=8, patch_size=4), 4)


def test_activation_rows_by_hand():
    shapes, tokens = small_shapes(), 2 * 5
    s = PlanSettings(batch=2, seq_len=5, gradient_checkpointing=True, train_projector=True)
    rows = activation_rows(shapes, s)
    layer = 26 * 8 + 8 * 16
    assert rows["activations: decoder"] == tokens * (3 * 2 * 8 + layer + 6 * 8)
    assert rows["activations: logits and loss"] == tokens * 12 * 10
    assert rows["activations: bottleneck"] == tokens * 22 * 8
    assert rows["activations: projector / vision tower"] == 2 * 4 * (2 * 4 + 4 * 8)
    fp32 = activation_rows(shapes, PlanSettings(batch=2, seq_len=5, compute_bytes=4))
    assert fp32["activations: decoder"] == 2 * rows["activations: decoder"]
    assert fp32["activations: logits and loss"] == rows["activations: logits and loss"]
    no_ckpt = activation_rows(shapes, PlanSettings(batch=2, seq_len=5, gradient_checkpointing=False))
    assert no_ckpt["activations: decoder"] == tokens * (3 * layer + 6 * 8)
    # LoRA with dropout on the decoder: 3 bytes per input element of q, k, v, o, gate, up (d) and down (i).
    lora = activation_rows(shapes, PlanSettings(batch=2, seq_len=5, mode="lora", lora_dropout=0.05))
    assert lora["activations: decoder"] - rows["activations: decoder"] == tokens * 3 * (6 * 8 + 16)
    trained_tower = activation_rows(shapes, PlanSettings(batch=2, seq_len=5, train_vision_tower=True))
    per_token = 2 * 2 * 4 + 16 * 4 + 6 * 8  # 2 layers' inputs + one layer recomputed
    assert (
        trained_tower["activations: projector / vision tower"] == 2 * 4 * (2 * 4 + 4 * 8) + 2 * 4 * per_token
    )


def test_modes_order_as_they_should():
    shapes = known_shapes("llava-hf/llava-1.5-7b-hf")
    total = {m: plan_memory(shapes, PlanSettings(mode=m, batch=1)).total for m in ("full", "lora", "qlora")}
    assert total["full"] > total["lora"] > total["qlora"]
    # full fine-tuning of 7B in bf16 with torch AdamW: 2 bytes per weight; 2 + 4 (+2 foreach temporary) more per
    # trained one (all but the frozen vision tower)
    n = shapes.total_params(bottleneck_params(4096, False))
    trained = n - shapes.vision.params()
    rows = plan_memory(shapes, PlanSettings(mode="full", batch=1)).rows
    assert rows["weights"] == 2 * n and rows["gradients"] == 2 * trained
    assert rows["optimizer states"] == 4 * trained and rows["optimizer step"] == 2 * trained
    assert total["full"] / GIB > 60  # a 7B full fine-tune never fits one 40/48 GB card
