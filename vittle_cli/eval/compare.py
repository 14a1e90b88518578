"""`vittle eval compare`: several results.json side by side, deltas against the first, and a chart.

Numbers are only compared when they measure the same thing: runs of different tasks, suites, splits,
limits or question sets are refused, unless `common=True`, which rescores every run on the questions all
of them answered (from each run's predictions.jsonl).
"""

from __future__ import annotations

import json
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.eval.report import task_info, variant_rows
from vittle_cli.fileio import save_figure, write_json

GROUPS = ("clean", "visual", "text", "joint")


def read_results(path: str | Path) -> dict:
    """A results.json file, or an eval folder holding one.

    Raises:
        UsageError: neither exists, or the file is not a vittle results document.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise UsageError(f"no results at {path}: pass a results.json file or an eval folder holding one")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or "metrics" not in doc or "variants" not in doc:
        raise UsageError(f"{p} is not a vittle eval results.json")
    doc["_path"] = str(p)
    return doc


def _what_was_measured(doc: dict) -> dict:
    return {
        "task": task_info(doc)["name"],
        "suite": doc["suite"]["name"],
        "splits": doc["suite"].get("splits"),
        "limit": doc.get("limit_per_split"),
        "question set": doc.get("question_ids"),
    }


def check_comparable(docs: list[dict]) -> None:
    """Raise UsageError naming what differs (task, suite, splits, limit, question set) from the first."""
    ref = _what_was_measured(docs[0])
    for d in docs[1:]:
        other = _what_was_measured(d)
        # results written before question-set digests existed carry none: compare what they do carry
        diff = [
            k for k in ref if ref[k] != other[k] and not (k == "question set" and None in (ref[k], other[k]))
        ]
        if diff:
            parts = ", ".join(f"{k} {ref[k]!r} vs {other[k]!r}" for k in diff)
            raise UsageError(
                f"{d['_path']} measured something else than {docs[0]['_path']} ({parts}); compare runs of "
                "the same suite, splits and --limit, or pass --common to compare on the questions they share"
            )


def rescore_on_common(docs: list[dict]) -> int:
    """Replace each doc's metrics and summary by scores over the (variant, question) pairs every run
    answered; return how many questions per variant that leaves.

    Raises:
        UsageError: a run's predictions.jsonl is missing, or the runs share no question.
    """
    from vittle_cli.eval.metrics import summarise_variants
    from vittle_cli.eval.tasks import get_task

    preds = []
    for d in docs:
        path = Path(d["_path"]).parent / "predictions.jsonl"
        if not path.is_file():
            raise UsageError(f"--common needs {path} (the answers next to {d['_path']})")
        recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        preds.append({(r["variant"], str(r["question_id"])): r for r in recs})
    common = set.intersection(*(set(p) for p in preds))
    if not common:
        raise UsageError("the runs share no answered question; nothing to compare with --common")
    for d, p in zip(docs, preds, strict=True):
        task = get_task(task_info(d)["name"])
        groups = {v["name"]: v["group"] for v in d["variants"]}
        names = [n for n in groups if any(k[0] == n for k in common)]
        d["metrics"] = {n: task.score([p[k] for k in sorted(common) if k[0] == n], {}, None) for n in names}
        d["summary"] = summarise_variants(
            d["metrics"], {n: groups[n] for n in names}, task.metric_keys, task.drop_metrics
        )
    return len({q for _, q in common})


def column_labels(docs: list[dict]) -> list[str]:
    """Columns are named by model, as the shortest path tail that tells the models apart (a table cell cuts
    `demo-out/runs/tiny` and `demo-out/runs/tiny_baseline` to the same prefix); runs of the same model are
    told apart by their folder. compare.json keeps the full names under "models"."""
    models = [str(d["model"]) for d in docs]
    short = _distinct_tails(models)
    return [
        s if models.count(m) == 1 else f"{s} ({Path(d['_path']).parent})"
        for s, m, d in zip(short, models, docs, strict=True)
    ]


def _distinct_tails(names: list[str]) -> list[str]:
    """The fewest trailing path parts that keep distinct names distinct ('a/x/run1', 'b/x/run2' -> run1, run2)."""
    parts = [n.rstrip("/").split("/") for n in names]
    for k in range(1, max(len(p) for p in parts) + 1):
        tails = ["/".join(p[-k:]) for p in parts]
        if len(set(tails)) == len(set(names)):
            return tails
    return names


def compare_table(docs: list[dict], metric: str = "f1") -> tuple[list[str], list[list[float | None]]]:
    """Variant names (union, first-seen order) and per document the pooled `metric` (None if absent)."""
    names: list[str] = []
    for d in docs:
        names += [n for n, _, _, _ in variant_rows(d) if n not in names]
    values = [
        [(d["metrics"][n]["all"].get(metric) if n in d["metrics"] else None) for n in names] for d in docs
    ]
    return names, values


def run_compare(
    paths: list[str],
    *,
    out: Path | None = None,
    metric: str | None = None,
    common: bool = False,
    console=None,
) -> dict:
    """Print a side-by-side table of `metric` per variant and group mean, with deltas vs the first;
    write compare.json and compare.png into `out` when given.

    Raises:
        UsageError: fewer than two inputs, unreadable results, unknown metric, runs that measured
            different things (unless `common`).
    """
    from rich.console import Console

    if len(paths) < 2:
        raise UsageError("compare needs at least two results.json files or eval folders")
    docs = [read_results(p) for p in paths]
    metric = metric or task_info(docs[0])["primary_metric"]
    known = task_info(docs[0])["metric_keys"]
    if metric not in known:
        raise UsageError(f"unknown metric {metric!r}; use one of {', '.join(known)}")
    shared = None
    if common:
        if len({task_info(d)["name"] for d in docs}) > 1:
            raise UsageError("--common compares runs of one task; these runs are of different tasks")
        shared = rescore_on_common(docs)
    else:
        check_comparable(docs)
    labels = column_labels(docs)
    names, values = compare_table(docs, metric)
    group_names = [g for g in GROUPS if any(g in d["summary"]["groups"] for d in docs)]
    group_values = [[d["summary"]["groups"].get(g, {}).get(metric) for g in group_names] for d in docs]
    console = console or Console()
    console.print(_table(labels, names, values, group_names, group_values, metric, shared))
    from vittle_cli.eval.compare_emid import emid_comparison, emid_table

    emid = emid_comparison(docs, labels, shared)  # runs evaluated with --emid
    if emid is not None:
        console.print(emid_table(emid))
        for note in emid["notes"]:
            console.print(f"note: {note}")
    doc = {
        "metric": metric,
        "inputs": [d["_path"] for d in docs],
        "models": [d["model"] for d in docs],
        "columns": labels,
        "common_questions": shared,
        "variants": names,
        "values": values,
        "groups": group_names,
        "group_values": group_values,
    }
    if emid is not None:
        doc["emid"] = emid
    if out is not None:
        out = Path(out)
        write_json(out / "compare.json", doc)
        _plot(labels, names, values, group_names, group_values, metric, out / "compare.png")
    return doc


def _table(labels, names, values, group_names, group_values, metric, shared):
    from rich.table import Table

    title = f"{metric} (%), deltas vs the first" + (f"; on {shared} common questions" if shared else "")
    table = Table(title=title, title_justify="left")
    table.add_column("variant")
    for i, lab in enumerate(labels):
        table.add_column(lab if i == 0 else f"{lab} Δ", justify="right")

    def cells(col: list[list[float | None]], j: int) -> list[str]:
        base = col[0][j]
        out_cells = [f"{base * 100:.1f}" if base is not None else "-"]
        for vals in col[1:]:
            v = vals[j]
            delta = f" ({(v - base) * 100:+.1f})" if v is not None and base is not None else ""
            out_cells.append("-" if v is None else f"{v * 100:.1f}{delta}")
        return out_cells

    for j, n in enumerate(names):
        table.add_row(n, *cells(values, j))
    if group_names:
        table.add_section()
        for j, g in enumerate(group_names):
            table.add_row(f"mean {g}", *cells(group_values, j))
    return table


def _bars(ax, labels, names, values) -> None:
    width = 0.8 / len(labels)
    for i, (lab, vals) in enumerate(zip(labels, values, strict=True)):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [(v or 0.0) * 100 for v in vals], width=width, label=lab)
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylim(0, 100)


def _plot(labels, names, values, group_names, group_values, metric, path: Path) -> Path:
    """Per-variant bars and, beside them, the group means (what the paper's tables report)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(6.0, 0.4 * len(names) * len(labels) ** 0.5 + 2)
    ratios = [max(len(names), 1), max(len(group_names), 1)]
    fig, (ax, gx) = plt.subplots(1, 2, figsize=(width + 3, 4), gridspec_kw={"width_ratios": ratios})
    _bars(ax, labels, names, values)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title("per variant", fontsize=8)
    _bars(gx, labels, [f"mean {g}" for g in group_names], group_values)
    gx.set_title("group means", fontsize=8)
    gx.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
