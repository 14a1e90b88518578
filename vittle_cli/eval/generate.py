"""Fast, exact greedy generation for evaluation.

`generate_one_at_a_time` is the reference protocol: one request per `model.generate` call, greedy, full
prompt. `generate_answers` gives the same answers much faster. Benchmarks such as POPE ask many questions
about each image, and the [system prompt + image] part of their prompts is identical, so the engine runs
that shared prefix once per image (with the pixel values), copies its KV cache to each of the image's
questions and only feeds the question suffixes. Pads sit between prefix and suffix with attention mask 0
and explicit position ids (cumsum(mask) - 1), so every row sees exactly the positions of its unpadded
prompt. Requests without a shared prefix are generated in left-padded batches. The model is always called
with `input_ids` (never `inputs_embeds`), so hooks that read them, such as the Vittle bottleneck's, work.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Hashable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from PIL import Image

from vittle_cli.data.prompt import render_query_prompt
from vittle_cli.errors import UsageError
from vittle_cli.model.attach import image_token_ids, unwrap_model

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
    if _uses_multimodal_rope(model):
        # Qwen2-VL-style position ids are not cumsum(mask) - 1, so this engine would change the answers:
        # be slow and exact instead.
        answers = generate_one_at_a_time(model, processor, requests, max_new_tokens=max_new_tokens)
        if on_progress is not None:
            on_progress(len(answers))
        return answers
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


# ------------------------------------------------------------------------------------------- execution


@dataclass
class _State:
    """A batch after its prompt was fed: logits of the first new token and what decoding needs."""

    logits: torch.Tensor  # (B, vocab)
    cache: object  # transformers DynamicCache
    mask: torch.Tensor  # (B, cached length)
    next_pos: torch.Tensor  # (B,) position of the next token


class _Decoder:
    """Model calls shared by both paths: prefill with explicit positions, and the greedy loop."""

    def __init__(self, model, processor, max_new_tokens: int):
        self.model = model
        self.device = model.device
        self.max_new_tokens = max_new_tokens
        self.eos = _eos_ids(model, processor)
        self.pad = _pad_id(processor)
        self.cache_kw = _cache_kwarg(model)

    def new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache, **extra
    ) -> torch.Tensor:
        """Feed `ids` after what `cache` holds; return the logits of the last position."""
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kw: cache},
            **extra,
        )
        return out.logits[:, -1, :]

    def prefill(self, seqs: list[list[int]], image_inputs: dict[str, torch.Tensor]) -> _State:
        """Feed left-padded full sequences into a fresh cache."""
        ids, mask = _left_pad(seqs, self.pad, self.device)
        pos = _positions(mask)
        cache = self.new_cache()
        logits = self.forward(ids, mask, pos, cache, **_to_model(self.model, image_inputs))
        return _State(logits, cache, mask, pos[:, -1] + 1)

    def greedy(self, state: _State) -> list[list[int]]:
        """Greedy tokens per row, up to and including EOS; finished rows leave the batch."""
        rows = list(range(state.logits.shape[0]))
        out: list[list[int]] = [[] for _ in rows]
        logits, cache, mask, pos = state.logits, state.cache, state.mask, state.next_pos
        for step in range(self.max_new_tokens):
            nxt = logits.argmax(-1)
            keep = []
            for j, (row, tok) in enumerate(zip(rows, nxt.tolist(), strict=True)):
                out[row].append(tok)
                if tok not in self.eos:
                    keep.append(j)
            if not keep or step == self.max_new_tokens - 1:
                break
            if len(keep) < len(rows):
                sel = torch.tensor(keep, device=nxt.device)
                cache.batch_select_indices(sel)
                rows, nxt, mask, pos = [rows[j] for j in keep], nxt[sel], mask[sel], pos[sel]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            logits = self.forward(nxt[:, None], mask, pos[:, None], cache)
            pos = pos + 1
        return out


def _prefix_batches(decoder: _Decoder, encoded: _Encoded, groups: list[_PrefixGroup], batch_size: int):
    """Yield (request indices, state) for batches of suffixes on cached prefixes.

    Rows follow group order, so a batch spans few groups; each group's prefix runs once (several new
    groups in one forward) and stays cached while later batches still need it.
    """
    rows = [(g, i) for g, group in enumerate(groups) for i in group.members]
    store: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        needed = list(dict.fromkeys(g for g, _ in batch))
        store = {g: kv for g, kv in store.items() if g in needed}
        missing = [g for g in needed if g not in store]
        for part in _by_image_shape(missing, lambda g: encoded.image_inputs_of(groups[g].unit)):
            store.update(_prefill_prefixes(decoder, encoded, [(g, groups[g]) for g in part], batch_size))
        suffixes = [
            (store[g], len(groups[g].prefix), encoded.ids[i][len(groups[g].prefix) :]) for g, i in batch
        ]
        yield [i for _, i in batch], _feed_suffixes(decoder, suffixes)


def _prefill_prefixes(
    decoder: _Decoder, encoded: _Encoded, groups: list[tuple[int, _PrefixGroup]], batch_size: int
):
    """Run prefixes (in batches) and return each one's unpadded per-layer (keys, values)."""
    kv = {}
    for start in range(0, len(groups), batch_size):
        part = groups[start : start + batch_size]
        inputs = _cat_inputs([encoded.image_inputs_of(g.unit) for _, g in part])
        state = decoder.prefill([g.prefix for _, g in part], inputs)
        width = state.mask.shape[1]
        layers = [(layer.keys, layer.values) for layer in state.cache.layers]
        for b, (gi, g) in enumerate(part):
            pad = width - len(g.prefix)
            kv[gi] = [(k[b : b + 1, :, pad:], v[b : b + 1, :, pad:]) for k, v in layers]
    return kv


def _feed_suffixes(decoder: _Decoder, rows: list[tuple[list, int, list[int]]]) -> _State:
    """Stack the rows' prefix caches (left-padded to one length), then feed their suffixes padded
    between prefix and suffix, so each token keeps the position it has in its unpadded prompt."""
    p_max = max(p for _, p, _ in rows)
    s_max = max(len(s) for _, _, s in rows)
    n = len(rows)
    mask = torch.zeros(n, p_max + s_max, dtype=torch.long)
    ids = torch.full((n, s_max), decoder.pad, dtype=torch.long)
    for r, (_, p, suffix) in enumerate(rows):
        mask[r, p_max - p : p_max] = 1
        mask[r, p_max + s_max - len(suffix) :] = 1
        ids[r, s_max - len(suffix) :] = torch.tensor(suffix)
    distinct = list({id(kv): kv for kv, _, _ in rows}.values())
    which = torch.tensor([next(j for j, kv in enumerate(distinct) if kv is row_kv) for row_kv, _, _ in rows])
    cache = decoder.new_cache()
    for layer in range(len(distinct[0])):
        keys, values = (_gather_rows([kv[layer][t] for kv in distinct], which, p_max) for t in (0, 1))
        cache.update(keys, values, layer)
    mask, ids = mask.to(decoder.device), ids.to(decoder.device)
    pos = _positions(mask)[:, p_max:]
    logits = decoder.forward(ids, mask, pos, cache)
    return _State(logits, cache, mask, pos[:, -1] + 1)


def _plain_batches(decoder: _Decoder, encoded: _Encoded, indices: list[int], batch_size: int):
    """Yield (request indices, state) for left-padded batches of full prompts.

    Similar lengths go together (less padding); a batch only mixes images whose inputs stack."""
    order = sorted(indices, key=lambda i: -len(encoded.ids[i]))
    for part in _by_image_shape(order, lambda i: encoded.image_inputs_of(encoded.unit[i])):
        for start in range(0, len(part), batch_size):
            batch = part[start : start + batch_size]
            inputs = _cat_inputs([encoded.image_inputs_of(encoded.unit[i]) for i in batch])
            yield batch, decoder.prefill([encoded.ids[i] for i in batch], inputs)


# ---------------------------------------------------------------------------------------------- helpers


def _by_image_shape(items: list, inputs_of: Callable) -> list[list]:
    """Split items (keeping order) into runs whose image inputs can be concatenated on dim 0."""
    buckets: dict[tuple, list] = {}
    for item in items:
        inputs = inputs_of(item)
        sig = () if inputs is None else tuple((k, tuple(v.shape[1:])) for k, v in sorted(inputs.items()))
        buckets.setdefault(sig, []).append(item)
    return list(buckets.values())


def _cat_inputs(inputs: list[dict[str, torch.Tensor] | None]) -> dict[str, torch.Tensor]:
    present = [x for x in inputs if x is not None]
    return {k: torch.cat([x[k] for x in present]) for k in present[0]} if present else {}


def _left_pad(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = torch.tensor(s)
        mask[r, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def _gather_rows(prefixes: list[torch.Tensor], which: torch.Tensor, length: int) -> torch.Tensor:
    """Row r of the result is prefixes[which[r]] left-padded to `length` on the time axis.

    With one prefix this is a broadcast view, not a copy: the cache concatenates the suffix onto it in
    the next forward anyway, which makes the one real copy per row.
    """
    padded = [_left_pad_time(x, length) for x in prefixes]
    if len(padded) == 1:
        return padded[0].expand(len(which), -1, -1, -1)
    return torch.cat(padded).index_select(0, which.to(padded[0].device))


def _left_pad_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad a (B, heads, T, dim) cache tensor on the left of its time axis to `length`."""
    return torch.nn.functional.pad(x, (0, 0, length - x.shape[2], 0)) if x.shape[2] < length else x


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of the unpadded sequence for every real token (pads get 0; they are masked)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _to_model(model, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Move processor outputs to the model's device; floating ones (pixels) to its dtype."""
    return {
        k: v.to(model.device, dtype=model.dtype) if v.is_floating_point() else v.to(model.device)
        for k, v in inputs.items()
    }


def _eos_ids(model, processor) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = processor.tokenizer.eos_token_id
    return {eos} if isinstance(eos, int) else set(eos)


def _pad_id(processor) -> int:
    tok = processor.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)


def _uses_multimodal_rope(model) -> bool:
    """Qwen2-VL, Qwen2.5-VL, GLM-4V, ...: their inner model computes 3-D RoPE indices itself."""
    return callable(getattr(getattr(unwrap_model(model), "model", None), "get_rope_index", None))


def _cache_kwarg(model) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); use whichever the model takes."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _decode(processor, tokens: list[int]) -> str:
    return processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
