"""Multimodal RoPE (Qwen2-VL, Qwen2.5-VL): the 3-D position ids the generation engine must pass.

These families give image tokens (temporal, height, width) positions, so an image of n tokens advances
the text position by only max(h, w) / merge: positions are not cumsum(mask) - 1. The family's own
`get_rope_index` computes them for a left-padded batch (pads are skipped through the attention mask);
after the prompt every row's text continues at (index in its unpadded prompt + a per-row delta).
"""

from __future__ import annotations

import inspect

import torch

from vittle_cli.model.attach import unwrap_model


def _inner(model):
    return getattr(unwrap_model(model), "model", None)


def uses_multimodal_rope(model) -> bool:
    """Qwen2-VL, Qwen2.5-VL, GLM-4V, ...: their inner model computes 3-D RoPE indices itself."""
    return callable(getattr(_inner(model), "get_rope_index", None))


def mrope_positions(model, ids: torch.Tensor, mask: torch.Tensor, image_inputs: dict) -> torch.Tensor:
    """(3, B, T) position ids of left-padded `ids` (pads get 0; they are masked), as the family's own
    generate() would compute them for each unpadded prompt."""
    inner = _inner(model)
    config = inner.config
    kwargs = {"attention_mask": mask}
    for key in ("image_grid_thw", "video_grid_thw"):
        if image_inputs.get(key) is not None:
            kwargs[key] = image_inputs[key].to(ids.device)
    if "mm_token_type_ids" in inspect.signature(inner.get_rope_index).parameters:
        # transformers >= 5.2x marks each token's modality instead of searching for vision-start tokens
        types = torch.zeros_like(ids)
        types[ids == config.image_token_id] = 1
        if getattr(config, "video_token_id", None) is not None:
            types[ids == config.video_token_id] = 2
        kwargs["mm_token_type_ids"] = types
    pos, _ = inner.get_rope_index(ids, **kwargs)
    return pos
