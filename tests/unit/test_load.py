"""model/load.py: component naming, freezing, LoRA targets, QLoRA, stage-1 composition, load errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vittle_cli.errors import ModelError, UsageError
from vittle_cli.model.components import component_of, parameter_summary
from vittle_cli.model.compose import compose_llava
from vittle_cli.model.load import load_model_for_recipe, resolve_dtype
from vittle_cli.recipe import Recipe


def _recipe(**sections) -> Recipe:
    return Recipe.model_validate(sections)


def _lora(**extra) -> dict:
    return {"lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, **extra}}


def _batch(processor, n: int = 2) -> dict:
    """A small image+text batch with labels on the answer only (image and prompt tokens masked)."""
    from PIL import Image

    images = [Image.new("RGB", (48, 48), (255 * (i % 2), 40, 200)) for i in range(n)]
    texts = [f"USER: <image>\nIs there a red circle? ASSISTANT: {'Yes' if i % 2 else 'No'}" for i in range(n)]
    batch = processor(images=images, text=texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()
    labels[:, : labels.shape[1] - 3] = -100
    labels[batch["attention_mask"] == 0] = -100
    batch["labels"] = labels
    return dict(batch)


def _set_alpha(model, value: float = 0.5) -> None:
    # The schedule starts at alpha ~ 0; a mid-run alpha lets the CE loss reach the bottleneck.
    from vittle_cli.model.attach import get_bottleneck

    get_bottleneck(model).alpha = value


def _trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("name", "component"),
    [
        ("model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight", "vision_tower"),
        ("model.multi_modal_projector.linear_1.weight", "projector"),
        ("model.language_model.layers.3.mlp.down_proj.weight", "language_model"),
        ("model.language_model.embed_tokens.weight", "language_model"),
        ("lm_head.weight", "lm_head"),
        ("vittle_bottleneck.visual.net.0.weight", "bottleneck"),
        # peft-wrapped names
        (
            "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight",
            "language_model",
        ),
        ("base_model.model.vittle_bottleneck.modules_to_save.default.text.net.2.bias", "bottleneck"),
        ("base_model.model.model.multi_modal_projector.modules_to_save.default.linear_2.weight", "projector"),
        # Qwen2-VL: the merger (projector) sits inside the vision tower
        ("model.visual.blocks.0.attn.qkv.weight", "vision_tower"),
        ("model.visual.merger.mlp.0.weight", "projector"),
        # LLaVA-NeXT and the transformers 4.x layout
        ("model.image_newline", "projector"),
        ("language_model.lm_head.weight", "lm_head"),
        ("language_model.model.layers.0.self_attn.q_proj.weight", "language_model"),
        ("some_unrelated.weight", "other"),
    ],
)
def test_component_of(name, component):
    assert component_of(name) == component


def test_resolve_dtype():
    assert resolve_dtype("bfloat16", "fp32") is torch.bfloat16  # explicit dtype wins
    assert resolve_dtype("float16") is torch.float16
    assert resolve_dtype("auto", "bf16") is torch.bfloat16
    assert resolve_dtype("auto", "fp16") is torch.float32  # fp16 AMP needs float32 master weights
    expected = (
        torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    )
    assert resolve_dtype("auto", "auto") is expected


def test_full_finetune_defaults_freeze_only_the_vision_tower(tiny_model_dir):
    model, processor = load_model_for_recipe(_recipe())
    assert model.training and type(processor).__name__ == "LlavaProcessor"
    summary = {c: (t, n) for c, t, n in parameter_summary(model)}
    assert set(summary) == {"vision_tower", "projector", "language_model", "lm_head", "bottleneck"}
    assert summary["vision_tower"][0] == 0
    for component in ("projector", "language_model", "lm_head", "bottleneck"):
        assert summary[component][0] == summary[component][1] > 0
    # The summary covers every parameter exactly once.
    assert sum(n for _, n in summary.values()) == sum(p.numel() for p in model.parameters())
    assert sum(t for t, _ in summary.values()) == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    # Bottleneck: 3d^2 + 3d per modality, d = 96 (METHOD.md §2).
    assert summary["bottleneck"][1] == 2 * (3 * 96 * 96 + 3 * 96)


@pytest.mark.parametrize(
    ("vt", "proj", "lm"), [(True, False, False), (False, True, False), (False, False, True)]
)
def test_freezing_per_component(tiny_model_dir, vt, proj, lm):
    recipe = _recipe(
        model={"train_vision_tower": vt, "train_projector": proj, "train_language_model": lm},
        bottleneck={"enabled": False},
    )
    model, _ = load_model_for_recipe(recipe)
    wanted = {"vision_tower": vt, "projector": proj, "language_model": lm, "lm_head": lm}
    for name, param in model.named_parameters():
        assert param.requires_grad == wanted[component_of(name)], name
    assert "bottleneck" not in {c for c, _, _ in parameter_summary(model)}


def test_lora_default_targets_language_model_only(tiny_model_dir):
    model, _ = load_model_for_recipe(_recipe(train=_lora()))
    lora_modules = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert lora_modules, "no LoRA layers were created"
    assert {component_of(n) for n in lora_modules} == {"language_model"}
    suffixes = {n.rsplit(".", 1)[1] for n in lora_modules}
    assert suffixes == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(lora_modules) == 8 * 7  # every decoder layer, nothing else (no lm_head)
    trainable = _trainable_names(model)
    # Projector trains fully (modules_to_save) because train_projector is true and it is not a target.
    assert any(".multi_modal_projector.modules_to_save." in n for n in trainable)
    assert not any(component_of(n) == "vision_tower" for n in trainable)
    assert not any(component_of(n) == "lm_head" for n in trainable)
    # Base LM weights are frozen: only the adapters train there.
    assert all(".lora_" in n for n in trainable if component_of(n) == "language_model")


def test_lora_projector_target_gets_adapters_not_full_copy(tiny_model_dir):
    model, _ = load_model_for_recipe(_recipe(train=_lora(targets=["language_model", "projector"])))
    names = [n for n, _ in model.named_parameters()]
    assert any("multi_modal_projector.linear_1.lora_A" in n for n in names)
    assert any("multi_modal_projector.linear_2.lora_B" in n for n in names)
    assert not any("multi_modal_projector.modules_to_save" in n for n in names)
    assert not any(component_of(n) == "vision_tower" and ".lora_" in n for n in names)


def test_lora_explicit_modules_override_targets(tiny_model_dir):
    recipe = _recipe(train=_lora(modules=["language_model.layers.0.self_attn.v_proj"]))
    model, _ = load_model_for_recipe(recipe)
    lora_modules = {n.rsplit(".lora_A", 1)[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert lora_modules == {"base_model.model.model.language_model.layers.0.self_attn.v_proj"}


def test_lora_keeps_bottleneck_fully_trainable(tiny_model_dir):
    model, processor = load_model_for_recipe(_recipe(train=_lora(), bottleneck={"prior": "L"}))
    bottleneck_params = {n: p for n, p in model.named_parameters() if component_of(n) == "bottleneck"}
    active = {n: p for n, p in bottleneck_params.items() if ".modules_to_save." in n}
    assert active and all(p.requires_grad for p in active.values())
    summary = {c: (t, n) for c, t, n in parameter_summary(model)}
    assert summary["bottleneck"][0] == summary["bottleneck"][1] > 0
    _set_alpha(model)
    from vittle_cli.model.attach import get_bottleneck

    out = model(**_batch(processor))
    bn = get_bottleneck(model)
    kl = bn.last_kl_v.sum() + bn.last_kl_t.sum()
    (out.loss + kl).backward()
    for name, param in active.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.slow
def test_qlora_quantises_only_the_language_model_and_trains_every_adapter(tiny_model_dir):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    recipe = _recipe(train={**_lora(), "qlora": {"enabled": True, "compute_dtype": "float32"}})
    model, processor = load_model_for_recipe(recipe)
    quantised = (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or ".lora_" in name:
            continue
        component = component_of(name)
        if component == "language_model":
            assert isinstance(module, bnb.nn.Linear4bit), name
        else:  # vision tower, projector (both copies), lm_head, bottleneck
            assert not isinstance(module, quantised), name
    assert {"vision_tower", "projector", "lm_head", "bottleneck"} <= {
        c for c, _, _ in parameter_summary(model)
    }
    # Training first, never an eval forward (PLATFORM.md: it repacks 4-bit weights and kills LoRA grads).
    _set_alpha(model)
    batch = _batch(processor)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(3):  # after one step lora_B != 0, so lora_A gets gradient too
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
        lora = {n: p for n, p in model.named_parameters() if ".lora_" in n}
        if len(losses) < 3:
            optimizer.step()
    assert all(torch.isfinite(torch.tensor(losses)))
    dead = [n for n, p in lora.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"{len(dead)}/{len(lora)} LoRA parameters got no gradient, e.g. {dead[:3]}"
    bottleneck = [p for n, p in model.named_parameters() if ".modules_to_save." in n and "vittle" in n]
    assert bottleneck and all(p.grad is not None and p.grad.abs().sum() > 0 for p in bottleneck)


def test_qlora_8bit_option(tiny_model_dir):
    pytest.importorskip("bitsandbytes")
    recipe = _recipe(train={**_lora(), "qlora": {"enabled": True, "bits": 8}}, bottleneck={"enabled": False})
    model, _ = load_model_for_recipe(recipe)
    import bitsandbytes as bnb

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and ".lora_" not in name:
            is_8bit = isinstance(module, bnb.nn.Linear8bitLt)
            assert is_8bit == (component_of(name) == "language_model"), name


def test_qlora_without_bitsandbytes_is_a_clear_error(tiny_model_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    with pytest.raises(ModelError, match="bitsandbytes.*pip install"):
        load_model_for_recipe(_recipe(train={**_lora(), "qlora": {"enabled": True}}))


def test_unknown_model_path_is_a_usage_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(UsageError, match=f"model.name {missing}: no such directory"):
        load_model_for_recipe(_recipe(model={"name": str(missing)}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="model.name .*empty is not a model, adapter or run directory"):
        load_model_for_recipe(_recipe(model={"name": str(tmp_path / "empty")}))


def test_unknown_hub_name_offline_is_a_model_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="cannot load model 'nobody-vittle/no-such-model'"):
        load_model_for_recipe(_recipe(model={"name": "nobody-vittle/no-such-model"}))


# ----------------------------------------------------------------------------------------------------------
# Stage-1 composition from tiny random parts written by the test


@pytest.fixture(scope="module")
def tiny_parts(tmp_path_factory):
    """A tiny Llama causal LM + tokenizer (no <image> token) and a tiny CLIP vision model + processor."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        CLIPVisionModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    root = tmp_path_factory.mktemp("parts")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tok.train_from_iterator(["USER: ASSISTANT: Is there a red circle? Yes No"] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    torch.manual_seed(0)
    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
        )
    )  # fmt: skip
    lm.save_pretrained(root / "lm")
    tokenizer.save_pretrained(root / "lm")
    tower = CLIPVisionModel(
        CLIPVisionConfig(
            image_size=32, patch_size=8, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=2,
        )
    )  # fmt: skip
    tower.save_pretrained(root / "clip")
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        root / "clip"
    )
    projector = {
        "model.mm_projector.0.weight": torch.randn(32, 24),
        "model.mm_projector.0.bias": torch.randn(32),
        "model.mm_projector.2.weight": torch.randn(32, 32),
        "model.mm_projector.2.bias": torch.randn(32),
    }
    torch.save(projector, root / "mm_projector.bin")
    from safetensors.torch import save_file

    save_file({k.replace("model.mm_projector", "mm_projector"): v for k, v in projector.items()},
              str(root / "mm_projector.safetensors"))  # fmt: skip
    return root, projector, lm, tower, len(tokenizer)


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_compose_loads_parts_exactly_and_trains(tiny_parts, fmt):
    root, projector, lm, tower, vocab = tiny_parts
    model, processor = compose_llava(str(root / "lm"), str(root / "clip"), str(root / f"mm_projector.{fmt}"))
    proj = model.model.multi_modal_projector
    assert torch.equal(proj.linear_1.weight, projector["model.mm_projector.0.weight"])
    assert torch.equal(proj.linear_1.bias, projector["model.mm_projector.0.bias"])
    assert torch.equal(proj.linear_2.weight, projector["model.mm_projector.2.weight"])
    assert torch.equal(proj.linear_2.bias, projector["model.mm_projector.2.bias"])
    assert torch.equal(
        model.model.language_model.layers[1].mlp.up_proj.weight, lm.model.layers[1].mlp.up_proj.weight
    )
    assert torch.equal(model.lm_head.weight[:vocab], lm.lm_head.weight)
    assert torch.equal(
        model.model.vision_tower.encoder.layers[0].self_attn.q_proj.weight,
        tower.encoder.layers[0].self_attn.q_proj.weight,
    )
    tokenizer = processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert image_id == model.config.image_token_id and image_id >= vocab  # added, not an existing token
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer)
    assert model.config.image_seq_length == 16 and model.config.vision_feature_layer == -2
    assert "curious human" in processor.chat_template
    from PIL import Image

    batch = processor(images=[Image.new("RGB", (40, 40), "red")], text=["USER: <image>\nIs there a red circle? ASSISTANT: Yes"], return_tensors="pt")  # fmt: skip
    assert int((batch["input_ids"] == image_id).sum()) == 16
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)


def test_compose_rejects_projector_weights_that_do_not_fit(tiny_parts, tmp_path):
    root, *_ = tiny_parts
    torch.save({"model.mm_projector.0.weight": torch.zeros(7, 7)}, tmp_path / "bad.bin")
    with pytest.raises(ModelError, match="do not fit"):
        compose_llava(str(root / "lm"), str(root / "clip"), str(tmp_path / "bad.bin"))
    with pytest.raises(ModelError, match="does not exist"):
        compose_llava(str(root / "lm"), str(root / "clip"), str(tmp_path / "missing.bin"))


def test_stage1_recipe_trains_the_projector_alone(tiny_parts):
    root, *_ = tiny_parts
    recipe = _recipe(
        model={
            "train_language_model": False, "train_vision_tower": False, "train_projector": True,
            "compose": {"language_model": str(root / "lm"), "vision_tower": str(root / "clip"),
                        "projector_weights": None},
        },
        bottleneck={"enabled": False},
    )  # fmt: skip
    model, _ = load_model_for_recipe(recipe)
    summary = {c: (t, n) for c, t, n in parameter_summary(model)}
    assert summary["projector"][0] == summary["projector"][1] == 24 * 32 + 32 + 32 * 32 + 32
    assert all(t == 0 for c, (t, _) in summary.items() if c != "projector")
    with pytest.raises(UsageError, match="qlora"):
        load_model_for_recipe(
            recipe.model_copy(update={"train": _recipe(train={**_lora(), "qlora": {"enabled": True}}).train})
        )


# ----------------------------------------------------------------------------------------------------------
# Other families: module paths are read off the real (meta-device) module tree


def _qwen2vl_config():
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300, bos_token_id=1, eos_token_id=2,
            rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(
            depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2,
        ),
        image_token_id=290, video_token_id=291, vision_start_token_id=292, vision_end_token_id=293,
    )  # fmt: skip


def test_quantization_skip_modules_per_family(tiny_model_dir):
    from transformers import AutoConfig, LlavaNextConfig

    from vittle_cli.model.quantize import quantization_skip_modules

    llava = AutoConfig.from_pretrained(tiny_model_dir)
    assert quantization_skip_modules(llava) == [
        "model.vision_tower",
        "model.multi_modal_projector",
        "lm_head",
    ]
    assert quantization_skip_modules(_qwen2vl_config()) == ["model.visual", "model.visual.merger", "lm_head"]
    next_config = LlavaNextConfig(text_config=llava.text_config, vision_config=llava.vision_config)
    assert quantization_skip_modules(next_config) == [
        "model.vision_tower", "model.multi_modal_projector", "lm_head",
    ]  # fmt: skip


def test_lora_targets_on_qwen2vl_skip_the_vision_tower_and_merger():
    from transformers import AutoModelForImageTextToText

    from vittle_cli.model.prepare import lora_target_modules

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(_qwen2vl_config())
    lm = lora_target_modules(model, ["language_model"])
    assert len(lm) == 2 * 7 and all(n.startswith("model.language_model.layers.") for n in lm)
    assert lora_target_modules(model, ["projector"]) == [
        "model.visual.merger.mlp.0",
        "model.visual.merger.mlp.2",
    ]
    tower = lora_target_modules(model, ["vision_tower"])
    assert tower and all(n.startswith("model.visual.blocks.") for n in tower)


def test_compose_shell_is_built_outside_an_active_zero3_init(tiny_model_dir):
    """Under ZeRO-3 (Trainer sets a global HfDeepSpeedConfig first) the meta-device LLaVA shell must not go
    through transformers' ZeRO-3 weight init, which cannot initialise meta tensors."""
    pytest.importorskip("deepspeed")
    from transformers import AutoConfig, LlavaForConditionalGeneration
    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled

    from vittle_cli.model.skeleton import zero3_init_paused
    from vittle_cli.train.deepspeed import resolve_deepspeed_config

    config = AutoConfig.from_pretrained(tiny_model_dir)
    keep = HfDeepSpeedConfig(resolve_deepspeed_config("zero3"))  # noqa: F841 (a weakref holds it globally)
    try:
        assert is_deepspeed_zero3_enabled()
        with zero3_init_paused():
            assert not is_deepspeed_zero3_enabled()
            with torch.device("meta"):
                shell = LlavaForConditionalGeneration(config)
        assert is_deepspeed_zero3_enabled()  # restored for the parts that follow
        assert all(p.is_meta for p in shell.parameters())
    finally:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()


@pytest.mark.slow
def test_qlora_on_a_tiny_qwen2vl_keeps_visual_and_merger_unquantised(tmp_path, monkeypatch):
    """The second family through the same loader: saved tiny Qwen2-VL -> 4-bit LM + LoRA + bottleneck."""
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb
    import transformers
    from transformers import Qwen2VLForConditionalGeneration

    from vittle_cli.model.attach import get_bottleneck

    config = _qwen2vl_config()
    image_id = config.image_token_id
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(tmp_path / "qwen")
    # Qwen2-VL's processor needs torchvision (not installable beside CPU torch); the model path is under test.
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", lambda *a, **k: None)
    recipe = _recipe(
        model={"name": str(tmp_path / "qwen"), "dtype": "float32", "train_projector": False},
        train={**_lora(), "qlora": {"enabled": True, "compute_dtype": "float32"}},
    )
    model, _ = load_model_for_recipe(recipe)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and ".lora_" not in name:
            assert isinstance(module, bnb.nn.Linear4bit) == (component_of(name) == "language_model"), name
    summary = {c: t for c, t, _ in parameter_summary(model)}
    assert summary["vision_tower"] == summary["projector"] == summary["lm_head"] == 0
    # One 64x64 image: 4x4 patches of 14 px, merged 2x2 -> 4 image tokens.
    ids = torch.tensor([[5, 6, 292, image_id, image_id, image_id, image_id, 293, 7, 8, 9, 10]])
    batch = {
        "input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids,
        "pixel_values": torch.randn(16, 3 * 2 * 14 * 14), "image_grid_thw": torch.tensor([[1, 4, 4]]),
        "mm_token_type_ids": (ids == image_id).long(),
    }  # fmt: skip
    _set_alpha(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for step in range(3):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        if step < 2:
            optimizer.step()
    assert torch.isfinite(loss)
    assert int(get_bottleneck(model).last_visual_mask.sum()) == 4
    lora = {n: p for n, p in model.named_parameters() if ".lora_" in n}
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.values())


def test_a_text_only_model_is_a_model_error(tiny_parts):
    root, *_ = tiny_parts
    with pytest.raises(ModelError, match="image-text-to-text.*model.compose"):
        load_model_for_recipe(_recipe(model={"name": str(root / "lm")}, bottleneck={"enabled": False}))


def test_model_name_may_be_a_run_directory(tiny_model_dir, tmp_path):
    """`model.name=runs/x` trains from the run's final/, as eval and inspect accept a run dir."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "final")
    (run / "config.yaml").write_text("model: {name: builtin:tiny-llava}\n")
    model, _ = load_model_for_recipe(_recipe(model={"name": str(run)}, bottleneck={"enabled": False}))
    assert type(model).__name__ == "LlavaForConditionalGeneration" and model.training
