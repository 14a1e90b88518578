"""Fast, exact greedy generation for evaluation.

`generate_one_at_a_time` is the reference protocol: one request per `model.generate` call, greedy, full
prompt. `generate_answers` gives the same answers much faster. Benchmarks such as POPE ask many questions
about each image, and the [system prompt + image] part of their prompts is identical, so the engine runs
that shared prefix once per image (with the pixel values), copies its KV cache to each of the image's
questions and only feeds the question suffixes. Pads sit between prefix and suffix with attention mask 0
and explicit position ids (cumsum(mask) - 1), so every row sees exactly the positions of its unpadded
prompt; M-RoPE families (Qwen2-VL) get their own 3-D positions for the prompt and the matching offset
afterwards (eval/mrope.py). Requests without a shared prefix are generated in left-padded batches. The
model is always called with `input_ids` (never `inputs_embeds`), so hooks that read them, such as the
Vittle bottleneck's, work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

from vittle_cli.errors import UsageError
from vittle_cli.eval.decode import (
    _Decoder,
    _eos_ids,
    _pad_id,
    _plain_batches,
    _prefix_batches,
    _to_model,
    uses_multimodal_rope,
)
from vittle_cli.eval.encode import GenerationRequest, _encode, _plan, render_prompt
from vittle_cli.model.attach import image_token_ids, unwrap_model

__all__ = [
    "GenerationRequest",
    "generate_answers",
    "generate_one_at_a_time",
    "render_prompt",
    "uses_multimodal_rope",
]


@torch.inference_mode()
def generate_one_at_a_time(
    model, processor, requests: Sequence[GenerationRequest], *, max_new_tokens: int = 8
) -> list[str]:
    """The reference protocol: one `model.generate` call per request, greedy, full prompt.

    Slow; `generate_answers` must give identical answers. Used by tests and benchmarks.
    """
    from transformers import GenerationConfig

    _check_positive(max_new_tokens=max_new_tokens)
    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=sorted(_eos_ids(model, processor)),
        pad_token_id=_pad_id(processor),
    )
    answers = []
    with _only_generation_config(model, config):
        for request in requests:
            images = list(request.images) or None
            inputs = processor(text=[render_prompt(processor, request)], images=images, return_tensors="pt")
            inputs = _to_model(model, dict(inputs))
            out = model.generate(**inputs, generation_config=config)
            answers.append(_decode(processor, out[0, inputs["input_ids"].shape[1] :].tolist()))
    return answers


@contextmanager
def _only_generation_config(model, config):
    """generate() fills every field left at its default from the model's own generation config (sampling,
    repetition penalty, ...); swap that config out so the reference protocol is plain greedy."""
    base = unwrap_model(model)  # peft reads and writes the base model's config
    saved = base.generation_config
    base.generation_config = config
    try:
        yield
    finally:
        base.generation_config = saved


@torch.inference_mode()
def generate_answers(
    model,
    processor,
    requests: Sequence[GenerationRequest],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 8,
    reuse_prefix: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers to `requests`, identical to `generate_one_at_a_time`, in the order of `requests`.

    Args:
        batch_size: sequences per forward pass.
        max_new_tokens: the most tokens generated per answer (a sequence stops at EOS).
        reuse_prefix: compute the shared [system prompt + image] prefix of a group once and reuse its
            KV cache for the group's questions. Off: left-padded batches of full prompts.
        on_progress: called with the number of requests just answered, after each batch.

    Returns:
        Decoded answers (special tokens skipped, stripped).

    Raises:
        UsageError: batch_size or max_new_tokens below 1, or one group with different images.
    """
    _check_positive(batch_size=batch_size, max_new_tokens=max_new_tokens)
    if not requests:
        return []
    encoded = _encode(processor, requests)
    prefix_groups, plain = _plan(encoded, requests, set(image_token_ids(model)), reuse_prefix)
    decoder = _Decoder(model, processor, max_new_tokens)
    tokens: list[list[int] | None] = [None] * len(requests)

    def finish(indices: list[int], generated: list[list[int]]) -> None:
        for i, toks in zip(indices, generated, strict=True):
            tokens[i] = toks
        if on_progress is not None:
            on_progress(len(indices))

    for indices, state in _prefix_batches(decoder, encoded, prefix_groups, batch_size):
        finish(indices, decoder.greedy(state))
    for indices, state in _plain_batches(decoder, encoded, plain, batch_size):
        finish(indices, decoder.greedy(state))
    return [_decode(processor, toks) for toks in tokens]


def _decode(processor, tokens: list[int]) -> str:
    return processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
