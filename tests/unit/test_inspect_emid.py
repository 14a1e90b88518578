"""`vittle inspect emid` on a hand-made open-ended eval folder (LB-COCO fixture rows), with tiny random
CLIP-vision and XLM-RoBERTa encoders built in code and saved to a temp folder (nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from emid_encoders import DIM, build_tiny_encoders
from openended_data import make_lbcoco

from vittle_cli.data.shift.suite import load_suite
from vittle_cli.inspect.emid_run import EmidOptions, load_club, run_inspect_emid
from vittle_cli.model.emid import Embedded, emid_upper_bound


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> tuple[str, str]:
    return build_tiny_encoders(tmp_path_factory.mktemp("encoders"))


def _eval_folder(tmp_path: Path) -> Path:
    """results.json + predictions.jsonl as `vittle eval --suite lbcoco-shift` writes them, three variants."""
    root = make_lbcoco(tmp_path)
    suite = load_suite("lbcoco-shift").with_data({"data_root": str(root)})
    keep = [v for v in suite.variants if v.name in ("clean", "snow@3", "keyboard@3")]
    from vittle_cli.data.shift.openended import load_openended_suite

    items = load_openended_suite(suite).items
    out = tmp_path / "eval"
    out.mkdir()
    results = {
        "suite": {"name": suite.name, "description": "", "seed": suite.seed,
                  "data": suite.model_dump(mode="json")["data"]},
        "task": {"name": "openended"}, "prompt_suffix": suite.prompt_suffix,
        "variants": [v.model_dump(mode="json") for v in keep],
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(results))
    rows = []
    for v in keep:
        for i, it in enumerate(items):
            answer = it.reference if v.name == "clean" else f"I cannot tell {i % 2}."
            rows.append({"variant": v.name, "group": v.group, "question_id": it.question_id,
                         "image": it.image, "text": it.text, "answer": answer})  # fmt: skip
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


class _Quiet:
    def print(self, *a, **k):
        pass


def _opts(encoders, tmp_path, **kw) -> EmidOptions:
    return EmidOptions(vision_encoder=encoders[0], text_encoder=encoders[1], hidden_size=32, train_steps=30,
                       resamples=20, cache_dir=tmp_path / "cache", **kw)  # fmt: skip


def test_emid_report_cache_and_checkpoint(tmp_path, encoders):
    out = _eval_folder(tmp_path)
    report = run_inspect_emid(out, _opts(encoders, tmp_path), _Quiet())
    assert report["against"] == "clean" and report["questions"] == 6 and report["embedded_now"] == 3
    assert set(report["variants"]) == {"snow@3", "keyboard@3"}
    assert set(report["groups"]) == {"visual", "text"}
    saved = json.loads((out / "emid.json").read_text())
    assert saved["variants"]["snow@3"]["emid"] == pytest.approx(report["variants"]["snow@3"]["emid"])
    # EMID = EMI(clean) - EMI(shifted), from the report's own EMI terms
    assert report["variants"]["snow@3"]["emid"] == pytest.approx(
        report["emi"]["clean"]["emi"] - report["emi"]["snow@3"]["emi"], abs=1e-6
    )
    # the bound terms are those of the cached embeddings; a text-only shift leaves the images alone
    z = {n: np.load(out / "emid" / f"emb-{n}.npz") for n in ("clean", "keyboard@3")}
    e = {n: Embedded(z[n]["image"], z[n]["query"], z[n]["model"], z[n]["reference"]) for n in z}
    assert z["clean"]["image"].shape == (6, DIM)
    assert np.allclose(np.linalg.norm(z["clean"]["query"], axis=1), 1.0, atol=1e-5)
    terms = emid_upper_bound(e["clean"], e["keyboard@3"])
    assert report["variants"]["keyboard@3"]["bound"] == pytest.approx(terms["bound"])
    assert report["variants"]["keyboard@3"]["jsd_image"] == pytest.approx(0.0, abs=1e-9)
    assert report["variants"]["snow@3"]["jsd_image"] > 1e-6

    mtime = (out / "emid" / "club.safetensors").stat().st_mtime_ns
    again = run_inspect_emid(out, _opts(encoders, tmp_path), _Quiet())
    assert again["embedded_now"] == 0 and (out / "emid" / "club.safetensors").stat().st_mtime_ns == mtime
    assert again["variants"] == report["variants"]  # cached embeddings + estimator, seeded bootstrap

    # the fitted estimator as a weights-only .pt (the published checkpoint's form) gives the same numbers
    pt = tmp_path / "club.pt"
    torch.save(load_club(str(out / "emid" / "club.safetensors")).state_dict(), pt)
    loaded = run_inspect_emid(out, _opts(encoders, tmp_path, club=str(pt)), _Quiet())
    assert loaded["variants"]["snow@3"]["emid"] == pytest.approx(
        report["variants"]["snow@3"]["emid"], abs=1e-6
    )


def test_changed_answers_are_embedded_again(tmp_path, encoders):
    out = _eval_folder(tmp_path)
    run_inspect_emid(out, _opts(encoders, tmp_path), _Quiet())
    lines = (out / "predictions.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    rec["answer"] = "something else entirely"
    (out / "predictions.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(rec)]) + "\n")
    assert run_inspect_emid(out, _opts(encoders, tmp_path), _Quiet())["embedded_now"] == 1


def test_cli_errors_are_one_line(tmp_path, encoders, capsys):
    (tmp_path / "pope").mkdir()
    (tmp_path / "pope" / "results.json").write_text(json.dumps({"task": {"name": "pope"}}))
    assert run_cli(["inspect", "emid", str(tmp_path / "pope")]) == 2
    assert "not an open-ended" in capsys.readouterr().err
    out = _eval_folder(tmp_path)
    assert run_cli(["inspect", "emid", str(out), "--against", "nope", "--vision-encoder", encoders[0],
                    "--text-encoder", encoders[1]]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--against 'nope'" in err and "Traceback" not in err
    assert not (out / "emid.json").exists()


def test_cli_table_and_json(tmp_path, encoders, capsys, monkeypatch):
    monkeypatch.setenv("VITTLE_CACHE", str(tmp_path / "cache"))
    out = _eval_folder(tmp_path)
    args = ["inspect", "emid", str(out), "--vision-encoder", encoders[0], "--text-encoder", encoders[1],
            "--club-steps", "10", "--resamples", "10", "--device", "cpu"]  # fmt: skip
    assert run_cli(args) == 0
    table = capsys.readouterr().out
    assert "EMID against 'clean'" in table and "snow@3" in table and "keyboard@3" in table
    assert run_cli([*args, "--json"]) == 0  # a rerun: everything cached, so stdout is the JSON alone
    doc = json.loads(capsys.readouterr().out)
    assert doc["club"]["steps"] == 10 and doc["bootstrap"]["resamples"] == 10 and doc["embedded_now"] == 0
    assert doc["variants"] == json.loads((out / "emid.json").read_text())["variants"]


def test_encoder_sources_hub_ids_pass_missing_paths_refused(tmp_path, encoders):
    from vittle_cli.errors import UsageError
    from vittle_cli.model.emid_embed import check_emid_sources

    check_emid_sources("openai/clip-vit-base-patch32", "xlm-roberta-base")  # hub ids: checked when loading
    check_emid_sources(*encoders)
    for vision, text in (("./clip-b32", encoders[1]), (encoders[0], str(tmp_path / "x" / "y" / "z"))):
        with pytest.raises(UsageError, match="no such model folder"):
            check_emid_sources(vision, text)
    with pytest.raises(UsageError, match="--club"):
        check_emid_sources(*encoders, club=str(tmp_path / "club.pt"))
