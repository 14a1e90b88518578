"""`vittle eval compare --arm ...`: several seeds per arm, through the CLI, on hand-built eval folders."""

import json

import pytest

from tests.cli_runner import run_cli
from vittle_cli.errors import UsageError
from vittle_cli.eval.compare_arms import parse_arm_args

VARIANTS = [("clean", "clean"), ("blur@3", "visual"), ("typo@3", "text")]
LABELS = ["yes", "no", "yes", "no"]


def eval_dir(path, answers_by_variant, suite="shapes-shift"):
    """An eval folder: results.json (only what compare reads) and predictions.jsonl."""
    path.mkdir(parents=True)
    recs = [
        {"variant": v, "question_id": f"q{i}", "split": "random", "answer": ans, "label": LABELS[i]}
        for v, answers in answers_by_variant.items()
        for i, ans in enumerate(answers)
    ]
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    doc = {
        "model": str(path),
        "suite": {"name": suite},
        "variants": [{"name": n, "group": g} for n, g in VARIANTS],
        "metrics": {v: {"all": {}} for v in answers_by_variant},
        "summary": {"groups": {}, "deltas": {}},
    }
    (path / "results.json").write_text(json.dumps(doc))
    return str(path)


ALL_RIGHT = ["Yes.", "No.", "Yes", "No"]
ALL_YES = ["Yes", "Yes", "Yes", "Yes"]


def test_arms_table_json_and_png(tmp_path):
    # arm "good": seed 1 all right everywhere; seed 2 all right except typo (all yes -> accuracy 0.5)
    g1 = eval_dir(tmp_path / "g1", {v: ALL_RIGHT for v, _ in VARIANTS})
    g2 = eval_dir(tmp_path / "g2", {"clean": ALL_RIGHT, "blur@3": ALL_RIGHT, "typo@3": ALL_YES})
    # arm "yes": always answers yes (accuracy 0.5), two seeds
    y1 = eval_dir(tmp_path / "y1", {v: ALL_YES for v, _ in VARIANTS})
    y2 = eval_dir(tmp_path / "y2", {v: ALL_YES for v, _ in VARIANTS})
    out = tmp_path / "cmp"
    args = [
        "eval",
        "compare",
        "--arm",
        "yes",
        y1,
        y2,
        "--arm",
        "good",
        g1,
        g2,
        "--metric",
        "accuracy",
        "--out",
        str(out),
    ]
    assert run_cli(args) == 0
    doc = json.loads((out / "compare.json").read_text())
    rows = {r["row"]: r for r in doc["rows"]}
    assert doc["questions_per_variant"] == 4 and doc["arms"]["good"] == [
        f"{g1}/results.json",
        f"{g2}/results.json",
    ]
    assert rows["typo@3"]["arms"]["good"]["values"] == [1.0, 0.5]
    assert rows["typo@3"]["arms"]["good"]["mean"] == pytest.approx(0.75)
    assert rows["typo@3"]["arms"]["good"]["sd"] == pytest.approx(0.3535534, abs=1e-6)  # |1 - 0.5| / sqrt(2)
    assert rows["clean"]["diffs"]["good"]["diff"] == pytest.approx(0.5)  # 1.0 - 0.5
    assert rows["typo@3"]["diffs"]["good"]["diff"] == pytest.approx(0.25)  # 0.75 - 0.5
    assert set(rows) >= {"mean clean", "mean visual", "mean text"}
    assert rows["mean text"]["arms"]["good"]["mean"] == pytest.approx(0.75)
    d = rows["clean"]["diffs"]["good"]
    assert d["lo"] <= d["diff"] <= d["hi"] and d["seed"] == 0
    assert (out / "compare.png").stat().st_size > 1000
    # the same inputs give the same intervals (seeded bootstrap)
    assert run_cli(args) == 0
    assert json.loads((out / "compare.json").read_text())["rows"] == doc["rows"]


def test_arms_pair_by_question_id_and_keep_shared_questions(tmp_path):
    a = eval_dir(tmp_path / "a", {"clean": ALL_RIGHT})
    b = eval_dir(tmp_path / "b", {"clean": ALL_YES[:3]})  # answered q0..q2 only
    out = tmp_path / "cmp"
    assert (
        run_cli(
            ["eval", "compare", "--arm", "a", a, "--arm", "b", b, "--metric", "accuracy", "--out", str(out)]
        )
        == 0
    )
    doc = json.loads((out / "compare.json").read_text())
    assert doc["questions_per_variant"] == 3
    assert doc["rows"][0]["arms"]["b"]["mean"] == pytest.approx(2 / 3)  # yes, yes, yes vs labels yes, no, yes
    assert run_cli(["eval", "compare", "--arm", "a", a, "--arm", "b", b, "--out", str(out)]) == 0
    doc = json.loads((out / "compare.json").read_text())
    # default metric F1: b's tp 2, fp 1, fn 0 -> precision 2/3, recall 1 -> F1 0.8
    assert doc["metric"] == "f1" and doc["rows"][0]["arms"]["b"]["mean"] == pytest.approx(0.8)


def test_arms_refuse_bad_input(tmp_path):
    a = eval_dir(tmp_path / "a", {"clean": ALL_RIGHT})
    other = eval_dir(tmp_path / "o", {"clean": ALL_RIGHT}, suite="pope-shift")
    assert run_cli(["eval", "compare", "--arm", "a", a, "--arm", "o", other]) == 2
    assert run_cli(["eval", "compare", "--arm", "a", a]) == 2
    (tmp_path / "a" / "predictions.jsonl").unlink()
    assert run_cli(["eval", "compare", "--arm", "a", a, "--arm", "b", a]) == 2


def test_parse_arm_args():
    assert parse_arm_args(["--arm", "v", "x", "y", "--arm", "b", "z"]) == [("v", ["x", "y"]), ("b", ["z"])]
    for bad in (
        ["x", "--arm", "v", "y"],
        ["--arm", "v", "--arm", "b", "z"],
        ["--arm", "v", "x", "--arm", "v", "y"],
    ):
        with pytest.raises(UsageError):
            parse_arm_args(bad)
    with pytest.raises(UsageError, match="unknown option"):
        parse_arm_args(["--arm", "v", "x", "--metirc", "--arm", "b", "z"])
