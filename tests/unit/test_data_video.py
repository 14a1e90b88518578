"""Video samples (vittle_cli/data/video.py): LLaMA-Factory's frame sampling and resizing, the video patches
against transformers' own Qwen2-VL video code, the processor's video tokens, and the pre-scan's video
problems. Videos are written here with PyAV (tests/video_fixtures.py); nothing is downloaded."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from video_fixtures import DEMO_VIDEOS, frame_level, qwen_processor, video_demo_dir, write_video

from vittle_cli.data.conversation import parse_row
from vittle_cli.data.mixture import build_train_dataset
from vittle_cli.data.report import BadDataError, SampleProblem
from vittle_cli.data.video import (
    VideoOptions,
    decode_video_file,
    prepare_frames,
    regularise_frame,
    sample_indices,
    video_patches,
    video_pixel_limits,
    with_video_processor,
)
from vittle_cli.errors import DataError
from vittle_cli.recipe import DataSection

av = pytest.importorskip("av")
VIDEO_TOKEN = 151656  # <|video_pad|> in the published Qwen2-VL tokenizer
IMAGE_TOKEN = 151655


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    return qwen_processor("qwen2_vl", tmp_path_factory.mktemp("qwen2_vl"))


def _video_row(prompt: str = "<video>What happens?", videos=("clip.mp4",)) -> dict:
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "It moves."}],
        "videos": list(videos),
    }


# ---------------------------------------------------------------------------------------- frame sampling


@pytest.mark.parametrize(
    ("total", "seconds", "options", "expected"),
    [
        # floor(1.5 s * 2 fps) = 3 frames over 0..5: linspace 0, 2.5, 5 -> 0, 2, 5
        (6, 1.5, VideoOptions(), [0, 2, 5]),
        # 0.2 s * 2 fps < 1: one frame, the first
        (2, 0.2, VideoOptions(), [0]),
        # 100 s * 2 fps = 200 > video_maxlen 4: linspace 0, 99.67, 199.33, 299 -> 0, 99, 199, 299
        (300, 100.0, VideoOptions(maxlen=4), [0, 99, 199, 299]),
        # 10 s * 1 fps = 10 > 5 frames in the file: all five
        (5, 10.0, VideoOptions(fps=1.0), [0, 1, 2, 3, 4]),
        # a stream that states no frame count: the first video_maxlen frames
        (0, None, VideoOptions(maxlen=3), [0, 1, 2]),
    ],
)
def test_frames_are_sampled_by_llama_factorys_rule(total, seconds, options, expected):
    assert sample_indices(total, seconds, options) == expected


def test_a_video_file_decodes_to_the_sampled_frames_and_their_rate(tmp_path):
    path = write_video(tmp_path / "clip.mp4", n_frames=9, fps=4)  # 2.25 s: 4 frames at 2 fps
    frames, fps = decode_video_file(str(path), VideoOptions())
    # linspace(0, 8, 4) = 0, 2.67, 5.33, 8 -> frames 0, 2, 5, 8 (told apart by their grey level)
    levels = [int(np.asarray(f).mean().round()) for f in frames]
    assert [min(range(9), key=lambda i, v=v: abs(frame_level(i) - v)) for v in levels] == [0, 2, 5, 8]
    assert fps == pytest.approx(
        4 / 2.25
    )  # sampled frames per second of video (LLaMA-Factory's fps_per_video)
    avi = write_video(tmp_path / "clip.avi", n_frames=5, fps=4)  # MPEG-4 in AVI, as the demo's 2.avi
    assert len(decode_video_file(str(avi), VideoOptions())[0]) == 2


def test_a_broken_or_missing_video_file_is_a_named_problem(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(SampleProblem) as info:
        decode_video_file(str(tmp_path / "broken.mp4"), VideoOptions())
    assert info.value.kind == "corrupt_video"
    with pytest.raises(SampleProblem) as info:
        decode_video_file(str(tmp_path / "absent.mp4"), VideoOptions())
    assert info.value.kind == "missing_video"  # a file deleted after the pre-scan


def test_frames_are_resized_as_llama_factorys_qwen2_vl_plugin():
    big = Image.new("RGB", (640, 480))
    # sqrt(65536 / 307200) = 0.46188: int(640 * 0.46188) = 295, int(480 * 0.46188) = 221
    assert regularise_frame(big, 256 * 256).size == (295, 221)
    # 10 x 10 = 100 < 16 * 16 pixels: scaled by sqrt(256 / 100) = 1.6 to 16 x 16, then each side to >= 28
    assert regularise_frame(Image.new("RGB", (10, 10)), 256 * 256).size == (28, 28)
    assert regularise_frame(Image.new("RGB", (20, 40)), 256 * 256).size == (28, 40)
    assert regularise_frame(Image.new("L", (64, 64)), 256 * 256).mode == "RGB"
    # an odd number of frames gets its last frame again
    frames = [Image.new("RGB", (32, 32), (i, i, i)) for i in (1, 2, 3)]
    out = prepare_frames(frames, 2.0, 256 * 256)
    assert [im.getpixel((0, 0))[0] for im in out.images] == [1, 2, 3, 3]
    with pytest.raises(SampleProblem, match="frames of different sizes"):
        prepare_frames([Image.new("RGB", (32, 32)), Image.new("RGB", (40, 32))], 2.0, 256 * 256)


# ------------------------------------------------------------------------------------------- video patches


def _transformers_video_patchify():
    """Qwen2VLVideoProcessor.patchify compiled from transformers' own source file: the module imports
    torchvision (not installable beside the CPU torch here), the method itself is plain torch."""
    import transformers

    path = Path(transformers.__file__).parent / "models" / "qwen2_vl" / "video_processing_qwen2_vl.py"
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Qwen2VLVideoProcessor")
    method = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "patchify")
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=[method], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["patchify"]


@pytest.mark.parametrize("n_frames", [4, 3])
def test_video_patches_equal_transformers_video_processor_layout(processor, n_frames):
    """On frames the processor does not resize (56 x 56 stays 56 x 56), vittle's patches from the PIL image
    processor equal Qwen2VLVideoProcessor.patchify on the rescaled and normalised frames (padding to an
    even count included)."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (56, 56, 3), dtype=np.uint8) for _ in range(n_frames)]
    ip = processor.image_processor
    patches, grid = video_patches(ip, [Image.fromarray(f) for f in frames], *video_pixel_limits(processor))
    mean, std = np.array(ip.image_mean, np.float32), np.array(ip.image_std, np.float32)
    normalised = np.stack([(f.astype(np.float32) / 255 - mean) / std for f in frames]).transpose(0, 3, 1, 2)
    reference, grid_t, grid_h, grid_w = _transformers_video_patchify()(
        None, torch.from_numpy(normalised)[None], ip.patch_size, ip.merge_size, ip.temporal_patch_size
    )
    assert grid == [grid_t, grid_h, grid_w] == [2, 4, 4]  # ceil(frames / 2) x (56 / 14) x (56 / 14)
    assert patches.shape == tuple(reference.shape[1:]) == (32, 3 * 2 * 14 * 14)
    np.testing.assert_allclose(patches, reference[0].numpy(), atol=1e-5)


def test_video_patches_equal_the_real_video_processor_where_torchvision_is_installed(processor):
    """Where transformers' Qwen2VLVideoProcessor can be built (torchvision installed; not on the CPU-torch
    machines these tests were written on), vittle's tensors equal its output on frames it does not resize."""
    pytest.importorskip("torchvision")
    from transformers import Qwen2VLVideoProcessor

    low, high = video_pixel_limits(processor)
    real = Qwen2VLVideoProcessor(min_pixels=low, max_pixels=high)
    frames = np.random.default_rng(2).integers(0, 256, (4, 56, 56, 3), dtype=np.uint8)
    expected = real(videos=[frames], return_tensors="pt")
    patches, grid = video_patches(processor.image_processor, [Image.fromarray(f) for f in frames], low, high)
    assert [grid] == expected["video_grid_thw"].tolist()
    np.testing.assert_allclose(patches, expected["pixel_values_videos"].numpy(), atol=1e-4)


def test_a_still_video_is_its_image_patches(processor):
    """The image processor repeats one frame in both temporal slots: a video of that frame twice is the same."""
    frame = Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    patches, grid = video_patches(processor.image_processor, [frame, frame], *video_pixel_limits(processor))
    image = processor.image_processor([frame], return_tensors="np")
    np.testing.assert_array_equal(patches, image["pixel_values"])
    assert grid == image["image_grid_thw"][0].tolist()


def test_the_processor_expands_each_video_to_its_tokens(processor):
    frames = prepare_frames([Image.new("RGB", (28, 28), (i, 0, 0)) for i in range(6)], 2.0, 256 * 256)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "Same?"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    enc = with_video_processor(processor, [frames])(
        text=[text], images=[Image.new("RGB", (28, 28))], videos=[frames.images], return_tensors="pt"
    )
    # 28 x 28 frames: smart_resize to 56 x 56 (min_pixels 3136) -> 4 x 4 patches; 6 frames -> grid_t 3;
    # 3 * 16 / merge_size**2 = 12 video tokens
    assert enc["video_grid_thw"].tolist() == [[3, 4, 4]]
    assert enc["pixel_values_videos"].shape == (48, 1176)
    ids, types = enc["input_ids"][0], enc["mm_token_type_ids"][0]
    assert int((ids == VIDEO_TOKEN).sum()) == 12 and int((ids == IMAGE_TOKEN).sum()) == 4
    assert torch.equal(types == 2, ids == VIDEO_TOKEN) and torch.equal(types == 1, ids == IMAGE_TOKEN)
    assert getattr(processor, "video_processor", None) is None  # the shared processor is left image-only


# ---------------------------------------------------------------------------------------- rows and pre-scan


def test_llama_factory_video_forms_parse():
    conv = parse_row(_video_row(), "sharegpt", 0)
    assert [v.path for v in conv.videos] == ["clip.mp4"]
    assert conv.messages[0]["content"][0] == {"type": "video"}
    frames = parse_row(_video_row(videos=[["f/1.jpg", "f/2.jpg"]]), "sharegpt", 0)
    assert frames.videos[0].frames == ["f/1.jpg", "f/2.jpg"] and frames.videos[0].path is None
    with pytest.raises(SampleProblem) as info:
        parse_row(_video_row(prompt="What happens?"), "sharegpt", 0)
    assert info.value.kind == "video_without_placeholder" and "'videos'" in info.value.fix
    with pytest.raises(SampleProblem) as info:
        parse_row(_video_row(prompt="<video><video>Two?"), "sharegpt", 0)
    assert info.value.kind == "placeholder_without_video"


def test_the_video_demo_trains_every_sample(tmp_path, processor):
    data = video_demo_dir(tmp_path / "data")
    dataset, report = build_train_dataset(
        DataSection(train=str(data / "mllm_video_demo.json")), processor, cache_dir=tmp_path / "cache"
    )
    assert len(dataset) == len(DEMO_VIDEOS) and report.counts == {}
    assert dataset.has_image == [True] * 3  # videos count as visual for modality grouping
    grids = [dataset[i]["video_grid_thw"].tolist() for i in range(3)]
    assert grids == [[[2, 4, 4]], [[1, 4, 4]], [[2, 4, 4]]]  # 3 -> 4, 2 and 4 frames (DEMO_VIDEOS)


def test_frame_lists_train_and_a_missing_frame_is_a_missing_video(tmp_path, processor):
    for i in range(3):
        Image.new("RGB", (30, 30), (80 * i, 0, 0)).save(tmp_path / f"frame_{i}.jpg")
    rows = [
        {**_video_row(videos=[[f"frame_{i}.jpg" for i in range(3)]]), "id": "frames"},
        {**_video_row(videos=[["frame_0.jpg", "frame_9.jpg"]]), "id": "gap"},
    ]
    (tmp_path / "frames.json").write_text(json.dumps(rows))
    dataset, report = build_train_dataset(
        DataSection(train=str(tmp_path / "frames.json"), max_bad_fraction=0.5), processor, cache_dir=tmp_path
    )
    assert dataset.ids == ["frames"] and report.counts == {"missing_video": 1}
    assert dataset[0]["video_grid_thw"].tolist() == [[2, 4, 4]]  # 3 frames, taken as given, made 4


def test_the_pre_scan_counts_missing_and_escaping_videos(tmp_path, processor):
    data = video_demo_dir(tmp_path / "data")
    (data / "mllm_demo_data" / "2.avi").unlink()
    path = str(data / "mllm_video_demo.json")
    with pytest.raises(BadDataError) as info:  # 1 of 3 bad > data.max_bad_fraction 0.01
        build_train_dataset(DataSection(train=path), processor, cache_dir=tmp_path / "cache")
    assert info.value.report.counts == {"missing_video": 1} and "missing_video" in str(info.value)
    root = tmp_path / "root"
    root.mkdir()
    write_video(tmp_path / "outside.mp4", 4)
    rows = [_video_row(videos=["../outside.mp4"]), _video_row(videos=[[str(tmp_path / "outside.mp4")]])]
    (root / "escape.json").write_text(json.dumps(rows))
    with pytest.raises(BadDataError) as info:  # a video file and a frame escape data.image_root
        build_train_dataset(
            DataSection(train=str(root / "escape.json"), image_root=str(root)), processor, cache_dir=tmp_path
        )
    assert info.value.report.counts == {"video_outside_root": 2}


def test_a_video_file_without_pyav_is_one_line_naming_the_install(tmp_path, processor, monkeypatch):
    import sys

    data = video_demo_dir(tmp_path / "data")
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(DataError) as info:
        build_train_dataset(
            DataSection(train=str(data / "mllm_video_demo.json")), processor, cache_dir=tmp_path / "cache"
        )
    assert "pip install av" in str(info.value) and "\n" not in str(info.value)


def test_a_model_without_video_refuses_naming_the_families_that_take_it(tmp_path, tiny_llava):
    _, llava_processor = tiny_llava
    data = video_demo_dir(tmp_path / "data")
    path = str(data / "mllm_video_demo.json")
    with pytest.raises(DataError) as info:
        build_train_dataset(
            DataSection(train=path, on_bad_sample="error"), llava_processor, cache_dir=tmp_path / "cache"
        )
    message = str(info.value)
    assert "video_not_supported" in message and "Qwen2-VL, Qwen2.5-VL" in message and "\n" not in message
    with pytest.raises(BadDataError) as info:
        build_train_dataset(DataSection(train=path), llava_processor, cache_dir=tmp_path / "cache")
    assert info.value.report.counts == {"video_not_supported": 3}
