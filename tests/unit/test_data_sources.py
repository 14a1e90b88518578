"""Data sources: LLaVA JSON/JSONL, messages+images (JSON, parquet, save_to_disk), builtin:shapes, ids, limit."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vittle_cli.data import build_train_dataset
from vittle_cli.data.render import IGNORE_INDEX
from vittle_cli.recipe import DataSection

QUESTION = "Is there a red circle in the image?\nAnswer the question using a single word or phrase."


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture()
def image_dir(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 64), (250, 20, 20)).save(root / "sub" / "red.png")
    Image.new("RGB", (64, 64), (20, 20, 250)).save(root / "blue.png")
    return root


LLAVA_ROWS = [
    {
        "id": "000123",
        "image": "sub/red.png",
        "conversations": [
            {"from": "human", "value": "<image>\n" + QUESTION},
            {"from": "gpt", "value": "Yes"},
            {"from": "human", "value": "How many shapes are there?"},
            {"from": "gpt", "value": "1"},
        ],
    },
    {
        "id": 7,
        "conversations": [{"from": "human", "value": "Is red a colour?"}, {"from": "gpt", "value": "Yes"}],
    },
    {
        "id": "x",
        "image": "blue.png",
        "conversations": [{"from": "human", "value": QUESTION + "\n<image>"}, {"from": "gpt", "value": "No"}],
    },
]


def _as_messages(row: dict, image_root=None) -> dict:
    """The same sample in the HF "messages + images" form; with image_root, as Arrow needs it (PIL images,
    list contents only), else as JSON may have it (paths, plain-string contents)."""
    msgs = []
    for turn in row["conversations"]:
        text = turn["value"]
        if turn["from"] == "human":
            n = text.count("<image>")
            content = [{"type": "image"}] * n + [
                {"type": "text", "text": text.replace("<image>", "").strip()}
            ]
            msgs.append({"role": "user", "content": content})
        else:
            content = text if image_root is None else [{"type": "text", "text": text}]
            msgs.append({"role": "assistant", "content": content})
    images = [row["image"]] if "image" in row else []
    if image_root is not None:
        images = [Image.open(image_root / p).convert("RGB") for p in images]
    return {"id": str(row["id"]), "messages": msgs, "images": images}


def _items(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def _assert_same_items(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), key


def _data(train, **kw) -> DataSection:
    return DataSection(train=str(train), **kw)


@pytest.fixture()
def llava_items(processor, image_dir, tmp_path):
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(LLAVA_ROWS))
    dataset, report = build_train_dataset(
        _data(path, image_root=str(image_dir)), processor, cache_dir=tmp_path
    )
    assert report.counts == {} and report.total == 3
    return dataset, _items(dataset)


def test_llava_json_ids_are_strings_and_samples_render(llava_items, processor):
    dataset, items = llava_items
    assert dataset.ids == ["000123", "7", "x"]
    assert dataset.has_image == [True, False, True]
    assert "pixel_values" not in items[1] and items[0]["pixel_values"].shape[0] == 1
    labelled = [processor.tokenizer.decode(it["input_ids"][it["labels"] != IGNORE_INDEX]) for it in items]
    assert labelled == [" Yes</s> 1</s>", " Yes</s>", " No</s>"]


def test_jsonl_gives_the_same_tokens(llava_items, processor, image_dir, tmp_path):
    path = tmp_path / "llava.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in LLAVA_ROWS))
    dataset, _ = build_train_dataset(_data(path, image_root=str(image_dir)), processor, cache_dir=tmp_path)
    _assert_same_items(_items(dataset), llava_items[1])


def test_messages_json_gives_the_same_tokens(llava_items, processor, image_dir, tmp_path):
    path = tmp_path / "messages.json"
    path.write_text(json.dumps([_as_messages(r) for r in LLAVA_ROWS]))
    dataset, _ = build_train_dataset(_data(path, image_root=str(image_dir)), processor, cache_dir=tmp_path)
    assert dataset.ids == ["000123", "7", "x"]
    _assert_same_items(_items(dataset), llava_items[1])


@pytest.mark.parametrize("kind", ["save_to_disk", "parquet"])
def test_hf_dataset_with_embedded_images_gives_the_same_tokens(
    kind, llava_items, processor, image_dir, tmp_path
):
    from datasets import Dataset

    rows = [_as_messages(r, image_root=image_dir) for r in LLAVA_ROWS]
    ds = Dataset.from_list(rows)
    if kind == "save_to_disk":
        target = tmp_path / "hf"
        ds.save_to_disk(str(target))
    else:
        target = tmp_path / "data.parquet"
        ds.to_parquet(str(target))
    dataset, report = build_train_dataset(_data(target), processor, cache_dir=tmp_path / "cache")
    assert report.counts == {}
    _assert_same_items(_items(dataset), llava_items[1])


def test_building_twice_is_deterministic(llava_items, processor, image_dir, tmp_path):
    path = tmp_path / "llava.json"  # written by the llava_items fixture
    again, _ = build_train_dataset(_data(path, image_root=str(image_dir)), processor, cache_dir=tmp_path)
    _assert_same_items(_items(again), llava_items[1])
    assert again.lengths == llava_items[0].lengths


def test_limit_keeps_the_first_samples(processor, image_dir, tmp_path):
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(LLAVA_ROWS))
    data = _data(path, image_root=str(image_dir), limit=2)
    dataset, report = build_train_dataset(data, processor, cache_dir=tmp_path)
    assert dataset.ids == ["000123", "7"] and report.total == 2


def test_image_root_defaults_to_the_json_folder(processor, image_dir):
    path = image_dir / "data.json"
    path.write_text(json.dumps(LLAVA_ROWS))
    dataset, report = build_train_dataset(_data(path), processor, cache_dir=image_dir.parent)
    assert report.counts == {} and len(dataset) == 3


def test_builtin_shapes_trains_from_the_recipe_defaults(processor, tmp_path):
    dataset, report = build_train_dataset(DataSection(), processor, seed=42, cache_dir=tmp_path)
    assert len(dataset) == 3000 and report.counts == {}
    assert 0 < dataset.has_image.count(False) < 0.06 * len(dataset)
    actual = [len(dataset[i]["input_ids"]) for i in range(40)]
    assert all(abs(est - n) <= 0.25 * n for est, n in zip(dataset.lengths[:40], actual, strict=True))


def test_unknown_file_type_and_missing_source_are_data_errors(processor, tmp_path):
    from vittle_cli.errors import DataError

    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type"):
        build_train_dataset(_data(tmp_path / "x.csv"), processor, cache_dir=tmp_path)
    with pytest.raises(DataError, match="no such file"):
        build_train_dataset(_data(tmp_path / "nope.json"), processor, cache_dir=tmp_path)
    (tmp_path / "cols.json").write_text(json.dumps([{"question": "hi"}]))
    with pytest.raises(DataError, match="conversations"):
        build_train_dataset(_data(tmp_path / "cols.json"), processor, cache_dir=tmp_path)


def test_json_is_parsed_once_per_version_of_the_file(processor, image_dir, tmp_path, monkeypatch):
    import vittle_cli.data.sources as sources

    path = tmp_path / "llava.json"
    path.write_text(json.dumps(LLAVA_ROWS))
    data = _data(path, image_root=str(image_dir))
    first, _ = build_train_dataset(data, processor, cache_dir=tmp_path / "c")
    real = sources._json_to_arrow
    monkeypatch.setattr(
        sources, "_json_to_arrow", lambda p, fmt=None: pytest.fail("parsed a cached JSON again")
    )
    again, _ = build_train_dataset(data, processor, cache_dir=tmp_path / "c")
    assert again.ids == first.ids
    path.write_text(json.dumps(LLAVA_ROWS[:2]))  # a changed file is parsed again
    calls = []
    monkeypatch.setattr(sources, "_json_to_arrow", lambda p, fmt=None: calls.append(p) or real(p, fmt))
    changed, _ = build_train_dataset(data, processor, cache_dir=tmp_path / "c")
    assert changed.ids == ["000123", "7"] and calls == [path]


def test_missing_or_null_ids_become_the_row_index(processor, tmp_path):
    text_only = {
        "conversations": [{"from": "human", "value": "Is red a colour?"}, {"from": "gpt", "value": "Yes"}]
    }
    path = tmp_path / "ids.json"
    path.write_text(json.dumps([{**text_only, "id": None}, text_only, {**text_only, "id": 0}]))
    dataset, _ = build_train_dataset(_data(path), processor, cache_dir=tmp_path)
    assert dataset.ids == ["0", "1", "0"]
