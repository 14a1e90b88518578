"""`vittle eval compare`: several results.json side by side, deltas against the first, and a chart."""

from __future__ import annotations

import json
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.eval.report import task_info, variant_rows
from vittle_cli.fileio import save_figure, write_json


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
    except json.JSONDecodeError as e:
        raise UsageError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or "metrics" not in doc or "variants" not in doc:
        raise UsageError(f"{p} is not a vittle eval results.json")
    doc["_path"] = str(p)
    return doc


def compare_table(docs: list[dict], metric: str = "f1") -> tuple[list[str], list[list[float | None]]]:
    """Variant names (union, first-seen order) and per document the pooled `metric` (None if absent)."""
    names: list[str] = []
    for d in docs:
        names += [n for n, _, _, _ in variant_rows(d) if n not in names]
    values = [[(d["metrics"][n]["all"][metric] if n in d["metrics"] else None) for n in names] for d in docs]
    return names, values


def run_compare(paths: list[str], *, out: Path | None = None, metric: str = "f1", console=None) -> dict:
    """Print a side-by-side table of `metric` per variant and group mean, with deltas vs the first;
    write compare.json and compare.png into `out` when given.

    Raises:
        UsageError: fewer than two inputs, unreadable results, unknown metric.
    """
    from rich.console import Console
    from rich.table import Table

    if len(paths) < 2:
        raise UsageError("compare needs at least two results.json files or eval folders")
    docs = [read_results(p) for p in paths]
    known = task_info(docs[0])["metric_keys"]
    if metric not in known:
        raise UsageError(f"unknown metric {metric!r}; use one of {', '.join(known)}")
    labels = [f"{d['model']} ({Path(d['_path']).parent.name})" for d in docs]
    names, values = compare_table(docs, metric)
    group_names = [
        g for g in ("clean", "visual", "text", "joint") if any(g in d["summary"]["groups"] for d in docs)
    ]
    group_values = [[d["summary"]["groups"].get(g, {}).get(metric) for g in group_names] for d in docs]

    table = Table(title=f"{metric} (%), deltas vs the first", title_justify="left")
    table.add_column("variant")
    for i, lab in enumerate(labels):
        table.add_column(lab if i == 0 else f"{lab} Δ", justify="right")

    def cells(col: list[list[float | None]], j: int) -> list[str]:
        base = col[0][j]
        out_cells = [f"{base * 100:.1f}" if base is not None else "-"]
        for vals in col[1:]:
            v = vals[j]
            out_cells.append(
                "-"
                if v is None
                else f"{v * 100:.1f}" + (f" ({(v - base) * 100:+.1f})" if base is not None else "")
            )
        return out_cells

    for j, n in enumerate(names):
        table.add_row(n, *cells(values, j))
    if group_names:
        table.add_section()
        for j, g in enumerate(group_names):
            table.add_row(f"mean {g}", *cells(group_values, j))
    (console or Console()).print(table)

    doc = {
        "metric": metric,
        "inputs": [d["_path"] for d in docs],
        "models": [d["model"] for d in docs],
        "variants": names,
        "values": values,
        "groups": group_names,
        "group_values": group_values,
    }
    if out is not None:
        out = Path(out)
        write_json(out / "compare.json", doc)
        _plot(labels, names, values, metric, out / "compare.png")
    return doc


def _plot(
    labels: list[str], names: list[str], values: list[list[float | None]], metric: str, path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.4 * len(names) * len(labels) ** 0.5 + 2), 4))
    for i, (lab, vals) in enumerate(zip(labels, values, strict=True)):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [(v or 0.0) * 100 for v in vals], width=width, label=lab)
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
