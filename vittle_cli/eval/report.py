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


def variant_rows(results: dict) -> list[tuple[str, str, dict, dict | None]]:
    """(variant, group, pooled metrics, deltas vs clean or None) in suite order."""
    rows = []
    for v in results["variants"]:
        m = results["metrics"].get(v["name"])
        if m is not None:
            rows.append((v["name"], v["group"], m["all"], results["summary"]["deltas"].get(v["name"])))
    return rows


def print_table(results: dict, console=None) -> None:
    """A rich table: one row per variant (pooled over splits) and one per group mean."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze variant names into 80 columns
        console = Console(file=console.file, width=max(console.width, 132))
    table = Table(title=f"{results['suite']['name']}: {results['model']}", title_justify="left")
    for col in ("variant", "group", "n", "acc", "prec", "rec", "F1", "yes", "ambig.", "ΔF1"):
        table.add_column(col, justify="left" if col in ("variant", "group") else "right", no_wrap=True)
    for name, group, m, delta in variant_rows(results):
        d = f"{delta['f1'] * 100:+.1f}" if delta else ""  # ΔF1 = variant - clean, as in results.json
        table.add_row(
            name,
            group,
            str(m["n"]),
            f"{m['accuracy'] * 100:.1f}",
            f"{m['precision'] * 100:.1f}",
            f"{m['recall'] * 100:.1f}",
            f"{m['f1'] * 100:.1f}",
            f"{m['yes_ratio'] * 100:.1f}",
            str(m["ambiguous"]),
            d,
        )
    groups = results["summary"]["groups"]
    if len(groups) > 1:
        table.add_section()
        for group, m in groups.items():
            d = f"{m['delta_f1'] * 100:+.1f}" if "delta_f1" in m else ""
            table.add_row(
                f"mean {group}",
                "",
                f"{m['variants']} var.",
                f"{m['accuracy'] * 100:.1f}",
                f"{m['precision'] * 100:.1f}",
                f"{m['recall'] * 100:.1f}",
                f"{m['f1'] * 100:.1f}",
                f"{m['yes_ratio'] * 100:.1f}",
                f"{m['ambiguous']:.1f}",
                d,
            )
    console.print(table)


def plot_results(results: dict, out_png: Path) -> Path:
    """Bar chart of F1 and accuracy (pooled) per variant, coloured by group, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = variant_rows(results)
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.38 * len(rows) + 2), 6.4), sharex=True)
    xs = range(len(rows))
    for ax, key, label in ((axes[0], "f1", "F1"), (axes[1], "accuracy", "accuracy")):
        ax.bar(xs, [m[key] * 100 for _, _, m, _ in rows], color=[GROUP_COLOURS[g] for _, g, _, _ in rows])
        clean = next((m[key] * 100 for _, g, m, _ in rows if g == "clean"), None)
        if clean is not None:
            ax.axhline(clean, color="black", linewidth=0.8, linestyle="--")
        ax.set_ylabel(f"{label} (%)")
        ax.set_ylim(0, 100)
    axes[1].set_xticks(list(xs), [n for n, _, _, _ in rows], rotation=70, ha="right", fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in GROUP_COLOURS.values()]
    fig.legend(handles, list(GROUP_COLOURS), ncol=4, fontsize=8, loc="upper right")
    fig.suptitle(f"{results['suite']['name']}: {results['model']}", fontsize=9, x=0.02, ha="left")
    fig.tight_layout()
    return save_figure(fig, out_png)
