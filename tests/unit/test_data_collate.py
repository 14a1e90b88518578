"""DataCollator (mixed text-only + image batches) and GroupedSampler (modality / length grouping)."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from vittle_cli.data import DataCollator, GroupedSampler
from vittle_cli.data.render import IGNORE_INDEX, render_conversation


def _conv(question, answer, image):
    user = [{"type": "image"}] if image else []
    return [
        {"role": "user", "content": user + [{"type": "text", "text": question}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


@pytest.fixture()
def mixed_items(tiny_llava):
    _, processor = tiny_llava
    red, blue = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 255))
    specs = [
        (_conv("Is there a red circle in the image?", "Yes", True), [red]),
        (_conv("Is blue a colour? Answer the question using a single word or phrase.", "Yes", False), []),
        (_conv("Describe the image briefly.", "The image shows a blue square.", True), [blue]),
    ]
    return [render_conversation(processor, conv, imgs, 512).tensors for conv, imgs in specs]


def test_mixed_batch_pads_right_and_stacks_only_image_samples(tiny_llava, mixed_items):
    model, processor = tiny_llava
    batch = DataCollator(processor)(mixed_items)
    lengths = [len(it["input_ids"]) for it in mixed_items]
    assert len(set(lengths)) > 1
    assert batch["input_ids"].shape == batch["labels"].shape == (3, max(lengths))
    pad = processor.tokenizer.pad_token_id
    for b, (it, n) in enumerate(zip(mixed_items, lengths, strict=True)):
        assert torch.equal(batch["input_ids"][b, :n], it["input_ids"])
        assert torch.equal(batch["labels"][b, :n], it["labels"])
        assert (batch["input_ids"][b, n:] == pad).all() and (batch["labels"][b, n:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][b].tolist() == [1] * n + [0] * (max(lengths) - n)
    expected = torch.cat([mixed_items[0]["pixel_values"], mixed_items[2]["pixel_values"]])
    assert torch.equal(batch["pixel_values"], expected)
    with torch.no_grad():
        out = model(**batch)
    assert torch.isfinite(out.loss)


def test_text_only_batch_has_no_pixel_values(tiny_llava, mixed_items):
    _, processor = tiny_llava
    batch = DataCollator(processor, pad_to_multiple_of=8)([mixed_items[1], mixed_items[1]])
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    assert batch["input_ids"].shape[1] % 8 == 0


def _sampler_inputs(n=400, seed=0):
    rng = random.Random(seed)
    lengths = [rng.randint(10, 500) for _ in range(n)]
    has_image = [rng.random() < 0.7 for _ in range(n)]
    return lengths, has_image


def test_grouped_sampler_batches_one_modality_and_covers_every_index():
    lengths, has_image = _sampler_inputs()
    sampler = GroupedSampler(lengths, has_image, batch_size=16, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths))) and len(sampler) == len(lengths)
    batches = [order[i : i + 16] for i in range(0, len(order), 16)]
    mixed = [b for b in batches if len({has_image[i] for i in b}) > 1]
    assert len(mixed) <= 1 and (not mixed or mixed[0] in batches[-2:])  # only the leftovers' batch


def test_grouped_sampler_groups_similar_lengths():
    lengths, has_image = _sampler_inputs()

    def spread(order):
        batches = [order[s : s + 16] for s in range(0, len(order), 16)]
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)

    grouped = list(GroupedSampler(lengths, has_image, 16, seed=3, by_modality=False))
    shuffled = list(range(len(lengths)))
    random.Random(0).shuffle(shuffled)
    assert spread(grouped) < 0.5 * spread(shuffled)


def test_grouped_sampler_is_deterministic_per_seed_and_epoch():
    lengths, has_image = _sampler_inputs()
    a, b = GroupedSampler(lengths, has_image, 16, seed=3), GroupedSampler(lengths, has_image, 16, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == sorted(first)
    assert list(GroupedSampler(lengths, has_image, 16, seed=4)) != first
