"""model/reference.py: one classification of model references, one set of messages, exit 2 for all."""

from __future__ import annotations

import pytest

from vittle_cli.errors import UsageError
from vittle_cli.model.reference import classify_model_ref, loadable_model_ref, trainable_source


def _model(folder, weights=True):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    if weights:
        (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_kinds(tmp_path):
    assert classify_model_ref("builtin:tiny-llava").kind == "builtin"
    assert classify_model_ref("llava-hf/llava-1.5-7b-hf").kind == "hub"
    model = _model(tmp_path / "m")
    ref = classify_model_ref(str(model))
    assert (ref.kind, ref.folder, ref.run_dir) == ("model", model, None)
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert classify_model_ref(str(adapter)).kind == "adapter"
    zero = _model(tmp_path / "z", weights=False)
    (zero / "global_step10").mkdir()
    assert classify_model_ref(str(zero)).kind == "zero"


def test_a_run_dir_stands_for_its_final_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {}\n")
    _model(run / "checkpoint-5")
    with pytest.raises(UsageError, match=r"has no final/ .*e\.g\. .*checkpoint-5"):
        classify_model_ref(str(run))
    final = _model(run / "final")
    ref = classify_model_ref(str(run))
    assert (ref.kind, ref.folder, ref.run_dir, ref.recipe_file) == ("model", final, run, run / "config.yaml")
    assert classify_model_ref(str(run / "checkpoint-5")).run_dir == run
    assert trainable_source(str(run)) == str(final)  # model.name=runs/x trains from its final/


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing", r"--model .*missing: no such directory; pass a run dir"),
        (lambda d: (d / "f.txt").write_text("x") and d / "f.txt", r"f\.txt is a file; pass a run dir"),
        (lambda d: (d / "e").mkdir() or d / "e", r"e is not a model, adapter or run directory"),
        (lambda d: "./not/here", r"no such directory"),
    ],
)
def test_bad_references_are_usage_errors_with_one_wording(tmp_path, make, message):
    with pytest.raises(UsageError, match=message) as err:
        classify_model_ref(str(make(tmp_path)))
    assert err.value.exit_code == 2


def test_zero_shards_and_adapters_are_refused_where_they_cannot_be_used(tmp_path):
    zero = tmp_path / "z"
    zero.mkdir()
    (zero / "global_step3").mkdir()
    with pytest.raises(UsageError, match="only ZeRO shards; consolidate it first: vittle merge"):
        loadable_model_ref(str(zero))
    adapter = tmp_path / "a"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(UsageError, match="model.name .* is a LoRA adapter, not a model; merge it first"):
        trainable_source(str(adapter))
