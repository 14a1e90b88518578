"""eval/stats.py against values computed by hand."""

import numpy as np
import pytest

from vittle_cli.eval.stats import (
    arm_value,
    bootstrap_weights,
    mean_and_spread,
    paired_bootstrap_diff,
    percentile_interval,
    weighted_metric,
)


def cube(rows):
    """(seeds, 1 variant, questions) arrays from per-seed lists of (label, pred)."""
    a = np.array([[r] for r in rows])
    return a[..., 0], a[..., 1]


def test_mean_and_spread_by_hand():
    s = mean_and_spread([0.80, 0.90, 0.70])
    assert s["mean"] == pytest.approx(0.80)
    # deviations -0.0, +0.1, -0.1 -> sum of squares 0.02, / (3 - 1) = 0.01, sqrt = 0.1
    assert s["sd"] == pytest.approx(0.1)
    assert (s["min"], s["max"], s["n"]) == (0.70, 0.90, 3)
    assert mean_and_spread([0.5])["sd"] == 0.0


def test_metrics_by_hand():
    # labels y y y n n; preds y y n y n -> tp 2, fn 1, fp 1, tn 1
    label, pred = cube([[(1, 1), (1, 1), (1, 0), (0, 1), (0, 0)]])
    ones = np.ones((1, 5))
    got = {
        m: float(weighted_metric(label, pred, ones, m)[0, 0, 0])
        for m in ("accuracy", "precision", "recall", "f1", "yes_ratio")
    }
    assert got == pytest.approx(
        {"accuracy": 3 / 5, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "yes_ratio": 3 / 5}
    )
    # weights count questions: question 3 (a false negative) twice -> tp 2, fn 2, fp 1, tn 1
    w = np.array([[1, 1, 2, 1, 1]])
    assert float(weighted_metric(label, pred, w, "recall")[0, 0, 0]) == pytest.approx(2 / 4)
    assert float(weighted_metric(label, pred, w, "accuracy")[0, 0, 0]) == pytest.approx(3 / 6)


def test_arm_value_averages_variants_then_seeds():
    label = np.array([[[1, 0], [1, 0]], [[1, 0], [1, 0]]])  # 2 seeds, 2 variants, 2 questions
    pred = np.array([[[1, 0], [1, 1]], [[0, 1], [1, 0]]])
    # accuracy seed0: variants 1.0, 0.5 -> 0.75; seed1: 0.0, 1.0 -> 0.5; mean 0.625
    assert float(arm_value(label, pred, np.ones((1, 2)), "accuracy")[0]) == pytest.approx(0.625)


def test_percentile_interval_by_hand():
    samples = np.arange(101, dtype=float)  # percentiles of 0..100 are the values themselves
    assert percentile_interval(samples, 0.95) == pytest.approx((2.5, 97.5))
    assert percentile_interval(samples, 0.5) == pytest.approx((25.0, 75.0))


def test_bootstrap_weights_resample_n_and_are_seeded():
    w = bootstrap_weights(7, 50, seed=3)
    assert w.shape == (50, 7) and (w.sum(axis=1) == 7).all()
    assert (w == bootstrap_weights(7, 50, seed=3)).all()
    assert not (w == bootstrap_weights(7, 50, seed=4)).all()


def test_paired_diff_constant_when_every_question_differs_the_same_way():
    # A right on every question, B wrong on every question: every draw gives +1 accuracy
    a = cube([[(1, 1), (0, 0), (1, 1), (0, 0)]])
    b = cube([[(1, 0), (0, 1), (1, 0), (0, 1)]])
    d = paired_bootstrap_diff(a, b, "accuracy", draws=200, seed=0)
    assert (d["diff"], d["lo"], d["hi"]) == pytest.approx((1.0, 1.0, 1.0))


def test_paired_diff_two_questions_by_hand():
    # A right on q1 only, B right on none: a draw of the two questions holds q1 0, 1 or 2 times
    # (p = 1/4, 1/2, 1/4) -> accuracy difference 0, 0.5, 1; the 95% interval spans 0..1
    a = cube([[(1, 1), (0, 1)]])
    b = cube([[(1, 0), (0, 1)]])
    d = paired_bootstrap_diff(a, b, "accuracy", draws=4000, seed=1)
    assert d["diff"] == pytest.approx(0.5)
    assert (d["lo"], d["hi"]) == pytest.approx((0.0, 1.0))
    w = bootstrap_weights(2, 4000, seed=1)
    assert abs((w[:, 0] == 1).mean() - 0.5) < 0.03  # the draw distribution above


def test_pairing_narrows_the_interval():
    # both arms fail on the same hard questions; A fixes 5 of 40 more: the paired interval stays > 0
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 2, 40)
    hard = rng.random(40) < 0.4
    pred_b = np.where(hard, 1 - lab, lab)
    pred_a = pred_b.copy()
    fixed = np.flatnonzero(hard)[:5]
    pred_a[fixed] = lab[fixed]
    a = (lab[None, None], pred_a[None, None])
    b = (lab[None, None], pred_b[None, None])
    d = paired_bootstrap_diff(a, b, "accuracy", draws=2000, seed=0)
    assert d["diff"] == pytest.approx(5 / 40)
    assert d["lo"] > 0


def test_unknown_metric_and_mismatched_questions():
    a = cube([[(1, 1), (0, 0)]])
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap_diff(a, a, "bleu")
    with pytest.raises(ValueError, match="question counts"):
        paired_bootstrap_diff(a, cube([[(1, 1)]]), "f1")
