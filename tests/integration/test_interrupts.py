"""Ctrl-C in `vittle train` and `vittle eval`: exit 130, what was kept, and the exact command that continues."""

from __future__ import annotations

import shlex

import pytest
from cli_runner import interrupt_training_at, run_cli

RECIPE = "recipes/tiny.yaml"
FAST = ["train.max_steps=4", "output.save_steps=2", "train.logging_steps=1", "train.per_device_batch_size=4",
        "data.limit=16", "output.report_to=[]"]  # fmt: skip


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


def test_train_interrupt_names_the_checkpoint_kept_and_the_resume_command(tmp_path, capsys, monkeypatch):
    from vittle_cli.train.trainer import VittleTrainer

    original = interrupt_training_at(monkeypatch, 3)  # in step 4
    args = ["train", RECIPE, *FAST, f"output.dir={tmp_path}", "output.run_name=cut"]
    assert run_cli(args) == 130
    line = _error_line(capsys.readouterr().err)
    assert f"kept {tmp_path}/cut/checkpoint-2 (step 2)" in line
    command = line.split("resume with: ")[1]
    assert shlex.split(command) == ["vittle", *args, "--resume"]
    monkeypatch.setattr(VittleTrainer, "training_step", original)
    assert run_cli(shlex.split(command)[1:]) == 0  # the printed command does continue the run


def test_train_interrupt_before_any_checkpoint_says_nothing_was_kept(tmp_path, capsys, monkeypatch):
    from vittle_cli.train.trainer import VittleTrainer

    def stop_at_once(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(VittleTrainer, "training_step", stop_at_once)
    args = ["train", RECIPE, *FAST, f"output.dir={tmp_path}", "output.run_name=early"]
    assert run_cli(args) == 130
    line = _error_line(capsys.readouterr().err)
    assert "before the first checkpoint" in line and "output.save_steps=2" in line
    assert shlex.split(line.split("start again with: ")[1]) == ["vittle", *args]


@pytest.mark.slow
def test_eval_interrupt_counts_the_cached_answers_and_prints_the_same_command(tmp_path, capsys, monkeypatch):
    import yaml

    import vittle_cli.eval.runner as runner

    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "data": "builtin:shapes", "variants": [
        {"name": "clean", "group": "clean"}, {"group": "text", "text": {"name": "keyboard", "rate": 3}}]}))  # fmt: skip
    out = tmp_path / "ev"
    args = ["eval", "--suite", str(suite), "--model", "builtin:tiny-llava", "--limit", "2", "--out", str(out),
            "--batch-size", "2", "--device", "cpu"]  # fmt: skip
    assert run_cli(args) == 0
    (out / "results.json").unlink()
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "predictions.jsonl").write_text("".join(lines[:5]))  # as if cut after five answers

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_eval", interrupted)
    assert run_cli(args) == 130
    line = _error_line(capsys.readouterr().err)
    assert f"kept 5 answers in {out}/predictions.jsonl" in line
    assert shlex.split(line.split("not asked again): ")[1]) == ["vittle", *args]
