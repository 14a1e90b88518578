"""Training-curve plots shared by `vittle train` (loss.png) and `vittle inspect` (run views)."""

from __future__ import annotations

import json
from pathlib import Path

from vittle_cli.fileio import save_figure

LOSS_KEYS = ("loss", "ce")
KL_KEYS = ("kl_v", "kl_t")  # their own panel: KL is orders of magnitude below CE, a flat zero on CE's axis


def read_metrics(metrics_jsonl: Path) -> list[dict]:
    """Rows of a metrics.jsonl file; a truncated last line (a run killed mid-write) is skipped."""
    rows = []
    for line in Path(metrics_jsonl).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_metrics(metrics_jsonl: Path, out_png: Path) -> Path:
    """Render loss / ce (left), kl_v / kl_t (middle, own axis) and alpha (right) against step into a PNG,
    atomically.

    Args:
        metrics_jsonl: a run's metrics.jsonl ({"step", "loss", "ce", "kl_v", "kl_t", "alpha", ...} per line).
        out_png: where to write the picture.
    Returns:
        out_png.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_jsonl) if "step" in r]
    fig, (ax_loss, ax_kl, ax_alpha) = plt.subplots(1, 3, figsize=(14, 3.6))
    for ax, keys, title in (
        (ax_loss, LOSS_KEYS, "loss terms"),
        (ax_kl, KL_KEYS, "KL to the prior (per token)"),
    ):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("value")
        ax.set_title(title)
        if ax.lines:
            ax.legend()
    pts = [(r["step"], r["alpha"]) for r in rows if r.get("alpha") is not None]
    if pts:
        ax_alpha.plot(*zip(*pts, strict=True), color="tab:purple")
    ax_alpha.set_xlabel("step")
    ax_alpha.set_ylabel("alpha")
    ax_alpha.set_title("bottleneck mixing weight")
    fig.tight_layout()
    save_figure(fig, out_png)
    return out_png
