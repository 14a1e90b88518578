"""Training-curve plots shared by `vittle train` (loss.png) and `vittle inspect` (run views)."""

from __future__ import annotations

import json
from pathlib import Path

from vittle_cli.fileio import save_figure

LOSS_KEYS = ("loss", "ce", "kl_v", "kl_t")
SUITE_KEYS = {"suite_clean_accuracy": "clean", "suite_shift_accuracy": "shifted (mean)"}


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
    """Render loss / ce / kl_v / kl_t (+ eval_loss) (left), alpha (middle) and, when train.eval_suite ran,
    clean and shifted accuracy (right) against step into a PNG, atomically.

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
    suite_rows = [r for r in rows if any(r.get(k) is not None for k in SUITE_KEYS)]
    fig, axes = plt.subplots(1, 3 if suite_rows else 2, figsize=(15 if suite_rows else 10, 3.6))
    ax_loss, ax_alpha = axes[0], axes[1]
    for key in LOSS_KEYS:
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax_loss.plot(*zip(*pts, strict=True), label=key)
    pts = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") is not None]
    if pts:
        ax_loss.plot(*zip(*pts, strict=True), "o--", label="eval_loss (data.eval)")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("value")
    ax_loss.set_title("loss terms")
    if ax_loss.lines:
        ax_loss.legend()
    pts = [(r["step"], r["alpha"]) for r in rows if r.get("alpha") is not None]
    if pts:
        ax_alpha.plot(*zip(*pts, strict=True), color="tab:purple")
    ax_alpha.set_xlabel("step")
    ax_alpha.set_ylabel("alpha")
    ax_alpha.set_title("bottleneck mixing weight")
    if suite_rows:
        _plot_robustness(axes[2], suite_rows)
    fig.tight_layout()
    save_figure(fig, out_png)
    return out_png


def _plot_robustness(ax, rows: list[dict]) -> None:
    """train.eval_suite accuracy on clean and shifted inputs against step (the robustness curve)."""
    for key, label in SUITE_KEYS.items():
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_title("eval suite while training")
    ax.legend()
