"""Video samples for the families whose models take video (Qwen2-VL, Qwen2.5-VL), without torchvision.

A video is what LLaMA-Factory accepts in a sharegpt `videos` list (its data/mllm_video_demo.json): a video
file, decoded with PyAV, or a list of frame image files. Frames are chosen and resized as LLaMA-Factory's
Qwen2-VL plugin does (src/llamafactory/data/mm_plugin.py):

  - a file: n = min(total frames, data.video_maxlen, max(1, floor(duration * data.video_fps))) frames at
    linspace(0, total - 1, n) (int); a frame list is taken as it is (already sampled);
  - an odd number of frames gets its last frame again (Qwen2-VL's temporal patch holds 2 frames);
  - each frame is scaled by sqrt(data.video_max_pixels / pixels) when larger (by sqrt(16 * 16 / pixels)
    when smaller), then to at least 28 px a side.

The frames then become `pixel_values_videos` + `video_grid_thw` as transformers' Qwen2VLVideoProcessor
makes them: smart_resize to a multiple of patch_size * merge_size within the processor's min/max pixels,
rescale, normalise, and patches of temporal_patch_size consecutive frames (grid_t = frames / 2). That
processor needs torchvision, which cannot sit beside the CPU torch vittle is tested with, so vittle builds
the same tensors from the processor's image half (Qwen2VLImageProcessor, PIL): run on each frame, it
gives that frame's patches with the frame repeated in both temporal slots; putting consecutive frames in
the slots instead is the video patch. (Resizing is PIL's bicubic, as for images, where the video
processor resizes with torchvision's.) tests/unit/test_data_video.py checks the layout against the video
processor's own patchify, compiled from transformers' source.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from vittle_cli.data.report import SampleProblem
from vittle_cli.errors import DataError

VIDEO_MIN_PIXELS = 16 * 16  # LLaMA-Factory's video_min_pixels default
AV_HINT = "video files are decoded with PyAV: pip install av (or pip install 'vittle[video]')"


@dataclass(frozen=True)
class VideoOptions:
    """How frames are taken from a video (data.video_fps, data.video_maxlen, data.video_max_pixels)."""

    fps: float = 2.0
    maxlen: int = 128
    max_pixels: int = 256 * 256

    @classmethod
    def from_data(cls, data: Any) -> VideoOptions:
        return cls(data.video_fps, data.video_maxlen, data.video_max_pixels)


@dataclass
class Frames:
    """The frames of one video (RGB PIL images, even in number) and how many per second of video time."""

    images: list
    fps: float


def takes_video(processor: Any) -> bool:
    """Whether vittle trains video for this processor's family (families.VIDEO_PROCESSORS)."""
    from vittle_cli.model.families import VIDEO_PROCESSORS

    return any(cls.__name__ in VIDEO_PROCESSORS for cls in type(processor).__mro__)


def require_av() -> Any:
    """The PyAV module.

    Raises:
        DataError: PyAV is not installed (names the pip command).
    """
    try:
        import av
    except ImportError as e:
        raise DataError(f"{AV_HINT}; it is not installed in this environment") from e
    return av


def sample_indices(total_frames: int, duration: float | None, options: VideoOptions) -> list[int]:
    """Indices of the frames taken from a video file of `total_frames` frames lasting `duration` seconds.

    LLaMA-Factory's rule (total_frames 0 = unknown: the first video_maxlen frames). A duration the file
    does not state counts as total_frames / video_fps seconds, i.e. one frame in each 1 / video_fps.
    """
    import numpy as np

    if total_frames <= 0:
        return list(range(options.maxlen))
    seconds = duration if duration else total_frames / options.fps
    n = min(total_frames, options.maxlen, max(1, math.floor(seconds * options.fps)))
    return np.linspace(0, total_frames - 1, n).astype(np.int32).tolist()


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:  # microseconds (av.time_base)
        return container.duration / 1_000_000
    return None


def decode_video_file(path: str, options: VideoOptions) -> tuple[list, float]:
    """(sampled frames as RGB PIL images, sampled frames per second of video time) of a video file.

    Raises:
        DataError: PyAV is missing.
        SampleProblem: missing_video, corrupt_video.
    """
    av = require_av()
    try:
        with av.open(path, "r") as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                raise SampleProblem("corrupt_video", f"{path}: no video stream")
            duration = _duration(container, stream)
            wanted = sample_indices(stream.frames, duration, options)
            keep, last = set(wanted), max(wanted)
            frames = []
            for index, frame in enumerate(container.decode(stream)):
                if index in keep:
                    frames.append(frame.to_image())
                if index >= last:  # the rest would be decoded only to be dropped
                    break
    except SampleProblem:
        raise
    except FileNotFoundError as e:
        raise SampleProblem("missing_video", path) from e
    except Exception as e:  # PyAV raises many types for broken files; any of them means unusable
        raise SampleProblem("corrupt_video", f"{path}: {type(e).__name__}: {e}") from e
    if not frames:
        raise SampleProblem("corrupt_video", f"{path}: no frame decoded")
    # LLaMA-Factory: sampled frames per second of video (video_fps when the file states no duration)
    fps = len(wanted) / duration if duration else options.fps
    return frames, fps


def regularise_frame(image: Any, max_pixels: int, factor: int = 28) -> Any:
    """One frame resized as LLaMA-Factory's Qwen2-VL plugin resizes video frames (module docstring)."""
    from PIL import Image

    bicubic = Image.Resampling.BICUBIC  # what PIL's resize() uses for RGB images when none is named
    for limit, too_big in ((max_pixels, True), (VIDEO_MIN_PIXELS, False)):
        pixels = image.width * image.height
        if (pixels > limit) if too_big else (pixels < limit):
            scale = math.sqrt(limit / pixels)
            image = image.resize((int(image.width * scale), int(image.height * scale)), bicubic)
    if min(image.width, image.height) < factor:
        image = image.resize((max(image.width, factor), max(image.height, factor)), bicubic)
    if image.width / image.height > 200:
        image = image.resize((image.height * 180, image.height), bicubic)
    if image.height / image.width > 200:
        image = image.resize((image.width, image.width * 180), bicubic)
    return image.convert("RGB") if image.mode != "RGB" else image


def prepare_frames(images: list, fps: float, max_pixels: int, factor: int = 28) -> Frames:
    """Frames made even in number (the last one repeated) and regularised; all must share one size.

    Raises:
        SampleProblem: corrupt_video (frames of different sizes).
    """
    images = list(images)
    if len(images) % 2:
        images.append(images[-1])
    images = [regularise_frame(im, max_pixels, factor) for im in images]
    sizes = sorted({im.size for im in images})
    if len(sizes) > 1:
        raise SampleProblem("corrupt_video", f"frames of different sizes {sizes}; give one size per video")
    return Frames(images, fps)


def video_pixel_limits(processor: Any) -> tuple[int, int]:
    """(min, max) pixels a frame is smart-resized within: the video processor's, else the image one's."""
    for part in (getattr(processor, "video_processor", None), processor.image_processor):
        size = getattr(part, "size", None)  # a dict, or transformers' SizeDict
        if isinstance(size, dict):
            low, high = size.get("shortest_edge"), size.get("longest_edge")
        else:
            low, high = getattr(size, "shortest_edge", None), getattr(size, "longest_edge", None)
        if low and high:
            return int(low), int(high)
    raise DataError(f"{type(processor).__name__}: no min/max pixels in its image processor's size")


def video_patches(image_processor: Any, frames: list, min_pixels: int, max_pixels: int):
    """(patches of shape (grid_t * grid_h * grid_w, C * T * P * P), [grid_t, grid_h, grid_w]) of one video.

    The image processor gives each frame's patches with the frame in every one of the T temporal slots
    (C, T, P, P innermost); the video patch takes its slot t from frame 2k + t instead.
    """
    import numpy as np

    temporal = image_processor.temporal_patch_size
    if pad := -len(frames) % temporal:  # as the video processor pads: the last frame again
        frames = list(frames) + [frames[-1]] * pad
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    out = image_processor(list(frames), size=size, return_tensors="np")
    pixels, grids = np.asarray(out["pixel_values"]), np.asarray(out["image_grid_thw"])
    grid_h, grid_w = int(grids[0][1]), int(grids[0][2])
    n_frames, n_patches = len(frames), grid_h * grid_w
    channels = pixels.shape[1] // (temporal * image_processor.patch_size**2)
    per_frame = pixels.reshape(n_frames, n_patches, channels, temporal, -1)[:, :, :, 0]
    grid_t = n_frames // temporal
    video = per_frame.reshape(grid_t, temporal, n_patches, channels, -1).transpose(0, 2, 3, 1, 4)
    return video.reshape(grid_t * n_patches, -1), [grid_t, grid_h, grid_w]


@dataclass
class _SampledMetadata:
    sampled_fps: float  # what Qwen2.5-VL's processor reads: second_per_grid_ts = temporal_patch_size / fps


class FrameVideoProcessor:
    """The video half of a Qwen2-VL / Qwen2.5-VL processor, built on its image half (module docstring).

    Called by the processor as its `video_processor` with the videos given to it (lists of frames).
    """

    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(self, processor: Any, fps: list[float]):
        self.image_processor = processor.image_processor
        self.merge_size = self.image_processor.merge_size
        self.patch_size = self.image_processor.patch_size
        self.temporal_patch_size = self.image_processor.temporal_patch_size
        self.limits = video_pixel_limits(processor)
        self.fps = fps

    def __call__(self, videos: list[list], **kwargs: Any):
        import numpy as np
        import torch
        from transformers import BatchFeature

        patches, grids = zip(
            *(video_patches(self.image_processor, v, *self.limits) for v in videos), strict=True
        )
        return BatchFeature(
            {
                "pixel_values_videos": torch.from_numpy(np.ascontiguousarray(np.concatenate(patches))),
                "video_grid_thw": torch.tensor(grids, dtype=torch.long),
                "video_metadata": [_SampledMetadata(f) for f in self.fps],
            }
        )


def with_video_processor(processor: Any, videos: list[Frames]) -> Any:
    """A shallow copy of `processor` whose video half is a FrameVideoProcessor for these videos (the
    processor itself, saved with the model, is left as it is)."""
    out = copy.copy(processor)
    out.video_processor = FrameVideoProcessor(processor, [v.fps for v in videos])
    return out
