"""One sample as chat messages + image references, with the cheap checks done before training starts.

LLaVA turns become chat messages (human -> user, gpt -> assistant). As in LLaVA's own preprocessing, the
`<image>` placeholders are taken out of the text and the images are put first in their user turn, as
{"type": "image"} content items; the processor's chat template then decides where they are rendered.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vittle_cli.data.report import SampleProblem
from vittle_cli.data.sources import LLAVA

IMAGE_PLACEHOLDER = "<image>"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass
class ImageRef:
    """Where an image comes from: a path given in the data (checked against image_root), raw bytes,
    or a file path recorded by a `datasets` Image column."""

    path: str | None = None
    data: bytes | None = None
    from_data: bool = True  # a path written by the user, so it must stay inside image_root


@dataclass
class Conversation:
    id: str
    messages: list[dict]
    images: list[ImageRef] = field(default_factory=list)

    @property
    def n_chars(self) -> int:
        return sum(len(c.get("text") or "") for m in self.messages for c in m["content"])


def sample_id(row: dict, index: int) -> str:
    return str(row["id"]) if row.get("id") is not None else str(index)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _image_ref(value: Any) -> ImageRef:
    if isinstance(value, dict):  # a `datasets` Image column, undecoded
        return ImageRef(path=value.get("path"), data=value.get("bytes"), from_data=False)
    return ImageRef(path=str(value))


def _role(name: str) -> str:
    role = ROLES.get(name)
    if role is None:
        raise SampleProblem("unknown_role", f"role {name!r}")
    return role


def _from_llava(row: dict) -> tuple[list[dict], int]:
    messages, placeholders = [], 0
    for turn in _as_list(row.get("conversations")):
        role, text = _role(turn.get("from", "")), turn.get("value") or ""
        if role == "user":
            n = text.count(IMAGE_PLACEHOLDER)
            placeholders += n
            text = text.replace(IMAGE_PLACEHOLDER, "").strip() if n else text
            content = [{"type": "image"}] * n + [{"type": "text", "text": text}]
        else:
            content = [{"type": "text", "text": text}]
        messages.append({"role": role, "content": content})
    return messages, placeholders


def _from_messages(row: dict) -> tuple[list[dict], int]:
    messages, placeholders = [], 0
    for msg in _as_list(row.get("messages")):
        content = msg.get("content")
        items = [{"type": "text", "text": content}] if isinstance(content, str) else []
        for c in _as_list(content) if not isinstance(content, str) else []:
            if c.get("type") == "image":
                items.append({"type": "image"})
                placeholders += 1
            elif c.get("type") == "text":
                items.append({"type": "text", "text": c.get("text") or ""})
        messages.append({"role": _role(msg.get("role", "")), "content": items})
    return messages, placeholders


def parse_row(row: dict, form: str, index: int) -> Conversation:
    """Turn a raw row into a Conversation.

    Raises:
        SampleProblem: unknown_role, empty_conversation, image_without_placeholder, placeholder_without_image.
    """
    if form == LLAVA:
        messages, placeholders = _from_llava(row)
        images = [_image_ref(v) for v in _as_list(row.get("image"))]
    else:
        messages, placeholders = _from_messages(row)
        images = [_image_ref(v) for v in _as_list(row.get("images"))]
    # Turns after the last response have nothing to learn from.
    while messages and messages[-1]["role"] != "assistant":
        dropped = messages.pop()
        placeholders -= sum(c["type"] == "image" for c in dropped["content"])
    if "user" not in [m["role"] for m in messages[:-1]]:  # the last message is a response (or none)
        raise SampleProblem("empty_conversation")
    if len(images) > placeholders:
        raise SampleProblem("image_without_placeholder", f"{len(images)} images, {placeholders} placeholders")
    if len(images) < placeholders:
        raise SampleProblem("placeholder_without_image", f"{placeholders} placeholders, {len(images)} images")
    return Conversation(sample_id(row, index), messages, images)


def check_image_paths(conv: Conversation, image_root: Path) -> None:
    """Resolve relative paths against image_root and check they stay inside it and exist (no decoding).

    Raises:
        SampleProblem: image_outside_root, missing_image.
    """
    root = os.path.normpath(os.path.abspath(image_root))
    for ref in conv.images:
        if ref.data is not None:
            continue
        if ref.path is None:
            raise SampleProblem("missing_image", "no path and no bytes")
        # Lexical check (no symlink resolution): '..' or an absolute path may not leave image_root, while a
        # symlinked image folder inside it stays allowed.
        full = os.path.normpath(os.path.join(root, ref.path))
        if ref.from_data and not (full == root or full.startswith(root + os.sep)):
            raise SampleProblem("image_outside_root", ref.path)
        ref.path = full
        if not os.path.isfile(full):
            raise SampleProblem("missing_image", ref.path)


# A 12000x12000 PNG can be 420 KB on disk and 432 MB decoded; no training image needs more than this.
MAX_IMAGE_PIXELS = 40_000_000


def check_pixel_count(size: tuple[int, int], path: str | None) -> None:
    """Refuse an image larger than MAX_IMAGE_PIXELS before it is decoded.

    Raises:
        SampleProblem: image_too_large, naming the size and the limit.
    """
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise SampleProblem(
            "image_too_large",
            f"{path or 'embedded bytes'}: {width}x{height} = {width * height:,} pixels > {MAX_IMAGE_PIXELS:,}",
        )


def load_images(conv: Conversation) -> list:
    """Decode the images as RGB PIL images.

    Raises:
        SampleProblem: missing_image, corrupt_image.
    """
    from PIL import Image

    out = []
    for ref in conv.images:
        try:
            src = io.BytesIO(ref.data) if ref.data is not None else ref.path
            with Image.open(src) as im:
                check_pixel_count(im.size, ref.path)  # before decoding: the header knows the size
                out.append(im.convert("RGB"))
        except SampleProblem:
            raise
        except FileNotFoundError as e:
            raise SampleProblem("missing_image", str(ref.path)) from e
        except Exception as e:  # PIL raises many types for broken files; any of them means unusable
            raise SampleProblem("corrupt_image", f"{ref.path or 'embedded bytes'}: {type(e).__name__}") from e
    return out
