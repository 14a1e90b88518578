"""The Vittle training objective (shared/METHOD.md §1, §3): CE + beta_v * KLbar_v + beta_t * KLbar_t."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from vittle_cli.errors import ModelError
from vittle_cli.model.bottleneck import VittleBottleneck

IGNORE_INDEX = -100


class VittleLossOutput(NamedTuple):
    """The total loss and its parts (kl_v / kl_t are the token-and-dim means, before beta)."""

    loss: Tensor
    ce: Tensor
    kl_v: Tensor
    kl_t: Tensor
    alpha: float


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of `values` where `mask`; exactly 0 (still in the graph, never NaN) for an empty selection."""
    selected = values[mask]
    return selected.sum() / max(selected.numel(), 1)


def vittle_loss(
    ce: Tensor,
    bottleneck: VittleBottleneck | None,
    labels: Tensor,
    attention_mask: Tensor | None = None,
) -> VittleLossOutput:
    """Add the KL terms of the last train-mode forward to the cross entropy `ce`.

    KLbar_v: mean over every visual token of the per-token (dim-mean) KL. KLbar_t: mean over text tokens
    that are not response targets and not padding (labels == -100, attention_mask == 1, not visual).
    In eval mode, or without a bottleneck, the loss is `ce` and both KL terms are 0.

    Args:
        ce: the model's token-mean cross entropy (scalar).
        bottleneck: `get_bottleneck(model)`, or None when the bottleneck is off.
        labels: (B, T) labels aligned with input_ids (-100 = not a target), as passed to the model.
        attention_mask: (B, T), 1 for real tokens; None means no padding.

    Raises:
        ModelError: labels that do not line up with the tokens the bottleneck saw.
    """
    zero = torch.zeros((), dtype=torch.float32, device=ce.device)
    if bottleneck is None:
        return VittleLossOutput(ce, ce, zero, zero, 0.0)
    if not bottleneck.training or (bottleneck.last_kl_v is None and bottleneck.last_kl_t is None):
        return VittleLossOutput(ce, ce, zero, zero, float(bottleneck.config.alpha_end))

    visual = bottleneck.last_visual_mask
    if labels.shape != visual.shape:
        raise ModelError(
            f"labels of shape {tuple(labels.shape)} do not match the {tuple(visual.shape)} tokens the "
            "bottleneck saw; pass labels aligned with input_ids"
        )
    labels = labels.to(visual.device)
    valid = (
        torch.ones_like(visual)
        if attention_mask is None
        else attention_mask.to(device=visual.device).bool().reshape(visual.shape)
    )
    kl_v = zero if bottleneck.last_kl_v is None else _masked_mean(bottleneck.last_kl_v, visual)
    query = (labels == IGNORE_INDEX) & valid & ~visual
    kl_t = zero if bottleneck.last_kl_t is None else _masked_mean(bottleneck.last_kl_t, query)
    cfg = bottleneck.config
    loss = ce.float() + cfg.beta_v * kl_v + cfg.beta_t * kl_t
    return VittleLossOutput(loss, ce, kl_v, kl_t, float(bottleneck.alpha))
