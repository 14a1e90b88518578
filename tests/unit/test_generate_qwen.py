"""The batched engine on Qwen2-VL (M-RoPE): left-padded batches and shared prefixes with the family's own
3-D positions give exactly the answers of one `generate()` per question, in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from qwen_tiny import tiny_qwen2_vl

from vittle_cli.eval.generate import GenerationRequest, generate_answers, generate_one_at_a_time
from vittle_cli.eval.mrope import mrope_positions, uses_multimodal_rope

MAX_NEW = 5
QUESTIONS = ["Is there a dog in the image?", "Is there a red circle?", "yes or no?", "Is there a dog?"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(24, 20), (40, 32), (16, 44)]  # different grids: 4x6/2, 10x8, 4x11 patches
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")) for w, h in sizes]


def _requests() -> list[GenerationRequest]:
    a, b, c = _images()
    reqs = [GenerationRequest(a, q, group="a") for q in QUESTIONS]
    reqs += [GenerationRequest(b, q, group="b") for q in QUESTIONS[:3]]
    reqs += [GenerationRequest(c, QUESTIONS[1]), GenerationRequest(None, "Is there a dog?")]
    reqs += [GenerationRequest(None, q, group="t") for q in QUESTIONS[2:]]
    return reqs


@pytest.fixture(scope="module")
def qwen():
    model, processor = tiny_qwen2_vl()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # weights at a scale where answers depend on the image, question and positions
        for w in model.model.language_model.parameters():
            if w.dim() == 2:
                w.normal_(0, w.shape[1] ** -0.5, generator=g)
        model.lm_head.weight.normal_(0, 1.0, generator=g)
    return model, processor


@pytest.fixture(scope="module")
def reference(qwen):
    return generate_one_at_a_time(*qwen, _requests(), max_new_tokens=MAX_NEW)


def test_positions_are_the_familys_own(qwen):
    model, processor = qwen
    assert uses_multimodal_rope(model)
    image = _images()[1]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a dog?"}]}]
    )
    out = processor(text=[prompt], images=[image], return_tensors="pt")
    ids = out["input_ids"]
    padded = torch.cat([torch.zeros(1, 3, dtype=ids.dtype), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(ids)], dim=1)
    pos = mrope_positions(model, padded, mask, {"image_grid_thw": out["image_grid_thw"]})
    n_image = int((ids == processor.image_token_id).sum())
    assert n_image == 20  # 40x32 pixels: 10x8 patches of 4, merged 2x2
    # the image span advances the position by max(h, w) / merge = 5, not by its 20 tokens
    assert int(pos[0, 0, -1]) == ids.shape[1] - 1 - n_image + 5
    assert torch.equal(pos[:, 0, :3], torch.zeros(3, 3, dtype=pos.dtype))  # pads


def test_answers_vary(reference):
    assert len(set(reference)) >= 3


@pytest.mark.parametrize(("batch_size", "reuse"), [(1, True), (3, True), (16, True), (4, False)])
def test_batched_qwen2_vl_matches_one_at_a_time(qwen, reference, batch_size, reuse):
    got = generate_answers(
        *qwen, _requests(), batch_size=batch_size, max_new_tokens=MAX_NEW, reuse_prefix=reuse
    )
    assert got == reference


def test_plain_positions_would_change_the_answers(qwen, reference, monkeypatch):
    """The check above has teeth: with cumsum(mask) - 1 positions (right for LLaVA) answers differ."""
    from vittle_cli.eval import decode

    monkeypatch.setattr(decode, "uses_multimodal_rope", lambda model: False)
    got = generate_answers(*qwen, _requests(), batch_size=3, max_new_tokens=MAX_NEW)
    assert sum(a != b for a, b in zip(got, reference, strict=True)) >= 3
