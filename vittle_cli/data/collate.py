"""Batch rendered samples: right padding for sequences, image tensors stacked for the samples that have them."""

from __future__ import annotations

from typing import Any

import torch

from vittle_cli.data.render import IGNORE_INDEX, SEQUENCE_KEYS
from vittle_cli.errors import ModelError


def _stack_images(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along dim 0; zero-pad trailing dims first if they differ (e.g. LLaVA-NeXT patch counts)."""
    if any(t.shape[1:] != tensors[0].shape[1:] for t in tensors):
        dims = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
        padded = []
        for t in tensors:
            out = t.new_zeros((t.shape[0], *dims))
            out[tuple(slice(0, s) for s in t.shape)] = t
            padded.append(out)
        tensors = padded
    return torch.cat(tensors, dim=0)


class DataCollator:
    """Collate TrainDataset items into a model batch.

    Returns input_ids, attention_mask and labels of shape (B, T), padded on the right (pad token, 0, -100);
    pixel_values (and other image tensors such as image_sizes) only when some sample has images, with the
    images of those samples in batch order. Text-only samples contribute nothing to pixel_values.
    """

    def __init__(self, processor: Any, pad_to_multiple_of: int | None = None):
        tok = getattr(processor, "tokenizer", processor)
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if self.pad_token_id is None:
            raise ModelError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        width = max(len(it["input_ids"]) for it in items)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        fill = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}
        batch: dict[str, torch.Tensor] = {}
        seq_keys = [k for k in SEQUENCE_KEYS if k != "attention_mask" and k in items[0]]
        for key in seq_keys:
            out = torch.full((len(items), width), fill.get(key, 0), dtype=items[0][key].dtype)
            for b, it in enumerate(items):
                out[b, : len(it[key])] = it[key]
            batch[key] = out
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for b, it in enumerate(items):
            mask[b, : len(it["input_ids"])] = 1
        batch["attention_mask"] = mask
        image_keys = sorted({k for it in items for k in it if k not in SEQUENCE_KEYS})
        for key in image_keys:
            batch[key] = _stack_images([it[key] for it in items if key in it])
        return batch
