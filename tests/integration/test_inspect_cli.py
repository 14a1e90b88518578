"""`vittle inspect embeddings|bottleneck|model|run` and `vittle merge` through the CLI: outputs and exit codes."""

from __future__ import annotations

import json

import pytest
from cli_runner import run_cli as run_main
from typer.testing import CliRunner

from vittle_cli.cli import app
from vittle_cli.model.builtin import IMAGE_SEQ_LENGTH

runner = CliRunner()
VARIANTS = ["--variants", "gaussian_noise@3", "--variants", "keyboard@3"]


@pytest.fixture(scope="module")
def vittle_model(tiny_vittle_model_dir):
    return tiny_vittle_model_dir


@pytest.mark.slow
def test_embeddings_writes_arrays_manifest_and_pngs(vittle_model, tiny_model_dir, tmp_path):
    from safetensors.numpy import load_file

    out = tmp_path / "emb"
    args = ["inspect", "embeddings", "--model", str(vittle_model), "--compare", str(tiny_model_dir)]
    args += ["--suite", "shapes-shift", "--limit", "2", "--out", str(out), *VARIANTS]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "keyboard@3" in result.output and "mean (visual)" in result.output

    manifest = json.loads((out / "manifest.json").read_text())
    n = len(manifest["question_ids"])
    assert n == 6  # 2 per split x 3 splits
    assert [v["name"] for v in manifest["variants"]] == ["clean", "gaussian_noise@3", "keyboard@3"]
    assert manifest["models"][0]["bottleneck_active"] == {"visual": True, "text": True}
    assert manifest["models"][1]["bottleneck_active"] == {"visual": False, "text": False}
    arrays = load_file(str(out / "embeddings.safetensors"))
    assert len(arrays) == 2 * 3 * 2 * 2  # models x variants x modalities x stages
    assert arrays["model/clean/visual/before"].shape == (n, 96)
    # the bottleneck acts (before != after); the plain model has no bottleneck (before == after)
    assert abs(arrays["model/clean/text/after"] - arrays["model/clean/text/before"]).max() > 1e-3
    assert (arrays["compare/clean/text/after"] == arrays["compare/clean/text/before"]).all()
    # before the bottleneck the Vittle model is the base model (same weights below layer 6)
    assert abs(arrays["model/keyboard@3/text/before"] - arrays["compare/keyboard@3/text/after"]).max() < 1e-4

    by_key = {(m["model"], m["variant"], m["modality"], m["stage"]): m for m in manifest["metrics"]}
    # a text shift leaves the image tokens alone (the image precedes the question: causal attention)
    assert by_key[("model", "keyboard@3", "visual", "after")]["cosine_distance"] == pytest.approx(0, abs=1e-6)
    assert by_key[("model", "keyboard@3", "text", "after")]["jsd"] > 0
    assert by_key[("model", "gaussian_noise@3", "visual", "before")]["cosine_distance"] > 0
    for png in ("pca.png", "cosine_hist.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"

    # a second run into the same folder needs --overwrite
    assert run_main(args) == 2


def test_embeddings_bad_variant_and_suite(vittle_model, tmp_path, capsys):
    base = ["inspect", "embeddings", "--model", str(vittle_model), "--out", str(tmp_path / "e")]
    assert run_main([*base, "--suite", "no-such-suite"]) == 2
    assert "unknown suite" in capsys.readouterr().err
    assert run_main([*base, "--suite", "shapes-shift", "--variants", "nope@9"]) == 2
    assert "no variant 'nope@9'" in capsys.readouterr().err
    assert run_main([*base, "--suite", "shapes-shift", "--layer", "12"]) == 2
    assert "out of range" in capsys.readouterr().err


@pytest.mark.slow
def test_bottleneck_and_model_views(vittle_model, tiny_model_dir):
    result = runner.invoke(
        app, ["inspect", "bottleneck", "--model", str(vittle_model), "--limit", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["layers"] == {"visual": 6, "text": 6} and report["alpha_in_use"] == 0.5
    assert (
        report["stats"]["visual"]["tokens"] == 3 * IMAGE_SEQ_LENGTH and report["stats"]["text"]["tokens"] > 0
    )

    result = runner.invoke(app, ["inspect", "model", "--model", str(vittle_model)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "model.language_model.layers.6" in result.output and "bottleneck params" in result.output
    result = runner.invoke(app, ["inspect", "model", str(tiny_model_dir), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["bottleneck"] is None


def test_bad_inputs_exit_codes(tmp_path, tiny_model_dir, capsys):
    missing = str(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    junk = str(tmp_path / "junk")
    cases = [
        (["inspect", "model", "--model", missing], 2, f"--model {missing}: no such directory"),
        (["inspect", "model", "--model", junk], 2, "not a model, adapter or run directory"),
        (["inspect", "bottleneck", "--model", missing], 2, f"--model {missing}: no such directory"),
        (["eval", "--suite", "shapes-shift", "--model", missing], 2, f"--model {missing}: no such directory"),
        (["eval", "--suite", "shapes-shift", "--model", junk], 2, "not a model, adapter or run directory"),
        (["inspect", "bottleneck", "--model", str(tiny_model_dir)], 1, "no Vittle bottleneck"),
        (["inspect", "embeddings", "--model", junk, "--suite", "shapes-shift"], 2, "not a model"),
        (["inspect", "run", missing], 2, "no such run directory"),
        (["inspect", "run", str(tiny_model_dir)], 2, "use `vittle inspect model`"),
        (["merge", missing, "--out", str(tmp_path / "o")], 2, f"SOURCE {missing}: no such directory"),
        (["merge", junk, "--out", str(tmp_path / "o")], 2, "not a model, adapter or run directory"),
        (
            ["merge", str(tiny_model_dir), "--out", str(tmp_path / "o"), "--dtype", "int8"],
            2,
            "--dtype int8: expected one of",
        ),
        (
            ["eval", "--suite", "shapes", "--model", str(tiny_model_dir), "--dtype", "int8"],
            2,
            "--dtype int8: expected",
        ),
        (["inspect", "model"], 2, "needs a model"),
    ]
    for args, code, message in cases:
        assert run_main(args) == code, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_merge_cli_noop_on_merged_folder(tiny_model_dir, tmp_path):
    result = runner.invoke(
        app, ["merge", str(tiny_model_dir), "--out", str(tmp_path / "o")], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    assert "nothing to merge" in result.output and not (tmp_path / "o").exists()


def test_inspect_run_cli(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {name: builtin:tiny-llava}\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0, "alpha": 0.01}\n{"step": 2, "loss": 1.5}\n')
    result = runner.invoke(app, ["inspect", "run", str(run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "builtin:tiny-llava" in result.output and "(none yet)" in result.output
    assert (run / "inspect" / "loss.png").is_file()
