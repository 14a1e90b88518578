"""Per-sample mean-pooled hidden states at the bottleneck layer, before and after the bottleneck.

"after" is the output of decoder layer l as the next layer sees it (a hook appended after the bottleneck's
prepended hook); "before" is the bottleneck's input, taken by a pre-hook on the bottleneck module. For a
modality with no bottleneck at its layer (no bottleneck, or --layer elsewhere), before == after.
Visual positions are the image-token positions (METHOD.md §3); text positions are the other non-padding ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vittle_cli.model.attach import (
    attached_layers,
    find_decoder_layers,
    get_bottleneck,
    image_token_ids,
)
from vittle_cli.model.prompt import render_query_prompt

MODALITIES = ("visual", "text")
STAGES = ("before", "after")


@dataclass
class Query:
    """One prompt to encode: an image (PIL, or None for text-only) and a user question."""

    question_id: str
    image: object | None
    text: str


def capture_layers(model, layer: int | None) -> tuple[dict[str, int], dict[str, bool]]:
    """Which decoder layer each modality is read at, and whether a bottleneck acts there.

    With a bottleneck and no `layer`, its own layers (layer_v, layer_t); otherwise `layer` (negative counts
    from the end) or round(0.75 * n_layers).

    Raises:
        UsageError: `layer` outside the decoder.
    """
    from vittle_cli.errors import UsageError

    n = len(find_decoder_layers(model))
    found = attached_layers(model) if get_bottleneck(model) is not None else None
    bn_layers = {"visual": found[0], "text": found[1]} if found else None
    if layer is None:
        chosen = dict(bn_layers) if bn_layers else dict.fromkeys(MODALITIES, min(round(0.75 * n), n - 1))
    else:
        index = layer + n if layer < 0 else layer
        if not 0 <= index < n:
            raise UsageError(f"--layer {layer} is out of range for a decoder with {n} layers; use 0..{n - 1}")
        chosen = dict.fromkeys(MODALITIES, index)
    active = {m: bn_layers is not None and chosen[m] == bn_layers[m] for m in MODALITIES}
    return chosen, active


def render_prompts(processor, queries: Sequence[Query]) -> list[str]:
    """Each query as a single user turn through the model's chat template, ready for generation."""
    return [render_query_prompt(processor, q.text, has_image=q.image is not None) for q in queries]


def encode_batch(processor, queries: Sequence[Query], device, dtype=None) -> dict:
    """Tokenised, padded model inputs for a batch of queries (images only where present); pixel values in
    `dtype` (the model's, so a bf16 model on GPU gets bf16 images)."""
    images = [q.image for q in queries if q.image is not None]
    kwargs = {"images": images} if images else {}
    batch = processor(text=render_prompts(processor, queries), padding=True, return_tensors="pt", **kwargs)
    return {
        k: v.to(device, dtype=dtype) if dtype is not None and v.is_floating_point() else v.to(device)
        for k, v in batch.items()
    }


class _Hooks:
    """Collect the decoder outputs at the chosen layers and the bottleneck's inputs during one forward."""

    def __init__(self, model, layers: dict[str, int], active: dict[str, bool]):
        self.after: dict[int, torch.Tensor] = {}
        self.before: dict[str, torch.Tensor] = {}
        self.handles = []
        decoder = find_decoder_layers(model)
        for index in sorted(set(layers.values())):
            self.handles.append(decoder[index].register_forward_hook(self._after_hook(index)))
        bn = get_bottleneck(model)
        if bn is not None and any(active.values()):
            self.handles.append(bn.register_forward_pre_hook(self._before_hook, with_kwargs=True))

    def _after_hook(self, index: int) -> Callable:
        def hook(module, args, output):
            self.after[index] = (output[0] if isinstance(output, tuple) else output).detach()

        return hook

    def _before_hook(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden"]
        for modality, flag in (("visual", "apply_visual"), ("text", "apply_text")):
            if kwargs.get(flag, True):
                self.before[modality] = hidden.detach()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, d), (B, T) -> (B, d) float32 means; rows with no selected position are NaN."""
    m = mask.to(torch.float32).unsqueeze(-1)
    total = (hidden.float() * m).sum(dim=1)
    count = m.sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


@torch.no_grad()
def pooled_states(
    model,
    processor,
    queries: Sequence[Query],
    layers: dict[str, int],
    active: dict[str, bool],
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> dict[tuple[str, str], np.ndarray]:
    """Mean-pooled hidden states per (modality, stage): arrays of shape (len(queries), hidden_size).

    Args:
        layers / active: from `capture_layers`.
        on_batch: called with the batch size after each batch (progress bars).
    """
    first = next(model.parameters())
    device, dtype = first.device, first.dtype
    token_ids = torch.tensor(image_token_ids(model), device=device)
    rows: dict[tuple[str, str], list[np.ndarray]] = {(m, s): [] for m in MODALITIES for s in STAGES}
    hooks = _Hooks(model, layers, active)
    try:
        for start in range(0, len(queries), batch_size):
            chunk = queries[start : start + batch_size]
            batch = encode_batch(processor, chunk, device, dtype)
            hooks.after.clear()
            hooks.before.clear()
            model(**batch, use_cache=False)
            attn = batch["attention_mask"].bool()
            visual = torch.isin(batch["input_ids"], token_ids) & attn
            masks = {"visual": visual, "text": attn & ~visual}
            for m in MODALITIES:
                after = hooks.after[layers[m]]
                before = hooks.before.get(m, after) if active[m] else after
                rows[(m, "after")].append(_masked_mean(after, masks[m]).cpu().numpy())
                rows[(m, "before")].append(_masked_mean(before, masks[m]).cpu().numpy())
            if on_batch is not None:
                on_batch(len(chunk))
    finally:
        hooks.remove()
    return {k: np.concatenate(v, axis=0) for k, v in rows.items()}
