"""Tiny videos written with PyAV, LLaMA-Factory's video demo laid out with them, and the Qwen2-VL processor
of the published files (tests/fixtures/models/qwen2_vl). Nothing is downloaded."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"
VIDEO_DEMO = FIXTURES / "data_formats" / "mllm_video_demo.json"
# The demo's videos (mllm_demo_data/1.mp4, 2.avi, 3.mp4) as (frames, frames per second): 1.5 s, 1.25 s and
# 2.25 s long, so data.video_fps=2 takes 3, 2 and 4 frames (LLaMA-Factory's rule; 3 is made even: 4).
DEMO_VIDEOS = {"mllm_demo_data/1.mp4": (6, 4), "mllm_demo_data/2.avi": (5, 4), "mllm_demo_data/3.mp4": (9, 4)}

_spec = importlib.util.spec_from_file_location("family_fixtures", FIXTURES / "models" / "build.py")
family_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(family_fixtures)


def frame_level(index: int) -> int:
    """The grey level of frame `index` in write_video's videos (far apart, so each frame is recognisable
    after lossy encoding)."""
    return 20 + 25 * (index % 10)


def write_video(path: Path, n_frames: int, fps: int = 4, size: tuple[int, int] = (28, 28)) -> Path:
    """A video of `n_frames` flat grey frames (frame_level) at `fps`; H.264 for .mp4, MPEG-4 part 2 else."""
    import av

    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if path.suffix == ".mp4" else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            frame = np.full((height, width, 3), frame_level(i), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def video_demo_dir(dest: Path) -> Path:
    """LLaMA-Factory's data/mllm_video_demo.json with its three videos written beside it; returns the folder."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(VIDEO_DEMO, dest / VIDEO_DEMO.name)
    for name, (n_frames, fps) in DEMO_VIDEOS.items():
        write_video(dest / name, n_frames, fps)
    return dest


def qwen_processor(family: str, dest: Path):
    """The processor of a Qwen family's published files (no model weights needed)."""
    from vittle_cli.model.families import load_processor

    return load_processor(str(family_fixtures.lay_out_files(family, dest)))
