"""Name the parts of a vision-language model (vision tower, projector, language model, lm_head, bottleneck)
from parameter and module names, and count parameters per part."""

from __future__ import annotations

import math

import torch
from torch import nn

COMPONENTS = ("vision_tower", "projector", "language_model", "lm_head", "bottleneck", "other")
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
