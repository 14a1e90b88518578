"""results.png of the LLM-judged suites: relative score per variant, and EMID beside it with --emid."""

from __future__ import annotations

import pytest

from vittle_cli.eval import openended_report


def _results(emid: bool) -> dict:
    names = [("clean", "clean", 0.9), ("snow@3", "visual", 0.7), ("keyboard@3", "text", 0.8)]
    results = {
        "suite": {"name": "lb-mini"},
        "model": "m",
        "variants": [{"name": n, "group": g} for n, g, _ in names],
        "metrics": {
            n: {"all": {"relative_score": rp, "relative_score_std": 0.01, "relative_score_runs": [rp]}}
            for n, _, rp in names
        },
    }
    if emid:
        results["emid"] = {
            "against": "clean",
            "variants": {
                "snow@3": {"emid": 0.25, "ci95": [0.1, 0.45], "bound": 0.6},
                "keyboard@3": {"emid": -0.05, "ci95": [-0.2, 0.0], "bound": 0.3},
            },
        }
    return results


def _drawn(monkeypatch, results: dict, tmp_path):
    figures = []
    monkeypatch.setattr(openended_report, "save_figure", lambda fig, path: figures.append(fig) or path)
    openended_report.plot_rp(results, tmp_path / "results.png")
    (fig,) = figures
    return fig


def _bars(ax) -> list[tuple[float, float]]:
    return [(round(p.get_x() + p.get_width() / 2), p.get_height()) for p in ax.patches]


def test_chart_has_one_relative_score_panel_without_emid(monkeypatch, tmp_path):
    fig = _drawn(monkeypatch, _results(emid=False), tmp_path)
    assert len(fig.axes) == 1
    assert _bars(fig.axes[0]) == [
        (0, pytest.approx(90.0)),
        (1, pytest.approx(70.0)),
        (2, pytest.approx(80.0)),
    ]


def test_chart_shows_emid_with_its_interval_at_the_shifted_variants(monkeypatch, tmp_path):
    fig = _drawn(monkeypatch, _results(emid=True), tmp_path)
    rp_ax, emid_ax = fig.axes
    assert len(_bars(rp_ax)) == 3
    # no bar at the clean variant (x = 0): EMID is measured against it
    assert _bars(emid_ax) == [(1, pytest.approx(0.25)), (2, pytest.approx(-0.05))]
    (bars,) = [c for c in emid_ax.containers if getattr(c, "errorbar", None) is not None]
    (errorbar,) = bars.errorbar.lines[2]
    segments = [sorted(seg[:, 1].tolist()) for seg in errorbar.get_segments()]
    assert segments == [pytest.approx([0.1, 0.45]), pytest.approx([-0.2, 0.0])]
    assert "EMID vs clean" in emid_ax.get_ylabel()
    assert [t.get_text() for t in emid_ax.get_xticklabels()] == ["clean", "snow@3", "keyboard@3"]
