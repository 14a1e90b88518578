"""POPE scoring: the reference answer rule and yes/no classification metrics.

Reference rule (LLaVA's eval_pope.py, METHOD.md section 6): keep the text before the first '.', drop
commas, split on spaces; the answer is "no" if a word equals "No", "no" or "not", else "yes". vittle also
counts "ambiguous" answers, those with neither a yes-word nor a no-word, which the rule scores as "yes".
Metrics never depend on the order of the predictions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

NO_WORDS = frozenset({"No", "no", "not"})
YES_WORDS = frozenset({"Yes", "yes"})
METRIC_KEYS = ("accuracy", "precision", "recall", "f1", "yes_ratio", "ambiguous")


def _words(answer: str) -> list[str]:
    return answer.split(".")[0].replace(",", "").split(" ")


def pope_answer(answer: str) -> str:
    """Map a free-form answer to "yes" / "no" by the reference rule."""
    return "no" if any(w in NO_WORDS for w in _words(answer)) else "yes"


def is_ambiguous(answer: str) -> bool:
    """True when the first sentence holds neither a yes-word nor a no-word (scored as "yes" anyway)."""
    return not any(w in NO_WORDS or w in YES_WORDS for w in _words(answer))


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def binary_metrics(pairs: Iterable[tuple[str, str]]) -> dict:
    """Metrics of (answer text, label) pairs; "yes" is the positive class.

    Returns:
        {n, tp, fp, tn, fn, accuracy, precision, recall, f1, yes_ratio, ambiguous}; ambiguous is a count,
        the rest ratios (0.0 where undefined, e.g. precision with no "yes" prediction).
    """
    tp = fp = tn = fn = amb = 0
    for answer, label in pairs:
        pred = pope_answer(answer)
        amb += is_ambiguous(answer)
        if pred == "yes":
            tp, fp = (tp + 1, fp) if label == "yes" else (tp, fp + 1)
        else:
            tn, fn = (tn + 1, fn) if label == "no" else (tn, fn + 1)
    n = tp + fp + tn + fn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall) if precision + recall else 0.0
    return {
        "n": n,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": _ratio(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": _ratio(tp + fp, n),
        "ambiguous": amb,
    }


def score_predictions(records: Iterable[Mapping]) -> dict:
    """Per split and pooled metrics of prediction records ({"split", "answer", "label"}); unlabelled
    records (label None) are skipped.

    Returns:
        {"splits": {split: metrics}, "all": metrics} with splits sorted by name.
    """
    by_split: dict[str, list[tuple[str, str]]] = {}
    for r in records:
        if r.get("label") in ("yes", "no"):
            by_split.setdefault(r["split"], []).append((r["answer"], r["label"]))
    pooled = [p for split in by_split.values() for p in split]
    return {
        "splits": {s: binary_metrics(by_split[s]) for s in sorted(by_split)},
        "all": binary_metrics(pooled),
    }


def summarise_variants(
    per_variant: Mapping[str, dict],
    groups: Mapping[str, str],
    keys: Iterable[str] = METRIC_KEYS,
    drop_keys: Iterable[str] = ("f1", "accuracy"),
) -> dict:
    """Drops vs the clean variant and means over the visual / text / joint groups.

    Args:
        per_variant: variant name -> score_predictions(...) output.
        groups: variant name -> group ("clean", "visual", "text", "joint").
        keys: the metrics to average (a task family's metric_keys); drop_keys: those whose drop
            (clean - group mean) is added to each group mean as `drop_<key>`.
    Returns:
        {"drops": {variant: {metric: clean - variant}} (pooled metrics; empty without a clean variant),
         "groups": {group: {metric: mean of pooled metrics over the group's variants, "variants": n}}}.
    """
    keys = list(keys)
    clean = next((v for v, g in groups.items() if g == "clean" and v in per_variant), None)
    drops = {}
    if clean is not None:
        base = per_variant[clean]["all"]
        drops = {v: {k: base[k] - m["all"][k] for k in keys} for v, m in per_variant.items() if v != clean}
    means = {}
    for group in ("clean", "visual", "text", "joint"):
        members = [per_variant[v]["all"] for v, g in groups.items() if g == group and v in per_variant]
        if members:
            means[group] = {k: sum(m[k] for m in members) / len(members) for k in keys}
            means[group]["variants"] = len(members)
            if clean is not None and group != "clean":
                for k in drop_keys:
                    means[group][f"drop_{k}"] = per_variant[clean]["all"][k] - means[group][k]
    return {"drops": drops, "groups": means}
