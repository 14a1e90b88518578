"""Video training end to end on the Qwen families' published files (tests/fixtures/models) and LLaMA-Factory's
video demo (tests/fixtures/data_formats/mllm_video_demo.json, its videos written with PyAV): the bottleneck's
visual mask is exactly the image and video tokens, `vittle train` runs 2 steps on the demo, and a model
without video refuses it naming the families that take video."""

from __future__ import annotations

import json
import math

import pytest
import torch
from cli_runner import run_cli
from PIL import Image
from video_fixtures import family_fixtures, video_demo_dir

from vittle_cli.data.render import render_conversation
from vittle_cli.data.video import prepare_frames
from vittle_cli.model import families

pytest.importorskip("av")
IMAGE_TOKEN, VIDEO_TOKEN = 151655, 151656  # the published Qwen2-VL / Qwen2.5-VL ids


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def qwen_dir(request, tmp_path_factory):
    return family_fixtures.build(request.param, tmp_path_factory.mktemp(request.param) / "model")


def test_visual_mask_is_exactly_the_image_and_video_tokens(qwen_dir):
    from transformers import AutoModelForImageTextToText

    from vittle_cli.model.attach import attach_bottleneck, get_bottleneck
    from vittle_cli.model.bottleneck import VittleConfig

    processor = families.load_processor(str(qwen_dir))
    model = AutoModelForImageTextToText.from_pretrained(qwen_dir, dtype=torch.float32).train()
    attach_bottleneck(model, VittleConfig(prior="F", layer_v=1, layer_t=2))
    question = [{"type": "video"}, {"type": "image"}, {"type": "text", "text": "And this picture?"}]
    messages = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": [{"type": "text", "text": "Both show a red square."}]},
    ]
    frames = prepare_frames([Image.new("RGB", (40, 40), (30 * i, 0, 0)) for i in range(4)], 2.0, 256 * 256)
    tensors = render_conversation(processor, messages, [Image.new("RGB", (64, 64))], 4096, [frames]).tensors
    batch, out = family_fixtures.forward_rendered(model, tensors)
    assert math.isfinite(float(out.loss))
    ids = batch["input_ids"]
    mask = get_bottleneck(model).last_visual_mask
    # 40 px frames -> 56 x 56 -> 4 x 4 patches, 4 frames -> grid_t 2: 2 * 16 / 4 = 8 video tokens
    assert int((ids == VIDEO_TOKEN).sum()) == 8 and int((ids == IMAGE_TOKEN).sum()) == 4
    assert torch.equal(mask, (ids == VIDEO_TOKEN) | (ids == IMAGE_TOKEN))


def _train_args(model: str, data: str, out) -> list[str]:
    return [
        "train",
        "recipes/tiny.yaml",
        f"model.name={model}",
        "model.train_vision_tower=false",
        "train.lora.enabled=true",
        "train.max_steps=2",
        "train.per_device_batch_size=2",
        "train.logging_steps=1",
        f"data.train={data}",
        "data.max_length=2048",
        f"output.dir={out}",
        "output.run_name=run",
        "output.report_to=[]",
    ]


@pytest.mark.slow
def test_two_steps_on_llama_factorys_video_demo(tmp_path, tmp_path_factory):
    folder = family_fixtures.build("qwen2_vl", tmp_path_factory.mktemp("qwen2_vl") / "model")
    data = video_demo_dir(tmp_path / "data") / "mllm_video_demo.json"
    code = run_cli(
        [*_train_args(str(folder), str(data), tmp_path), "bottleneck.layer_v=1", "bottleneck.layer_t=2"]
    )
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in rows if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(r["loss"]) for r in losses)
    assert all(r["kl_v"] > 0 for r in losses), "the visual bottleneck saw no video tokens"


def test_a_model_without_video_refuses_the_demo_naming_the_families(tmp_path, capsys):
    data = video_demo_dir(tmp_path / "data") / "mllm_video_demo.json"
    code = run_cli([*_train_args("builtin:tiny-llava", str(data), tmp_path), "data.on_bad_sample=error"])
    err = " ".join(capsys.readouterr().err.split())  # the console may wrap the line
    assert code == 2 and "video_not_supported" in err and "Qwen2-VL, Qwen2.5-VL" in err
    assert not (tmp_path / "run" / "final").exists()
