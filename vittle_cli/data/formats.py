"""The sample formats vittle reads, how a source's format is detected, and how a row becomes chat messages.

    llava     {"id", "image": path or [paths], "conversations": [{"from": "human"/"gpt", "value"}]}
              (LLaVA's llava_v1_5_mix665k.json). As in LLaVA's preprocessing, `<image>` placeholders are
              taken out of the text and the images are put first in their turn.
    sharegpt  {"messages" or "conversations": [{"role"/"from", "content"/"value": str}], "images": [...],
              "videos": [...]} (LLaMA-Factory's sharegpt form, e.g. its data/mllm_demo.json). `<image>`
              stays where the text puts it, as LLaMA-Factory does.
    chat      {"messages": [{"role", "content": [{"type": "image"}, {"type": "text", "text"}]}],
              "images": [...]} (transformers / OpenAI-style content items); an image item may also carry
              its path ("image", "path" or "url", or OpenAI's {"image_url": {"url"}}).

A source's format is detected from its first row unless data.format names one. Rows may be raw JSON or the
normalised rows of sources.normalise_row (same shapes, content always a list of items).
"""

from __future__ import annotations

from typing import Any

from vittle_cli.data.report import SampleProblem
from vittle_cli.errors import DataError

LLAVA, SHAREGPT, CHAT = "llava", "sharegpt", "chat"
FORMATS = (LLAVA, SHAREGPT, CHAT)
IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def turns_of(row: dict) -> list:
    """The turns of a row, under whichever key it uses."""
    turns = row.get("messages")
    return as_list(turns if turns is not None else row.get("conversations"))


def _has_list_content(turns: list) -> bool:
    return any(isinstance(t, dict) and isinstance(t.get("content"), list | tuple) for t in turns)


DETECT_ROWS = 100  # rows looked at: a sharegpt file may start with text-only samples that lack `images`


def detect_format(rows: list[dict] | dict, name: str) -> str:
    """The format of a source whose first rows are `rows`.

    Raises:
        DataError: neither `messages` nor `conversations` in the first row.
    """
    rows = [rows] if isinstance(rows, dict) else list(rows[:DETECT_ROWS])
    row = rows[0] if rows else None
    if not isinstance(row, dict) or ("messages" not in row and "conversations" not in row):
        columns = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise DataError(
            f"data source {name}: found columns {columns}, expected 'conversations' (LLaVA JSON) or "
            "'messages' / 'conversations' + 'images' (sharegpt, chat); convert the data to one of these forms"
        )
    rows = [r for r in rows if isinstance(r, dict)]
    if any(_has_list_content(turns_of(r)) for r in rows):
        return CHAT
    keys = set().union(*rows)
    if "image" in keys or ("messages" not in keys and "images" not in keys and "videos" not in keys):
        first = next((t for t in turns_of(row) if isinstance(t, dict)), {})
        if "role" not in first:  # LLaVA writes from/value; a role/content file is sharegpt
            return LLAVA
    return SHAREGPT


def check_format_fits(fmt: str, row: dict, name: str) -> None:
    """A forced data.format must be able to read the rows at all."""
    key_ok = "conversations" in row if fmt == LLAVA else ("messages" in row or "conversations" in row)
    if not key_ok:
        raise DataError(
            f"data source {name}: data.format={fmt} but the rows have columns {sorted(row)}; "
            "remove data.format to detect the format, or convert the data"
        )


def _role(turn: dict) -> str:
    name = turn.get("role", turn.get("from", ""))
    role = ROLES.get(name)
    if role is None:
        raise SampleProblem("unknown_role", f"role {name!r}")
    return role


def _text_of(turn: dict) -> str:
    """A turn's text in the llava/sharegpt forms (raw string, or the one text item of a normalised row)."""
    value = turn.get("content", turn.get("value"))
    if isinstance(value, list | tuple):
        return "".join(c.get("text") or "" for c in value if isinstance(c, dict) and c.get("type") == "text")
    return "" if value is None else str(value)


def _split_placeholders(text: str) -> list[dict]:
    """Text with `<image>`/`<video>` placeholders as content items, in the order the text gives them."""
    items: list[dict] = []
    rest = text
    while True:
        cuts = [(rest.find(p), p) for p in (IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER) if p in rest]
        if not cuts:
            break
        at, placeholder = min(cuts)
        if rest[:at].strip():
            items.append({"type": "text", "text": rest[:at].strip()})
        items.append({"type": "image" if placeholder == IMAGE_PLACEHOLDER else "video"})
        rest = rest[at + len(placeholder) :]
    if rest.strip() or not items:
        items.append({"type": "text", "text": rest.strip() if items else rest})
    return items


def _llava_messages(row: dict) -> list[dict]:
    messages = []
    for turn in turns_of(row):
        role, text = _role(turn), _text_of(turn)
        n = text.count(IMAGE_PLACEHOLDER) if role == "user" else 0
        text = text.replace(IMAGE_PLACEHOLDER, "").strip() if n else text
        messages.append({"role": role, "content": [{"type": "image"}] * n + [{"type": "text", "text": text}]})
    return messages


def _sharegpt_messages(row: dict) -> list[dict]:
    messages = []
    for turn in turns_of(row):
        role, text = _role(turn), _text_of(turn)
        # A response is learnt as written: a literal "<image>" there is text, not an image.
        content = [{"type": "text", "text": text}] if role == "assistant" else _split_placeholders(text)
        messages.append({"role": role, "content": content})
    return messages


def item_path(item: dict) -> Any:
    for key in ("image", "path", "url"):
        if item.get(key):
            return item[key]
    url = item.get("image_url")
    return url.get("url") if isinstance(url, dict) else url


def _chat_messages(row: dict) -> tuple[list[dict], list]:
    """Messages and the image paths carried by the image items themselves (if any)."""
    messages, inline = [], []
    for turn in turns_of(row):
        role, content = _role(turn), turn.get("content")
        items = []
        if isinstance(content, str):
            items.append({"type": "text", "text": content})
        for c in content if isinstance(content, list | tuple) else []:
            kind = c.get("type") if isinstance(c, dict) else None
            if kind in ("image", "image_url"):
                items.append({"type": "image"})
                if (path := item_path(c)) is not None:
                    inline.append(path)
            elif kind == "video":
                items.append({"type": "video"})
            elif kind == "text":
                items.append({"type": "text", "text": c.get("text") or ""})
        messages.append({"role": role, "content": items})
    return messages, inline


def messages_of(row: dict, fmt: str) -> tuple[list[dict], list, list]:
    """(messages, image values, video values) of a row in format `fmt`.

    Raises:
        SampleProblem: unknown_role.
    """
    if fmt == LLAVA:
        return _llava_messages(row), as_list(row.get("image")), []
    videos = as_list(row.get("videos"))
    if fmt == SHAREGPT:
        return _sharegpt_messages(row), as_list(row.get("images")), videos
    messages, inline = _chat_messages(row)
    return messages, as_list(row.get("images")) or inline, videos


def _where(messages: list[dict], kind: str) -> str:
    turns = [str(i) for i, m in enumerate(messages) for c in m["content"] if c["type"] == kind]
    return f"in turn {', '.join(turns)}" if turns else "none in any turn"


def count_mismatch(fmt: str, messages: list[dict], n_images: int, n_videos: int = 0) -> SampleProblem | None:
    """The problem when the images (videos) and their placeholders of a sample do not pair up, naming the
    cause."""
    for kind, n_given in (("image", n_images), ("video", n_videos)):
        n_placeholders = sum(c["type"] == kind for m in messages for c in m["content"])
        if n_placeholders == n_given:
            continue
        key = "image" if fmt == LLAVA else f"{kind}s"
        where = (
            f"{n_given} {kind}(s) in '{key}', {n_placeholders} <{kind}> placeholder(s) "
            f"({_where(messages, kind)})"
        )
        if fmt == LLAVA:
            fix = "LLaVA format: write one <image> in a human turn per image listed in 'image'"
        elif fmt == SHAREGPT:
            fix = f"sharegpt format: write one <{kind}> in the user text where each {kind} of '{key}' goes"
        else:
            fix = f"chat format: give one {{'type': '{kind}'}} content item per {kind} of '{key}'"
        problem = f"{kind}_without_placeholder" if n_given > n_placeholders else f"placeholder_without_{kind}"
        return SampleProblem(problem, where, fix=fix)
    return None
