"""`vittle eval --emid`: EMID as part of an open-ended eval's results (builtin:tiny-llava answers, a scripted
chat-completions judge on 127.0.0.1, tiny random encoders built in code; nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chat_server import ChatServer
from cli_runner import run_cli
from emid_encoders import build_tiny_encoders
from openended_data import make_lbcoco

from vittle_cli.data.shift.suite import shipped_suites

KEY = "sk-emid-test"


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> tuple[str, str]:
    return build_tiny_encoders(tmp_path_factory.mktemp("encoders"))


def _suite(tmp_path: Path) -> Path:
    """lbcoco-shift cut to a clean, a visual and a text variant."""
    spec = yaml.safe_load(shipped_suites()["lbcoco-shift"].read_text())
    kept = {("clean", None), ("visual", "snow"), ("text", "keyboard")}
    spec["variants"] = [
        v
        for v in spec["variants"]
        if (v["group"], (v.get("visual") or v.get("text") or {}).get("name")) in kept
    ]
    spec["name"] = "lbcoco-emid-mini"
    path = tmp_path / "lbcoco-emid-mini.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _args(suite, root, out, url, encoders, *extra) -> list[str]:
    return [
        "eval", "--suite", str(suite), "--model", "builtin:tiny-llava", "--data-root", str(root),
        "--out", str(out), "--max-new-tokens", "6", "--batch-size", "4", "--device", "cpu",
        "--judge", "judge-model", "--judge-url", url, "--judge-key-env", "VITTLE_TEST_JUDGE_KEY",
        "--judge-runs", "1", "--emid", "--vision-encoder", encoders[0], "--text-encoder", encoders[1],
        "--club-steps", "20", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_eval_emid_column_resume_cache_inspect_and_compare(tmp_path, monkeypatch, capsys, encoders):
    monkeypatch.setenv("VITTLE_TEST_JUDGE_KEY", KEY)
    root, out, suite = make_lbcoco(tmp_path), tmp_path / "out", _suite(tmp_path)
    with ChatServer(default="8 6\nclose to the reference") as server:
        # an EMID step interrupted after the answers and judgments: no results.json, the same command resumes
        import vittle_cli.inspect.emid_run as emid_run

        def interrupt(*a, **k):
            raise KeyboardInterrupt

        with monkeypatch.context() as m:
            m.setattr(emid_run, "fitted_club", interrupt)
            assert run_cli(_args(suite, root, out, server.url, encoders)) == 130
        assert not (out / "results.json").exists()
        judged = len(server.requests)
        assert judged == 3 * 6  # variants x questions, one judge run each
        capsys.readouterr()

        assert run_cli(_args(suite, root, out, server.url, encoders)) == 0
        assert len(server.requests) == judged  # answers and judgments came from the caches
        printed = capsys.readouterr()
        results = json.loads((out / "results.json").read_text())
        assert results["answers_computed"] == 0
        emid = results["emid"]
        assert emid["against"] == "clean" and set(emid["variants"]) == {"snow@3", "keyboard@3"}
        assert set(emid["groups"]) == {"visual", "text"} and emid["mean"]["variants"] == 2
        assert (
            emid["questions"] == 6 and emid["skipped"] == [] and emid["embedded_now"] == 0
        )  # kept from try 1
        for name in ("snow@3", "keyboard@3"):  # EMID = EMI(clean) - EMI(shifted)
            v = emid["variants"][name]
            assert v["emid"] == pytest.approx(
                emid["emi"]["clean"]["emi"] - emid["emi"][name]["emi"], abs=1e-6
            )
            assert v["ci95"][0] <= v["ci95"][1] and v["bound"] > 0
            assert set(v) >= {"jsd_image", "jsd_query", "jsd_answers_clean", "jsd_answers_shifted"}
        assert emid["variants"]["keyboard@3"]["jsd_image"] == pytest.approx(0.0, abs=1e-9)  # text-only shift
        assert emid["mean"]["emid"] == pytest.approx(
            (emid["variants"]["snow@3"]["emid"] + emid["variants"]["keyboard@3"]["emid"]) / 2
        )
        assert "EMID 95% CI" in printed.err and f"{emid['variants']['snow@3']['emid']:+.4f}" in printed.err
        assert "mean over 2 shifted variants" in printed.err

        # `vittle inspect emid` on the same folder, same encoders and estimator settings: the same numbers
        assert run_cli(["inspect", "emid", str(out), "--vision-encoder", encoders[0], "--text-encoder",
                        encoders[1], "--club-steps", "20", "--device", "cpu", "--json"]) == 0  # fmt: skip
        inspected = json.loads(capsys.readouterr().out)
        assert inspected["variants"] == emid["variants"] and inspected["groups"] == emid["groups"]

        # a rerun reuses everything: no embedding, the fitted estimator kept, the same EMID
        club = out / "emid" / "club.safetensors"
        mtime = club.stat().st_mtime_ns
        assert run_cli(_args(suite, root, out, server.url, encoders, "--overwrite")) == 0
        rerun = json.loads((out / "results.json").read_text())
        assert rerun["emid"]["embedded_now"] == 0 and club.stat().st_mtime_ns == mtime
        assert rerun["emid"]["variants"] == emid["variants"] and len(server.requests) == judged

    # compare: EMID beside the judged metric where both runs have it
    capsys.readouterr()
    assert (
        run_cli(["eval", "compare", str(out), str(out / "results.json"), "--out", str(tmp_path / "c")]) == 0
    )
    assert "EMID (nats; lower = more robust)" in capsys.readouterr().out
    cmp = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert cmp["emid"]["variants"] == ["snow@3", "keyboard@3"]
    assert cmp["emid"]["values"][1][0] == pytest.approx(emid["variants"]["snow@3"]["emid"])
    assert cmp["emid"]["notes"] == []  # one estimator, one pair of encoders
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "results.json").write_text(json.dumps({k: v for k, v in rerun.items() if k != "emid"}))
    assert run_cli(["eval", "compare", str(out), str(plain), "--out", str(tmp_path / "c2")]) == 0
    assert "emid" not in json.loads((tmp_path / "c2" / "compare.json").read_text())


@pytest.mark.parametrize("bad", ["vision", "text", "club", "pope"])
def test_bad_emid_request_is_one_line_before_any_work(tmp_path, capsys, encoders, bad):
    root, out = make_lbcoco(tmp_path), tmp_path / "out"
    vision, text = encoders
    extra = []
    if bad == "vision":
        vision = str(tmp_path / "no-such-clip")
    elif bad == "text":
        text = str(tmp_path)  # a folder, but no model in it
    elif bad == "club":
        extra = ["--club", str(tmp_path / "missing.pt")]
    args = ["eval", "--suite", "shapes-shift" if bad == "pope" else "lbcoco-shift", "--model", "builtin:tiny-llava",
            "--data-root", str(root), "--out", str(out), "--judge", "hf:unused", "--emid",
            "--vision-encoder", vision, "--text-encoder", text, *extra]  # fmt: skip
    assert run_cli(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    expected = {
        "vision": "--vision-encoder",
        "text": "--text-encoder",
        "club": "--club",
        "pope": "lbcoco-shift",
    }
    assert expected[bad] in err[0]
    assert not out.exists()  # refused before any answer
