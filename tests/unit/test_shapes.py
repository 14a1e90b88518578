"""builtin:shapes: determinism, POPE balance, ground-truth consistency and negative-sampling statistics."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from vittle_cli.data.shapes import build_shapes, resolve_builtin_data
from vittle_cli.data.shapes_questions import SHORT_ANSWER, SPLITS
from vittle_cli.errors import DataError

SMALL = {"train_images": 60, "train_conversations": 120, "eval_images": 10}


def _tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def shapes():
    return resolve_builtin_data("builtin:shapes", seed=0)


@pytest.fixture(scope="module")
def meta(shapes):
    raw = json.loads(shapes.objects_json.read_text())
    return {img: {f"{o['colour']} {o['shape']}" for o in m["objects"]} for img, m in raw.items()}


@pytest.fixture(scope="module")
def train_stats(meta):
    """Object frequency and co-occurrence over the training images, recomputed from the metadata."""
    freq, cooc = Counter(), Counter()
    for img, objs in meta.items():
        if img.startswith("train/"):
            freq.update(objs)
            cooc.update((a, b) for a in objs for b in objs if a != b)
    return freq, cooc


def _object(text: str) -> str:
    assert text.startswith("Is there a ") and text.endswith(" in the image?"), text
    return text[len("Is there a ") : -len(" in the image?")]


def test_build_is_deterministic_and_seed_dependent(tmp_path):
    a = build_shapes(tmp_path / "a", seed=5, **SMALL)
    b = build_shapes(tmp_path / "b", seed=5, **SMALL)
    c = build_shapes(tmp_path / "c", seed=6, **SMALL)
    ha, hb, hc = _tree_hash(a.root), _tree_hash(b.root), _tree_hash(c.root)
    assert len(ha) == SMALL["train_images"] + SMALL["eval_images"] + 7
    assert ha == hb
    assert ha.keys() == hc.keys() and ha != hc
    assert ha["train.json"] != hc["train.json"]


def test_resolve_builds_once_into_cache(shapes, monkeypatch):
    import vittle_cli.data.shapes as mod

    assert shapes.root.name == f"shapes-v{mod.FORMAT_VERSION}-seed0" and shapes.root.parent.name == "data"
    monkeypatch.setattr(mod, "build_shapes", lambda *a, **k: pytest.fail("rebuilt a cached data set"))
    assert resolve_builtin_data("builtin:shapes", seed=0) == shapes


def test_unknown_builtin_name_lists_known_ones():
    with pytest.raises(DataError, match="builtin:shapes"):
        resolve_builtin_data("builtin:circles")


def test_captions_name_every_object_of_their_image_in_reading_order(shapes, meta):
    raw = json.loads(shapes.objects_json.read_text())
    captions = json.loads(shapes.captions_json.read_text())
    assert [c["image"] for c in captions] == sorted(i for i in meta if i.startswith("train/"))
    for c in captions:
        human, gpt = c["conversations"]
        assert human == {"from": "human", "value": "<image>\nDescribe the image briefly."}
        names = [f"{o['colour']} {o['shape']}" for o in raw[c["image"]]["objects"]]
        listed = gpt["value"].removeprefix("The image shows ").removesuffix(".")
        assert [
            n.removeprefix("a ").removeprefix("an ") for n in listed.replace(" and ", ", ").split(", ")
        ] == names


def test_captions_source_reads_the_captions_file(shapes, tmp_path):
    from vittle_cli.data.sources import load_source

    src = load_source("builtin:shapes-captions", cache_dir=tmp_path)
    assert len(src) == 1500 and src.image_root == shapes.image_root
    assert src.row(0)["conversations"][0]["value"].endswith("Describe the image briefly.")


def test_training_set_form_and_sizes(shapes, meta):
    samples = json.loads(shapes.train_json.read_text())
    assert 2900 <= len(samples) <= 3100
    assert len({s["id"] for s in samples}) == len(samples)
    with_image = [s for s in samples if "image" in s]
    text_only = len(samples) - len(with_image)
    assert 0.01 * len(samples) <= text_only <= 0.06 * len(samples)
    assert len({s["image"] for s in with_image}) >= 1400
    assert any(len(s["conversations"]) >= 4 for s in samples)  # multi-turn exists
    answers = Counter()
    for s in samples:
        conv = s["conversations"]
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2) and conv
        placeholders = sum(t["value"].count("<image>") for t in conv)
        assert placeholders == (1 if "image" in s else 0)
        if "image" in s:
            assert conv[0]["value"].startswith("<image>\n")
            assert (shapes.image_root / s["image"]).is_file()
            for q, a in zip(conv[::2], conv[1::2], strict=True):
                if "Is there a " in q["value"]:
                    assert q["value"].endswith(SHORT_ANSWER)
                    obj = _object(q["value"].replace("<image>\n", "").removesuffix(SHORT_ANSWER))
                    # yes answers are really there, no answers really absent
                    assert (obj in meta[s["image"]]) == (a["value"] == "Yes")
                    answers[a["value"]] += 1
    assert answers["Yes"] + answers["No"] > 1200
    assert abs(answers["Yes"] - answers["No"]) < 0.1 * (answers["Yes"] + answers["No"])


def test_pope_questions_balanced_and_joined(shapes, meta):
    questions = _jsonl(shapes.pope_questions)
    ids = [q["question_id"] for q in questions]
    assert len(ids) == len(set(ids))
    by_id = {q["question_id"]: q for q in questions}
    eval_images = {q["image"] for q in questions}
    assert len(eval_images) == 80 and not any(i.startswith("train/") for i in eval_images)
    for split in SPLITS:
        labels = _jsonl(shapes.pope_labels(split))
        assert Counter(lab["label"] for lab in labels)["yes"] * 2 == len(labels) > 100
        for lab in labels:
            q = by_id[lab["question_id"]]
            assert (q["image"], q["text"], q["category"]) == (lab["image"], lab["text"], split)
            assert "Answer the question" not in q["text"]
            assert (_object(q["text"]) in meta[q["image"]]) == (lab["label"] == "yes")
        per_image = Counter(lab["image"] for lab in labels)
        assert min(per_image.values()) >= 2
    assert sum(1 for q in questions) == sum(len(_jsonl(shapes.pope_labels(s))) for s in SPLITS)


def test_images_open_at_expected_size(shapes, meta):
    for rel in list(meta)[:50] + list(meta)[-20:]:
        with Image.open(shapes.image_root / rel) as im:
            assert im.size == (64, 64) and im.mode == "RGB"
        for a in meta[rel]:  # objects in one image are distinct pairs
            assert a.split()[0] in {"red", "green", "blue", "yellow", "purple", "orange"}


def test_objects_do_not_overlap_and_are_large(shapes):
    raw = json.loads(shapes.objects_json.read_text())
    for m in list(raw.values())[:300]:
        boxes = [o["bbox"] for o in m["objects"]]
        assert 1 <= len(boxes) <= 4
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            assert x1 - x0 >= 18 and 0 <= x0 and x1 < 64 and 0 <= y0 and y1 < 64
            for bx0, by0, bx1, by1 in boxes[i + 1 :]:
                assert x1 <= bx0 or bx1 <= x0 or y1 <= by0 or by1 <= y0


def _negatives(shapes, split):
    return [
        (lab["image"], _object(lab["text"]))
        for lab in _jsonl(shapes.pope_labels(split))
        if lab["label"] == "no"
    ]


def test_popular_negatives_are_more_frequent_than_random(shapes, train_stats):
    freq, _ = train_stats
    mean = {s: sum(freq[o] for _, o in _negatives(shapes, s)) / len(_negatives(shapes, s)) for s in SPLITS}
    assert mean["popular"] > 1.5 * mean["random"]


def test_adversarial_negatives_cooccur_more_than_random(shapes, meta, train_stats):
    _, cooc = train_stats

    def mean_cooc(split):
        vals = [sum(cooc[(p, o)] for p in meta[img]) / len(meta[img]) for img, o in _negatives(shapes, split)]
        return sum(vals) / len(vals)

    assert mean_cooc("adversarial") > 1.5 * mean_cooc("random")
    assert mean_cooc("adversarial") > mean_cooc("popular")
