"""Load the model and processor a recipe asks for, ready to train.

One path for every source (builtin:tiny-llava, a hub name, a local folder, or a stage-1 composition of a
language model + vision tower + projector): load (optionally quantised with bitsandbytes), attach the
bottleneck, freeze by component, and wrap in LoRA (peft) when asked. The order matters: the bottleneck is
attached after quantisation so it is never quantised, and before peft so `modules_to_save` trains it fully.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vittle_cli.errors import ModelError, UsageError
from vittle_cli.model.compose import compose_llava
from vittle_cli.model.device import TORCH_DTYPES, resolve_device, resolve_dtype_name
from vittle_cli.model.prepare import prepare_for_training
from vittle_cli.model.quantize import quantization_config, quantization_skip_modules
from vittle_cli.model.reference import trainable_source

if TYPE_CHECKING:
    from vittle_cli.recipe import Recipe


def resolve_dtype(model_dtype: str, precision: str = "auto") -> torch.dtype:
    """Weight dtype for loading. An explicit model.dtype wins; `auto` follows train.precision (bf16 ->
    bfloat16; fp16/fp32 -> float32, since fp16 mixed precision needs float32 master weights) and otherwise
    picks bfloat16 where CUDA supports it, else float32."""
    if model_dtype != "auto":
        return TORCH_DTYPES[model_dtype]
    if precision == "bf16":
        return torch.bfloat16
    if precision in ("fp16", "fp32"):
        return torch.float32
    return TORCH_DTYPES[resolve_dtype_name("auto", resolve_device("auto"))]  # as --dtype auto decides


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
    model = prepare_for_training(model, recipe)
    model.train()
    return model, processor


def _load_pretrained(recipe: Recipe, dtype: torch.dtype, device_map: Any) -> tuple[nn.Module, Any]:
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vittle_cli.model.families import load_processor, require_supported

    m, qlora = recipe.model, recipe.train.qlora
    source = trainable_source(m.name, "model.name")
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
            "such as LLaVA-1.5, Qwen2-VL and Qwen2.5-VL; build one from parts with model.compose)"
        ) from e
    if qlora.enabled:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=recipe.train.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model, processor
