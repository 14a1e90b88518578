"""Sample formats (llava, sharegpt, chat) on fixtures mirroring the published files; detection, forcing,
count mismatches that name the cause, hub ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from vittle_cli.data import build_train_dataset
from vittle_cli.data.conversation import parse_row
from vittle_cli.data.formats import detect_format
from vittle_cli.data.render import IGNORE_INDEX
from vittle_cli.data.report import SampleProblem
from vittle_cli.errors import DataError
from vittle_cli.recipe import DataSection

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "data_formats"
IMAGES = [
    "mllm_demo_data/1.jpg",
    "mllm_demo_data/2.jpg",
    "mllm_demo_data/3.jpg",
    "coco/train2017/000000033471.jpg",
    "coco/train2017/000000052846.jpg",
]


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture()
def data_dir(tmp_path):
    """The fixture files copied next to the images they name (tiny JPEGs made here)."""
    for i, rel in enumerate(IMAGES):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 40), (40 * i, 200, 30)).save(tmp_path / rel)
    for src in FIXTURES.glob("*.json"):
        shutil.copy(src, tmp_path / src.name)
    return tmp_path


def _rows(name: str) -> list[dict]:
    return json.loads((FIXTURES / name).read_text())


def _labelled(item, processor) -> str:
    return processor.tokenizer.decode(item["input_ids"][item["labels"] != IGNORE_INDEX])


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("mllm_demo.json", "sharegpt"),
        ("sharegpt_conversations.json", "sharegpt"),
        ("llava_v1_5_mix665k_sample.json", "llava"),
        ("chat_content_items.json", "chat"),
    ],
)
def test_each_published_form_is_detected(name, fmt):
    assert detect_format(_rows(name)[0], name) == fmt


def test_sharegpt_keeps_each_image_where_the_text_puts_it():
    two_turns, _, after_text = _rows("mllm_demo.json")
    conv = parse_row(two_turns, "sharegpt", 0)
    assert [[c["type"] for c in m["content"]] for m in conv.messages] == [
        ["image", "text"], ["text"], ["image", "text"], ["text"]
    ]  # fmt: skip
    assert [ref.path for ref in conv.images] == ["mllm_demo_data/1.jpg", "mllm_demo_data/2.jpg"]
    last = parse_row(after_text, "sharegpt", 2)
    assert last.messages[0]["content"] == [
        {"type": "text", "text": "Please describe this image"},
        {"type": "image"},
    ]


def test_llava_puts_the_image_first_in_its_turn_wherever_the_text_has_it():
    _, image_after, text_only = _rows("llava_v1_5_mix665k_sample.json")
    conv = parse_row(image_after, "llava", 1)
    assert conv.id == "000000052846"
    assert conv.messages[0]["content"] == [
        {"type": "image"},
        {"type": "text", "text": "Is the bus driving down the street or pulled off to the side?"},
    ]
    assert parse_row(text_only, "llava", 2).images == []


def test_mllm_demo_trains_on_every_sample_with_both_images(data_dir, processor):
    dataset, report = build_train_dataset(
        DataSection(train=str(data_dir / "mllm_demo.json")), processor, cache_dir=data_dir / "cache"
    )
    assert report.counts == {} and len(dataset) == 3
    first = dataset[0]
    assert first["pixel_values"].shape[0] == 2
    labelled = _labelled(first, processor)
    assert "Kane and Gretzka" in labelled and "celebrating on the soccer field" in labelled
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    assert int((first["input_ids"] == image_id).sum()) == 2 * 16  # 16 tokens per image in the tiny model


@pytest.mark.parametrize(
    "name", ["sharegpt_conversations.json", "llava_v1_5_mix665k_sample.json", "chat_content_items.json"]
)
def test_every_form_renders_all_its_samples(name, data_dir, processor):
    rows = _rows(name)
    dataset, report = build_train_dataset(
        DataSection(train=str(data_dir / name)), processor, cache_dir=data_dir / "cache"
    )
    assert report.counts == {} and len(dataset) == len(rows)
    for i in range(len(dataset)):
        item = dataset[i]
        n_images = item["pixel_values"].shape[0] if "pixel_values" in item else 0
        assert n_images == len(parse_row(rows[i], detect_format(rows[0], name), i).images)
        assert _labelled(item, processor).strip()


def test_a_count_mismatch_names_the_sample_the_turns_and_the_format_rule(data_dir, processor):
    rows = _rows("mllm_demo.json")
    rows[0]["images"] = rows[0]["images"][:1]  # two <image> turns, one image
    path = data_dir / "short.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError) as info:
        build_train_dataset(
            DataSection(train=str(path), on_bad_sample="error"), processor, cache_dir=data_dir
        )
    message = str(info.value)
    assert "sample '0'" in message and "placeholder_without_image" in message
    assert "1 image(s) in 'images', 2 <image> placeholder(s) (in turn 0, 2)" in message
    assert "sharegpt format: write one <image> in the user text" in message


def test_llava_image_without_placeholder_says_the_llava_rule():
    row = {
        "id": "a",
        "image": "x.jpg",
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}],
    }
    with pytest.raises(SampleProblem) as info:
        parse_row(row, "llava", 0)
    assert info.value.kind == "image_without_placeholder" and "none in any turn" in info.value.detail
    assert "LLaVA format" in info.value.fix


def test_a_literal_image_tag_in_a_response_is_text_not_a_placeholder():
    row = {
        "messages": [
            {"role": "user", "content": "Write the tag"},
            {"role": "assistant", "content": "<image>"},
        ]
    }
    conv = parse_row(row, "sharegpt", 0)
    assert conv.messages[1]["content"] == [{"type": "text", "text": "<image>"}] and conv.images == []


def test_data_format_forces_a_format_and_refuses_one_that_cannot_read_the_rows(data_dir, processor):
    path = str(data_dir / "sharegpt_conversations.json")
    # forced llava reads from/value turns but ignores `images`: every sample is then a count mismatch
    with pytest.raises(DataError, match="placeholder_without_image: .*0 image.s. in 'image'"):
        build_train_dataset(
            DataSection(train=path, format="llava", on_bad_sample="error"), processor, cache_dir=data_dir
        )
    with pytest.raises(DataError, match="data.format=llava but the rows have columns"):
        build_train_dataset(
            DataSection(train=str(data_dir / "mllm_demo.json"), format="llava"), processor, cache_dir=data_dir
        )


def test_a_hub_id_loads_through_datasets(monkeypatch, processor, tmp_path):
    import datasets

    rows = [{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}]
    calls = []

    def fake_load(name, split=None, **kwargs):
        calls.append((name, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    dataset, _ = build_train_dataset(DataSection(train="someone/chat-set"), processor, cache_dir=tmp_path)
    assert calls == [("someone/chat-set", "train")] and len(dataset) == 1


def test_a_hub_id_that_cannot_be_loaded_is_one_data_error(monkeypatch, processor, tmp_path):
    import datasets

    def offline(name, split=None, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="someone/chat-set: not a local file or folder, and loading it"):
        build_train_dataset(DataSection(train="someone/chat-set"), processor, cache_dir=tmp_path)


def test_a_sharegpt_file_that_starts_with_text_only_samples_is_still_sharegpt():
    text_only = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    rows = [text_only, *_rows("sharegpt_conversations.json")]
    assert detect_format(rows, "mixed.json") == "sharegpt"
    assert detect_format([text_only], "text.json") == "llava"  # nothing says otherwise: LLaVA's from/value
