"""Hostile or broken input files give one-line errors naming the file and the fix (issue #10)."""

from __future__ import annotations

import json

import pytest
from cli_runner import run_cli

from vittle_cli.errors import DataError, ModelError, RecipeError


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err[-2000:]
    return lines[0]


def test_pope_image_paths_are_confined_to_the_image_root_but_symlinks_inside_it_work(tmp_path):
    from pope_fixtures import IMAGES, SPLITS, make_llava_layout

    from vittle_cli.data.shift.pope import load_llava_layout

    root = make_llava_layout(tmp_path / "pope")
    q, labels_dir, images = root / "llava_pope_test.jsonl", root / "coco", root / "val2014"

    def load():
        return load_llava_layout(q, labels_dir, images, list(SPLITS), check_images=False)

    secret = tmp_path / "secret.jpg"
    secret.write_bytes((images / IMAGES[0]).read_bytes())
    # a symlinked folder inside the root is the user's own file system: allowed
    elsewhere = tmp_path / "datasets"
    elsewhere.mkdir()
    (elsewhere / IMAGES[0]).write_bytes((images / IMAGES[0]).read_bytes())
    (images / "coco").symlink_to(elsewhere)
    rows = [json.loads(x) for x in q.read_text().splitlines()]
    rows[0]["image"] = f"coco/{IMAGES[0]}"
    q.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load().items[0].image == f"coco/{IMAGES[0]}"
    for bad in ("../secret.jpg", str(secret)):
        rows[0]["image"] = bad
        q.write_text("".join(json.dumps(r) + "\n" for r in rows))
        with pytest.raises(DataError, match=r"leave --image-root"):
            load()


def test_non_utf8_recipe_and_recipe_directory(tmp_path, capsys):
    from vittle_cli.recipe import load_recipe

    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("model:\n  name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=r"latin1\.yaml is not UTF-8 text"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="is a directory"):
        load_recipe(tmp_path)
    assert run_cli(["train", str(bad), "--dry-run"]) == 2
    assert "not UTF-8" in _one_line(capsys.readouterr().err)
    assert run_cli(["train", str(tmp_path), "--dry-run"]) == 2
    assert "is a directory" in _one_line(capsys.readouterr().err)


def test_non_utf8_data_file_names_the_file(tmp_path):
    from vittle_cli.fileio import read_utf8

    data = tmp_path / "train.json"
    data.write_bytes(b'[{"id": "caf\xe9"}]')
    with pytest.raises(DataError, match=r"data source .*train\.json is not UTF-8 text \(byte 12"):
        read_utf8(data, "data source")


def test_truncated_safetensors_is_named(tmp_path, tiny_model_dir, capsys):
    import shutil

    from vittle_cli.model.safe_load import check_safetensors

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    check_safetensors(model / "model.safetensors")  # a complete file passes
    size = (model / "model.safetensors").stat().st_size
    with open(model / "model.safetensors", "r+b") as f:
        f.truncate(size - 100)  # header intact, the last tensor cut short
    with pytest.raises(ModelError, match=r"model\.safetensors is truncated"):
        check_safetensors(model / "model.safetensors")
    assert run_cli(["inspect", "model", str(model)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "model.safetensors is truncated" in line


def test_eval_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("mine")
    code = run_cli(["eval", "--model", "builtin:tiny-llava", "--suite", "shapes", "--out", str(out)])
    assert code == 2
    assert "is a file" in _one_line(capsys.readouterr().err)
    assert out.read_text() == "mine"


@pytest.mark.parametrize(
    "error, expected",
    [
        ("pickle", "refused to unpickle a checkpoint file: it holds more than weights"),
        ("disk", "disk full while writing /runs/r/optimizer.pt"),
    ],
)
def test_refused_pickle_and_full_disk_are_one_line_without_colour_codes(capsys, monkeypatch, error, expected):
    import errno
    import pickle

    import vittle_cli.cli as cli

    def fail(**kwargs):
        if error == "pickle":  # the shape of torch's weights-only refusal, colour codes included
            raise pickle.UnpicklingError(
                "Weights only load failed.\n\x1b[1mWeightsUnpickler error: Unsupported global: GLOBAL "
                "posix.system was not an allowed global by default.\x1b[0m\nCheck the documentation"
            )
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/r/optimizer.pt")

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "x.yaml"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    line = _one_line(err)
    assert expected in line and "\x1b" not in err
    if error == "pickle":
        assert "posix.system" in line


def test_an_image_over_the_pixel_limit_is_skipped_with_its_reason_before_decoding(tmp_path, tiny_model_dir):
    from PIL import Image
    from transformers import AutoProcessor

    from vittle_cli.data import build_train_dataset
    from vittle_cli.recipe import DataSection

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (64, 64), (250, 20, 20)).save(images / "good.png")
    Image.new("1", (8000, 8000)).save(images / "bomb.png")  # 64 megapixels in a few KB
    conv = [{"from": "human", "value": "<image>\nIs there a red circle?"}, {"from": "gpt", "value": "Yes"}]
    rows = [{"id": "good", "image": "good.png", "conversations": conv},
            {"id": "bomb", "image": "bomb.png", "conversations": conv}]  # fmt: skip
    (tmp_path / "data.json").write_text(json.dumps(rows))
    section = DataSection(train=str(tmp_path / "data.json"), image_root=str(images), max_length=256)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    dataset, report = build_train_dataset(section, processor, cache_dir=tmp_path / "cache")
    dataset[1]  # the next good sample stands in
    assert report.counts == {"image_too_large": 1}
    line = report.line("image_too_large")
    assert "bomb" in line and "downscale" in line
