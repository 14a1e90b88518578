"""Statistics for multi-seed comparisons: the mean and spread over seeds, and a paired bootstrap
confidence interval of a difference between two arms, resampling questions.

Pure numpy, no vittle imports. Answers are arrays of shape (seeds, variants, questions) of 0/1: `label`
(1 = the true answer is "yes") and `pred` (1 = the model said "yes" by the POPE rule). The columns of
both arms hold the same questions in the same order, so a bootstrap draw picks the same questions for
both: the pairing is what makes the interval narrow when the arms err on the same hard questions.

A metric of an arm is computed per seed and per variant on the drawn questions, averaged over the
variants (a group mean, as in results.json) and then over the seeds; the interval is the percentile
interval of (arm A - arm B) over the draws.
"""

from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def mean_and_spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof=1; 0.0 for one value), min and max of per-seed values."""
    v = np.asarray(values, dtype=float)
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "sd": sd, "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b != 0)


def weighted_metric(label: np.ndarray, pred: np.ndarray, weights: np.ndarray, metric: str) -> np.ndarray:
    """`metric` of each (seed, variant) under each row of question weights.

    Args:
        label, pred: (seeds, variants, questions) 0/1 arrays.
        weights: (draws, questions) counts of each question in a draw (all ones = the plain metric).
    Returns:
        (draws, seeds, variants) metric values; 0.0 where undefined (as in eval/metrics.py).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    label, pred, w = label.astype(float), pred.astype(float), weights.astype(float)

    def count(x: np.ndarray) -> np.ndarray:  # (draws, seeds, variants)
        return np.einsum("svq,dq->dsv", x, w)

    tp, fp = count(label * pred), count((1 - label) * pred)
    fn = count(label * (1 - pred))
    n = w.sum(axis=1)[:, None, None]
    if metric == "accuracy":
        return _safe_div(n - fp - fn, np.broadcast_to(n, tp.shape))
    if metric == "yes_ratio":
        return _safe_div(tp + fp, np.broadcast_to(n, tp.shape))
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    if metric == "precision":
        return precision
    if metric == "recall":
        return recall
    return _safe_div(2 * precision * recall, precision + recall)


def arm_value(label: np.ndarray, pred: np.ndarray, weights: np.ndarray, metric: str) -> np.ndarray:
    """Per draw: the metric averaged over variants, then over seeds. Shape (draws,)."""
    return weighted_metric(label, pred, weights, metric).mean(axis=2).mean(axis=1)


def bootstrap_weights(n_questions: int, draws: int, seed: int) -> np.ndarray:
    """(draws, n_questions) multinomial counts: each draw resamples n questions with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_questions, np.full(n_questions, 1.0 / n_questions), size=draws)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap samples (linear interpolation)."""
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_bootstrap_diff(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    metric: str,
    *,
    draws: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Difference A - B of the seed-mean metric, with a paired bootstrap interval over questions.

    Args:
        a, b: (label, pred) arrays of shape (seeds, variants, questions); the question axes must match.
    Returns:
        {"diff": point difference on all questions, "lo", "hi": interval ends, "level", "draws", "seed"}.
    """
    n = a[0].shape[2]
    if b[0].shape[2] != n:
        raise ValueError(f"the arms hold different question counts ({n} vs {b[0].shape[2]})")
    ones = np.ones((1, n))
    diff = float(arm_value(*a, ones, metric)[0] - arm_value(*b, ones, metric)[0])
    w = bootstrap_weights(n, draws, seed)
    lo, hi = percentile_interval(arm_value(*a, w, metric) - arm_value(*b, w, metric), level)
    return {"diff": diff, "lo": lo, "hi": hi, "level": level, "draws": draws, "seed": seed}
