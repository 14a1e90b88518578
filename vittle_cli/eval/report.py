"""Eval reports: the results.json document, the terminal table and the F1 / accuracy chart."""

from __future__ import annotations

from pathlib import Path

from vittle_cli.fileio import save_figure

GROUP_COLOURS = {"clean": "tab:gray", "visual": "tab:blue", "text": "tab:orange", "joint": "tab:purple"}


def versions() -> dict[str, str]:
    """Versions of the packages an answer can depend on (read from metadata: no heavy imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "vittle",
        "torch",
        "transformers",
        "peft",
        "imagecorruptions-imaug",
        "nlpaug",
        "numpy",
        "pillow",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


# results.json written before task families existed are POPE results
_POPE_TASK = {
    "name": "pope",
    "metric_keys": ["accuracy", "precision", "recall", "f1", "yes_ratio", "ambiguous"],
    "primary_metric": "f1",
    "secondary_metric": "accuracy",
    "columns": [
        ["acc", "accuracy", True],
        ["prec", "precision", True],
        ["rec", "recall", True],
        ["F1", "f1", True],
        ["yes", "yes_ratio", True],
        ["ambig.", "ambiguous", False],
    ],
}


def task_info(results: dict) -> dict:
    """The results' task section: family name, metric keys, primary metric and table columns."""
    task = results.get("task")
    return task if isinstance(task, dict) else _POPE_TASK


def _cell(value, percent: bool) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{value * 100:.1f}"
    return str(value) if isinstance(value, int) else f"{value:.1f}"


def variant_rows(results: dict) -> list[tuple[str, str, dict, dict | None]]:
    """(variant, group, pooled metrics, drops or None) in suite order."""
    rows = []
    for v in results["variants"]:
        m = results["metrics"].get(v["name"])
        if m is not None:
            rows.append((v["name"], v["group"], m["all"], results["summary"]["drops"].get(v["name"])))
    return rows


def print_table(results: dict, console=None) -> None:
    """A rich table: one row per variant (pooled over splits) and one per group mean."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze variant names into 80 columns
        console = Console(file=console.file, width=max(console.width, 132))
    task = task_info(results)
    columns, primary = task["columns"], task["primary_metric"]
    delta = f"Δ{next((h for h, k, _ in columns if k == primary), primary)}"
    scale = 100 if next((pct for _, k, pct in columns if k == primary), True) else 1  # MME: raw points
    table = Table(title=f"{results['suite']['name']}: {results['model']}", title_justify="left")
    for col in ("variant", "group", "n", *(h for h, _, _ in columns), delta):
        table.add_column(col, justify="left" if col in ("variant", "group") else "right", no_wrap=True)
    for name, group, m, drop in variant_rows(results):
        d = f"{(0.0 - drop[primary]) * scale:+.1f}" if drop and drop.get(primary) is not None else ""
        cells = [_cell(m.get(k), pct) for _, k, pct in columns]
        table.add_row(name, group, str(m.get("n", "")), *cells, d)
    groups = results["summary"]["groups"]
    if len(groups) > 1:
        table.add_section()
        for group, m in groups.items():
            drop = m.get(f"drop_{primary}")
            d = f"{(0.0 - drop) * scale:+.1f}" if drop is not None else ""
            cells = [_cell(m.get(k), pct) for _, k, pct in columns]
            table.add_row(f"mean {group}", "", f"{m['variants']} var.", *cells, d)
    console.print(table)


def plot_results(results: dict, out_png: Path) -> Path:
    """Bar chart of the task's primary and secondary metric (pooled) per variant, coloured by group,
    written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = variant_rows(results)
    task = task_info(results)
    keys = [k for k in (task["primary_metric"], task.get("secondary_metric")) if k]
    size = (max(6.0, 0.38 * len(rows) + 2), 3.2 * len(keys))
    fig, axes = plt.subplots(len(keys), 1, figsize=size, sharex=True, squeeze=False)
    axes = axes[:, 0]
    xs = range(len(rows))
    columns = {k: (h, pct) for h, k, pct in task["columns"]}
    for ax, key in zip(axes, keys, strict=True):
        label, percent = columns.get(key, (key, True))
        scale = 100 if percent else 1
        colours = [GROUP_COLOURS[g] for _, g, _, _ in rows]
        ax.bar(xs, [(m.get(key) or 0.0) * scale for _, _, m, _ in rows], color=colours)
        clean = next(((m.get(key) or 0.0) * scale for _, g, m, _ in rows if g == "clean"), None)
        if clean is not None:
            ax.axhline(clean, color="black", linewidth=0.8, linestyle="--")
        ax.set_ylabel(f"{label} (%)" if percent else label)
        if percent:
            ax.set_ylim(0, 100)
    axes[-1].set_xticks(list(xs), [n for n, _, _, _ in rows], rotation=70, ha="right", fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in GROUP_COLOURS.values()]
    fig.legend(handles, list(GROUP_COLOURS), ncol=4, fontsize=8, loc="upper right")
    fig.suptitle(f"{results['suite']['name']}: {results['model']}", fontsize=9, x=0.02, ha="left")
    fig.tight_layout()
    return save_figure(fig, out_png)
