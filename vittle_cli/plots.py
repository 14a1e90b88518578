"""Training-curve plots shared by `vittle train` (loss.png) and `vittle inspect` (run views)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

LOSS_KEYS = ("loss", "ce", "kl_v", "kl_t")


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
    """Render loss / ce / kl_v / kl_t (left) and alpha (right) against step into a PNG, atomically.

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
    fig, (ax_loss, ax_alpha) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in LOSS_KEYS:
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax_loss.plot(*zip(*pts, strict=True), label=key)
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
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_png.name}.", suffix=".png", dir=out_png.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, out_png)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return out_png
