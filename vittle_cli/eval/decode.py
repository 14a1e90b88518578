"""Run planned batches through the model: prefill with explicit positions (M-RoPE aware), shared-prefix
KV caches stacked under padded suffixes, and the greedy loop. The model is always called with `input_ids`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vittle_cli.eval.encode import _Encoded, _PrefixGroup
from vittle_cli.eval.mrope import mrope_positions, uses_multimodal_rope

# ------------------------------------------------------------------------------------------- execution


@dataclass
class _State:
    """A batch after its prompt was fed: logits of the first new token and what decoding needs."""

    logits: torch.Tensor  # (B, vocab)
    cache: object  # transformers DynamicCache
    mask: torch.Tensor  # (B, cached length)
    next_pos: torch.Tensor  # (B,) position of the next token
    delta: torch.Tensor  # (B,) position of a text token minus its index in the unpadded prompt (M-RoPE)


class _Decoder:
    """Model calls shared by both paths: prefill with explicit positions, and the greedy loop."""

    def __init__(self, model, processor, max_new_tokens: int):
        self.model = model
        self.device = model.device
        self.max_new_tokens = max_new_tokens
        self.eos = _eos_ids(model, processor)
        self.pad = _pad_id(processor)
        self.cache_kw = _cache_kwarg(model)
        self.mrope = uses_multimodal_rope(model)

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
        """Feed left-padded full sequences into a fresh cache, at the positions of the unpadded prompts
        (the family's own 3-D positions for M-RoPE models, whose image tokens advance them unevenly)."""
        ids, mask = _left_pad(seqs, self.pad, self.device)
        if self.mrope:
            pos = mrope_positions(self.model, ids, mask, image_inputs)
            last = pos[0, :, -1]  # the last prompt token is text: its three components agree
        else:
            pos = _positions(mask)
            last = pos[:, -1]
        cache = self.new_cache()
        logits = self.forward(ids, mask, pos, cache, **_to_model(self.model, image_inputs))
        return _State(logits, cache, mask, last + 1, last + 1 - mask.sum(-1))

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
    """Run prefixes (in batches) and return each one's unpadded per-layer (keys, values) and its
    position delta (nonzero for M-RoPE: the image span advances positions by less than its length)."""
    kv = {}
    for start in range(0, len(groups), batch_size):
        part = groups[start : start + batch_size]
        inputs = _cat_inputs([encoded.image_inputs_of(g.unit) for _, g in part])
        state = decoder.prefill([g.prefix for _, g in part], inputs)
        width = state.mask.shape[1]
        layers = [(layer.keys, layer.values) for layer in state.cache.layers]
        for b, (gi, g) in enumerate(part):
            pad = width - len(g.prefix)
            kv[gi] = ([(k[b : b + 1, :, pad:], v[b : b + 1, :, pad:]) for k, v in layers], state.delta[b])
    return kv


def _feed_suffixes(decoder: _Decoder, rows: list[tuple[tuple, int, list[int]]]) -> _State:
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
    for layer in range(len(distinct[0][0])):
        keys, values = (_gather_rows([kv[0][layer][t] for kv in distinct], which, p_max) for t in (0, 1))
        cache.update(keys, values, layer)
    mask, ids = mask.to(decoder.device), ids.to(decoder.device)
    delta = torch.stack([kv[1] for kv, _, _ in rows]).to(decoder.device)
    pos = _positions(mask)[:, p_max:] + delta[:, None]
    logits = decoder.forward(ids, mask, pos, cache)
    return _State(logits, cache, mask, pos[:, -1] + 1, delta)


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


def _cache_kwarg(model) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); use whichever the model takes."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
