"""A suite evaluated on the model being trained (train.eval_suite), reached through model/evaluators.py."""

from __future__ import annotations

from pathlib import Path

from vittle_cli.errors import UsageError


def _select_variants(suite, names: list[str] | None):
    if not names:
        return suite
    known = [v.name for v in suite.variants]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"train.eval_suite.variants: {', '.join(unknown)} not in suite {suite.name}; known: {', '.join(known)}"
        )
    keep = [v for v in suite.variants if v.group == "clean" or v.name in names]
    return suite.model_copy(update={"variants": keep})


def evaluate_suite(model, processor, section, out_dir: Path, console=None) -> dict[str, float]:
    """Answer the suite's questions with the live model; return clean and mean shifted accuracy (and F1).

    Args:
        model, processor: the model being trained (put in eval mode by the caller).
        section: the recipe's train.eval_suite (name, limit, variants, batch_size).
        out_dir: where results.json / predictions.jsonl of this evaluation go.
    """
    from vittle_cli.data.shift import load_suite
    from vittle_cli.eval.runner import run_eval

    suite = _select_variants(load_suite(section.name), section.variants)
    device = str(next(model.parameters()).device)
    results = run_eval(
        suite,
        "in-training",
        out=out_dir,
        batch_size=section.batch_size,
        limit=section.limit,
        device=device,
        overwrite=True,
        load_model=lambda *args, **kwargs: (model, processor),
        console=console,
    )
    groups = {v["name"]: v["group"] for v in results["variants"]}
    metrics = results["metrics"]
    clean = [m["all"] for name, m in metrics.items() if groups[name] == "clean"]
    shifted = [m["all"] for name, m in metrics.items() if groups[name] != "clean"]
    out = {}
    for key in ("accuracy", "f1"):
        if clean:
            out[f"clean_{key}"] = sum(m[key] for m in clean) / len(clean)
        if shifted:
            out[f"shift_{key}"] = sum(m[key] for m in shifted) / len(shifted)
    return out
