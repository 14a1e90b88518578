"""QLoRA: the bitsandbytes config for train.qlora, and which modules must stay unquantised."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import torch

from vittle_cli.errors import ModelError
from vittle_cli.model.components import component_roots
from vittle_cli.model.device import TORCH_DTYPES
from vittle_cli.model.skeleton import zero3_init_paused

if TYPE_CHECKING:
    from vittle_cli.recipe import Recipe


def quantization_skip_modules(config: Any, hub: dict[str, Any] | None = None) -> list[str]:
    """Full module paths bitsandbytes must leave alone: vision tower, projector and lm_head.

    transformers 5.x matches `llm_int8_skip_modules` by path prefix, so the 4.x spelling "vision_tower" no
    longer matches. The paths are read off the real module tree, built on the meta device (no memory).
    """
    from transformers import AutoModelForImageTextToText

    with zero3_init_paused(), torch.device("meta"):
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
    compute = TORCH_DTYPES[q.compute_dtype]
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute,
        # Storing the packed weights in the compute dtype lets ZeRO-3 partition them like other params.
        bnb_4bit_quant_storage=compute,
        llm_int8_skip_modules=skip_modules,
    )
