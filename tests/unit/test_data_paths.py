"""Image path rules: inside data.image_root (as text, `..` resolved; absolute inside is fine; symlinks inside
followed), or without it relative to the data file with absolute paths allowed."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from vittle_cli.data.conversation import Conversation, ImageRef, check_image_paths
from vittle_cli.data.report import SampleProblem


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (8, 8)).save(root / "a" / "in.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere" / "out.png")
    os.symlink(tmp_path / "elsewhere", root / "linked")  # the user's own link inside the root
    return tmp_path


def _check(path: str, root, enforce: bool) -> str:
    conv = Conversation("s", [], [ImageRef(path=path)])
    check_image_paths(conv, root, enforce)
    return conv.images[0].path


@pytest.mark.parametrize(
    "written",
    ["a/in.png", "a/../a/in.png", "./a/in.png", "{root}/a/in.png", "{root}/a/../a/in.png", "linked/out.png"],
)
def test_paths_inside_the_root_are_fine(tree, written):
    root = tree / "root"
    resolved = _check(written.format(root=root), root, enforce=True)
    assert os.path.isfile(resolved) and ".." not in resolved.split(os.sep)


@pytest.mark.parametrize(
    "written", ["../elsewhere/out.png", "a/../../elsewhere/out.png", "{tmp}/elsewhere/out.png"]
)
def test_paths_that_leave_the_root_are_refused_with_the_resolved_path(tree, written):
    with pytest.raises(SampleProblem) as info:
        _check(written.format(tmp=tree), tree / "root", enforce=True)
    assert info.value.kind == "image_outside_root"
    assert (
        str(tree / "elsewhere" / "out.png") in info.value.detail and "unset data.image_root" in info.value.fix
    )


def test_the_file_system_root_as_image_root_takes_any_absolute_path(tree):
    assert _check(str(tree / "elsewhere" / "out.png"), "/", enforce=True) == str(
        tree / "elsewhere" / "out.png"
    )


def test_the_root_spelled_through_a_link_still_contains_its_real_paths(tree):
    os.symlink(tree / "root", tree / "root-link")
    assert _check(str(tree / "root" / "a" / "in.png"), tree / "root-link", enforce=True)


def test_without_image_root_relative_paths_start_at_the_data_folder_and_absolute_ones_are_allowed(tree):
    data_folder = tree / "root"
    assert _check("a/in.png", data_folder, enforce=False) == str(data_folder / "a" / "in.png")
    outside = str(tree / "elsewhere" / "out.png")
    assert _check(outside, data_folder, enforce=False) == outside
    assert _check("../elsewhere/out.png", data_folder, enforce=False) == outside


def test_a_missing_file_is_missing_not_outside(tree):
    with pytest.raises(SampleProblem) as info:
        _check("a/nope.png", tree / "root", enforce=True)
    assert info.value.kind == "missing_image"


def test_a_json_source_without_image_root_takes_absolute_paths(tree, tiny_model_dir):
    import json

    from transformers import AutoProcessor

    from vittle_cli.data import build_train_dataset
    from vittle_cli.recipe import DataSection

    rows = [{"id": "abs", "image": str(tree / "elsewhere" / "out.png"),
             "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A square."}]}]  # fmt: skip
    path = tree / "root" / "data.json"
    path.write_text(json.dumps(rows))
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    dataset, report = build_train_dataset(DataSection(train=str(path)), processor, cache_dir=tree / "cache")
    assert report.counts == {} and dataset[0]["pixel_values"].shape[0] == 1
    with pytest.raises(Exception, match="image_outside_root"):
        build_train_dataset(
            DataSection(train=str(path), image_root=str(tree / "root"), on_bad_sample="error"),
            processor,
            cache_dir=tree / "cache",
        )
