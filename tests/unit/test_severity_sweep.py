"""Severity sweeps: the suite expansion (data/shift/sweep.py), the curves (eval/sweep.py), and
`vittle eval --severities` + `vittle eval compare` end to end with builtin:tiny-llava on shapes-shift."""

from __future__ import annotations

import json

import pytest
from cli_runner import run_cli

from vittle_cli.data.shift.suite import load_suite
from vittle_cli.data.shift.sweep import parse_int_list, severity_sweep
from vittle_cli.errors import UsageError
from vittle_cli.eval.sweep import severity_curves


def test_parse_severities():
    assert parse_int_list("3,1, 2,3", "--severities") == [1, 2, 3]
    for bad in ("0,1", "1,6", "a", ""):
        with pytest.raises(UsageError, match="--severities"):
            parse_int_list(bad, "--severities")


def test_sweep_expands_single_shifts_without_joint_or_translation():
    full = severity_sweep(load_suite("shapes-shift"), [1, 2, 3, 4, 5])
    assert full.name == "shapes-shift-sweep"
    assert len(full.variants) == 1 + 9 * 5 + 9 * 5 and not any(v.group == "joint" for v in full.variants)
    some = severity_sweep(load_suite("lbcoco-shift"), [1, 5], ["snow", "keyboard"])
    assert [v.name for v in some.variants] == ["clean", "snow@1", "snow@5", "keyboard@1", "keyboard@5"]
    lb = severity_sweep(load_suite("lbcoco-shift"), [2])
    assert not any(v.name.startswith("translate") for v in lb.variants)
    with pytest.raises(UsageError, match="translate_de"):
        severity_sweep(load_suite("lbcoco-shift"), [2], ["translate_de"])


def test_curves_sorted_with_clean_at_zero():
    def m(v):
        return {"all": {"f1": v}}

    results = {
        "task": {"primary_metric": "f1"},
        "variants": [
            {"name": "clean", "group": "clean"},
            {"name": "snow@3", "group": "visual", "visual": {"name": "snow", "severity": 3}},
            {"name": "snow@1", "group": "visual", "visual": {"name": "snow", "severity": 1}},
            {"name": "keyboard@2", "group": "text", "text": {"name": "keyboard", "rate": 2}},
        ],
        "metrics": {"clean": m(0.9), "snow@3": m(0.5), "snow@1": m(0.8), "keyboard@2": m(0.7)},
    }
    curves = severity_curves(results)
    assert curves["clean"] == 0.9
    assert curves["shifts"] == {"snow": {"kind": "visual", "severity": [1, 3], "value": [0.8, 0.5]}}


@pytest.mark.slow
def test_tiny_model_sweep_on_shapes_then_compare(tmp_path, capsys):
    base = ["eval", "--suite", "shapes-shift", "--model", "builtin:tiny-llava", "--severities", "1,3,5",
            "--sweep-shifts", "snow,keyboard", "--limit", "2", "--batch-size", "8", "--device", "cpu"]  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli([*base, "--out", str(a)]) == 0
    assert run_cli([*base, "--out", str(b), "--max-new-tokens", "2"]) == 0
    doc = json.loads((a / "severity.json").read_text())
    (curves,) = doc["models"].values()
    assert doc["metric"] == "f1" and set(curves["shifts"]) == {"snow", "keyboard"}
    assert (
        curves["shifts"]["snow"]["severity"] == [1, 3, 5] and len(curves["shifts"]["keyboard"]["value"]) == 3
    )
    assert (a / "severity.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads((a / "results.json").read_text())
    assert curves["shifts"]["snow"]["value"][0] == results["metrics"]["snow@1"]["all"]["f1"]

    cmp = tmp_path / "cmp"
    assert run_cli(["eval", "compare", str(a), str(b), "--out", str(cmp)]) == 0
    both = json.loads((cmp / "severity.json").read_text())
    assert len(both["models"]) == 2 and (cmp / "severity.png").is_file()
