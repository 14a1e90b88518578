"""Load the model and processor a recipe asks for, ready to train.

One path for every source (builtin:tiny-llava, a hub name, a local folder, or a stage-1 composition of a
language model + vision tower + projector): load (optionally quantised with bitsandbytes), attach the
bottleneck, freeze by component, and wrap in LoRA (peft) when asked. The order matters: the bottleneck is
attached after quantisation so it is never quantised, and before peft so `modules_to_save` trains it fully.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vittle_cli.errors import ModelError, UsageError
from vittle_cli.model.builtin import resolve_model_source

if TYPE_CHECKING:
    from vittle_cli.recipe import Recipe

COMPONENTS = ("vision_tower", "projector", "language_model", "lm_head", "bottleneck", "other")
# The decoder's attention + MLP linears (Llama, Mistral, Qwen2, Vicuna ...): LoRA's `language_model` target.
LM_LORA_SUFFIXES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Module-name parts that identify a component, across LLaVA, LLaVA-NeXT, Qwen2-VL, Idefics-style models and
# the transformers 4.x layout. Checked in this order: the projector can sit inside the vision tower
# (Qwen2-VL's visual.merger) and lm_head sat inside language_model in 4.x.
_PARTS = (
    ("bottleneck", {"vittle_bottleneck"}),
    ("projector", {"multi_modal_projector", "mm_projector", "merger", "connector", "image_newline"}),
    ("vision_tower", {"vision_tower", "visual", "vision_model"}),
    ("lm_head", {"lm_head"}),
    ("language_model", {"language_model", "text_model"}),
)


def component_of(param_name: str) -> str:
    """The model part a parameter (or module) name belongs to: vision_tower, projector, language_model,
    lm_head, bottleneck or other. Works on plain, peft-wrapped and DeepSpeed names."""
    parts = set(param_name.split("."))
    for component, names in _PARTS:
        if parts & names:
            return component
    return "other"


def _logical_numel(param: torch.Tensor) -> int:
    """Parameter count as the model sees it: ZeRO-3 partitions keep it in ds_numel, 4-bit weights in
    their quant_state shape (the stored tensor is packed)."""
    if hasattr(param, "ds_numel"):
        return int(param.ds_numel)
    quant_state = getattr(param, "quant_state", None)
    if quant_state is not None and getattr(quant_state, "shape", None) is not None:
        return math.prod(quant_state.shape)
    return param.numel()


def parameter_summary(model: nn.Module) -> list[tuple[str, int, int]]:
    """(component, trainable, total) parameter counts for each component the model has, in COMPONENTS order.

    peft's frozen `original_module` copies (kept beside a `modules_to_save` copy) are not counted, so a
    component counts once whether or not it is wrapped.
    """
    trainable = dict.fromkeys(COMPONENTS, 0)
    total = dict.fromkeys(COMPONENTS, 0)
    for name, param in model.named_parameters():
        if ".original_module." in f".{name}.":
            continue
        component = component_of(name)
        count = _logical_numel(param)
        total[component] += count
        if param.requires_grad:
            trainable[component] += count
    return [(c, trainable[c], total[c]) for c in COMPONENTS if total[c]]


def component_roots(model: nn.Module) -> dict[str, list[str]]:
    """Top-most module paths of each component, e.g. {"vision_tower": ["model.vision_tower"], ...}."""
    roots: dict[str, list[str]] = {}
    for name, _ in model.named_modules():
        component = component_of(name) if name else "other"
        if component == "other":
            continue
        parent = name.rpartition(".")[0]
        if not parent or component_of(parent) != component:
            roots.setdefault(component, []).append(name)
    return roots


# ----------------------------------------------------------------------------------------------------------
# Loading


def resolve_dtype(model_dtype: str, precision: str = "auto") -> torch.dtype:
    """Weight dtype for loading. An explicit model.dtype wins; `auto` follows train.precision (bf16 ->
    bfloat16; fp16/fp32 -> float32, since fp16 mixed precision needs float32 master weights) and otherwise
    picks bfloat16 where CUDA supports it, else float32."""
    if model_dtype != "auto":
        return _DTYPES[model_dtype]
    if precision == "bf16":
        return torch.bfloat16
    if precision in ("fp16", "fp32"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def load_model_for_recipe(recipe: Recipe, *, device_map: Any = None) -> tuple[nn.Module, Any]:
    """Load (model, processor) for `recipe`, with the bottleneck attached, parts frozen as the recipe says,
    and LoRA applied when train.lora.enabled. The model is in train mode.

    Args:
        recipe: the resolved recipe (model, bottleneck and train.lora / train.qlora sections are used).
        device_map: passed to `from_pretrained`; None = CPU, or this rank's GPU for QLoRA without DeepSpeed.

    Raises:
        ModelError: the model cannot be found or loaded, QLoRA without bitsandbytes, or no LoRA targets.
        UsageError: a combination the recipe cannot run (QLoRA with model.compose).
    """
    m, train = recipe.model, recipe.train
    dtype = resolve_dtype(m.dtype, train.precision)
    if m.compose is not None:
        if train.qlora.enabled:
            raise UsageError(
                "model.compose builds a model from parts and cannot be quantised; set train.qlora.enabled=false "
                "(stage-1 projector training needs no quantisation)"
            )
        model, processor = compose_llava(
            m.compose.language_model,
            m.compose.vision_tower,
            m.compose.projector_weights,
            dtype=dtype,
            attn_implementation=m.attn_implementation,
            trust_remote_code=m.trust_remote_code,
        )
    else:
        model, processor = _load_pretrained(recipe, dtype, device_map)
    if recipe.bottleneck.enabled:
        from vittle_cli.model.attach import attach_bottleneck
        from vittle_cli.model.bottleneck import VittleConfig

        attach_bottleneck(model, VittleConfig(**recipe.bottleneck.model_dump(exclude={"enabled"})))
    set_trainable(
        model,
        vision_tower=m.train_vision_tower,
        projector=m.train_projector,
        language_model=m.train_language_model,
    )
    if train.lora.enabled:
        model = apply_lora(model, recipe)
    model.train()
    return model, processor


def _load_pretrained(recipe: Recipe, dtype: torch.dtype, device_map: Any) -> tuple[nn.Module, Any]:
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vittle_cli.model.families import load_processor, require_supported

    m, qlora = recipe.model, recipe.train.qlora
    source = _checked_source(m.name)
    hub = {"revision": m.revision, "trust_remote_code": m.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(source, **hub)
        require_supported(config)
        kwargs: dict[str, Any] = {"dtype": dtype, **hub}
        if m.attn_implementation:
            kwargs["attn_implementation"] = m.attn_implementation
        if qlora.enabled:
            kwargs["quantization_config"] = quantization_config(
                recipe, quantization_skip_modules(config, hub)
            )
            if device_map is None and torch.cuda.is_available() and recipe.train.deepspeed is None:
                # A quantised model cannot be moved after loading: place it on this rank's GPU now.
                device_map = {"": int(os.environ.get("LOCAL_RANK", 0))}
        model = AutoModelForImageTextToText.from_pretrained(source, device_map=device_map, **kwargs)
        processor = load_processor(source, **hub)
    except OSError as e:
        raise ModelError(
            f"cannot load model {m.name!r}: {str(e).splitlines()[0]} (check model.name: a hub name, a local "
            "folder with config.json, or builtin:tiny-llava; for a hub model run once with network access or "
            "`hf download <name>`, and unset HF_HUB_OFFLINE)"
        ) from e
    except ValueError as e:  # e.g. a text-only model, which AutoModelForImageTextToText does not map
        raise ModelError(
            f"cannot load model {m.name!r}: {str(e).splitlines()[0]} (vittle trains image-text-to-text models "
            "such as LLaVA-1.5, LLaVA-NeXT and Qwen2-VL; build one from parts with model.compose)"
        ) from e
    if qlora.enabled:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=recipe.train.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model, processor


def _checked_source(name: str) -> str:
    """The from_pretrained source for model.name; a name that looks like a path must exist."""
    source = resolve_model_source(name)
    # Hub names are "org/name"; anything else with a slash (or starting like a path) is a local path.
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model folder {source} has no config.json; point model.name at a folder written by "
                "save_pretrained (or a vittle run's final/ folder)"
            )
        return str(path)
    if looks_local:
        raise ModelError(
            f"model path {source} does not exist; fix model.name (a hub name like llava-hf/llava-1.5-7b-hf, "
            "a local model folder, or builtin:tiny-llava)"
        )
    return source


# ----------------------------------------------------------------------------------------------------------
# Quantisation (QLoRA)


def quantization_skip_modules(config: Any, hub: dict[str, Any] | None = None) -> list[str]:
    """Full module paths bitsandbytes must leave alone: vision tower, projector and lm_head.

    transformers 5.x matches `llm_int8_skip_modules` by path prefix, so the 4.x spelling "vision_tower" no
    longer matches. The paths are read off the real module tree, built on the meta device (no memory).
    """
    from transformers import AutoModelForImageTextToText

    with _zero3_init_paused(), torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(
            config, trust_remote_code=(hub or {}).get("trust_remote_code", False)
        )
    roots = component_roots(skeleton)
    skip = [p for c in ("vision_tower", "projector", "lm_head") for p in roots.get(c, [])]
    if not roots.get("vision_tower"):
        raise ModelError(
            f"cannot find the vision tower of {type(skeleton).__name__} to keep it unquantised; "
            "QLoRA supports LLaVA, LLaVA-NeXT and Qwen2-VL style models"
        )
    return skip


def quantization_config(recipe: Recipe, skip_modules: list[str]) -> Any:
    """The BitsAndBytesConfig for train.qlora.

    Raises:
        ModelError: bitsandbytes is not installed.
    """
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError(
            "train.qlora.enabled=true needs bitsandbytes, which is not installed; "
            "run `pip install 'vittle[qlora]'` (or set train.qlora.enabled=false)"
        )
    from transformers import BitsAndBytesConfig

    q = recipe.train.qlora
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip_modules)
    compute = _DTYPES[q.compute_dtype]
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute,
        # Storing the packed weights in the compute dtype lets ZeRO-3 partition them like other params.
        bnb_4bit_quant_storage=compute,
        llm_int8_skip_modules=skip_modules,
    )


# ----------------------------------------------------------------------------------------------------------
# Freezing and LoRA


def set_trainable(model: nn.Module, *, vision_tower: bool, projector: bool, language_model: bool) -> None:
    """Freeze or unfreeze every parameter by component. lm_head belongs to the language model; the
    bottleneck always trains; unrecognised parameters follow the language model."""
    wanted = {
        "vision_tower": vision_tower,
        "projector": projector,
        "language_model": language_model,
        "lm_head": language_model,
        "bottleneck": True,
        "other": language_model,
    }
    for name, param in model.named_parameters():
        # 4-bit / 8-bit weights cannot take gradients; prepare_model_for_kbit_training froze them already.
        if param.dtype.is_floating_point:
            param.requires_grad_(wanted[component_of(name)])


def lora_target_modules(model: nn.Module, targets: list[str]) -> list[str]:
    """Full paths of the linear layers LoRA wraps for `targets` (train.lora.targets).

    language_model: the decoder's attention + MLP projections only (never lm_head, never the vision tower);
    projector / vision_tower: every linear layer inside that component.
    """
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):  # bitsandbytes' Linear4bit / Linear8bitLt subclass nn.Linear
            continue
        component = component_of(name)
        if component not in targets:
            continue
        if component == "language_model" and name.rpartition(".")[2] not in LM_LORA_SUFFIXES:
            continue
        found.append(name)
    return found


def apply_lora(model: nn.Module, recipe: Recipe) -> nn.Module:
    """Wrap `model` in a peft LoRA model per train.lora; the bottleneck (and the projector or vision tower
    when they train but carry no adapters) go to `modules_to_save` and train fully.

    Raises:
        ModelError: no module matched the targets.
    """
    from peft import LoraConfig, get_peft_model

    lora = recipe.train.lora
    targets = lora.modules or lora_target_modules(model, list(lora.targets))
    if not targets:
        raise ModelError(
            f"LoRA found no linear layers for train.lora.targets={list(lora.targets)} in "
            f"{type(model).__name__}; list them in train.lora.modules (e.g. [q_proj, v_proj])"
        )
    roots = component_roots(model)
    to_save = list(roots.get("bottleneck", []))
    for component, trains in (
        ("vision_tower", recipe.model.train_vision_tower),
        ("projector", recipe.model.train_projector),
    ):
        if trains and component not in lora.targets:
            # A projector inside the vision tower (Qwen2-VL's visual.merger) is already in its copy.
            to_save += [
                p for p in roots.get(component, []) if not any(p.startswith(f"{s}.") for s in to_save)
            ]
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        modules_to_save=to_save or None,
    )
    return get_peft_model(model, config)


# ----------------------------------------------------------------------------------------------------------
# Stage-1 composition: language model + CLIP vision tower + projector -> LlavaForConditionalGeneration

# The reference LLaVA-1.5 (conv_vicuna_v1) system prompt.
LLAVA15_SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
# Reference mm_projector.bin keys (Sequential(Linear, GELU, Linear)) -> LlavaMultiModalProjector names.
_PROJECTOR_KEYS = {"0.weight": "linear_1.weight", "0.bias": "linear_1.bias",
                   "2.weight": "linear_2.weight", "2.bias": "linear_2.bias"}  # fmt: skip


def llava15_chat_template(system_prompt: str = LLAVA15_SYSTEM_PROMPT) -> str:
    """The LLaVA-1.5 chat template (USER: <image>\\n... ASSISTANT: ...</s>) with `system_prompt`."""
    from vittle_cli.model.builtin import CHAT_TEMPLATE, SYSTEM_PROMPT

    # Same layout as builtin:tiny-llava; the prompt is swapped in as a double-quoted literal because the
    # reference prompt contains an apostrophe.
    quoted = "'" + SYSTEM_PROMPT + " '"
    return CHAT_TEMPLATE.replace(quoted, json.dumps(system_prompt + " "))


def compose_llava(
    language_model: str,
    vision_tower: str,
    projector_weights: str | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[nn.Module, Any]:
    """Build an HF-native LlavaForConditionalGeneration from a causal LM, a CLIP vision model and (optional)
    projector weights, plus its LlavaProcessor (LLaVA-1.5 layout: second-to-last CLIP layer, CLS dropped).

    Adds the `<image>` token (and a pad token if missing) to the tokenizer and resizes the embeddings.
    The parts are loaded once and moved into the LLaVA shell (built on the meta device), not copied.

    Raises:
        ModelError: a part cannot be found or loaded, or the projector weights do not fit.
    """
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPVisionModel,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    lm_source, vt_source = _checked_source(language_model), _checked_source(vision_tower)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(lm_source, trust_remote_code=trust_remote_code)
        lm = AutoModelForCausalLM.from_pretrained(
            lm_source, dtype=dtype, trust_remote_code=trust_remote_code, **extra
        )
        tower = CLIPVisionModel.from_pretrained(vt_source, dtype=dtype, **extra)
    except (OSError, ValueError) as e:
        raise ModelError(
            f"cannot load a model.compose part: {str(e).splitlines()[0]} (model.compose.language_model must be "
            "a causal LM and model.compose.vision_tower a CLIP model, as hub names or local folders)"
        ) from e
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    if tokenizer.pad_token is None:
        # LLaVA-1.5 pads with <unk>; add a pad token only when there is none to reuse.
        if tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))
    vision = tower.config
    config = LlavaConfig(
        vision_config=vision,
        text_config=lm.config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )
    config.pad_token_id = tokenizer.pad_token_id
    with _zero3_init_paused(), torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.language_model = lm.get_decoder()
    model.lm_head = lm.get_output_embeddings()
    model.model.vision_tower = tower
    model.model.multi_modal_projector = LlavaMultiModalProjector(config).to(dtype)
    if projector_weights:
        load_projector_weights(model.model.multi_modal_projector, projector_weights)
    left_on_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left_on_meta:
        raise ModelError(f"composition left {left_on_meta[0]} uninitialised; please report this as a bug")
    model.generation_config = lm.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, _llava_processor(tokenizer, vt_source, vision.patch_size)


@contextlib.contextmanager
def _zero3_init_paused():
    """Build meta-device skeletons without transformers' ZeRO-3 init, which would try to initialise (and
    partition) their weights and fails on meta tensors. Real loads (from_pretrained) stay partitioned."""
    from transformers.integrations import deepspeed as hf_deepspeed

    ref = getattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    active = ref() if ref is not None else None
    if active is None:
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(active)


def _llava_processor(tokenizer: Any, vision_source: str, patch_size: int) -> Any:
    from transformers import CLIPImageProcessor, CLIPImageProcessorPil, LlavaProcessor

    # The torchvision-backed processor cannot be installed beside CPU torch; the PIL one gives the same pixels.
    image_cls = CLIPImageProcessor if importlib.util.find_spec("torchvision") else CLIPImageProcessorPil
    try:
        image_processor = image_cls.from_pretrained(vision_source)
    except OSError as e:
        raise ModelError(
            f"model.compose.vision_tower {vision_source} has no image processor (preprocessor_config.json); "
            "use a full CLIP checkpoint such as openai/clip-vit-large-patch14-336"
        ) from e
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=llava15_chat_template(),
    )


def load_projector_weights(projector: nn.Module, path: str | os.PathLike) -> None:
    """Load stage-1 projector weights into a LlavaMultiModalProjector, exactly (strict, same shapes).

    Accepts the reference mm_projector.bin (`model.mm_projector.0.weight`, ...) or a .safetensors file with
    the same keys or LLaVA-HF names (`multi_modal_projector.linear_1.weight`, ...).

    Raises:
        ModelError: missing file, unknown or missing keys, or shapes that do not match the model.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"model.compose.projector_weights: {path} does not exist; fix the path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for key, value in state.items():
        for marker in ("mm_projector.", "multi_modal_projector."):
            key = key.rpartition(marker)[2] if marker in key else key
        mapped[_PROJECTOR_KEYS.get(key, key)] = value
    expected = projector.state_dict()
    problems = sorted(set(expected) ^ set(mapped))
    problems += [
        f"{k}: file {tuple(mapped[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in mapped and mapped[k].shape != v.shape
    ]
    if problems:
        raise ModelError(
            f"projector weights {path} do not fit this model ({'; '.join(problems)}); use the mm_projector.bin "
            "trained for this language model and vision tower"
        )
    projector.load_state_dict(mapped, strict=True)


# architecture.md names the loader `load_model_and_processor`; both names refer to the same function.
load_model_and_processor = load_model_for_recipe
