"""POPE in its three real layouts: detection, the join rules, the single instruction, the errors."""

from __future__ import annotations

import json

import pytest
from pope_fixtures import (
    IMAGES,
    SPLITS,
    SUFFIX,
    hf_rows,
    label_rows,
    make_hf_layout,
    make_llava_layout,
    make_pope_repo_layout,
)

from vittle_cli.data.shift import load_suite, suite_questions
from vittle_cli.data.shift.pope import join_labels, load_llava_layout, normalise_text
from vittle_cli.data.shift.pope_layout import detect_layout, load_pope_files
from vittle_cli.data.shift.suite import PopeFiles
from vittle_cli.errors import DataError, UsageError

ALL = list(SPLITS)


def _load(**files):
    return load_pope_files(PopeFiles(**files), ALL, instruction=SUFFIX)


def _labels_by_text(data):
    return {(it.split, normalise_text(it.text)): it.label for it in data.items}


def _expected():
    return {(s, normalise_text(r["text"])): r["label"] for s in SPLITS for r in label_rows(s)}


def test_llava_layout_joins_every_question_and_records_the_rule(tmp_path):
    root = make_llava_layout(tmp_path / "pope")
    data = _load(root=str(root))
    assert data.report.layout == "llava" and len(data.items) == 18
    assert _labels_by_text(data) == _expected()
    rules = {s: v["joined_by"] for s, v in data.report.splits.items()}
    # adversarial ids agree with the label files (the typo is forgiven); the others are numbered 1e7+
    assert rules == {"adversarial": "question_id", "random": "image+text", "popular": "image+text"}
    assert data.report.to_json()["instruction_in_file"] == SUFFIX
    assert all(not it.text.endswith(SUFFIX) for it in data.items)
    assert {it.question_id for it in data.items if it.split == "random"} == {
        str(10000001 + k) for k in range(6)
    }


def test_the_instruction_appears_once_and_text_shifts_never_touch_it(tmp_path):
    root = make_llava_layout(tmp_path / "pope")
    suite = load_suite("pope-shift").with_data({"pope_root": str(root)})
    for variant in ("clean", "char_insert@3", "punctuation@3"):
        qs = suite_questions(suite, variant, cache_dir=tmp_path / "c")
        assert all(q.text.count(SUFFIX) == 1 and q.text.endswith(SUFFIX) for q in qs), variant
    typo = [q for q in suite_questions(suite, "clean", cache_dir=tmp_path / "c") if "imange" in q.text]
    assert [q.text for q in typo] == [
        "Is there an umbrella in the imange?" + SUFFIX
    ]  # the file's own wording


def test_position_rule_when_ids_and_texts_disagree_but_images_align(tmp_path):
    questions = [
        {
            "question_id": 100 + k,
            "image": r["image"],
            "text": r["text"].replace("Is there", "Is there really") + SUFFIX,
        }
        for k, r in enumerate(label_rows("random"))
    ]
    joined, rule = join_labels(questions, label_rows("random"), SUFFIX)
    assert rule == "position" and joined == {
        str(100 + k): r["label"] for k, r in enumerate(label_rows("random"))
    }


def test_questions_no_rule_can_label_are_an_error_naming_them(tmp_path):
    root = make_llava_layout(tmp_path / "pope")
    path = root / "coco" / "coco_pope_random.json"
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join(lines[:2] + lines[3:]) + "\n"
    )  # an old short label file: 5 rows for 6 questions
    with pytest.raises(DataError, match=r"1 of 6 questions of split 'random'.*question_id 10000003") as e:
        _load(root=str(root))
    assert "\n" not in str(e.value)


def test_pope_repository_layout_reads_questions_from_the_label_files(tmp_path):
    pope, images = make_pope_repo_layout(tmp_path)
    for root in (pope, pope / "output" / "coco"):
        data = _load(root=str(root), image_root=str(images))
        assert data.report.layout == "pope" and _labels_by_text(data) == _expected()
        assert [it.question_id for it in data.items if it.split == "popular"] == [str(k) for k in range(1, 7)]
    with pytest.raises(DataError, match="--image-root"):
        _load(root=str(pope))


@pytest.mark.parametrize("form", ["file", "folder", "save_to_disk"])
def test_hf_layout_from_parquet_and_saved_datasets(tmp_path, form):
    root = make_hf_layout(tmp_path / "hf")
    if form == "file":
        source = root / "data" / "test-00000-of-00003.parquet"
    elif form == "folder":
        source = root
    else:
        import datasets

        source = tmp_path / "saved"
        features = datasets.Features(
            {
                k: datasets.Value("string")
                for k in ("question_id", "question", "answer", "image_source", "category")
            }
            | {"image": datasets.Image()}
        )
        datasets.Dataset.from_list(hf_rows(), features=features).save_to_disk(str(source))
    data = _load(root=str(source))
    assert data.report.layout == "hf"
    n = 6 if form == "file" else 18
    assert len(data.items) == n and data.report.to_json()["instruction_in_file"] is None
    expected = _expected()
    assert all(expected[(it.split, normalise_text(it.text))] == it.label for it in data.items)
    first = data.items[0]
    assert first.images == (IMAGES[0].removesuffix(".jpg"),)
    assert data.images.open(first.image).size == (48, 40)


def test_hub_id_goes_through_datasets_and_fails_in_one_line_offline(tmp_path, monkeypatch):
    import datasets

    calls = []

    def offline(name, split=None, **kw):
        calls.append((name, split))
        raise ConnectionError("Couldn't reach 'lmms-lab/POPE' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.chdir(tmp_path)
    assert detect_layout(PopeFiles(root="lmms-lab/POPE")) == "hf"
    with pytest.raises(DataError, match=r"cannot load lmms-lab/POPE .*--pope-root DIR") as e:
        _load(root="lmms-lab/POPE")
    assert calls == [("lmms-lab/POPE", "test")] and "\n" not in str(e.value)


def test_no_data_says_where_each_layout_comes_from(tmp_path):
    suite = load_suite("pope")
    with pytest.raises(UsageError) as e:
        suite_questions(suite, "clean")
    msg = str(e.value)
    for needle in ("--pope-root", "llava_pope_test.jsonl", "RUCAIBox/POPE", "lmms-lab/POPE", "--questions"):
        assert needle in msg
    with pytest.raises(DataError, match="holds no POPE layout"):
        _load(root=str(tmp_path))
    (tmp_path / "pope").mkdir()
    with pytest.raises(DataError, match="does not exist"):  # a mistyped path, not a hub id
        detect_layout(PopeFiles(root=str(tmp_path / "pope" / "llava")))


def test_a_binary_file_where_text_is_expected_is_a_data_error(tmp_path):
    root = make_llava_layout(tmp_path / "pope")
    parquet = make_hf_layout(tmp_path / "hf") / "data" / "test-00000-of-00003.parquet"
    with pytest.raises(DataError, match="is a binary file, not JSON lines"):
        _load(questions=str(parquet), labels_dir=str(root / "coco"), image_root=str(root / "val2014"))


def test_duplicate_ids_missing_images_and_bad_rows_are_named(tmp_path):
    root = make_llava_layout(tmp_path / "pope")
    q = root / "llava_pope_test.jsonl"
    rows = q.read_text().splitlines()
    q.write_text("\n".join(rows + [rows[0]]) + "\n")
    with pytest.raises(DataError, match="repeats question_id 1"):
        _load(root=str(root))
    q.write_text("\n".join(rows) + "\n{not json\n")
    with pytest.raises(DataError, match="line 19 is not valid JSON"):
        _load(root=str(root))
    q.write_text("\n".join(rows) + "\n")
    (root / "val2014" / IMAGES[2]).unlink()
    with pytest.raises(DataError, match=rf"1 POPE images missing .*{IMAGES[2]}.*--image-root"):
        _load(root=str(root))
    (root / "coco" / "coco_pope_random.json").write_text(
        json.dumps({"question_id": 1, "label": "maybe"}) + "\n"
    )
    with pytest.raises(DataError, match="label 'maybe'"):
        load_llava_layout(q, root / "coco", root / "val2014", ["random"], check_images=False)


def test_other_categories_are_skipped_with_a_warning(tmp_path):
    root = make_llava_layout(tmp_path / "pope")
    data = load_pope_files(PopeFiles(root=str(root)), ["random"], instruction=SUFFIX)
    assert {it.split for it in data.items} == {"random"}
    assert any("category 'popular' skipped" in w for w in data.report.warnings)
