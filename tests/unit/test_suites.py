"""Suites: every shipped YAML validates; schema errors are clear; suite_questions materialises variants."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from vittle_cli.data.shift import load_suite, load_suite_data, shipped_suites, suite_questions
from vittle_cli.data.shift.suite import Suite, suites_dir
from vittle_cli.errors import UsageError

SUFFIX = "\nAnswer the question using a single word or phrase."


@pytest.mark.parametrize("path", sorted(suites_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suite_validates(path):
    suite = load_suite(path)
    assert suite.name == path.stem
    assert path.read_text().startswith("# vittle eval --suite " + path.stem)  # first line: how to run it
    assert suite.prompt_suffix == (
        "" if suite.is_openended else SUFFIX
    )  # LLaVA asks open questions as they are


def test_shift_suites_have_27_shifts_and_the_same_variants():
    pope, shapes = load_suite("pope-shift"), load_suite("shapes-shift")
    for s in (pope, shapes):
        groups = [v.group for v in s.variants]
        assert [groups.count(g) for g in ("clean", "visual", "text", "joint")] == [1, 9, 9, 9]
    assert pope.variants == shapes.variants
    joint = [v for v in pope.variants if v.group == "joint"]
    assert {v.visual for v in joint} == {v.visual for v in pope.variants if v.group == "visual"}
    assert {v.text for v in joint} == {v.text for v in pope.variants if v.group == "text"}
    assert set(shipped_suites()) >= {"pope", "pope-shift", "shapes", "shapes-shift"}


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_schema_errors_are_reported_together(tmp_path):
    doc = {
        "name": "x",
        "data": "builtin:shapes",
        "colour": "red",
        "variants": [
            {"group": "visual", "text": {"name": "keyboard"}},
            {"group": "visual", "visual": {"name": "gausian_noise", "severity": 7}},
        ],
    }
    with pytest.raises(UsageError) as e:
        load_suite(_write(tmp_path, doc))
    msg = str(e.value)
    assert "colour: unknown key" in msg
    assert "a 'visual' variant needs visual only" in msg
    assert "unknown visual perturbation 'gausian_noise'" in msg
    assert "severity" in msg
    assert "problem(s)" in msg


def test_duplicate_variants_and_two_cleans_are_rejected(tmp_path):
    v = {"group": "text", "text": {"name": "keyboard", "rate": 2}}
    with pytest.raises(UsageError, match="duplicate variant name.*keyboard@2"):
        load_suite(_write(tmp_path, {"name": "x", "data": "builtin:shapes", "variants": [v, v]}))
    cleans = [{"group": "clean"}, {"name": "clean2", "group": "clean"}]
    with pytest.raises(UsageError, match="at most one clean"):
        load_suite(_write(tmp_path, {"name": "x", "data": "builtin:shapes", "variants": cleans}))


def test_unknown_suite_lists_the_shipped_ones():
    with pytest.raises(UsageError, match="unknown suite 'popee'.*pope-shift"):
        load_suite("popee")


def test_pope_placeholders_must_be_filled():
    suite = load_suite("pope")
    assert suite.placeholders() == ["pope_root"]
    with pytest.raises(UsageError, match="--pope-root"):
        load_suite_data(suite)
    filled = suite.with_data({"pope_root": "/data/pope"})
    assert filled.placeholders() == []
    assert filled.data.pope.root == "/data/pope"
    explicit = suite.with_data(None, questions="/q.jsonl", labels_dir="/l", image_root="/i")
    assert (explicit.data.pope.questions, explicit.data.pope.image_root) == ("/q.jsonl", "/i")


@pytest.fixture(scope="module")
def shapes_suite() -> Suite:
    return load_suite("shapes-shift")


def test_suite_questions_perturb_only_the_question(shapes_suite, tmp_path):
    data = load_suite_data(shapes_suite)
    clean = suite_questions(shapes_suite, "clean", limit_per_split=4, data=data, cache_dir=tmp_path)
    text = suite_questions(shapes_suite, "keyboard@3", limit_per_split=4, data=data, cache_dir=tmp_path)
    assert len(clean) == 12 and {q.split for q in clean} == {"adversarial", "popular", "random"}
    assert [q.question_id for q in clean] == [q.question_id for q in text]
    assert all(q.text.endswith(SUFFIX) for q in clean + text)
    assert sum(c.text != t.text for c, t in zip(clean, text, strict=True)) >= 6
    assert all(c.label == t.label and c.label in ("yes", "no") for c, t in zip(clean, text, strict=True))
    assert all(c.image.tobytes() == t.image.tobytes() for c, t in zip(clean, text, strict=True))


def test_questions_on_one_image_share_one_perturbed_image(shapes_suite, tmp_path):
    qs = suite_questions(shapes_suite, "snow@3", limit_per_split=6, cache_dir=tmp_path)
    by_key: dict[str, set[int]] = {}
    for q in qs:
        by_key.setdefault(q.image_key, set()).add(id(q.image))
    assert any(len([q for q in qs if q.image_key == k]) > 1 for k in by_key)
    assert all(len(ids) == 1 for ids in by_key.values())


def test_joint_is_its_visual_image_plus_its_text_question(shapes_suite, tmp_path):
    args = {"limit_per_split": 3, "cache_dir": tmp_path}
    joint = suite_questions(shapes_suite, "snow@3+char_delete@3", **args)
    visual = suite_questions(shapes_suite, "snow@3", **args)
    text = suite_questions(shapes_suite, "char_delete@3", **args)
    clean = suite_questions(shapes_suite, "clean", **args)
    for j, v, t, c in zip(joint, visual, text, clean, strict=True):
        assert j.image.tobytes() == v.image.tobytes() != c.image.tobytes()
        assert j.text == t.text


def test_perturbed_images_are_cached_and_reused(shapes_suite, tmp_path):
    first = suite_questions(shapes_suite, "fog@3", limit_per_split=2, cache_dir=tmp_path)
    pngs = sorted(tmp_path.rglob("*.png"))
    assert len(pngs) == len({q.image_key for q in first}) > 0
    again = suite_questions(shapes_suite, "fog@3", limit_per_split=2, cache_dir=tmp_path)
    assert sorted(tmp_path.rglob("*.png")) == pngs
    assert [q.image.tobytes() for q in again] == [q.image.tobytes() for q in first]
    for png in pngs:  # prove the PNGs are read back, not recomputed
        Image.new("RGB", first[0].image.size, (0, 0, 0)).save(png)
    black = suite_questions(shapes_suite, "fog@3", limit_per_split=2, cache_dir=tmp_path)
    assert all(q.image.getextrema() == ((0, 0), (0, 0), (0, 0)) for q in black)
