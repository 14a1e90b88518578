"""Turn generation requests into token ids and plan the batches: each distinct image set is processed once,
and requests that share images (a group) share the longest common token prefix, image span included.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from vittle_cli.errors import UsageError
from vittle_cli.model.prompt import render_query_prompt

# Tensors from the processor that are not image inputs of the prefix forward.
_TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


@dataclass(frozen=True)
class GenerationRequest:
    """One question to answer.

    Attributes:
        image: the image, a tuple of images (shown in order, before the text), or None for text only.
        text: the user's message (question + prompt suffix), without the chat template.
        group: requests with the same group share the same images, so they share a prompt prefix.
    """

    image: Image.Image | tuple[Image.Image, ...] | None
    text: str
    group: Hashable | None = None

    @property
    def images(self) -> tuple[Image.Image, ...]:
        if self.image is None:
            return ()
        return tuple(self.image) if isinstance(self.image, tuple | list) else (self.image,)


def render_prompt(processor, request: GenerationRequest) -> str:
    """The request's full prompt: one user turn (image first) plus the generation prompt."""
    return render_query_prompt(processor, request.text, has_image=len(request.images))


# --------------------------------------------------------------------------------------- tokenization


@dataclass
class _Encoded:
    ids: list[list[int]]  # full prompt tokens, one list per request
    unit: list[int | None]  # per request: index into `image_inputs`, None for text-only
    image_inputs: list[dict[str, torch.Tensor]]  # processor outputs besides the text, one per image

    def image_inputs_of(self, unit: int | None) -> dict[str, torch.Tensor] | None:
        return None if unit is None else self.image_inputs[unit]


def _encode(processor, requests: Sequence[GenerationRequest]) -> _Encoded:
    """Tokenize every prompt as the processor would, processing each distinct image only once."""
    prompts = [render_prompt(processor, r) for r in requests]
    ids: list[list[int] | None] = [None] * len(requests)
    unit: list[int | None] = [None] * len(requests)
    image_inputs: list[dict[str, torch.Tensor]] = []
    units: dict[Hashable, list[int]] = {}
    for i, r in enumerate(requests):
        if r.images:
            units.setdefault(("group", r.group) if r.group is not None else ("single", i), []).append(i)
    for key, members in units.items():
        first = requests[members[0]].images
        for i in members[1:]:
            if not _same_images(first, requests[i].images):
                raise UsageError(
                    f"requests in group {key[1]!r} carry different images; give each image its own group"
                )
        unit_ids, inputs = _encode_with_images(processor, [prompts[i] for i in members], first)
        for i, toks in zip(members, unit_ids, strict=True):
            ids[i], unit[i] = toks, len(image_inputs)
        image_inputs.append(inputs)
    text_only = [i for i, r in enumerate(requests) if not r.images]
    if text_only:
        out = processor(text=[prompts[i] for i in text_only], padding=False)
        for i, toks in zip(text_only, out["input_ids"], strict=True):
            ids[i] = list(toks)
    return _Encoded(ids=ids, unit=unit, image_inputs=image_inputs)


def _encode_with_images(processor, prompts: list[str], images: tuple[Image.Image, ...]):
    """Token ids of prompts that all hold the same images, and those images' processed inputs.

    The processor runs once (image processing costs more than the model's share for small answers).
    Its image-token expansion is then replayed on the other prompts through the tokenizer; if replaying
    does not reproduce the processor's own ids for the first prompt, every prompt goes through the
    processor instead.
    """
    out = processor(text=[prompts[0]], images=list(images), return_tensors="pt")
    first = out["input_ids"][0].tolist()
    inputs = {k: v for k, v in out.items() if k not in _TEXT_KEYS}
    if len(prompts) == 1:
        return [first], inputs
    token = getattr(processor, "image_token", None)
    token_id = getattr(processor, "image_token_id", None)
    if token is not None and token_id is not None and prompts[0].count(token) == 1:
        expanded = [p.replace(token, token * first.count(token_id)) for p in prompts]
        replayed = processor.tokenizer(expanded)["input_ids"]
        if list(replayed[0]) == first:
            return [list(t) for t in replayed], inputs
    rest = [processor(text=[p], images=list(images))["input_ids"][0] for p in prompts[1:]]
    return [first] + [list(t) for t in rest], inputs


def _same_images(a: tuple[Image.Image, ...], b: tuple[Image.Image, ...]) -> bool:
    return len(a) == len(b) and all(_same_image(x, y) for x, y in zip(a, b, strict=True))


def _same_image(a: Image.Image, b: Image.Image) -> bool:
    return a is b or (a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes())


# --------------------------------------------------------------------------------------------- planning


@dataclass
class _PrefixGroup:
    prefix: list[int]  # tokens shared by all members, including the whole image span
    unit: int | None  # image inputs of the prefix
    members: list[int]  # request indices


def _plan(
    encoded: _Encoded, requests: Sequence[GenerationRequest], image_ids: set[int], reuse: bool
) -> tuple[list[_PrefixGroup], list[int]]:
    """Split requests into prefix-sharing groups and the rest (generated from full prompts)."""
    groups: dict[Hashable, list[int]] = {}
    plain: list[int] = []
    for i, r in enumerate(requests):
        if reuse and r.group is not None:
            groups.setdefault(r.group, []).append(i)
        else:
            plain.append(i)
    prefix_groups = []
    for members in groups.values():
        prefix = _shared_prefix([encoded.ids[i] for i in members], image_ids)
        if prefix is None:
            plain.extend(members)
        else:
            prefix_groups.append(_PrefixGroup(prefix, encoded.unit[members[0]], members))
    plain.sort()
    return prefix_groups, plain


def _shared_prefix(seqs: list[list[int]], image_ids: set[int]) -> list[int] | None:
    """The longest common token prefix that leaves every sequence at least one token of its own, or
    None when reuse does not pay (one member) or would split an image span."""
    if len(seqs) < 2:
        return None
    # The last prompt token must be fed to get the first logits, so each member keeps at least one.
    n = min(len(os.path.commonprefix(seqs)), min(len(s) for s in seqs) - 1)
    if n < 1 or any(t in image_ids for s in seqs for t in s[n:]):
        return None
    return seqs[0][:n]
