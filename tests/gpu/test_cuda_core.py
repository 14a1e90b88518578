"""The core CUDA paths, with nothing beyond torch + transformers: bf16 training with the bottleneck,
gradient-checkpointing equality and KV-cache equality in bf16 (with bf16 tolerances), and bf16 evaluation
against float32 answers as an agreement percentage."""

from __future__ import annotations

import math

import pytest
import torch
from gpu_fixtures import DEVICE, GPU_ONLY, train_batch

from vittle_cli.model.attach import attach_bottleneck, get_bottleneck
from vittle_cli.model.bottleneck import VittleConfig
from vittle_cli.model.loss import vittle_loss

BF16_RTOL = 2e-2  # bf16 has 8 mantissa bits: ~0.4% per rounding, a few roundings deep

pytestmark = GPU_ONLY


@pytest.fixture
def tiny_cuda():
    """builtin:tiny-llava on the GPU in float32 (tests cast it) and its processor."""
    from vittle_cli.model.builtin import build_tiny_llava

    model, processor = build_tiny_llava(0)
    return model.to(DEVICE), processor


def _loss(model, batch):
    out = model(**batch)
    return vittle_loss(out.loss, get_bottleneck(model), batch["labels"], batch["attention_mask"]).loss


def test_bf16_training_with_the_bottleneck_learns_and_trains_the_bottleneck(tiny_cuda):
    model, processor = tiny_cuda
    model = model.to(torch.bfloat16).train()
    bottleneck = attach_bottleneck(model, VittleConfig())
    bottleneck.alpha = 0.5
    assert next(bottleneck.parameters()).dtype == torch.bfloat16
    batch = train_batch(processor)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = _loss(model, batch)
        loss.backward()
        grads = [p.grad for p in bottleneck.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert bottleneck.last_kl_v.dtype == torch.float32 and torch.isfinite(bottleneck.last_kl_v).all()
    assert losses[-1] < 0.7 * losses[0], losses


def _grads(model, batch):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the bottleneck's noise
    _loss(model, batch).backward()
    return {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients_in_bf16(tiny_cuda):
    model, processor = tiny_cuda
    model = model.to(torch.bfloat16).train()
    attach_bottleneck(model, VittleConfig()).alpha = 0.5
    batch = train_batch(processor)
    plain = _grads(model, batch)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed = _grads(model, batch)
    assert plain.keys() == checkpointed.keys() and any("vittle_bottleneck" in k for k in plain)
    for name, grad in plain.items():
        scale = grad.abs().max().clamp_min(1e-6)
        assert (checkpointed[name] - grad).abs().max() <= BF16_RTOL * scale, name


def test_kv_cache_continuation_matches_the_full_forward_in_bf16(tiny_cuda):
    model, processor = tiny_cuda
    model = model.to(torch.bfloat16).eval()
    attach_bottleneck(model, VittleConfig())
    batch = train_batch(processor, n=1)
    ids, pixels = batch["input_ids"], batch["pixel_values"]
    split = ids.shape[1] - 6  # the image sits in the prefix; the last 6 tokens come from the cache
    with torch.no_grad():
        full = model(input_ids=ids, pixel_values=pixels).logits[:, split:].float()
        prefix = model(input_ids=ids[:, :split], pixel_values=pixels, use_cache=True)
        rest = model(input_ids=ids[:, split:], past_key_values=prefix.past_key_values, use_cache=True)
    cached = rest.logits.float()
    scale = full.abs().max()
    assert (cached - full).abs().max() <= BF16_RTOL * scale
    assert torch.equal(cached.argmax(-1), full.argmax(-1))


def test_bf16_eval_agrees_with_float32_answers(tiny_cuda, record_property):
    from vittle_cli.eval.generate import GenerationRequest, generate_answers

    model, processor = tiny_cuda
    attach_bottleneck(model.eval(), VittleConfig())
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(0)
    requests = [
        GenerationRequest(
            Image.fromarray(rng.randint(0, 255, (48, 48, 3), dtype=np.uint8)), f"Is there a {obj}?", group=i
        )
        for i, obj in enumerate(["red circle", "blue square", "green triangle", "cat", "dog", "car"] * 3)
    ]
    answers32 = generate_answers(model, processor, requests, batch_size=8, max_new_tokens=4)
    answers16 = generate_answers(
        model.to(torch.bfloat16), processor, requests, batch_size=8, max_new_tokens=4
    )
    agreement = 100.0 * sum(a == b for a, b in zip(answers16, answers32, strict=True)) / len(requests)
    record_property("bf16_vs_fp32_agreement_pct", agreement)
    print(f"bf16 vs float32 answer agreement: {agreement:.1f}% of {len(requests)}")
    # Random tiny weights give near-tied logits, where bf16 rounding may flip a token; most must agree.
    assert agreement >= 60.0
