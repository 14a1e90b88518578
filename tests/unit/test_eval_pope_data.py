"""POPE loading: validation up front, joins by question_id (or image + text), never by position."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vittle_cli.data.shift.pope import load_pope
from vittle_cli.errors import DataError

SPLITS = ["adversarial", "popular", "random"]
OBJECTS = ["dog", "cat", "car", "bus", "cup", "tie"]


def make_pope(root: Path, *, per_split: int = 6, label_ids: str = "same") -> tuple[Path, Path, Path]:
    """Write a small POPE set: questions numbered globally; labels numbered 'same' (as the questions)
    or 'per_split' (1..N in each split, as in the POPE repository)."""
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (40, 40), (i * 80, 0, 0)).save(images / f"img{i}.jpg")
    labels_dir = root / "labels"
    labels_dir.mkdir()
    questions, qid = [], 1
    for split in SPLITS:
        labels = []
        for k in range(per_split):
            row = {"image": f"img{k % 3}.jpg", "text": f"Is there a {OBJECTS[k]} in the image?"}
            questions.append({"question_id": qid, **row, "category": split})
            lid = qid if label_ids == "same" else k + 1
            labels.append({"question_id": lid, **row, "label": "yes" if (k + len(split)) % 2 else "no"})
            qid += 1
        (labels_dir / f"coco_pope_{split}.json").write_text("".join(json.dumps(r) + "\n" for r in labels))
    qfile = root / "questions.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return qfile, labels_dir, images


def expected_label(split: str, k: int) -> str:
    return "yes" if (k + len(split)) % 2 else "no"


def _check_labels(items):
    for it in items:
        k = OBJECTS.index(it.text.split()[3])
        assert it.label is None or it.label == expected_label(it.split, k), it


def test_loads_and_joins_by_question_id(tmp_path):
    data = load_pope(*make_pope(tmp_path), SPLITS)
    assert len(data.items) == 18
    assert all(it.label is not None for it in data.items)
    _check_labels(data.items)
    assert {s["joined_by"] for s in data.report.splits.values()} == {"question_id"}
    assert data.report.warnings == []


def test_per_split_label_ids_are_joined_by_image_and_text(tmp_path):
    data = load_pope(*make_pope(tmp_path, label_ids="per_split"), SPLITS)
    assert all(it.label is not None for it in data.items)
    _check_labels(data.items)
    assert data.report.splits["popular"]["joined_by"] == "image+text"


@pytest.mark.parametrize("label_ids", ["same", "per_split"])
def test_short_label_file_is_reported_not_misaligned(tmp_path, label_ids):
    q, labels_dir, images = make_pope(tmp_path, label_ids=label_ids)
    path = labels_dir / "coco_pope_random.json"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + lines[3:]) + "\n")  # drop the third label row
    data = load_pope(q, labels_dir, images, SPLITS)
    rand = [it for it in data.items if it.split == "random"]
    assert [it.label is None for it in rand] == [False, False, True, False, False, False]
    _check_labels(data.items)  # every remaining label still belongs to its own question
    assert data.report.splits["random"]["unlabelled"] == 1
    assert any("random: 1 of 6 questions have no label" in w for w in data.report.warnings)


def test_duplicate_question_ids_are_an_error(tmp_path):
    q, labels_dir, images = make_pope(tmp_path)
    rows = q.read_text().splitlines()
    q.write_text("\n".join(rows + [rows[0]]) + "\n")
    with pytest.raises(DataError, match="repeats question_id 1"):
        load_pope(q, labels_dir, images, SPLITS)


def test_missing_images_are_named(tmp_path):
    q, labels_dir, images = make_pope(tmp_path)
    (images / "img2.jpg").unlink()
    with pytest.raises(DataError, match=r"1 POPE images missing .*img2\.jpg.*--image-root"):
        load_pope(q, labels_dir, images, SPLITS)


def test_missing_files_name_the_option(tmp_path):
    q, labels_dir, images = make_pope(tmp_path)
    with pytest.raises(DataError, match="--questions"):
        load_pope(tmp_path / "nope.jsonl", labels_dir, images, SPLITS)
    (labels_dir / "coco_pope_popular.json").unlink()
    with pytest.raises(DataError, match="coco_pope_popular.json"):
        load_pope(q, labels_dir, images, SPLITS)
    with pytest.raises(DataError, match="--image-root"):
        load_pope(q, labels_dir, tmp_path / "no-images", SPLITS)


def test_malformed_rows_are_errors_with_line_numbers(tmp_path):
    q, labels_dir, images = make_pope(tmp_path)
    q.write_text(q.read_text() + "{not json\n")
    with pytest.raises(DataError, match="line 19 is not valid JSON"):
        load_pope(q, labels_dir, images, SPLITS)
    q, labels_dir, images = make_pope(tmp_path / "b")
    (labels_dir / "coco_pope_random.json").write_text(
        json.dumps({"question_id": 13, "label": "maybe"}) + "\n"
    )
    with pytest.raises(DataError, match="label 'maybe'"):
        load_pope(q, labels_dir, images, SPLITS)


def test_other_categories_are_skipped_with_a_warning(tmp_path):
    data = load_pope(*make_pope(tmp_path), ["random"])
    assert {it.split for it in data.items} == {"random"}
    assert any("category 'popular' skipped" in w for w in data.report.warnings)
