"""`vittle eval export`: LLaVA answer files that the reference scoring procedure scores like vittle does."""

from __future__ import annotations

import json

import pytest
from pope_fixtures import SUFFIX, make_llava_layout
from rich.console import Console

from vittle_cli.errors import UsageError
from vittle_cli.eval.export import run_export
from vittle_cli.eval.runner import run_eval


def _fake_generate(model, processor, requests, *, batch_size, max_new_tokens, on_progress=None):
    answers = ["No, there is not." if ("dog" in r.text or "oven" in r.text) else "Yes" for r in requests]
    return answers


def _reference_pope(answer_file, question_file, labels_dir) -> dict:
    """The LLaVA eval_pope.py procedure, written out: answers are filtered by the category their id has in
    the question file, and paired with the label file of that category by position."""
    questions = {q["question_id"]: q for q in map(json.loads, question_file.read_text().splitlines())}
    answers = [json.loads(line) for line in answer_file.read_text().splitlines()]
    out = {}
    for f in sorted(labels_dir.glob("coco_pope_*.json")):
        category = f.stem.removeprefix("coco_pope_")
        labels = [json.loads(line)["label"] for line in f.read_text().splitlines()]
        mine = [a for a in answers if questions[a["question_id"]]["category"] == category]
        preds = []
        for a in mine:
            words = a["text"].split(".")[0].replace(",", "").split(" ")
            preds.append("no" if {"No", "no", "not"} & set(words) else "yes")
        tp = sum(p == "yes" and lab == "yes" for p, lab in zip(preds, labels, strict=False))
        tn = sum(p == "no" and lab == "no" for p, lab in zip(preds, labels, strict=False))
        out[category] = (tp + tn) / len(preds)
    return out


def test_llava_export_scores_the_same_under_the_reference_procedure(tmp_path):
    root = make_llava_layout(tmp_path / "pope")
    res = run_eval("pope", "runs/my-model/final", out=tmp_path / "ev", data_vars={"pope_root": str(root)},
                   generate=_fake_generate, load_model=lambda *a, **k: (None, None), console=Console(quiet=True))  # fmt: skip
    answer_file = tmp_path / "answers.jsonl"
    assert run_export(tmp_path / "ev", answer_file) == 18
    rows = [json.loads(line) for line in answer_file.read_text().splitlines()]
    assert set(rows[0]) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
    assert (
        rows[0]["question_id"] == 1 and rows[0]["prompt"].endswith(SUFFIX) and rows[0]["model_id"] == "final"
    )
    ref = _reference_pope(answer_file, root / "llava_pope_test.jsonl", root / "coco")
    ours = {s: m["accuracy"] for s, m in res["metrics"]["clean"]["splits"].items()}
    assert ref == pytest.approx(ours) and len(set(ours.values())) > 1


def test_lmms_eval_export_and_errors(tmp_path):
    root = make_llava_layout(tmp_path / "pope")
    run_eval("pope", "m", out=tmp_path / "ev", data_vars={"pope_root": str(root)}, generate=_fake_generate,
             load_model=lambda *a, **k: (None, None), console=Console(quiet=True))  # fmt: skip
    out = tmp_path / "samples.jsonl"
    run_export(tmp_path / "ev", out, fmt="lmms-eval")
    first = json.loads(out.read_text().splitlines()[0])
    assert first["doc"] == {
        "question_id": "1",
        "question": "Is there a snowboard in the image?",
        "answer": "yes",
        "image_source": "COCO_val2014_000000310196",
        "category": "adversarial",
    }
    assert first["target"] == "yes" and first["filtered_resps"] == ["Yes"]
    with pytest.raises(UsageError, match="no answers of variant 'snow@3'; it has: clean"):
        run_export(tmp_path / "ev", out, variant="snow@3")
    with pytest.raises(UsageError, match="unknown format"):
        run_export(tmp_path / "ev", out, fmt="csv")
