"""The bottleneck hooks under a gradient-checkpointing recompute that re-runs the hooked layer call.

transformers 5.17-5.22 checkpoint the whole decoder-layer call, forward hooks included, and re-run it in
the backward pass after the multimodal forward (and its post-hook) has ended. The tests simulate that
exactly: the hooked layer is wrapped so that its full `__call__` runs under torch.utils.checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.checkpoint import checkpoint

from vittle_cli.model.attach import attach_bottleneck, attached_layers, find_decoder_layers, get_bottleneck
from vittle_cli.model.bottleneck import VittleConfig
from vittle_cli.model.loss import vittle_loss


class _RecomputedCall(nn.Module):
    """Runs the wrapped layer's whole call (its hooks too) under checkpoint, as transformers 5.17-5.22 do."""

    def __init__(self, layer: nn.Module, reentrant: bool):
        super().__init__()
        self.layer = layer
        self.reentrant = reentrant

    def forward(self, *args, **kwargs):
        return checkpoint(lambda *a: self.layer(*a, **kwargs), *args, use_reentrant=self.reentrant)


def _batch(processor):
    image = Image.fromarray(np.random.RandomState(1).randint(0, 255, (48, 48, 3), dtype=np.uint8))
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a red circle?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes"}]},
    ]
    batch = processor(images=[image], text=[processor.apply_chat_template(msgs)], return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -3:] = batch["input_ids"][:, -3:]
    batch["labels"] = labels
    return batch


def _grads(model, batch):
    torch.manual_seed(7)
    out = model(**batch)
    parts = vittle_loss(out.loss, get_bottleneck(model), batch["labels"], batch["attention_mask"])
    parts.loss.backward()
    grads = {
        n.replace(".layer.", "."): p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }
    model.zero_grad(set_to_none=True)
    return parts.loss.detach(), grads


def test_recomputed_hooks_get_the_same_mask_and_noise(tiny_llava):
    # Non-reentrant, as vittle's trainer asks for: a reentrant checkpoint runs its forward under no_grad,
    # so the KL the bottleneck keeps as a side output could carry no gradient at all.
    model, processor = tiny_llava
    model.train()
    bn = attach_bottleneck(model, VittleConfig(layer_v=5, layer_t=6))
    bn.alpha = 0.5
    batch = _batch(processor)
    loss, plain = _grads(model, batch)
    layers = find_decoder_layers(model)
    for index in sorted(set(attached_layers(model))):
        layers[index] = _RecomputedCall(layers[index], reentrant=False)
    loss_ckpt, recomputed = _grads(model, batch)  # failed with "ran outside the multimodal model's forward"
    torch.testing.assert_close(loss_ckpt, loss)
    assert set(recomputed) == set(plain)
    for name, grad in plain.items():  # the same noise: otherwise the bottleneck's gradients differ
        torch.testing.assert_close(recomputed[name], grad, atol=1e-5, rtol=1e-5, msg=name)


def test_a_layer_called_alone_after_a_forward_is_still_refused(tiny_llava):
    model, processor = tiny_llava
    attach_bottleneck(model, VittleConfig())
    with torch.no_grad():
        model(**{k: v for k, v in _batch(processor).items() if k != "labels"})
    from vittle_cli.errors import ModelError

    with pytest.raises(ModelError, match="outside the multimodal"):
        model.model.language_model(input_ids=torch.tensor([[1, 2, 3]]))
