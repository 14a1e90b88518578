"""Reports of the LLM-judged suites: the terminal table and the relative-score chart."""

from __future__ import annotations

from pathlib import Path

from vittle_cli.eval.report import GROUP_COLOURS
from vittle_cli.fileio import save_figure


def rp_rows(results: dict) -> list[tuple[str, str, dict]]:
    """(variant, group, the variant's "all" block) in suite order."""
    return [
        (v["name"], v["group"], results["metrics"][v["name"]]["all"])
        for v in results["variants"]
        if v["name"] in results["metrics"]
    ]


def _rp(block: dict) -> str:
    """RP x100 with the spread over judge runs."""
    if block["relative_score"] is None:
        return "n/a"
    spread = f" ± {block['relative_score_std'] * 100:.1f}" if len(block["relative_score_runs"]) > 1 else ""
    return f"{block['relative_score'] * 100:.1f}{spread}"


def _jsd(entry: dict | None) -> str:
    if not entry:
        return ""
    return "/".join("n/a" if entry.get(m) is None else f"{entry[m]:.4f}" for m in ("visual", "text"))


def _emid_cells(entry: dict | None) -> list[str]:
    """EMID (signed, nats), its 95% interval and the JSD bound of a variant or group of `vittle eval --emid`."""
    if not entry:
        return ["", "", ""]
    lo, hi = entry["ci95"]
    return [f"{entry['emid']:+.4f}", f"[{lo:+.3f}, {hi:+.3f}]", f"{entry['bound']:.3f}"]


def print_rp_table(results: dict, console=None) -> None:
    """One row per variant (RP overall and per category, unparseable replies) and one per group mean;
    with `vittle eval --emid`, EMID against the clean variant beside them."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    emid = results.get("emid")
    if not console.is_terminal:  # logs and pipes: room for every column (EMID adds three)
        console = Console(file=console.file, width=max(console.width, 176 if emid else 132))
    first = next(iter(results["metrics"].values()))
    cats = list(first["splits"])
    judge = results["judge"]
    title = f"{results['suite']['name']}: {results['model']} | judge {judge['id']} x{judge['runs']}"
    table = Table(title=title, title_justify="left")
    shift = results.get("representation_shift") or {}
    emid_cols = ("EMID", "EMID 95% CI", "bound") if emid else ()
    for col in ("variant", "group", "n", "RP", *cats, "unparseable", "ΔRP", "JSD vis/txt", *emid_cols):
        table.add_column(col, justify="left" if col in ("variant", "group") else "right", no_wrap=True)
    deltas = results["summary"]["deltas"]
    for name, group, block in rp_rows(results):
        per_cat = [_rp(results["metrics"][name]["splits"][c]) for c in cats]
        d = f"{deltas[name]['relative_score'] * 100:+.1f}" if name in deltas else ""
        unparsed = f"{block['unparseable']}/{block['judgments']}"
        row = [name, group, str(block["n"]), _rp(block), *per_cat, unparsed, d, _jsd(shift.get(name))]
        table.add_row(*row, *(_emid_cells(emid["variants"].get(name)) if emid else []))
    groups = results["summary"]["groups"]
    if len(groups) > 1:
        table.add_section()
        for group, m in groups.items():
            d = f"{m['delta_relative_score'] * 100:+.1f}" if "delta_relative_score" in m else ""
            blank = [""] * len(cats)
            table.add_row(
                f"mean {group}",
                "",
                f"{m['variants']} var.",
                f"{m['relative_score'] * 100:.1f}",
                *blank,
                "",
                d,
                "",
                *(_emid_cells(emid["groups"].get(group)) if emid else []),
            )
    console.print(table)
    if emid and emid.get("mean"):
        m = emid["mean"]
        console.print(
            f"EMID against {emid['against']!r} (nats; lower = more robust), mean over {m['variants']} shifted "
            f"variants: {m['emid']:+.4f} [{m['ci95'][0]:+.3f}, {m['ci95'][1]:+.3f}], bound {m['bound']:.3f}"
        )


def plot_rp(results: dict, out_png: Path) -> Path:
    """Bar chart of the relative score per variant (error bars: spread over judge runs), by group; with
    `vittle eval --emid`, a second panel of EMID per shifted variant (error bars: its bootstrap 95% CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rp_rows(results)
    emid = results.get("emid")
    means = [(b["relative_score"] or 0.0) * 100 for _, _, b in rows]
    errs = [(b["relative_score_std"] or 0.0) * 100 for _, _, b in rows]
    width = max(6.0, 0.38 * len(rows) + 2)
    if emid:
        fig, (ax, ax_emid) = plt.subplots(2, 1, sharex=True, figsize=(width, 6.6), height_ratios=(3, 2))
    else:
        fig, ax = plt.subplots(figsize=(width, 4.2))
    xs = range(len(rows))
    colours = [GROUP_COLOURS[g] for _, g, _ in rows]
    ax.bar(xs, means, yerr=errs, color=colours, capsize=2)
    clean = next((m for (_, g, _), m in zip(rows, means, strict=True) if g == "clean"), None)
    if clean is not None:
        ax.axhline(clean, color="black", linewidth=0.8, linestyle="--")
    ax.set_ylabel("relative score (model / reference, %)")
    if emid:
        _plot_emid(ax_emid, emid, rows, colours)
    bottom = ax_emid if emid else ax
    bottom.set_xticks(list(xs), [n for n, _, _ in rows], rotation=70, ha="right", fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in GROUP_COLOURS.values()]
    fig.legend(handles, list(GROUP_COLOURS), ncol=4, fontsize=8, loc="upper right")
    fig.suptitle(f"{results['suite']['name']}: {results['model']}", fontsize=9, x=0.02, ha="left")
    fig.tight_layout()
    return save_figure(fig, out_png)


def _plot_emid(ax, emid: dict, rows: list[tuple[str, str, dict]], colours: list[str]) -> None:
    """EMID bars at the variants that have one (the reference variant has none), CI as error bars."""
    at = [(x, emid["variants"][name]) for x, (name, _, _) in enumerate(rows) if name in emid["variants"]]
    values = [e["emid"] for _, e in at]
    below = [e["emid"] - e["ci95"][0] for _, e in at]
    above = [e["ci95"][1] - e["emid"] for _, e in at]
    ax.bar([x for x, _ in at], values, yerr=[below, above], color=[colours[x] for x, _ in at], capsize=2)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel(f"EMID vs {emid['against']} (nats)\nlower = more robust", fontsize=8)
