"""One sample as chat messages + image and video references, with the cheap checks done before training.

The format of the row (formats.py) decides where its images and videos stand; the processor's chat template
then decides how {"type": "image"} and {"type": "video"} items are rendered.
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
class VideoRef:
    """A video: a file (decoded with PyAV) or its frames as image files, paths as written in the data."""

    path: str | None = None
    frames: list[str] | None = None

    @property
    def paths(self) -> list[str]:
        return list(self.frames) if self.frames is not None else [self.path]


@dataclass
class Conversation:
    id: str
    messages: list[dict]
    images: list[ImageRef] = field(default_factory=list)
    videos: list[VideoRef] = field(default_factory=list)

    @property
    def n_chars(self) -> int:
        return sum(len(c.get("text") or "") for m in self.messages for c in m["content"])


def sample_id(row: dict, index: int) -> str:
    return str(row["id"]) if row.get("id") is not None else str(index)


def _image_ref(value: Any) -> ImageRef:
    if isinstance(value, dict):  # a `datasets` Image column, undecoded
        return ImageRef(path=value.get("path"), data=value.get("bytes"), from_data=False)
    return ImageRef(path=str(value))


def _video_ref(value: Any) -> VideoRef:
    """A video as LLaMA-Factory's `videos` list gives it (a path, or a list of frame paths), or as
    sources.py normalises it ({"path", "frames"})."""
    if isinstance(value, dict):
        frames = value.get("frames")
        return VideoRef(frames=[str(f) for f in frames]) if frames else VideoRef(path=value.get("path"))
    if isinstance(value, list | tuple):
        return VideoRef(frames=[str(f) for f in value])
    return VideoRef(path=None if value is None else str(value))


def _n_items(message: dict, kind: str) -> int:
    return sum(c["type"] == kind for c in message["content"])


def parse_row(row: dict, form: str, index: int) -> Conversation:
    """Turn a raw row of format `form` (formats.FORMATS) into a Conversation.

    Raises:
        SampleProblem: unknown_role, image_without_placeholder, placeholder_without_image,
            video_without_placeholder, placeholder_without_video, empty_conversation.
    """
    messages, images, videos = messages_of(row, form)
    mismatch = count_mismatch(form, messages, len(images), len(videos))
    if mismatch is not None:
        raise mismatch
    # Turns after the last response have nothing to learn from; their images and videos go with them.
    while messages and messages[-1]["role"] != "assistant":
        dropped = messages.pop()
        images = images[: len(images) - _n_items(dropped, "image")]
        videos = videos[: len(videos) - _n_items(dropped, "video")]
    if "user" not in [m["role"] for m in messages[:-1]]:  # the last message is a response (or none)
        raise SampleProblem("empty_conversation")
    return Conversation(
        sample_id(row, index), messages, [_image_ref(v) for v in images], [_video_ref(v) for v in videos]
    )


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _resolve(written: str, root: str, real_root: str | None, kind: str) -> str:
    """The full path of a media path written in the data, checked on disk and, when real_root is given
    (data.image_root set), against the path rule."""
    full = os.path.normpath(os.path.join(root, os.path.expanduser(written)))
    if real_root is not None and not (_inside(full, root) or _inside(full, real_root)):
        raise SampleProblem(
            f"{kind}_outside_root",
            f"{written} resolves to {full}, outside data.image_root={root}",
            fix="write paths inside data.image_root, or unset data.image_root to allow absolute paths",
        )
    if not os.path.isfile(full):
        raise SampleProblem(f"missing_{kind}", full)
    return full


def check_image_paths(conv: Conversation, image_root: Path, enforce_root: bool = True) -> None:
    """Resolve image and video paths (video files and frame files) and check them without decoding.

    With enforce_root (data.image_root set), a path (relative, or absolute) must lie inside image_root once
    `..` is resolved as text; symlinks inside the root are followed, as they are the user's file system.
    Without it, relative paths resolve against image_root (the data file's folder) and absolute paths are
    taken as they are.

    Raises:
        SampleProblem: image_outside_root, missing_image, video_outside_root, missing_video.
    """
    root = os.path.normpath(os.path.abspath(os.path.expanduser(image_root)))
    # an absolute path may spell the root through its real location
    real_root = os.path.realpath(root) if enforce_root else None
    for ref in conv.images:
        if ref.data is not None:
            continue
        if ref.path is None:
            raise SampleProblem("missing_image", "no path and no bytes")
        ref.path = _resolve(ref.path, root, real_root if ref.from_data else None, "image")
    for video in conv.videos:
        if not video.paths or None in video.paths:
            raise SampleProblem("missing_video", "no path and no frames")
        if video.frames is not None:
            video.frames = [_resolve(p, root, real_root, "video") for p in video.frames]
        else:
            video.path = _resolve(video.path, root, real_root, "video")


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


def _decode_image(ref: ImageRef) -> Any:
    from PIL import Image

    try:
        src = io.BytesIO(ref.data) if ref.data is not None else ref.path
        with Image.open(src) as im:
            check_pixel_count(im.size, ref.path)  # before decoding: the header knows the size
            return im.convert("RGB")
    except SampleProblem:
        raise
    except FileNotFoundError as e:
        raise SampleProblem("missing_image", str(ref.path)) from e
    except Exception as e:  # PIL raises many types for broken files; any of them means unusable
        raise SampleProblem("corrupt_image", f"{ref.path or 'embedded bytes'}: {type(e).__name__}") from e


def load_images(conv: Conversation) -> list:
    """Decode the images as RGB PIL images.

    Raises:
        SampleProblem: missing_image, corrupt_image.
    """
    return [_decode_image(ref) for ref in conv.images]


def load_videos(conv: Conversation, options: Any, factor: int = 28) -> list:
    """Decode the videos into data.video.Frames (frames sampled and resized as data/video.py says).

    Raises:
        DataError: a video file and no PyAV.
        SampleProblem: missing_video, corrupt_video (a frame file that cannot be decoded too).
    """
    from vittle_cli.data.video import decode_video_file, prepare_frames

    out = []
    for video in conv.videos:
        if video.frames is None:
            images, fps = decode_video_file(video.path, options)
        else:  # already sampled: LLaMA-Factory takes a frame list as it is, at video_fps
            try:
                images, fps = [_decode_image(ImageRef(path=p)) for p in video.frames], options.fps
            except SampleProblem as problem:
                kind = "missing_video" if problem.kind == "missing_image" else "corrupt_video"
                raise SampleProblem(kind, f"frame {problem.detail}") from problem
        out.append(prepare_frames(images, fps, options.max_pixels, factor))
    return out
