"""The eval answer cache is tied to the model's files and the generation settings: a model retrained in
place, or another dtype, never reuses old answers (issue #10)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file, save_file

from vittle_cli.eval.runner import run_eval
from vittle_cli.model.fingerprint import weights_fingerprint


class FlagModel:
    """Answers "Yes" or "No" from the weights it loaded (a one-tensor model.safetensors)."""

    def __init__(self):
        self.loads = 0

    def load(self, model, *, base=None, dtype="float32", device="cpu"):
        self.loads += 1
        return float(load_file(Path(model) / "model.safetensors")["flag"]), None

    def generate(self, model, processor, requests, *, batch_size=16, max_new_tokens=8, on_progress=None):
        return ["Yes" if model > 0 else "No" for _ in requests]


def _train_in_place(model_dir: Path, flag: float, when: int) -> None:
    save_file({"flag": torch.tensor(flag)}, str(model_dir / "model.safetensors"))
    os.utime(model_dir / "model.safetensors", ns=(when, when))  # a retrain happens later than the first


def _eval(suite, model_dir, out, fake, console, **kw):
    return run_eval(str(suite), str(model_dir), out=out, limit=2, batch_size=2, generate=fake.generate,
                    load_model=fake.load, cache_dir=out.parent / "img", console=console, **kw)  # fmt: skip


def _answers(out: Path) -> set[str]:
    import json

    return {json.loads(x)["answer"] for x in (out / "predictions.jsonl").read_text().splitlines()}


def test_retrained_model_in_place_recomputes_and_says_so(tmp_path):
    suite = tmp_path / "mini.yaml"
    suite.write_text(yaml.safe_dump({"name": "mini", "data": "builtin:shapes", "seed": 3,
                                     "variants": [{"name": "clean", "group": "clean"}]}))  # fmt: skip
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    _train_in_place(model_dir, 1.0, 1_000_000_000)
    out = tmp_path / "ev"
    fake = FlagModel()
    _eval(suite, model_dir, out, fake, Console(quiet=True))
    assert _answers(out) == {"Yes"} and fake.loads == 1

    _train_in_place(model_dir, 0.0, 2_000_000_000)  # the same file name and size, new weights
    console = Console(record=True, width=300)
    _eval(suite, model_dir, out, fake, console, overwrite=True)
    assert fake.loads == 2 and _answers(out) == {"No"}  # old answers were not reused
    said = console.export_text()
    assert "model_files changed" in said and "recomputing" in said

    _eval(suite, model_dir, out, fake, Console(quiet=True), overwrite=True, dtype="bfloat16")
    assert fake.loads == 3  # reduced precision changes greedy answers: recomputed too


def test_fingerprint_covers_bottleneck_and_adapter_files_and_its_base(tmp_path):
    run = tmp_path / "run"
    final = run / "final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text('{"base_model_name_or_path": "%s"}' % (tmp_path / "base"))
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    first = weights_fingerprint(str(run))
    assert first == weights_fingerprint(str(final))  # a run dir means its final/
    for path in (final / "vittle_bottleneck.safetensors", final / "adapter_model.safetensors",
                 tmp_path / "base" / "model.safetensors"):  # fmt: skip
        path.write_bytes(b"x")
        assert weights_fingerprint(str(run)) != first, path
        first = weights_fingerprint(str(run))
    assert weights_fingerprint("org/some-model") == "hub:org/some-model"
