"""`vittle eval compare --arm NAME EVAL... --arm NAME EVAL...`: several seeds per arm.

Per variant and per group mean: each arm's mean and spread over its seeds, and for every arm after the
first the difference to the first with a paired bootstrap interval over questions (eval/stats.py).
All numbers are recomputed from each eval's predictions.jsonl on the questions every eval answered,
so the table, the differences and the intervals describe the same questions.
"""

from __future__ import annotations

import json
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.eval.compare import read_results
from vittle_cli.eval.report import task_info
from vittle_cli.fileio import save_figure, write_json

GROUPS = ("clean", "visual", "text", "joint")


def parse_arm_args(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """["--arm", "a", "x", "y", "--arm", "b", "z"] -> [("a", ["x", "y"]), ("b", ["z"])].

    Raises:
        UsageError: a token before the first --arm, an arm without a name or evals, a repeated name.
    """
    arms: list[tuple[str, list[str]]] = []
    for tok in tokens:
        if tok == "--arm":
            arms.append(("", []))
        elif tok.startswith("--"):
            raise UsageError(f"unknown option {tok!r} for compare (see vittle eval compare --help)")
        elif not arms:
            raise UsageError(f"{tok!r} comes before the first --arm; use --arm NAME EVAL_DIR... for each arm")
        elif not arms[-1][0]:
            arms[-1] = (tok, [])
        else:
            arms[-1][1].append(tok)
    for name, paths in arms:
        if not name or not paths:
            raise UsageError("each --arm needs a name and at least one eval folder: --arm NAME EVAL_DIR...")
    names = [n for n, _ in arms]
    if len(set(names)) != len(names):
        raise UsageError(f"arm names must differ (got {', '.join(names)})")
    if len(arms) < 2:
        raise UsageError(
            "compare --arm needs at least two arms, e.g. --arm vittle e/v1 e/v2 --arm base e/b1 e/b2"
        )
    return arms


def _answers(doc: dict) -> dict[tuple[str, str], tuple[int, int]]:
    """(variant, question_id) -> (label is yes, answered yes) from the eval's predictions.jsonl."""
    from vittle_cli.eval.metrics import pope_answer

    path = Path(doc["_path"]).parent / "predictions.jsonl"
    if not path.is_file():
        raise UsageError(f"compare --arm needs {path} (the answers next to {doc['_path']})")
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line) if line.strip() else {}
        if r.get("label") in ("yes", "no"):
            out[(r["variant"], str(r["question_id"]))] = (
                int(r["label"] == "yes"),
                int(pope_answer(r["answer"]) == "yes"),
            )
    return out


def load_arms(arms: list[tuple[str, list[str]]]):
    """Arrays per arm on the shared variants and questions.

    Returns:
        (variants [(name, group)], question ids, {arm: (label, pred)} with (seeds, variants, questions)
        arrays, {arm: [eval paths]}).
    Raises:
        UsageError: unreadable evals, evals of different suites, no shared question.
    """
    import numpy as np

    docs = {name: [read_results(p) for p in paths] for name, paths in arms}
    every = [d for ds in docs.values() for d in ds]
    suites = {(task_info(d)["name"], d["suite"]["name"]) for d in every}
    if len(suites) > 1:
        listed = ", ".join(sorted(s for _, s in suites))
        raise UsageError(f"the evals are of different suites or tasks ({listed}); compare one suite")
    answers = {name: [_answers(d) for d in ds] for name, ds in docs.items()}
    all_answers = [a for ans in answers.values() for a in ans]
    variants = [(v["name"], v["group"]) for v in every[0]["variants"]]
    variants = [(n, g) for n, g in variants if all(any(k[0] == n for k in a) for a in all_answers)]
    qids = None
    for a in all_answers:
        for n, _ in variants:
            have = {q for v, q in a if v == n}
            qids = have if qids is None else qids & have
    if not variants or not qids:
        raise UsageError("the evals share no answered question; run them with the same suite and --limit")
    qids = sorted(qids)
    arrays = {}
    for name, ans in answers.items():
        cube = np.array([[[a[(n, q)] for q in qids] for n, _ in variants] for a in ans])
        arrays[name] = (cube[..., 0], cube[..., 1])
    return variants, qids, arrays, {n: [d["_path"] for d in ds] for n, ds in docs.items()}


def arm_rows(variants, arrays, metric: str, *, draws: int = 2000, seed: int = 0) -> list[dict]:
    """One row per variant and per group mean: per arm the seed stats, per later arm the paired
    difference to the first arm with its bootstrap interval."""
    import numpy as np

    from vittle_cli.eval.stats import mean_and_spread, paired_bootstrap_diff, weighted_metric

    names = list(arrays)
    n_q = next(iter(arrays.values()))[0].shape[2]
    ones = np.ones((1, n_q))
    rows_spec = [(n, [j]) for j, (n, _) in enumerate(variants)]
    rows_spec += [
        (f"mean {g}", [j for j, (_, vg) in enumerate(variants) if vg == g])
        for g in GROUPS
        if any(vg == g for _, vg in variants)
    ]
    rows = []
    for label, idx in rows_spec:
        sub = {a: (lab[:, idx], pred[:, idx]) for a, (lab, pred) in arrays.items()}
        per_seed = {a: weighted_metric(*sub[a], ones, metric)[0].mean(axis=1).tolist() for a in names}
        row = {"row": label, "arms": {a: {**mean_and_spread(v), "values": v} for a, v in per_seed.items()}}
        row["diffs"] = {
            a: paired_bootstrap_diff(sub[a], sub[names[0]], metric, draws=draws, seed=seed) for a in names[1:]
        }
        rows.append(row)
    return rows


def run_compare_arms(
    arms: list[tuple[str, list[str]]],
    *,
    out: Path | None = None,
    metric: str | None = None,
    draws: int = 2000,
    seed: int = 0,
    console=None,
) -> dict:
    """Print the multi-seed table; write compare.json and compare.png into `out` when given."""
    from rich.console import Console

    from vittle_cli.eval.stats import METRICS

    metric = metric or "f1"
    if metric not in METRICS:
        raise UsageError(f"compare --arm supports {', '.join(METRICS)}; got --metric {metric!r}")
    variants, qids, arrays, paths = load_arms(arms)
    rows = arm_rows(variants, arrays, metric, draws=draws, seed=seed)
    (console or Console(width=160)).print(_table(rows, list(arrays), metric, len(qids), draws))
    doc = {
        "metric": metric,
        "arms": paths,
        "questions_per_variant": len(qids),
        "bootstrap": {"draws": draws, "seed": seed, "level": 0.95, "resampled": "questions, paired"},
        "rows": rows,
    }
    if out is not None:
        write_json(Path(out) / "compare.json", doc)
        _plot(rows, list(arrays), metric, Path(out) / "compare.png")
    return doc


def _table(rows, names, metric, n_q, draws):
    from rich.markup import escape
    from rich.table import Table

    title = escape(
        f"{metric} (%) over seeds: mean ± sd [min-max]; Δ vs {names[0]} with a 95% paired bootstrap "
        f"interval ({n_q} questions per variant, {draws} draws)"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("variant")
    for a in names:
        table.add_column(f"{a} (n={rows[0]['arms'][a]['n']})", justify="right")
    for a in names[1:]:
        table.add_column(f"{a} - {names[0]}", justify="right")
    for i, r in enumerate(rows):
        if i and r["row"].startswith("mean ") and not rows[i - 1]["row"].startswith("mean "):
            table.add_section()
        cells = [
            f"{s['mean'] * 100:.1f} ± {s['sd'] * 100:.1f} [{s['min'] * 100:.1f}-{s['max'] * 100:.1f}]"
            for s in (r["arms"][a] for a in names)
        ]
        cells += [
            f"{d['diff'] * 100:+.1f} [{d['lo'] * 100:+.1f}, {d['hi'] * 100:+.1f}]"
            for d in (r["diffs"][a] for a in names[1:])
        ]
        table.add_row(escape(r["row"]), *(escape(c) for c in cells))
    return table


def _plot(rows, names, metric, path: Path) -> Path:
    """Left: group means per arm, error bars = seed sd. Right: each later arm minus the first, per
    variant and group, with its bootstrap interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [r for r in rows if r["row"].startswith("mean ")]
    fig, (gx, dx) = plt.subplots(
        1, 2, figsize=(12, max(4.0, 0.22 * len(rows) + 1)), gridspec_kw={"width_ratios": [1, 2]}
    )
    width = 0.8 / len(names)
    for i, a in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(groups))]
        ys = [r["arms"][a]["mean"] * 100 for r in groups]
        gx.bar(xs, ys, width=width, yerr=[r["arms"][a]["sd"] * 100 for r in groups], capsize=3, label=a)
    gx.set_xticks(range(len(groups)), [r["row"] for r in groups], rotation=30, ha="right", fontsize=8)
    gx.set_ylabel(f"{metric} (%)")
    gx.set_ylim(0, 100)
    gx.legend(fontsize=7)
    gx.set_title("group means (bars: sd over seeds)", fontsize=8)
    for i, a in enumerate(names[1:]):
        ys = [len(rows) - k + i * 0.25 for k in range(len(rows))]
        d = [r["diffs"][a] for r in rows]
        xs = [x["diff"] * 100 for x in d]
        err = [[(x["diff"] - x["lo"]) * 100 for x in d], [(x["hi"] - x["diff"]) * 100 for x in d]]
        dx.errorbar(xs, ys, xerr=err, fmt="o", ms=3, capsize=2, label=f"{a} - {names[0]}")
    dx.axvline(0, color="gray", lw=0.8)
    dx.set_yticks([len(rows) - k for k in range(len(rows))], [r["row"] for r in rows], fontsize=6)
    dx.set_xlabel(f"Δ {metric} (points), 95% paired bootstrap interval over questions")
    dx.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
