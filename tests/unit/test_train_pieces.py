"""Small pieces of `vittle train`: step arithmetic, run directories, metrics rows, the loss meter, plots,
and the bare `--resume` form. No model is built here."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vittle_cli.errors import UsageError


@pytest.mark.parametrize(
    ("n", "batch", "accum", "world", "epochs", "max_steps", "expected"),
    [
        (100, 16, 1, 1, 1.0, None, 7),  # ceil(100 / 16)
        (100, 16, 1, 2, 1.0, None, 4),  # each rank: ceil(100 / 32) batches
        (100, 4, 3, 1, 1.0, None, 9),  # 25 batches -> 8 full accumulations + 1 short one
        (100, 16, 1, 1, 2.5, None, 18),  # ceil(2.5 * 7)
        (100, 16, 4, 8, 1.0, None, 1),  # never fewer than one step per epoch
        (100, 16, 1, 1, 1.0, 5, 5),  # max_steps wins
    ],
)
def test_total_optimizer_steps(n, batch, accum, world, epochs, max_steps, expected):
    from vittle_cli.train.plan import total_optimizer_steps

    assert total_optimizer_steps(n, batch, accum, world, epochs, max_steps) == expected


def test_alpha_points_follow_the_schedule():
    from vittle_cli.model.bottleneck import VittleConfig, alpha_at
    from vittle_cli.recipe import BottleneckSection
    from vittle_cli.train.plan import alpha_points

    cfg = VittleConfig.from_section(BottleneckSection(alpha_end=0.4))
    got = alpha_points(10, cfg)
    assert got == {"start": alpha_at(0, 10, cfg), "middle": alpha_at(5, 10, cfg), "end": alpha_at(9, 10, cfg)}
    assert got["start"] < got["middle"] < got["end"] < 0.4


def test_run_dir_is_refused_unless_overwrite_or_resume(tmp_path):
    from vittle_cli.layout import STAGING_DIR
    from vittle_cli.train.rundir import RUN_MARKER, prepare_run_dir

    run = tmp_path / "r"
    prepare_run_dir(run, overwrite=False, resume=False)  # new: created
    assert run.is_dir()
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "checkpoint-2").mkdir()
    (run / STAGING_DIR).mkdir()
    with pytest.raises(UsageError, match="--overwrite"):
        prepare_run_dir(run, overwrite=False, resume=False)
    prepare_run_dir(run, overwrite=False, resume=True)  # kept, leftovers of a cut save dropped
    assert (run / "metrics.jsonl").is_file() and not (run / STAGING_DIR).exists()
    prepare_run_dir(run, overwrite=True, resume=False)
    assert run.is_dir() and [p.name for p in run.iterdir()] == [RUN_MARKER]


def test_resume_latest_picks_the_highest_step(tmp_path):
    from vittle_cli.train.rundir import resolve_resume

    with pytest.raises(UsageError, match="no checkpoint"):
        resolve_resume(tmp_path, "latest")
    for step in (5, 40, 300):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert resolve_resume(tmp_path, "latest").name == "checkpoint-300"  # numeric, not string order
    assert resolve_resume(tmp_path, str(tmp_path / "checkpoint-40")).name == "checkpoint-40"
    assert resolve_resume(tmp_path, None) is None
    with pytest.raises(UsageError, match="not a checkpoint"):
        resolve_resume(tmp_path, str(tmp_path / "checkpoint-x"))


def test_resumed_run_info_keeps_history(tmp_path):
    from vittle_cli.train.rundir import run_info, write_run_files

    write_run_files(tmp_path, "a: 1\n", run_info(seed=1, world_size=1, resumed_from=None, command=["vittle"]))
    write_run_files(
        tmp_path, "a: 1\n", run_info(seed=1, world_size=2, resumed_from="ck-3", command=["vittle"])
    )
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["resumed_from"] == "ck-3"
    assert [h["world_size"] for h in info["history"]] == [1]
    assert oct((tmp_path / "config.yaml").stat().st_mode & 0o777) != "0o600"  # not mkstemp's private mode


def test_metrics_row_and_truncate(tmp_path):
    from types import SimpleNamespace

    from vittle_cli.train.callbacks import metrics_row, truncate_metrics
    from vittle_cli.train.metrics import METRIC_FIELDS

    state = SimpleNamespace(global_step=3, epoch=0.5)
    assert metrics_row({"train_runtime": 1.0}, state) is None  # the end-of-training summary is no step
    row = metrics_row({"loss": 1.5, "learning_rate": 1e-3, "grad_norm": float("nan"), "ce": 1.4}, state)
    assert list(row) == list(METRIC_FIELDS)
    assert row["step"] == 3 and row["lr"] == 1e-3 and row["grad_norm"] is None and row["alpha"] is None
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(json.dumps({"step": s, "loss": s}) + "\n" for s in range(1, 6)) + '{"step": 6, "lo'
    )
    truncate_metrics(path, 3)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_loss_meter_averages_micro_batches_and_counts_tokens():
    from vittle_cli.train.metrics import LossMeter

    meter = LossMeter()
    assert meter.drain(lambda t: t) is None
    meter.add(torch.tensor(2.0), torch.tensor(0.2), 0.0, torch.tensor(10))
    meter.add(torch.tensor(4.0), torch.tensor(0.4), 0.0, torch.tensor(30))
    doubled = meter.drain(lambda t: 2 * t)  # as if a second rank had the same sums
    assert doubled["ce"] == pytest.approx(3.0) and doubled["kl_v"] == pytest.approx(0.3)
    assert doubled["kl_t"] == 0.0 and doubled["tokens_per_s"] > 0 and math.isfinite(doubled["tokens_per_s"])
    assert meter.drain(lambda t: t) is None  # reset after a drain


def test_plot_metrics_writes_a_png(tmp_path):
    from vittle_cli.plots import plot_metrics

    rows = [
        {"step": s, "loss": 2 / s, "ce": 1.9 / s, "kl_v": 0.01, "kl_t": None, "alpha": s / 20}
        for s in range(1, 11)
    ]
    src = tmp_path / "metrics.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = plot_metrics(src, tmp_path / "plots" / "loss.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["r.yaml", "--resume"], ["r.yaml", "--resume", "latest"]),
        (["r.yaml", "--resume", "--overwrite"], ["r.yaml", "--resume", "latest", "--overwrite"]),
        (["r.yaml", "--resume", "train.lr=1"], ["r.yaml", "--resume", "latest", "train.lr=1"]),
        (["r.yaml", "--resume", "runs/x/checkpoint-3"], ["r.yaml", "--resume", "runs/x/checkpoint-3"]),
        (["r.yaml", "a=1"], ["r.yaml", "a=1"]),
    ],
)
def test_bare_resume_means_latest(argv, expected):
    from vittle_cli.commands.train import _bare_resume_means_latest

    assert _bare_resume_means_latest(argv) == expected


def test_child_argv_pins_the_run_directory():
    from vittle_cli.train.entry import child_argv

    assert child_argv("r.yaml", ["a=1"], "r", resume="latest", overwrite=False) == [
        "train", "r.yaml", "a=1", "output.run_name=r", "--resume", "latest"
    ]  # fmt: skip
    assert child_argv("r.yaml", ["output.run_name=x"], None, resume=None, overwrite=True) == [
        "train", "r.yaml", "output.run_name=x", "--overwrite"
    ]  # fmt: skip
