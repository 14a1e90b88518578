"""Pictures of representation shift: PCA scatter (clean vs shifted) and clean-vs-shifted cosine histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vittle_cli.fileio import save_figure
from vittle_cli.model.repr_metrics import cosine_distances, pca_2d

GROUP_COLOURS = {"visual": "tab:blue", "text": "tab:orange", "joint": "tab:red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finite(*arrays: np.ndarray) -> np.ndarray:
    """Row mask where every array is finite (text-only questions have no visual rows)."""
    mask = np.ones(arrays[0].shape[0], dtype=bool)
    for a in arrays:
        mask &= np.isfinite(a).all(axis=1)
    return mask


def pca_figure(panels: list[dict], out: Path) -> Path:
    """One scatter per panel: clean points and every shifted variant's points in a shared PCA frame.

    Args:
        panels: dicts with "title", "clean" (n, d) and "shifted" [(group, (n, d)), ...]; two panels per row.
    """
    plt = _pyplot()
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.4 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        clean = panel["clean"][_finite(panel["clean"])]
        shifted = [(g, s[_finite(s)]) for g, s in panel["shifted"] if _finite(s).any()]
        if clean.shape[0] == 0:
            ax.set_axis_off()
            continue
        projected = pca_2d(clean, *[s for _, s in shifted])
        seen = set()
        for (group, _), pts in zip(shifted, projected[1:], strict=True):
            label = f"{group} shifts" if group not in seen else None
            seen.add(group)
            ax.scatter(
                pts[:, 0], pts[:, 1], s=7, alpha=0.35, color=GROUP_COLOURS.get(group, "gray"), label=label
            )
        ax.scatter(projected[0][:, 0], projected[0][:, 1], s=12, color="black", label="clean")
        ax.set_title(panel["title"], fontsize=8)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_axis_off()
    fig.suptitle("mean-pooled hidden states at the bottleneck layer: clean vs shifted (PCA)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # keep the suptitle clear of row 1
    return save_figure(fig, out)


def cosine_hist_figure(series: dict[str, list[dict]], out: Path) -> Path:
    """Per modality, overlaid histograms of per-sample clean-vs-shifted cosine distance.

    Args:
        series: modality -> [{"label", "clean" (n, d), "shifted": [(n, d), ...]}]; shifted variants pooled.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(5.4 * len(series), 3.8), squeeze=False)
    for ax, (modality, items) in zip(axes.flat, series.items(), strict=True):
        pooled = []
        for item in items:
            dists = []
            for s in item["shifted"]:
                keep = _finite(item["clean"], s)
                if keep.any():
                    dists.append(cosine_distances(item["clean"][keep], s[keep]))
            pooled.append((item["label"], np.concatenate(dists) if dists else np.zeros(0)))
        values = [v for _, v in pooled if v.size]
        if values:
            bins = np.histogram_bin_edges(np.concatenate(values), bins=40)  # one grid: bars line up
            for label, v in pooled:
                if v.size:
                    ax.hist(v, bins=bins, alpha=0.5, label=f"{label} (mean {v.mean():.3g})")
        ax.set_title(f"{modality} tokens", fontsize=10)
        ax.set_xlabel("cosine distance, clean vs shifted (paired)")
        ax.set_ylabel("samples")
        if ax.patches:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out)
