"""`vittle eval` end to end on the untrained builtin:tiny-llava (real loader and generation engine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_runner import run_cli as run_main

VARIANTS = [
    {"name": "clean", "group": "clean"},
    {"group": "visual", "visual": {"name": "gaussian_noise", "severity": 3}},
    {"group": "text", "text": {"name": "keyboard", "rate": 3}},
    {
        "group": "joint",
        "visual": {"name": "gaussian_noise", "severity": 3},
        "text": {"name": "keyboard", "rate": 3},
    },
]


@pytest.fixture()
def suite_file(tmp_path) -> Path:
    p = tmp_path / "tiny-shift.yaml"
    p.write_text(yaml.safe_dump({"name": "tiny-shift", "data": "builtin:shapes", "variants": VARIANTS}))
    return p


@pytest.mark.slow
def test_eval_end_to_end_then_rerun_without_the_model(
    suite_file, tmp_path, monkeypatch, capsys, tiny_model_dir
):
    out = tmp_path / "ev"
    args = [
        "eval",
        "--suite",
        str(suite_file),
        "--model",
        "builtin:tiny-llava",
        "--limit",
        "1",
        "--out",
        str(out),
        "--batch-size",
        "4",
    ]
    assert run_main(args) == 0
    doc = json.loads((out / "results.json").read_text())
    assert [v["name"] for v in doc["variants"]] == [
        "clean",
        "gaussian_noise@3",
        "keyboard@3",
        "gaussian_noise@3+keyboard@3",
    ]
    assert doc["answers_computed"] == 4 * 3
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 12 and all(isinstance(p["answer"], str) for p in preds)
    assert all(p["text"].endswith("\nAnswer the question using a single word or phrase.") for p in preds)
    assert (out / "results.png").is_file()
    assert "tiny-shift" in capsys.readouterr().err

    assert run_main(args) == 2  # finished: never overwritten silently
    assert "--overwrite" in capsys.readouterr().err

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded when every answer is cached")

    monkeypatch.setattr("vittle_cli.model.checkpoint.load_vittle_model", no_model)
    assert run_main([*args, "--overwrite"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["metrics"] == doc["metrics"] and again["answers_computed"] == 0

    assert (
        run_main(["eval", "compare", str(out), str(out / "results.json"), "--out", str(tmp_path / "cmp")])
        == 0
    )
    assert (tmp_path / "cmp" / "compare.png").is_file()


def test_eval_usage_errors(capsys):
    assert run_main(["eval", "--suite", "nope", "--model", "builtin:tiny-llava"]) == 2
    assert "shipped suites: " in capsys.readouterr().err
    assert run_main(["eval", "--suite", "pope-shift", "--model", "builtin:tiny-llava"]) == 2
    assert "--pope-root" in capsys.readouterr().err
    assert run_main(["eval", "--model", "builtin:tiny-llava"]) == 2
    assert run_main(["eval", "--suite", "shapes", "--model", "builtin:tiny-llava", "--dtype", "float8"]) == 2
    assert "--dtype float8: expected one of auto, float32 (fp32)" in capsys.readouterr().err
    assert run_main(["eval", "compare", "only-one"]) == 2
    assert (
        run_main(
            [
                "eval",
                "--suite",
                "pope",
                "--model",
                "builtin:tiny-llava",
                "--questions",
                "/nonexistent/q.jsonl",
                "--labels-dir",
                "/nonexistent",
                "--image-root",
                "/nonexistent",
            ]
        )
        == 2  # a data error: the user fixes the input
    )
    assert "POPE labels folder not found" in capsys.readouterr().err


def test_list_suites(capsys):
    assert run_main(["eval", "--list-suites"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("pope", "pope-shift", "shapes", "shapes-shift"))


def test_pope_data_errors_are_one_line_exit_2(tmp_path, capsys):
    from pope_fixtures import make_hf_layout, make_llava_layout

    root = make_llava_layout(tmp_path / "pope")
    parquet = make_hf_layout(tmp_path / "hf") / "data" / "test-00000-of-00003.parquet"
    base = ["eval", "--suite", "pope", "--model", "builtin:tiny-llava", "--out", str(tmp_path / "ev")]
    assert run_main([*base, "--pope-root", str(root), "--questions", str(parquet)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a binary file, not JSON lines" in err and "\n" not in err and "Traceback" not in err
    assert run_main([*base, "--pope-root", str(root), "--pope-layout", "csv"]) == 2
    assert "--pope-layout" in capsys.readouterr().err
