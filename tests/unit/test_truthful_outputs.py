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
