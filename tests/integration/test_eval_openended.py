"""`vittle eval` on the LLM-judged suites end to end: builtin:tiny-llava answers, a scripted chat-completions
server on 127.0.0.1 (or a tiny local HF model) judges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chat_server import ChatServer
from cli_runner import run_cli
from openended_data import make_lbcoco, make_lbwild

from vittle_cli.data.shift.suite import shipped_suites

KEY = "sk-e2e-SECRET-9876543210"
OBSTACLE = "What may be a potential obstacle"  # question 23: the judge's reply to it is unreadable


def _reply(user: str) -> str:
    if user.startswith("Translate the following"):
        return "DE: " + user.splitlines()[-1]
    if OBSTACLE in user:
        return "Assistant 1 is better.\nThe first answer is more complete."
    return "8 6\nAssistant 1 is more complete."


def _shift_suite(tmp_path: Path) -> Path:
    """lbcoco-shift's first variants: clean, one visual, one translation, one joint."""
    spec = yaml.safe_load(shipped_suites()["lbcoco-shift"].read_text())
    keep = {"clean", "snow@3", "translate_de", "brightness@3+translate_de"}
    spec["variants"] = [
        v
        for v in spec["variants"]
        if v.get("name", "") in keep or (v.get("group") == "visual" and v["visual"]["name"] == "snow")
    ]
    spec["name"] = "lbcoco-shift-mini"
    path = tmp_path / "lbcoco-shift-mini.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _args(suite, data_root, out, url, *extra):
    return [
        "eval", "--suite", str(suite), "--model", "builtin:tiny-llava", "--data-root", str(data_root),
        "--out", str(out), "--max-new-tokens", "6", "--batch-size", "4",
        "--judge", "judge-model", "--judge-url", url, "--judge-key-env", "VITTLE_TEST_JUDGE_KEY",
        "--judge-retries", "2", "--judge-timeout", "10", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_lbcoco_shift_with_api_judge_then_rerun_makes_no_request(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VITTLE_TEST_JUDGE_KEY", KEY)
    root, out, suite = make_lbcoco(tmp_path), tmp_path / "out", _shift_suite(tmp_path)
    with ChatServer(script=[429, 500], default=_reply) as server:
        assert run_cli(_args(suite, root, out, server.url)) == 0
    translations = [r for r in server.requests if r["messages"][1]["content"].startswith("Translate")]
    reviews = [r for r in server.requests if r["messages"][1]["content"].startswith("[Context]")]
    # one per question, made once for the text and the joint variant (the 429 and the 500 hit two of them)
    assert len({r["messages"][1]["content"] for r in translations}) == 6 and len(translations) == 8
    assert len(reviews) == 4 * 6 * 3  # variants x questions x 3 runs (API default)
    assert len(server.requests) == 6 + 72 + 2  # + the 429 and the 500, retried

    results = json.loads((out / "results.json").read_text())
    assert results["judge"]["runs"] == 3 and results["judge"]["requests"] == {
        "translations": 6,
        "judgments": 72,
    }
    clean = results["metrics"]["clean"]
    assert clean["all"]["unparseable"] == 3  # question 23, once per run, counted and left out
    assert clean["all"]["relative_score"] == pytest.approx(0.75)  # RP 75.0 = 100 * 6 / 8
    assert clean["splits"]["complex"]["relative_score"] == pytest.approx(0.75)
    assert set(results["summary"]["groups"]) == {"clean", "visual", "text", "joint"}
    preds = [json.loads(row) for row in (out / "predictions.jsonl").read_text().splitlines()]
    de = [p for p in preds if p["variant"] == "translate_de"]
    assert de and all(p["text"].startswith("DE: ") for p in de)  # the model got the translation
    review_texts = [r["messages"][1]["content"] for r in reviews]
    assert not any("DE: " in t for t in review_texts)  # the judge always sees the clean question
    assert (out / "results.png").stat().st_size > 0
    shift = results["representation_shift"]
    assert set(shift) == {"snow@3", "translate_de", "brightness@3+translate_de"}  # every shifted variant
    assert all(shift[v]["visual"] >= 0 and shift[v]["text"] >= 0 and shift[v]["n"] == 6 for v in shift)
    assert shift["translate_de"]["text"] > 0  # another question text moves the text tokens' states

    for path in [*out.rglob("*"), *Path(__import__("os").environ["VITTLE_CACHE"]).rglob("*.jsonl")]:
        if path.is_file():
            assert KEY not in path.read_bytes().decode("utf-8", "replace"), path
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err

    assert (
        run_cli(["eval", "compare", str(out), str(out / "results.json"), "--out", str(tmp_path / "cmp")]) == 0
    )
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert cmp["metric"] == "relative_score" and cmp["values"][1][0] == pytest.approx(0.75)
    assert cmp["group_values"][0][cmp["groups"].index("visual")] == pytest.approx(0.75)

    port = int(server.url.rsplit(":", 1)[1].split("/")[0])  # the same endpoint: the judge id includes it
    with ChatServer(default=_reply, port=port) as again:
        assert run_cli(_args(suite, root, out, again.url, "--overwrite")) == 0
    assert again.requests == []
    rerun = json.loads((out / "results.json").read_text())
    assert rerun["metrics"] == results["metrics"] and rerun["answers_computed"] == 0
    assert rerun["representation_shift"] == shift
    assert "loading builtin:tiny-llava" not in capsys.readouterr().err  # nothing left that needs the model


@pytest.mark.slow
def test_judge_that_stops_answering_keeps_answers_and_judgments(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VITTLE_TEST_JUDGE_KEY", KEY)
    root, out = make_lbcoco(tmp_path), tmp_path / "out"
    suite = shipped_suites()["lbcoco"]
    with ChatServer(script=["8 6", "7 7"], default=500) as server:
        code = run_cli(
            _args(
                suite,
                root,
                out,
                server.url,
                "--judge-runs",
                "1",
                "--judge-concurrency",
                "1",
                "--judge-retries",
                "1",
            )
        )
    err = capsys.readouterr().err
    assert code == 1
    line = [x for x in err.splitlines() if "gave no answer" in x]
    assert len(line) == 1 and KEY not in err and "Traceback" not in err
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 6
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 2
    assert not (out / "results.json").exists()


def test_openended_suite_without_judge_is_a_usage_error(tmp_path, capsys):
    root = make_lbcoco(tmp_path)
    code = run_cli(["eval", "--suite", "lbcoco", "--model", "builtin:tiny-llava", "--data-root", str(root)])
    assert code == 2 and "pass --judge MODEL" in capsys.readouterr().err


def _tiny_judge(path: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from vittle_cli.model.builtin import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.slow
def test_lbwild_with_a_tiny_local_hf_judge(tmp_path, capsys):
    root, out = make_lbwild(tmp_path), tmp_path / "out"
    judge = _tiny_judge(tmp_path / "judge")
    args = ["eval", "--suite", "lbwild", "--model", "builtin:tiny-llava", "--data-root", str(root), "--out", str(out),
            "--max-new-tokens", "5", "--judge", f"hf:{judge}"]  # fmt: skip
    assert run_cli(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["judge"]["id"] == f"hf:{judge}" and results["judge"]["runs"] == 1
    block = results["metrics"]["clean"]["all"]
    assert block["judgments"] == 4 and block["n"] == 4
    # a random tiny LM does not write "s1 s2": every reply is counted as unparseable, no score is invented
    assert block["unparseable"] == 4 and block["relative_score"] is None
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 4
    assert "n/a" in capsys.readouterr().err


@pytest.mark.slow
def test_inspect_embeddings_accepts_an_open_ended_suite(tmp_path):
    root, out = make_lbcoco(tmp_path), tmp_path / "emb"
    args = ["inspect", "embeddings", "--model", "builtin:tiny-llava", "--suite", "lbcoco-shift", "--data-root",
            str(root), "--variants", "snow@3", "--variants", "keyboard@3", "--out", str(out)]  # fmt: skip
    assert run_cli(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["question_ids"]) == 6
    names = {m["variant"] for m in manifest["metrics"]}
    assert names == {"snow@3", "keyboard@3"}


@pytest.mark.parametrize("break_it", ["rule", "reference"])
def test_bad_input_is_one_line_before_any_model_work(tmp_path, capsys, break_it):
    root = make_lbcoco(tmp_path)
    if break_it == "rule":
        rules = json.loads((root / "rule.json").read_text())
        del rules["detail"]
        (root / "rule.json").write_text(json.dumps(rules))
    else:
        lines = (root / "qa90_gpt4_answer.jsonl").read_text().splitlines()
        (root / "qa90_gpt4_answer.jsonl").write_text("\n".join(lines[1:]) + "\n")
    out = tmp_path / "out"
    code = run_cli(["eval", "--suite", "lbcoco", "--model", "builtin:tiny-llava", "--data-root", str(root),
                    "--judge", "hf:unused", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and len(err) == 1 and "Traceback" not in err[0]
    assert ("no rule for detail" if break_it == "rule" else "no reference answer") in err[0]
    assert not (out / "predictions.jsonl").exists()
