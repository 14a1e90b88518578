"""Pure rules of --resume and of run directories: recipe diff, whole-run loss, locks, run names, markers."""

from __future__ import annotations

import json

import pytest

from vittle_cli.errors import UsageError


def test_recipe_changes_list_what_changes_the_run_and_ignore_the_harmless():
    from vittle_cli.train.resume import recipe_changes

    old = (
        "train:\n  max_steps: 10\n  lr: 0.001\ndata:\n  num_workers: 2\noutput:\n  report_to: [tensorboard]\n"
    )
    new = "train:\n  max_steps: 3\n  lr: 0.001\ndata:\n  num_workers: 8\noutput:\n  report_to: []\n"
    assert recipe_changes(old, new) == [{"key": "train.max_steps", "from": 10, "to": 3}]


def test_whole_run_loss_weights_the_steps_before_the_checkpoint(tmp_path):
    from vittle_cli.train.resume import whole_run_loss

    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    history = [{"step": 2, "loss": 3.0}, {"step": 4, "loss": 1.0}, {"step": 4, "train_runtime": 1.0}]
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 4, "log_history": history}))
    # steps 1-4 average 2.0; steps 5-6 sum to 1.0 (mean 0.5): the whole run averages (8 + 1) / 6
    assert whole_run_loss(ckpt, 1.0, 6) == pytest.approx(9.0 / 6)
    assert whole_run_loss(None, 6.0, 3) == pytest.approx(2.0)


def test_a_second_lock_on_the_same_folder_is_refused_until_released(tmp_path):
    from vittle_cli.fileio import PathLock

    first = PathLock(tmp_path / "run", "run directory", "set output.run_name=<new name>").acquire()
    with pytest.raises(UsageError, match=r"in use by another vittle process \(pid \d+\)"):
        PathLock(tmp_path / "run", "run directory", "x").acquire()
    first.release()
    PathLock(tmp_path / "run", "run directory", "x").acquire().release()


def test_only_folders_with_the_run_marker_count_as_vittle_runs(tmp_path):
    from vittle_cli.train.rundir import RUN_MARKER, is_vittle_run, prepare_run_dir

    run = tmp_path / "r"
    prepare_run_dir(run, overwrite=False, resume=False)
    assert (run / RUN_MARKER).is_file() and is_vittle_run(run)
    legacy = tmp_path / "old"
    legacy.mkdir()
    (legacy / "config.yaml").write_text("train: {}\n")
    (legacy / "run_info.json").write_text('{"vittle": "0.1.0"}')
    assert is_vittle_run(legacy)  # written by an older release
    (legacy / "run_info.json").write_text('{"something": "else"}')
    assert not is_vittle_run(legacy)
