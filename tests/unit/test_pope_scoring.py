"""POPE scoring: the reference rule on tricky answers, metrics by hand, order independence, summaries."""

from __future__ import annotations

import random

import pytest

from vittle_cli.eval.metrics import (
    binary_metrics,
    is_ambiguous,
    pope_answer,
    score_predictions,
    summarise_variants,
)


def reference_rule(text: str) -> str:
    """LLaVA's eval_pope.py, transcribed statement by statement (the oracle)."""
    if text.find(".") != -1:
        text = text.split(".")[0]
    text = text.replace(",", "")
    words = text.split(" ")
    if "No" in words or "not" in words or "no" in words:
        return "no"
    return "yes"


# (answer, expected "yes"/"no", expected ambiguous)
TRICKY = [
    ("Yes", "yes", False),
    ("Yes.", "yes", False),
    ("yes", "yes", False),
    ("No", "no", False),
    ("No.", "no", False),
    ("no", "no", False),
    ("No, there is not.", "no", False),
    ("Yes, there is a dog.", "yes", False),
    ("There is no dog", "no", False),
    ("not sure", "no", False),
    ("", "yes", True),
    ("Maybe", "yes", True),
    ("NO", "yes", True),  # the rule is case-sensitive: "NO" is not a no-word
    ("Nope.", "yes", True),
    ("There is a cat. No dog.", "yes", True),  # only the first sentence counts
    ("Yes. No.", "yes", False),
    ("No,", "no", False),
    ("yes,no", "yes", True),  # commas are dropped, not split on: one word "yesno"
    ("I do not think so", "no", False),
    ("Not", "yes", True),
    (" no", "no", False),
    ("no\n", "yes", True),  # split on spaces only, like the reference
]


@pytest.mark.parametrize(("answer", "expected", "ambiguous"), TRICKY)
def test_rule_agrees_with_the_reference(answer, expected, ambiguous):
    assert pope_answer(answer) == reference_rule(answer) == expected
    assert is_ambiguous(answer) is ambiguous


def test_metrics_by_hand():
    pairs = [("Yes", "yes"), ("Yes", "yes"), ("Yes", "no"), ("No", "no"), ("No", "yes"), ("huh", "no")]
    m = binary_metrics(pairs)
    # predictions: yes yes yes no no yes ; tp=2 fp=2 tn=1 fn=1
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"]) == (2, 2, 1, 1, 6)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m["yes_ratio"] == pytest.approx(4 / 6)
    assert m["ambiguous"] == 1


def test_no_yes_predictions_gives_zero_not_nan():
    m = binary_metrics([("No", "yes"), ("No", "no")])
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["accuracy"] == 0.5


def _records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    answers = [a for a, _, _ in TRICKY]
    return [
        {
            "split": rng.choice(["random", "popular", "adversarial"]),
            "answer": rng.choice(answers),
            "label": rng.choice(["yes", "no"]),
            "question_id": str(i),
        }
        for i in range(n)
    ]


def test_metrics_do_not_depend_on_order():
    recs = _records(300, 0)
    base = score_predictions(recs)
    for seed in range(5):
        shuffled = recs[:]
        random.Random(seed).shuffle(shuffled)
        assert score_predictions(shuffled) == base


def test_pooled_equals_counts_summed_over_splits_and_unlabelled_are_skipped():
    recs = _records(200, 1) + [{"split": "random", "answer": "Yes", "label": None, "question_id": "x"}]
    s = score_predictions(recs)
    for key in ("tp", "fp", "tn", "fn", "n", "ambiguous"):
        assert s["all"][key] == sum(m[key] for m in s["splits"].values())
    assert s["all"]["n"] == 200


def test_deltas_are_variant_minus_clean_and_group_means():
    def fake(f1: float, acc: float) -> dict:
        return {"all": {"f1": f1, "accuracy": acc}}

    per_variant = {"clean": fake(0.9, 0.8), "v1": fake(0.7, 0.6), "v2": fake(0.5, 0.7), "t1": fake(0.8, 0.8)}
    groups = {"clean": "clean", "v1": "visual", "v2": "visual", "t1": "text"}
    s = summarise_variants(per_variant, groups, keys=("f1", "accuracy"))
    assert s["deltas"]["v1"]["f1"] == pytest.approx(-0.2)
    assert s["deltas"]["t1"]["accuracy"] == pytest.approx(0.0)
    assert "clean" not in s["deltas"]
    assert s["groups"]["visual"]["f1"] == pytest.approx(0.6)
    assert s["groups"]["visual"]["variants"] == 2
    assert s["groups"]["visual"]["delta_f1"] == pytest.approx(-0.3)
    assert "joint" not in s["groups"]
    assert summarise_variants({"v1": fake(0.7, 0.6)}, {"v1": "visual"}, keys=("f1",))["deltas"] == {}
