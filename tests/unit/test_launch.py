"""launch.py: launcher command lines (checked by the launchers' own parsers), validation, run_launch."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from vittle_cli.errors import UsageError
from vittle_cli.launch import (
    build_launch_command,
    is_distributed_child,
    run_launch,
    strip_launch_options,
)

ARGV = [
    "train",
    "recipes/tiny.yaml",
    "train.lr=1e-4",
    "--nproc-per-node",
    "8",
    "--launcher=torchrun",
    "--resume",
]
CHILD_ARGS = ["train", "recipes/tiny.yaml", "train.lr=1e-4", "--resume"]


@pytest.mark.parametrize("var", ["LOCAL_RANK", "RANK"])
def test_is_distributed_child(monkeypatch, var):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert not is_distributed_child()
    monkeypatch.setenv(var, "0")
    assert is_distributed_child()


def test_strip_launch_options_keeps_everything_else():
    argv = [
        "r.yaml",
        "--nnodes",
        "2",
        "--node-rank=1",
        "--hostfile",
        "h",
        "x.y=1",
        "--master-port",
        "1",
        "--dry-run",
    ]
    assert strip_launch_options(argv) == ["r.yaml", "x.y=1", "--dry-run"]


def test_torchrun_command():
    cmd = build_launch_command(ARGV, nproc_per_node=8)
    assert cmd == [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "8", "--nnodes", "1",
        "--node-rank", "0", "--master-addr", "127.0.0.1", "--master-port", "29500", "-m", "vittle_cli",
        *CHILD_ARGS,
    ]  # fmt: skip
    # argv without the subcommand gets it added, once.
    assert build_launch_command(ARGV[1:], nproc_per_node=8) == cmd


def test_torchrun_multi_node_command_parses_as_torchrun_does():
    from torch.distributed.run import get_args_parser

    cmd = build_launch_command(
        ARGV, nproc_per_node=4, nnodes=2, node_rank=1, master_addr="10.1.2.3", master_port=29611
    )
    args = get_args_parser().parse_args(cmd[3:])
    assert (args.nproc_per_node, args.nnodes, args.node_rank) == ("4", "2", 1)
    assert (args.master_addr, args.master_port, args.module) == ("10.1.2.3", 29611, True)
    assert args.training_script == "vittle_cli" and args.training_script_args == CHILD_ARGS


def test_deepspeed_command_parses_as_the_deepspeed_runner_does(tmp_path):
    pytest.importorskip("deepspeed")
    from deepspeed.launcher.runner import parse_args

    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node-a slots=8\nnode-b slots=8\n")
    cmd = build_launch_command(
        ARGV, nproc_per_node=8, nnodes=2, master_addr="node-a", launcher="deepspeed", hostfile=str(hostfile)
    )
    assert cmd[:3] == [sys.executable, "-m", "deepspeed.launcher.runner"]
    args = parse_args(cmd[3:])
    assert (args.hostfile, args.num_nodes, args.num_gpus) == (str(hostfile), 2, 8)
    assert (args.master_addr, args.master_port) == ("node-a", 29500)
    assert args.module and args.no_local_rank  # children read LOCAL_RANK; no --local_rank argument
    assert args.user_script == "vittle_cli" and args.user_args == CHILD_ARGS
    single = build_launch_command(ARGV, nproc_per_node=2, launcher="deepspeed")
    assert "--hostfile" not in single and parse_args(single[3:]).num_gpus == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nnodes": 2}, "needs --master-addr"),
        ({"nnodes": 2, "master_addr": "localhost"}, "needs --master-addr"),
        ({"nnodes": 2, "node_rank": 2, "master_addr": "10.0.0.1"}, "--node-rank 2 must lie in 0..1"),
        ({"hostfile": "/no/such/hostfile", "launcher": "deepspeed"}, "does not exist"),
        ({"hostfile": __file__}, "add --launcher deepspeed"),
        ({"nnodes": 2, "master_addr": "10.0.0.1", "launcher": "deepspeed"}, "needs --hostfile"),
        ({"launcher": "mpirun"}, "unknown"),
        ({"master_port": 70000}, "not a TCP port"),
        ({"nproc_per_node": 0}, "at least 1"),
    ],
)
def test_launch_validation(kwargs, message):
    kwargs = {"nproc_per_node": 2, **kwargs}
    with pytest.raises(UsageError, match=message):
        build_launch_command(ARGV, **kwargs)


def test_run_launch_passes_exit_codes_through():
    assert run_launch([sys.executable, "-c", "import sys; sys.exit(3)"]) == 3
    assert run_launch([sys.executable, "-c", "pass"]) == 0
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert run_launch([sys.executable, "-c", killed]) == 128 + signal.SIGKILL


@pytest.mark.slow
def test_ctrl_c_is_forwarded_and_returns_130(tmp_path):
    ready, got = tmp_path / "ready", tmp_path / "got-sigint"
    child = textwrap.dedent(f"""
        import pathlib, signal, sys, time
        def stop(*_):
            pathlib.Path({str(got)!r}).write_text("yes")
            sys.exit(0)
        signal.signal(signal.SIGINT, stop)
        pathlib.Path({str(ready)!r}).write_text("yes")
        time.sleep(60)
    """)
    parent = (
        "import sys; from vittle_cli.launch import run_launch; "
        f"sys.exit(run_launch([sys.executable, '-c', {child!r}]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the child never started"
    proc.send_signal(signal.SIGINT)  # to the parent only: the child must hear it from run_launch
    assert proc.wait(timeout=30) == 130
    assert got.read_text() == "yes"
    assert "launching:" in proc.stderr.read()
