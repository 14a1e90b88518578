"""Every bad-sample kind: counted and never fed with on_bad_sample=skip, a DataError naming it with "error"."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from PIL import Image

from vittle_cli.data import build_train_dataset
from vittle_cli.data.render import IGNORE_INDEX
from vittle_cli.errors import DataError
from vittle_cli.recipe import DataSection

Q = "Is there a red circle in the image?"


def _conv(question=Q, answer="Yes", image=True):
    return [
        {"from": "human", "value": ("<image>\n" if image else "") + question},
        {"from": "gpt", "value": answer},
    ]


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture()
def root(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64), (250, 20, 20)).save(images / "good.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.new("RGB", (64, 64)).save(tmp_path / "outside.png")  # exists, but not under image_root
    return tmp_path


GOOD = {"id": "good-1", "image": "good.png", "conversations": _conv()}
# kind -> a sample with exactly that problem. The first group is found when the dataset is built.
CHEAP = {
    "missing_image": {"id": "bad-missing", "image": "nope.png", "conversations": _conv()},
    "image_outside_root": {"id": "bad-escape", "image": "../outside.png", "conversations": _conv()},
    "empty_conversation": {"id": "bad-empty", "conversations": [{"from": "human", "value": "hi"}]},
    "unknown_role": {"id": "bad-role", "conversations": [{"from": "robot", "value": "hi"}]},
    "image_without_placeholder": {"id": "bad-noph", "image": "good.png", "conversations": _conv(image=False)},
    "placeholder_without_image": {"id": "bad-noimg", "conversations": _conv()},
}
LAZY = {
    "corrupt_image": {"id": "bad-corrupt", "image": "broken.png", "conversations": _conv()},
    "too_long": {"id": "bad-long", "image": "good.png", "conversations": _conv(question="red " * 300)},
}


def _build(root, rows, processor, mode="skip", **kw):
    path = root / "data.json"
    path.write_text(json.dumps(rows))
    data = DataSection(
        train=str(path), image_root=str(root / "images"), on_bad_sample=mode, max_length=256, **kw
    )
    return build_train_dataset(data, processor, cache_dir=root / "cache")


def _good_item_ok(item, processor):
    labelled = processor.tokenizer.decode(item["input_ids"][item["labels"] != IGNORE_INDEX])
    return labelled == " Yes</s>" and item["pixel_values"].shape[0] == 1


def test_skip_mode_counts_every_kind_and_never_feeds_a_bad_sample(root, processor):
    absolute_outside = {"id": "bad-abs", "image": str(root / "outside.png"), "conversations": _conv()}
    rows = [GOOD, *CHEAP.values(), absolute_outside, *LAZY.values(), {**GOOD, "id": "good-2"}]
    dataset, report = _build(root, rows, processor, max_bad_fraction=1.0)
    # cheap problems never enter the dataset
    assert dataset.ids == ["good-1", "bad-corrupt", "bad-long", "good-2"]
    items = [dataset[i] for i in range(len(dataset))]
    # lazy ones are replaced by the next good sample, deterministically
    assert all(_good_item_ok(it, processor) for it in items)
    assert torch.equal(items[1]["input_ids"], items[3]["input_ids"])
    expected = {kind: 1 for kind in [*CHEAP, *LAZY]} | {"image_outside_root": 2}
    assert report.counts == expected
    assert report.examples["image_outside_root"] == ["bad-escape", "bad-abs"]
    assert report.examples["corrupt_image"] == ["bad-corrupt"]
    # a second epoch does not count them again
    _ = [dataset[i] for i in range(len(dataset))]
    assert report.counts == expected
    summary = report.summary()
    assert "11 samples, 2 used" in summary and "bad-corrupt" in summary and "missing_image" in summary


@pytest.mark.parametrize("kind", list(CHEAP))
def test_error_mode_names_cheap_problems_at_build_time(kind, root, processor):
    with pytest.raises(DataError) as info:
        _build(root, [GOOD, CHEAP[kind]], processor, mode="error")
    message = str(info.value)
    assert CHEAP[kind]["id"] in message and kind in message and "on_bad_sample=skip" in message


@pytest.mark.parametrize("kind", list(LAZY))
def test_error_mode_names_lazy_problems_when_the_sample_is_read(kind, root, processor):
    dataset, _ = _build(root, [GOOD, LAZY[kind]], processor, mode="error")
    assert _good_item_ok(dataset[0], processor)
    with pytest.raises(DataError) as info:
        dataset[1]
    assert LAZY[kind]["id"] in str(info.value) and kind in str(info.value)


def test_response_not_located_is_a_counted_problem(root, processor):
    other = copy.deepcopy(processor)
    # the generation prompt differs before the answer's turn (not just its opener): answers cannot be located
    other.chat_template = "{% if add_generation_prompt %}{{ 'Asked: ' }}{% endif %}" + processor.chat_template
    dataset, report = _build(root, [GOOD, {**GOOD, "id": "good-2"}], other)
    with pytest.raises(DataError, match="every sample is bad"):
        dataset[0]
    assert report.counts == {"response_not_located": 2}


def test_truncated_samples_are_counted_and_still_used(root, processor):
    long_turns = _conv() + [{"from": "human", "value": "red " * 300}, {"from": "gpt", "value": "No"}]
    dataset, report = _build(
        root, [GOOD, {"id": "multi", "image": "good.png", "conversations": long_turns}], processor
    )
    assert _good_item_ok(dataset[1], processor)
    assert _good_item_ok(dataset[1], processor)  # read again (a second epoch): still counted once
    assert report.counts == {"truncated": 1} and report.examples == {"truncated": ["multi"]}
    assert "2 used" in report.summary()


def test_error_mode_with_several_problems_says_how_many(root, processor):
    with pytest.raises(DataError, match=r"bad-missing.*\(2 more bad samples\)"):
        _build(
            root,
            [CHEAP["missing_image"], CHEAP["unknown_role"], CHEAP["empty_conversation"]],
            processor,
            mode="error",
        )
