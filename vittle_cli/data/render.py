"""Render one conversation with the processor's chat template into input_ids, labels and image tensors.

Labels are the assistant responses only (with the template's end-of-turn text, e.g. `</s>`, or the tokenizer's
EOS where the template writes none: see close_responses), -100 elsewhere.
A response is located without knowing the template: the conversation rendered up to an assistant turn with
add_generation_prompt=True must be a prefix of the conversation rendered through that turn; the difference
is the response's character span. Spans become tokens through the fast tokenizer's offset mapping on the
unexpanded text, and are then carried over to the processor's output (where each image placeholder has
been expanded into many image tokens). Every labelled span must decode back to its text, else the sample is
a `response_not_located` problem, never silent loss-0 training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from os.path import commonprefix

import torch

from vittle_cli.data.report import SampleProblem

# Processor outputs aligned with input_ids (padded by the collator, cut with the sequence); all other
# outputs (pixel_values, image_sizes, image_grid_thw, ...) describe images and are concatenated.
SEQUENCE_KEYS = ("input_ids", "labels", "attention_mask", "token_type_ids", "mm_token_type_ids")
IGNORE_INDEX = -100
logger = logging.getLogger(__name__)
_REOPENED_TEMPLATES: set = set()  # templates whose answer opener was rewritten (warned once each)


@dataclass
class Rendered:
    tensors: dict[str, torch.Tensor]  # 1-D input_ids, labels (+ other sequence keys); image tensors as given
    truncated: bool = False


def template_text(processor, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The conversation rendered by the processor's chat template (as text, images as placeholders).

    Raises:
        SampleProblem: response_not_located, when the template rejects the messages.
    """
    try:
        return processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as e:  # a template that rejects a partial conversation cannot locate responses
        raise SampleProblem("response_not_located", f"chat template failed: {e}") from e


def _exact_spans(processor, messages: list[dict], full: str) -> tuple[str, list[tuple[int, int, int]]]:
    """The text to train on and its response spans, by rendering the conversation up to and through every
    assistant turn: exact for any template, but quadratic in the number of turns.

    The text is `full`, except where the template opens an answer differently from the generation prompt
    (llava-hf's llava-onevision-qwen2-*-ov-hf: "assistant \\n" + answer when rendering it, "assistant\\n" when
    asking for it): there the answer follows the generation prompt's opener instead (_reopened), so training
    sees what inference asks with. A response span then starts at its answer."""
    spans, edits = [], []  # edits: (start, end, replacement) in full's coordinates, in order
    for a, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prefix = template_text(processor, messages[:a], True)
        through = template_text(processor, messages[: a + 1], False)
        if not full.startswith(through) or through == prefix:
            raise SampleProblem("response_not_located", f"turn {a}: generation prompt is not a prefix")
        if through.startswith(prefix):
            spans.append((a, len(prefix), len(through)))
            continue
        cut, answer_at = _reopened(processor, messages, a, prefix, through)
        edits.append((cut, answer_at, prefix[cut:]))
        spans.append((a, answer_at, len(through)))
    if not edits:
        return full, spans

    def moved(pos: int) -> int:
        return pos + sum(len(new) - (end - start) for start, end, new in edits if end <= pos)

    text, cursor = [], 0
    for start, end, new in edits:
        text += [full[cursor:start], new]
        cursor = end
    text.append(full[cursor:])
    return "".join(text), [(a, moved(lo), moved(hi)) for a, lo, hi in spans]


def _reopened(processor, messages: list[dict], a: int, prefix: str, through: str) -> tuple[int, int]:
    """Where the template's own opener of answer `a` starts and ends in `through`, when the generation prompt
    `prefix` opens the turn differently; only inside the assistant turn (after the conversation before it)
    and only when the answer's text follows.

    Raises:
        SampleProblem: response_not_located, when the two renderings differ anywhere else.
    """
    before = template_text(processor, messages[:a], False)
    cut = len(commonprefix([prefix, through]))
    answer = _message_text(messages[a])
    at = through.find(answer, cut) if answer else -1
    if cut < len(before) or at < 0 or not through.startswith(before):
        raise SampleProblem("response_not_located", f"turn {a}: generation prompt is not a prefix")
    template = getattr(processor, "chat_template", None)
    if template not in _REOPENED_TEMPLATES:
        _REOPENED_TEMPLATES.add(template)
        logger.warning(
            "the chat template opens an answer with %r but asks for one with %r: vittle trains each answer "
            "after the generation prompt, as inference asks",
            through[len(before) : at],
            prefix[len(before) :],
        )
    return cut, at


_PROBE_TEXT = ("Probe question one?", "Probe answer one.", "Probe question two?", "Probe answer two.")
_WRAPPERS: dict[str, tuple[str, str] | None] = {}  # chat template -> (text before, after a response) or None


def _probe_messages() -> list[dict]:
    roles = ("user", "assistant", "user", "assistant")
    return [
        {"role": r, "content": [{"type": "text", "text": t}]} for r, t in zip(roles, _PROBE_TEXT, strict=True)
    ]


def _response_wrapper(processor) -> tuple[str, str] | None:
    """What the template writes right before and after a response's text, learnt once per template from a
    probe conversation, and kept only if searching for it reproduces the exact spans of the probe."""
    template = getattr(processor, "chat_template", None)
    if not isinstance(template, str):
        return None
    if template not in _WRAPPERS:
        _WRAPPERS[template] = None
        try:
            probe = _probe_messages()
            full = template_text(processor, probe)
            trained, exact = _exact_spans(processor, probe, full)
            if trained != full:  # the answer's opener is rewritten: no fixed wrapper to search for
                return None
            first = full[exact[0][1] : exact[0][2]]
            at = first.find(_PROBE_TEXT[1])
            if at >= 0:
                wrapper = (first[:at], first[at + len(_PROBE_TEXT[1]) :])
                if _searched_spans(probe, full, wrapper) == exact:
                    _WRAPPERS[template] = wrapper
        except SampleProblem:
            pass
    return _WRAPPERS[template]


def _searched_spans(
    messages: list[dict], full: str, wrapper: tuple[str, str]
) -> list[tuple[int, int, int]] | None:
    """Spans found by one left-to-right search of the rendered text (linear in its length): each message's
    text in turn, a response as before + text + after. None when any text is not where it should be."""
    before, after = wrapper
    spans, cursor = [], 0
    for a, msg in enumerate(messages):
        text = _message_text(msg)
        if msg["role"] == "assistant":
            at = full.find(before + text + after, cursor)
            if at < 0:
                return None
            cursor = at + len(before) + len(text) + len(after)
            spans.append((a, at, cursor))
        elif text:
            at = full.find(text, cursor)
            if at < 0:
                return None
            cursor = at + len(text)
    return spans


def response_spans(processor, messages: list[dict]) -> tuple[str, list[tuple[int, int, int]]]:
    """The rendered conversation and, per assistant message, (message index, char start, char end).

    The template is rendered once and the responses found by search when the template's response wrapper is
    known (_response_wrapper); otherwise, or if the search fails, by the exact quadratic method.
    """
    full = template_text(processor, messages, False)
    wrapper = _response_wrapper(processor)
    spans = _searched_spans(messages, full, wrapper) if wrapper is not None else None
    return (full, spans) if spans is not None else _exact_spans(processor, messages, full)


def _align(src: list[int], dst: list[int]) -> list[int] | None:
    """Index in dst of each src token, walking both in order; dst may have extra tokens (expanded images)."""
    out, j = [], 0
    for tok in src:
        while j < len(dst) and dst[j] != tok:
            j += 1
        if j == len(dst):
            return None
        out.append(j)
        j += 1
    return out


def _norm(text: str) -> str:
    return "".join(text.split())


def close_responses(
    full: str, spans: list[tuple[int, int, int]], answers: list[str], eos: str | None
) -> tuple[str, list[tuple[int, int, int]]]:
    """End every response that the template leaves open with the tokenizer's EOS, inside its label span.

    Some published templates (llava-hf/llava-1.5-7b-hf's among them) write an answer with nothing after it
    but a space, so a model trained on them never learns to stop; LLaVA itself trains on
    "ASSISTANT: answer</s>". A span whose text ends with its answer (trailing whitespace aside) gets EOS right
    after the answer; templates that close turns themselves (`</s>`, `<|im_end|>`, ...) are left alone.
    """
    if not eos:
        return full, spans
    out, closed, shift, cursor = [], [], 0, 0
    for (a, lo, hi), answer in zip(spans, answers, strict=True):
        body = full[lo:hi].rstrip()
        if not answer.strip() or not body.endswith(answer.strip()):
            closed.append((a, lo + shift, hi + shift))
            continue
        end = lo + len(body)
        out.append(full[cursor:end] + eos)
        cursor = end
        closed.append((a, lo + shift, end + shift + len(eos)))
        shift += len(eos)
    out.append(full[cursor:])
    return "".join(out), closed


def _message_text(message: dict) -> str:
    return "".join(c.get("text") or "" for c in message["content"] if c["type"] == "text")


def _encode(processor, messages: list[dict], images: list, videos: list = ()) -> tuple[dict, list[list[int]]]:
    """Processor output for the conversation and the token positions of each response (videos: data.video
    Frames, given to the processor through vittle's video half of it)."""
    tok = processor.tokenizer
    full, spans = response_spans(processor, messages)
    answers = [_message_text(messages[a]) for a, _, _ in spans]
    full, spans = close_responses(full, spans, answers, getattr(tok, "eos_token", None))
    # A template that writes the BOS token itself must not get a second one from the tokenizer.
    add_special = not (tok.bos_token and full.startswith(tok.bos_token))
    kwargs = {"images": images} if images else {}
    if videos:
        from vittle_cli.data.video import with_video_processor

        processor = with_video_processor(processor, videos)
        kwargs["videos"] = [v.images for v in videos]
    enc = processor(text=[full], return_tensors="pt", add_special_tokens=add_special, **kwargs)
    ids = enc["input_ids"][0].tolist()
    plain = tok(full, return_offsets_mapping=True, add_special_tokens=add_special)
    where = _align(plain["input_ids"], ids)
    if where is None:
        raise SampleProblem("response_not_located", "processor tokens do not extend the text tokens")
    positions: list[list[int]] = [[] for _ in spans]
    s = 0  # spans are ordered and disjoint, tokens too: one merge pass (linear in the conversation)
    for k, (start, end) in enumerate(plain["offset_mapping"]):
        while s < len(spans) and start >= spans[s][2]:
            s += 1
        if s == len(spans):
            break
        if end > start and spans[s][1] <= start:
            positions[s].append(where[k])
    for s, (a, lo, hi) in enumerate(spans):
        pos = positions[s]
        decoded = tok.decode(
            [ids[p] for p in pos], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        if not pos or pos[-1] - pos[0] + 1 != len(pos) or _norm(decoded) != _norm(full[lo:hi]):
            raise SampleProblem("response_not_located", f"turn {a}: labels decode to {decoded!r}")
    return enc, positions


def _to_sample(enc: dict, positions: list[list[int]]) -> dict[str, torch.Tensor]:
    ids = enc["input_ids"][0]
    labels = torch.full_like(ids, IGNORE_INDEX)
    for pos in positions:
        labels[pos] = ids[pos]
    out = {"input_ids": ids, "labels": labels}
    for key, value in enc.items():
        if key in ("input_ids", "attention_mask") or not isinstance(value, torch.Tensor):
            continue
        out[key] = value[0] if key in SEQUENCE_KEYS else value
    return out


def render_conversation(
    processor, messages: list[dict], images: list, max_length: int, videos: list = ()
) -> Rendered:
    """Render, label and (if needed) truncate one conversation.

    Longer than max_length: whole trailing turns are dropped (never part of an image or video span); the
    sample is re-rendered with the images and videos of the kept turns only.

    Raises:
        SampleProblem: response_not_located, too_long.
    """
    enc, positions = _encode(processor, messages, images, videos)
    length = enc["input_ids"].shape[1]
    if length <= max_length:
        return Rendered(_to_sample(enc, positions))
    assistant_at = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    ends = [pos[-1] + 1 for pos in positions]
    for k in reversed(range(len(ends) - 1)):
        if ends[k] > max_length:
            continue
        kept = messages[: assistant_at[k] + 1]
        n_images = sum(c["type"] == "image" for m in kept for c in m["content"])
        n_videos = sum(c["type"] == "video" for m in kept for c in m["content"])
        enc, positions = _encode(processor, kept, images[:n_images], list(videos)[:n_videos])
        if enc["input_ids"].shape[1] <= max_length:
            return Rendered(_to_sample(enc, positions), truncated=True)
    raise SampleProblem("too_long", f"{length} tokens > data.max_length={max_length}")


def image_token_estimate(processor) -> int:
    """Tokens one image expands to (exact for fixed-resolution models such as LLaVA-1.5; an estimate else)."""
    from PIL import Image

    image_token = getattr(processor, "image_token", None)
    if image_token is None:
        return 0
    try:
        enc = processor(text=[image_token], images=[Image.new("RGB", (336, 336))], return_tensors="pt")
    except Exception:  # only an estimate for length grouping: a processor that wants more context gets 0
        return 0
    image_id = processor.tokenizer.convert_tokens_to_ids(image_token)
    return int((enc["input_ids"] == image_id).sum())
