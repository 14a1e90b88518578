"""The fast generation engine must give exactly the answers of the one-at-a-time reference protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vittle_cli.errors import UsageError
from vittle_cli.eval import encode
from vittle_cli.eval import generate as gen
from vittle_cli.eval.generate import GenerationRequest, generate_answers, generate_one_at_a_time
from vittle_cli.model.builtin import IMAGE_SEQ_LENGTH

MAX_NEW = 6


def _diversify(model, processor, seed: int = 1):
    """Random weights at a scale where answers depend on the input, and an EOS row that copies (and
    slightly beats) a frequent token's row, so some answers stop early at EOS."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (model.model.language_model, model.model.multi_modal_projector):
            for w in module.parameters():
                if w.dim() == 2:
                    w.normal_(0, w.shape[1] ** -0.5, generator=g)
        head = model.lm_head.weight
        head.normal_(0, 1.0, generator=g)
    # Copy the row of the token these weights generate most often into EOS (slightly scaled up), so
    # EOS wins where that token would have come: some answers then stop early.
    counts: dict[int, int] = {}
    for tokens in _hf_generate(model, processor, _requests()[:6]):
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
    frequent = max(counts, key=counts.get)
    with torch.no_grad():
        head[processor.tokenizer.eos_token_id] = 1.05 * head[frequent]
    return model


def _images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((40 + 8 * i, 56, 3)) * 255).astype("uint8")) for i in range(n)]


QUESTIONS = [
    "Is there a red circle in the image?",
    "Is there a blue star in the picture? Answer the question using a single word or phrase.",
    "Is there a cross?",
    "How many shapes are there?",
    "What colour is the square? Answer briefly.",
    "Describe the image.",
]


def _requests() -> list[GenerationRequest]:
    """Several images with varied questions: group "img0" asks only "Is there a ..." (a longer shared
    prefix than the others), group 1 repeats a question, text-only requests with and without a group,
    and an ungrouped image request (no reuse possible)."""
    imgs = _images(3)
    reqs = [GenerationRequest(imgs[0], q, group="img0") for q in QUESTIONS[:3]]
    reqs += [GenerationRequest(imgs[1], q, group=1) for q in QUESTIONS + QUESTIONS[3:4]]
    reqs.insert(4, GenerationRequest(None, "What is the capital of France?"))
    reqs += [
        GenerationRequest(None, "Name a colour.", group="t"),
        GenerationRequest(None, "Count to three.", group="t"),
    ]
    reqs += [GenerationRequest(imgs[2], q, group=2) for q in QUESTIONS[2:5]]
    reqs.append(GenerationRequest(imgs[0], "Which shape is red?"))
    return reqs


@pytest.fixture(scope="module")
def diverse(tiny_model_dir):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_model_dir, dtype="float32").eval()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    return _diversify(model, processor), processor


@pytest.fixture(scope="module")
def reference(diverse):
    model, processor = diverse
    return generate_one_at_a_time(model, processor, _requests(), max_new_tokens=MAX_NEW)


def _hf_generate(model, processor, requests) -> list[list[int]]:
    """New tokens from plain HF generate with the model's own settings (independent of the code under test)."""
    outputs = []
    for r in requests:
        inputs = processor(
            text=[gen.render_prompt(processor, r)], images=[r.image] if r.image else None, return_tensors="pt"
        )
        out = model.generate(**inputs, max_new_tokens=MAX_NEW)
        outputs.append(out[0, inputs["input_ids"].shape[1] :].tolist())
    return outputs


def _hf_answers(model, processor, requests) -> list[str]:
    return [
        processor.decode(t, skip_special_tokens=True).strip()
        for t in _hf_generate(model, processor, requests)
    ]


def test_fixture_gives_varied_answers_and_early_eos(diverse, reference):
    model, processor = diverse
    assert len(set(reference)) >= len(reference) // 2
    generated = _hf_generate(model, processor, _requests()[:4])
    assert _hf_answers(model, processor, _requests()[:4]) == reference[:4]
    lengths = [len(t) for t in generated]
    assert min(lengths) < MAX_NEW and max(lengths) == MAX_NEW


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_prefix_reuse_matches_reference(diverse, reference, batch_size):
    model, processor = diverse
    progress = []
    got = generate_answers(
        model,
        processor,
        _requests(),
        batch_size=batch_size,
        max_new_tokens=MAX_NEW,
        on_progress=progress.append,
    )
    assert got == reference
    assert sum(progress) == len(reference) and max(progress) <= batch_size


@pytest.mark.parametrize("batch_size", [1, 5])
def test_plain_batching_matches_reference(diverse, reference, batch_size):
    model, processor = diverse
    got = generate_answers(
        model, processor, _requests(), batch_size=batch_size, max_new_tokens=MAX_NEW, reuse_prefix=False
    )
    assert got == reference


def test_plan_reuses_prefixes_that_hold_the_image(diverse):
    model, processor = diverse
    reqs = _requests()
    encoded = gen._encode(processor, reqs)
    image_ids = set(gen.image_token_ids(model))
    groups, plain = gen._plan(encoded, reqs, image_ids, reuse=True)
    assert sorted(len(g.members) for g in groups) == [2, 3, 3, 7]
    assert sorted(plain) == [4, len(reqs) - 1]  # ungrouped text-only and ungrouped image request
    for g in groups:
        for i in g.members:
            assert encoded.ids[i][: len(g.prefix)] == g.prefix and len(encoded.ids[i]) > len(g.prefix)
        if g.unit is not None:  # the whole image span lies in the prefix
            assert sum(t in image_ids for t in g.prefix) == IMAGE_SEQ_LENGTH
    # group "img0" shares "Is there a" beyond the image: its prefix is longer than group 1's
    by_first = {reqs[g.members[0]].group: len(g.prefix) for g in groups}
    assert by_first["img0"] > by_first[1]


def test_expanded_tokenization_equals_processor(diverse):
    _, processor = diverse
    reqs = _requests()
    encoded = gen._encode(processor, reqs)
    for r, ids in zip(reqs, encoded.ids, strict=True):
        images = [r.image] if r.image is not None else None
        assert ids == processor(text=[gen.render_prompt(processor, r)], images=images)["input_ids"][0]


@pytest.mark.parametrize("weights", ["builtin", "diverse"])
def test_cached_prefix_first_token_logits_match_full_forward(weights, tiny_llava, diverse):
    model, processor = tiny_llava if weights == "builtin" else diverse
    reqs = _requests()
    encoded = gen._encode(processor, reqs)
    groups, _ = gen._plan(encoded, reqs, set(gen.image_token_ids(model)), reuse=True)
    decoder = gen._Decoder(model, processor, MAX_NEW)
    checked = 0
    with torch.inference_mode():
        for indices, state in gen._prefix_batches(decoder, encoded, groups, batch_size=4):
            for row, i in enumerate(indices):
                r = reqs[i]
                inputs = processor(
                    text=[gen.render_prompt(processor, r)],
                    images=[r.image] if r.image else None,
                    return_tensors="pt",
                )
                full = model(**inputs).logits[0, -1]
                # atol 1e-5 at the builtin weights' logit scale (~1); the diverse weights give logits
                # ~30x larger, so float32 rounding grows with them.
                atol = 1e-5 * max(1.0, full.abs().max().item())
                torch.testing.assert_close(state.logits[row], full, atol=atol, rtol=0)
                checked += 1
    assert checked == sum(len(g.members) for g in groups)


def test_shared_prefix_refuses_to_split_an_image():
    img = 99
    assert encode._shared_prefix([[1, 2, img, img, 5, 6], [1, 2, img, img, 5, 7]], {img}) == [
        1,
        2,
        img,
        img,
        5,
    ]
    assert encode._shared_prefix([[1, 2, img, 4], [1, 3, img, 4]], {img}) is None  # diverges before the image
    assert encode._shared_prefix([[1, 2, 3], [1, 2, 3]], {img}) == [1, 2]  # identical: keep a token to feed
    assert encode._shared_prefix([[1, 2, 3]], {img}) is None


def test_with_vittle_bottleneck_attached(reference, tiny_model_dir):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from vittle_cli.model.attach import attach_bottleneck
    from vittle_cli.model.bottleneck import VittleConfig

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = _diversify(
        LlavaForConditionalGeneration.from_pretrained(tiny_model_dir, dtype="float32"), processor
    )
    attach_bottleneck(model, VittleConfig(layer_v=4, layer_t=5)).eval()
    model.eval()
    reqs = _requests()[:8]
    ref = generate_one_at_a_time(model, processor, reqs, max_new_tokens=MAX_NEW)
    assert ref != reference[:8]  # the bottleneck changes the answers of the same weights
    assert generate_answers(model, processor, reqs, batch_size=4, max_new_tokens=MAX_NEW) == ref


def test_with_peft_lora_model(reference, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    base = _diversify(
        LlavaForConditionalGeneration.from_pretrained(tiny_model_dir, dtype="float32"), processor
    )
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, config).eval()
    reqs = _requests()[:8]
    ref = generate_one_at_a_time(model, processor, reqs, max_new_tokens=MAX_NEW)
    assert ref != reference[:8]  # the adapter changes the answers
    assert generate_answers(model, processor, reqs, batch_size=4, max_new_tokens=MAX_NEW) == ref


def test_reference_ignores_the_models_generation_settings(diverse, reference):
    model, processor = diverse
    reqs = _requests()[:4]
    saved = model.generation_config.repetition_penalty
    model.generation_config.repetition_penalty = 5.0
    try:
        penalised = _hf_answers(model, processor, reqs)
        plain = generate_one_at_a_time(model, processor, reqs, max_new_tokens=MAX_NEW)
    finally:
        model.generation_config.repetition_penalty = saved
    assert penalised != reference[:4]  # the setting matters for these prompts ...
    assert plain == reference[:4]  # ... and the reference protocol stays plain greedy
    assert model.generation_config.repetition_penalty == saved


def test_errors_and_empty(diverse):
    model, processor = diverse
    a, b = _images(2)
    assert generate_answers(model, processor, []) == []
    with pytest.raises(UsageError, match="different images"):
        generate_answers(
            model, processor, [GenerationRequest(a, "x", group=0), GenerationRequest(b, "y", group=0)]
        )
    with pytest.raises(UsageError, match="batch_size"):
        generate_answers(model, processor, [GenerationRequest(a, "x")], batch_size=0)
    with pytest.raises(UsageError, match="max_new_tokens"):
        generate_one_at_a_time(model, processor, [GenerationRequest(a, "x")], max_new_tokens=0)
