"""`vittle train` / `vittle merge` under faults and hostile files: planted pickles, two processes, changed
resumes, failed starts, foreign folders, a full disk. Each test fails without its fix (issue #10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_runner import interrupt_training_at, run_cli

REPO = Path(__file__).resolve().parents[2]
RECIPE = "recipes/tiny.yaml"
FAST = [
    "train.max_steps=4",
    "output.save_steps=1",
    "train.logging_steps=1",
    "train.per_device_batch_size=4",
    "data.limit=16",
    "output.report_to=[]",
]


def vittle(*args: str) -> int:
    return run_cli(args)


def vittle_subprocess(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "VITTLE_DEBUG"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "vittle_cli", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err and "\x1b[" not in err, err[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 4-step Vittle run with checkpoint-1..4."""
    out = tmp_path_factory.mktemp("runs")
    assert (
        vittle(
            "train",
            RECIPE,
            *FAST,
            f"output.dir={out}",
            "output.run_name=done",
            "output.save_total_limit=null",
        )
        == 0
    )
    return out / "done"


# ---- planted pickles ------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates the marker file (a stand-in for any code an attacker would run)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def zero2_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zero")
    proc = vittle_subprocess("train", RECIPE, *FAST, "train.max_steps=2", "output.save_steps=2",
                             "train.deepspeed=zero2", f"output.dir={out}", "output.run_name=z2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "z2"


def _plant(shard: Path, marker: Path) -> None:
    import torch

    torch.save({"module": _Payload(str(marker)), "ds_version": "0"}, shard)


@pytest.mark.slow
@pytest.mark.distributed
def test_planted_pickle_in_zero_shards_is_refused_by_merge_and_resume(zero2_run, tmp_path):
    pytest.importorskip("deepspeed")
    import shutil

    run = tmp_path / "z2"
    shutil.copytree(zero2_run, run)
    shard = next((run / "checkpoint-2").glob("global_step*/*model_states.pt"))
    marker = tmp_path / "pwned"
    _plant(shard, marker)
    # without gathered 16-bit weights a ZeRO checkpoint holds only its shards: merge consolidates them
    hidden = tmp_path / "model.safetensors"
    (run / "checkpoint-2" / "model.safetensors").rename(hidden)

    proc = vittle_subprocess("merge", str(run / "checkpoint-2"), "--out", str(tmp_path / "merged"))
    assert proc.returncode == 1 and not marker.exists()
    line = one_error_line(proc.stderr)
    assert str(shard) in line and "refusing to load" in line
    assert not (tmp_path / "merged").exists()

    hidden.rename(run / "checkpoint-2" / "model.safetensors")
    proc = vittle_subprocess("train", RECIPE, *FAST, "train.max_steps=3", "output.save_steps=2",
                             "train.deepspeed=zero2", f"output.dir={tmp_path}", "output.run_name=z2",
                             "--resume", "--allow-changes")  # fmt: skip
    assert proc.returncode == 1 and not marker.exists()
    assert str(shard) in one_error_line(proc.stderr)


def test_weights_only_check_allows_real_deepspeed_classes_and_refuses_code(tmp_path):
    pytest.importorskip("deepspeed")
    import torch
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    from vittle_cli.errors import ModelError
    from vittle_cli.model.safe_load import check_checkpoint_pickles

    tag = tmp_path / "global_step3"
    tag.mkdir()
    (tmp_path / "latest").write_text("global_step3")
    good = {"zero_stage": ZeroStageEnum.gradients, "loss_scaler": LossScaler(1.0), "w": torch.ones(2)}
    torch.save(good, tag / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    assert check_checkpoint_pickles(tmp_path) == 1
    marker = tmp_path / "pwned"
    _plant(tag / "mp_rank_00_model_states.pt", marker)
    with pytest.raises(ModelError, match="mp_rank_00_model_states.pt"):
        check_checkpoint_pickles(tmp_path)
    assert not marker.exists()
    (tmp_path / "latest").write_text("../../elsewhere")  # DeepSpeed would load the shards named there
    with pytest.raises(ModelError, match="outside the checkpoint"):
        check_checkpoint_pickles(tmp_path)


# ---- run directory: names, foreign folders, failed starts, locks -------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", ".."])
def test_run_name_must_be_a_plain_name(tmp_path, capsys, name):
    assert vittle("train", RECIPE, *FAST, f"output.dir={tmp_path / 'runs'}", f"output.run_name={name}") == 2
    assert "plain folder name" in one_error_line(capsys.readouterr().err)


def test_overwrite_never_deletes_a_folder_that_is_not_a_vittle_run(tmp_path, capsys):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    assert (
        vittle("train", RECIPE, *FAST, f"output.dir={tmp_path}", "output.run_name=photos", "--overwrite") == 2
    )
    assert "not a vittle run directory" in one_error_line(capsys.readouterr().err)
    assert (foreign / "holiday.jpg").read_bytes() == b"precious"


@pytest.mark.slow
def test_failed_start_does_not_block_its_rerun(tmp_path, monkeypatch, capsys):
    import vittle_cli.model.load as load
    from vittle_cli.errors import ModelError

    def broken(recipe):
        raise ModelError("model files are missing")

    monkeypatch.setattr(load, "load_model_for_recipe", broken)
    args = ["train", RECIPE, *FAST, "train.max_steps=1", f"output.dir={tmp_path}", "output.run_name=r"]
    assert vittle(*args) == 1
    assert not (tmp_path / "r" / "config.yaml").exists() and not (tmp_path / "r" / "run_info.json").exists()
    monkeypatch.undo()
    capsys.readouterr()
    assert vittle(*args) == 0, capsys.readouterr().err
    assert (tmp_path / "r" / "final").is_dir()


_HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from vittle_cli.fileio import PathLock
    lock = PathLock(sys.argv[1], "folder", "wait").acquire()
    print("locked", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture()
def lock_holder():
    """Start a second process that holds vittle's lock on a path (as a running `vittle train` does)."""
    procs = []

    def hold(path: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True, env=env
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_second_process_on_a_run_dir_or_eval_out_is_refused(tmp_path, lock_holder):
    lock_holder(tmp_path / "busy")
    proc = vittle_subprocess("train", RECIPE, *FAST, f"output.dir={tmp_path}", "output.run_name=busy")
    assert proc.returncode == 2
    assert "in use by another vittle process" in one_error_line(proc.stderr)
    assert not (tmp_path / "busy").exists()  # nothing written by the refused process

    lock_holder(tmp_path / "ev")
    proc = vittle_subprocess("eval", "--model", "builtin:tiny-llava", "--suite", "shapes", "--limit", "2",
                            "--out", str(tmp_path / "ev"))  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "in use by another vittle process" in one_error_line(proc.stderr)


# ---- resume --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_refuses_recipe_changes_and_touches_nothing(finished_run, capsys):
    base = [RECIPE, *FAST, f"output.dir={finished_run.parent}", "output.run_name=done"]
    config = (finished_run / "config.yaml").read_text()
    final_mtime = (finished_run / "final" / "model.safetensors").stat().st_mtime_ns
    assert vittle("train", *base, "train.max_steps=3", "bottleneck.alpha_end=0.9", "--resume") == 2
    line = one_error_line(capsys.readouterr().err)
    assert "train.max_steps 4 -> 3" in line and "bottleneck.alpha_end 0.5 -> 0.9" in line
    assert "--allow-changes" in line
    # even allowed, a max_steps below the checkpoint's step is refused
    assert vittle("train", *base, "train.max_steps=3", "--resume", "--allow-changes") == 2
    assert "reached already" in one_error_line(capsys.readouterr().err)
    assert (finished_run / "config.yaml").read_text() == config
    assert (finished_run / "final" / "model.safetensors").stat().st_mtime_ns == final_mtime
    assert sorted(p.name for p in finished_run.glob("checkpoint-*")) == [
        f"checkpoint-{i}" for i in (1, 2, 3, 4)
    ]


@pytest.mark.slow
def test_allowed_change_is_recorded_and_the_resumed_checkpoint_is_kept(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "done"
    shutil.copytree(finished_run, run)
    args = [RECIPE, *FAST, f"output.dir={tmp_path}", "output.run_name=done"]  # tiny.yaml keeps 2 checkpoints
    code = vittle(
        "train", *args, "train.max_steps=6", "--resume", str(run / "checkpoint-2"), "--allow-changes"
    )
    assert code == 0, capsys.readouterr().err
    # rotation (limit 2) keeps the newest and the checkpoint this resume started from
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-6"]
    info = json.loads((run / "run_info.json").read_text())
    assert {"key": "train.max_steps", "from": 4, "to": 6} in info["recipe_changes"]
    assert "trained 6/6 steps" in capsys.readouterr().out


@pytest.mark.slow
def test_printed_loss_after_a_resume_covers_the_whole_run(finished_run, tmp_path, monkeypatch, capsys):
    from vittle_cli.train.trainer import VittleTrainer

    rows = [json.loads(x) for x in (finished_run / "metrics.jsonl").read_text().splitlines()]
    whole = sum(r["loss"] for r in rows) / len(rows)  # logging_steps=1: one row per step
    args = ["train", RECIPE, *FAST, f"output.dir={tmp_path}", "output.run_name=cut"]
    original = interrupt_training_at(monkeypatch, 3)  # in step 4
    assert vittle(*args) == 130
    monkeypatch.setattr(VittleTrainer, "training_step", original)
    capsys.readouterr()
    assert vittle(*args, "--resume") == 0
    printed = float(capsys.readouterr().out.split("train loss ")[1].split(";")[0])
    assert printed == pytest.approx(whole, abs=2e-4)  # 4 decimals printed


def test_resume_from_a_baseline_checkpoint_says_it_has_no_bottleneck_files(tmp_path, capsys):
    ckpt = tmp_path / "baseline" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": []}))
    code = vittle(
        "train", RECIPE, *FAST, f"output.dir={tmp_path}", "output.run_name=v", "--resume", str(ckpt)
    )
    assert code == 1
    line = one_error_line(capsys.readouterr().err)
    assert "no bottleneck files" in line and str(ckpt) in line


# ---- a full disk ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_disk_full_while_saving_is_one_line_and_leaves_no_checkpoint(tmp_path, monkeypatch, capsys):
    import errno

    from vittle_cli.train.trainer import VittleTrainer

    def no_space(self, output_dir):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(output_dir, "optimizer.pt"))

    monkeypatch.setattr(VittleTrainer, "_save_optimizer_and_scheduler", no_space)
    args = ["train", RECIPE, *FAST, "train.max_steps=1", f"output.dir={tmp_path}", "output.run_name=full"]
    assert vittle(*args) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "disk full" in line and "optimizer.pt" in line
    run = tmp_path / "full"
    assert not list(run.glob("checkpoint-*")) and not (run / ".staging").exists()


def test_disk_full_in_an_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    from vittle_cli.fileio import DiskFullError, write_text_atomic

    target = tmp_path / "config.yaml"
    target.write_text("old\n")

    def no_space(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(DiskFullError, match="config.yaml"):
        write_text_atomic(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_trust_remote_code_warns_and_names_the_code(tmp_path, monkeypatch, capsys):
    import vittle_cli.model.load as load
    from vittle_cli.errors import ModelError

    model = tmp_path / "custom"
    model.mkdir()
    (model / "modeling_custom.py").write_text("print('hello')\n")

    def stop(recipe):
        raise ModelError("stop here")

    monkeypatch.setattr(load, "load_model_for_recipe", stop)
    args = [
        "train",
        RECIPE,
        *FAST,
        f"model.name={model}",
        "model.trust_remote_code=true",
        f"output.dir={tmp_path}",
    ]
    assert vittle(*args) == 1
    err = capsys.readouterr().err
    assert "warning:" in err and "trust_remote_code=true" in err and "modeling_custom.py" in err
    assert vittle(*args[:-2], f"model.name={model}", f"output.dir={tmp_path}") == 1
    assert "trust_remote_code" not in capsys.readouterr().err  # off by default: no warning
