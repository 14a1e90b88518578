"""Relative score from judge pairs: RP = 100 * mean(model score) / mean(reference score).

Computed per judge run (the reference script's `stats[1] / stats[0] * 100`), then averaged over runs with
their spread. Stored as a fraction like the POPE ratios (relative_score 0.75 is RP 75.0; tables print it
x100). Pairs the judge's reply could not be read from are counted and left out; the reference averages
them in as (-1, -1), which pulls both means down.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence

Pair = tuple[float, float] | None
GROUPS = ("clean", "visual", "text", "joint")
METRIC = "relative_score"


def relative_score(pairs: Iterable[Pair]) -> float | None:
    """100 * mean(model) / mean(reference) over the readable pairs; None when there are none."""
    good = [p for p in pairs if p is not None]
    if not good:
        return None
    ref = sum(p[0] for p in good) / len(good)
    model = sum(p[1] for p in good) / len(good)
    return 100.0 * model / ref if ref else None


def _block(rows: Sequence[tuple[str, Sequence[Pair]]], runs: int) -> dict:
    """Over `rows` of (category, pairs per run): RP of each run as a fraction, their mean and spread,
    the mean raw scores, and the counts of questions, judgments and unreadable replies."""
    per_run = [relative_score(pairs[r] for _, pairs in rows) for r in range(runs)]
    vals = [v / 100.0 for v in per_run if v is not None]
    good = [p for _, pairs in rows for p in pairs if p is not None]
    return {
        "n": len(rows),
        "judgments": len(rows) * runs,
        "unparseable": sum(p is None for _, pairs in rows for p in pairs),
        METRIC: statistics.fmean(vals) if vals else None,
        f"{METRIC}_std": (statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else None,
        f"{METRIC}_runs": vals,
        "reference_score": sum(p[0] for p in good) / len(good) if good else None,
        "model_score": sum(p[1] for p in good) / len(good) if good else None,
    }


def score_variant(rows: Sequence[tuple[str, Sequence[Pair]]], runs: int) -> dict:
    """{"splits": {category: block}, "all": block} of one variant; rows are (category, [pair per run])."""
    cats = sorted({c for c, _ in rows})
    return {
        "splits": {c: _block([r for r in rows if r[0] == c], runs) for c in cats},
        "all": _block(rows, runs),
    }


def summarise_rp(per_variant: Mapping[str, dict], groups: Mapping[str, str]) -> dict:
    """Deltas from clean per variant and group means, shaped like the POPE summary (one definition for every
    task: variant - clean, so a loss under shift is negative):
    {"deltas": {variant: {"relative_score": variant - clean}},
     "groups": {group: {"relative_score": mean, "variants": n, "delta_relative_score": mean - clean}}}."""

    def rp(name: str) -> float | None:
        return per_variant[name]["all"][METRIC]

    clean = next((v for v, g in groups.items() if g == "clean" and v in per_variant), None)
    base = rp(clean) if clean is not None else None
    deltas = {}
    if base is not None:
        deltas = {v: {METRIC: rp(v) - base} for v in per_variant if v != clean and rp(v) is not None}
    means = {}
    for group in GROUPS:
        vals = [rp(v) for v, g in groups.items() if g == group and v in per_variant and rp(v) is not None]
        if vals:
            means[group] = {METRIC: statistics.fmean(vals), "variants": len(vals)}
            if base is not None and group != "clean":
                means[group][f"delta_{METRIC}"] = means[group][METRIC] - base
    return {"deltas": deltas, "groups": means}
