"""One sample as chat messages + image references, with the cheap checks done before training starts.

The format of the row (formats.py) decides where its images stand; the processor's chat template then
decides how {"type": "image"} items are rendered.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vittle_cli.data.formats import count_mismatch, messages_of
from vittle_cli.data.report import SampleProblem


@dataclass
class ImageRef:
    """Where an image comes from: a path given in the data (checked against image_root), raw bytes,
    or a file path recorded by a `datasets` Image column."""

    path: str | None = None
    data: bytes | None = None
    from_data: bool = True  # a path written by the user, so it must follow the path rules


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


def _image_ref(value: Any) -> ImageRef:
    if isinstance(value, dict):  # a `datasets` Image column, undecoded
        return ImageRef(path=value.get("path"), data=value.get("bytes"), from_data=False)
    return ImageRef(path=str(value))


def _n_images(message: dict) -> int:
    return sum(c["type"] == "image" for c in message["content"])


def parse_row(row: dict, form: str, index: int) -> Conversation:
    """Turn a raw row of format `form` (formats.FORMATS) into a Conversation.

    Raises:
        SampleProblem: unknown_role, video_not_supported, image_without_placeholder,
            placeholder_without_image, empty_conversation.
    """
    messages, images, videos = messages_of(row, form)
    n_video_items = sum(c["type"] == "video" for m in messages for c in m["content"])
    if videos or n_video_items:
        raise SampleProblem("video_not_supported", f"{len(videos)} video(s), {n_video_items} <video> item(s)")
    mismatch = count_mismatch(form, messages, len(images))
    if mismatch is not None:
        raise mismatch
    # Turns after the last response have nothing to learn from; their images go with them.
    while messages and messages[-1]["role"] != "assistant":
        dropped = _n_images(messages.pop())
        images = images[: len(images) - dropped]
    if "user" not in [m["role"] for m in messages[:-1]]:  # the last message is a response (or none)
        raise SampleProblem("empty_conversation")
    return Conversation(sample_id(row, index), messages, [_image_ref(v) for v in images])


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_image_paths(conv: Conversation, image_root: Path, enforce_root: bool = True) -> None:
    """Resolve image paths and check them without decoding.

    With enforce_root (data.image_root set), a path (relative, or absolute) must lie inside image_root once
    `..` is resolved as text; symlinks inside the root are followed, as they are the user's file system.
    Without it, relative paths resolve against image_root (the data file's folder) and absolute paths are
    taken as they are.

    Raises:
        SampleProblem: image_outside_root, missing_image.
    """
    root = os.path.normpath(os.path.abspath(os.path.expanduser(image_root)))
    real_root = os.path.realpath(root)  # an absolute path may spell the root through its real location
    for ref in conv.images:
        if ref.data is not None:
            continue
        if ref.path is None:
            raise SampleProblem("missing_image", "no path and no bytes")
        written = ref.path
        full = os.path.normpath(os.path.join(root, os.path.expanduser(written)))
        if enforce_root and ref.from_data and not (_inside(full, root) or _inside(full, real_root)):
            raise SampleProblem(
                "image_outside_root",
                f"{written} resolves to {full}, outside data.image_root={root}",
                fix="write paths inside data.image_root, or unset data.image_root to allow absolute paths",
            )
        ref.path = full
        if not os.path.isfile(full):
            raise SampleProblem("missing_image", full)


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
