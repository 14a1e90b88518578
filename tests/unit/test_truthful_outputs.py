"""Issue 11: one definition, one number: what tables, JSON files and figures say agrees."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from vittle_cli.eval.metrics import summarise_variants
from vittle_cli.eval.report import print_table


def _pooled(f1: float, acc: float) -> dict:
    return {
        "n": 10,
        "f1": f1,
        "accuracy": acc,
        "precision": acc,
        "recall": acc,
        "yes_ratio": 0.5,
        "ambiguous": 0,
    }


def test_delta_f1_is_variant_minus_clean_in_table_and_results_json():
    per_variant = {"clean": {"all": _pooled(0.9, 0.8)}, "blur@3": {"all": _pooled(0.7, 0.6)}}
    groups = {"clean": "clean", "blur@3": "visual"}
    keys = ("f1", "accuracy", "precision", "recall", "yes_ratio", "ambiguous")
    summary = summarise_variants(per_variant, groups, keys=keys)
    assert summary["deltas"]["blur@3"]["f1"] == pytest.approx(-0.2)  # variant - clean
    assert summary["groups"]["visual"]["delta_f1"] == pytest.approx(-0.2)
    results = {
        "suite": {"name": "s"},
        "model": "m",
        "variants": [{"name": "clean", "group": "clean"}, {"name": "blur@3", "group": "visual"}],
        "metrics": per_variant,
        "summary": summary,
    }
    buf = io.StringIO()
    print_table(results, Console(file=buf, width=200))
    blur_row = next(line for line in buf.getvalue().splitlines() if "blur@3" in line)
    assert blur_row.rstrip(" │").split()[-1] == "-20.0"


def _synthetic_embeddings(tmp_path):
    """An EmbeddingsReport over random arrays: one model with an active bottleneck, two shifted variants."""
    import numpy as np

    from vittle_cli.inspect.embeddings import EmbeddingsReport, VariantMetric, _pair_metrics

    rng = np.random.default_rng(0)
    variants = [("clean", "clean"), ("blur@3", "visual"), ("typo@3", "text")]
    arrays = {}
    for name, _ in variants:
        for modality in ("visual", "text"):
            for stage, scale in (("before", 0.3), ("after", 0.1)):
                base = rng.normal(size=(24, 8)).astype(np.float32) if name == "clean" else None
                key = f"model/{name}/{modality}/{stage}"
                clean_key = f"model/clean/{modality}/{stage}"
                arrays[key] = (
                    base
                    if base is not None
                    else arrays[clean_key]
                    + scale * (1 + len(name)) * rng.normal(size=(24, 8)).astype(np.float32)
                )
    report = EmbeddingsReport(
        out=str(tmp_path),
        suite="s",
        models=[{"tag": "model", "source": "m", "layers": {"visual": 6, "text": 6},
                 "bottleneck_active": {"visual": True, "text": True}}],
        variants=[{"name": n, "group": g} for n, g in variants],
        question_ids=[str(i) for i in range(24)],
    )  # fmt: skip
    for name, group in variants[1:]:
        for modality in ("visual", "text"):
            for stage in ("before", "after"):
                cos, jsd, n = _pair_metrics(
                    arrays[f"model/clean/{modality}/{stage}"], arrays[f"model/{name}/{modality}/{stage}"]
                )
                report.metrics.append(VariantMetric("model", name, group, modality, stage, cos, jsd, n))
    return report, arrays


def test_embeddings_shift_mean_is_one_number_in_table_histogram_and_pca(tmp_path, monkeypatch):
    import re
    from types import SimpleNamespace

    import vittle_cli.inspect.figures as figures
    from vittle_cli.inspect.embeddings import _write_outputs, render_embeddings_report

    report, arrays = _synthetic_embeddings(tmp_path)
    figs = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: figs.append(fig) or path)
    chosen = [SimpleNamespace(name=v["name"], group=v["group"]) for v in report.variants[1:]]
    _write_outputs(report, arrays, "clean", chosen, tmp_path)
    buf = io.StringIO()
    render_embeddings_report(report, Console(file=buf, width=250))
    row = next(line for line in buf.getvalue().splitlines() if "shift mean (all shifts)" in line)
    visual_cos_after = re.findall(r"([0-9.]+)->([0-9.]+)", row)[0][1]  # visual cosine distance, after
    pca, hist = figs
    pca_titles = [ax.get_title() for ax in pca.axes]
    assert any("after bottleneck | visual tokens" in t and f"cos {visual_cos_after}" in t for t in pca_titles)
    legend = [t.get_text() for t in hist.axes[0].get_legend().get_texts()]
    assert f"m after bottleneck (shift mean {visual_cos_after})" in legend


def test_cosine_histogram_draws_outlines_so_before_is_not_hidden_under_after(tmp_path, monkeypatch):
    import numpy as np

    import vittle_cli.inspect.figures as figures

    figs = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: figs.append(fig) or path)
    rng = np.random.default_rng(1)
    clean = rng.normal(size=(30, 6))
    items = [
        {"label": stage, "clean": clean, "shifted": [clean + scale * rng.normal(size=(30, 6))]}
        for stage, scale in (("before", 0.5), ("after", 0.5))
    ]
    figures.cosine_hist_figure({"visual": items}, tmp_path / "h.png")
    patches = figs[0].axes[0].patches
    assert patches and not any(p.get_fill() for p in patches)


def test_loss_png_draws_kl_on_its_own_axis(tmp_path, monkeypatch):
    import json

    import vittle_cli.plots as plots

    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figs.append(fig) or path)
    rows = [{"step": s, "loss": 3.0 - s / 100, "ce": 3.0 - s / 100, "kl_v": 1e-3 * s, "kl_t": 2e-3 * s,
             "alpha": 0.01 * s} for s in range(1, 11)]  # fmt: skip
    src = tmp_path / "metrics.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plots.plot_metrics(src, tmp_path / "loss.png")
    owner = {line.get_label(): ax for ax in figs[0].axes for line in ax.lines}
    assert owner["kl_v"] is owner["kl_t"] and owner["kl_v"] is not owner["ce"]
    low, high = owner["kl_v"].get_ylim()
    assert high - low < 0.1  # scaled to KL (0.001-0.02), not to CE (about 3)


def test_run_info_records_the_thread_count(monkeypatch):
    import torch

    from vittle_cli.train.rundir import run_info

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    info = run_info(seed=1, world_size=1, resumed_from=None, command=["vittle"])
    assert info["torch_threads"] == torch.get_num_threads() and info["omp_num_threads"] == "3"


def test_docs_say_what_the_code_does():
    from pathlib import Path

    from vittle_cli.model.bottleneck import VittleConfig
    from vittle_cli.recipe import OutputSection
    from vittle_cli.train.rundir import run_dir_for

    root = Path(__file__).resolve().parents[2]
    user_docs = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    assert not [p.name for p in user_docs if "METHOD.md" in p.read_text(encoding="utf-8")]  # not shipped
    # The bottleneck may sit on the last decoder layer; the docs say so.
    assert VittleConfig(layer_v=-1).resolve_layers(8) == (7, 7)
    recipes_md = (root / "docs" / "recipes.md").read_text(encoding="utf-8")
    assert "cannot host" not in recipes_md and "the last layer (`-1`) hosts it too" in recipes_md
    # output.run_name null is the recipe file's name, as the schema (and so docs/recipes.md) says.
    assert run_dir_for("runs", None, "recipes/tiny.yaml") == Path("runs/tiny")
    assert "recipe file's name" in OutputSection.model_fields["run_name"].description
