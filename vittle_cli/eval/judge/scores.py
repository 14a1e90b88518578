"""Relative score from judge pairs: RP = 100 * mean(model score) / mean(reference score).

Computed per judge run (the reference script's `stats[1] / stats[0] * 100`), then averaged over runs with
their spread. Pairs the judge's reply could not be read from are counted and left out; the reference
averages them in as (-1, -1), which pulls both means down.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence

Pair = tuple[float, float] | None
GROUPS = ("clean", "visual", "text", "joint")


def relative_score(pairs: Iterable[Pair]) -> float | None:
    """100 * mean(model) / mean(reference) over the readable pairs; None when there are none."""
    good = [p for p in pairs if p is not None]
    if not good:
        return None
    ref = sum(p[0] for p in good) / len(good)
    model = sum(p[1] for p in good) / len(good)
    return 100.0 * model / ref if ref else None


def _spread(values: Sequence[float | None]) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "runs": []}
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
        "runs": vals,
    }


def _block(rows: Sequence[tuple[str, Sequence[Pair]]], runs: int) -> dict:
    """RP per run (mean and spread), mean raw scores and counts over `rows` of (category, pairs per run)."""
    per_run = [relative_score(pairs[r] for _, pairs in rows) for r in range(runs)]
    good = [p for _, pairs in rows for p in pairs if p is not None]
    return {
        "n": len(rows),
        "judgments": len(rows) * runs,
        "unparseable": sum(p is None for _, pairs in rows for p in pairs),
        "relative_score": _spread(per_run),
        "reference_score": sum(p[0] for p in good) / len(good) if good else None,
        "model_score": sum(p[1] for p in good) / len(good) if good else None,
    }


def score_variant(rows: Sequence[tuple[str, Sequence[Pair]]], runs: int) -> dict:
    """Overall and per-category blocks of one variant; rows are (category, [pair of run 0, 1, ...])."""
    cats = sorted({c for c, _ in rows})
    return {
        "all": _block(rows, runs),
        "categories": {c: _block([r for r in rows if r[0] == c], runs) for c in cats},
    }


def summarise_rp(per_variant: Mapping[str, dict], groups: Mapping[str, str]) -> dict:
    """Group means of the variants' mean RP, and each variant's drop from clean (clean - variant)."""

    def rp(name: str) -> float | None:
        return per_variant[name]["all"]["relative_score"]["mean"]

    clean = next((v for v, g in groups.items() if g == "clean" and v in per_variant), None)
    drops = {}
    if clean is not None and rp(clean) is not None:
        drops = {v: rp(clean) - rp(v) for v in per_variant if v != clean and rp(v) is not None}
    means = {}
    for group in GROUPS:
        vals = [rp(v) for v, g in groups.items() if g == group and v in per_variant and rp(v) is not None]
        if vals:
            means[group] = {"relative_score": statistics.fmean(vals), "variants": len(vals)}
            if clean is not None and group != "clean" and rp(clean) is not None:
                means[group]["drop"] = rp(clean) - means[group]["relative_score"]
    return {"drops": drops, "groups": means}
