"""Re-run a vittle command (`train`, `eval`) under torchrun or the DeepSpeed launcher, one process per GPU,
on one or more nodes.

vittle builds the launcher's command line, prints it exactly (so it can be copied into a cluster script),
runs it and passes the exit code on. Each child is an ordinary `python -m vittle_cli <command> ...` that
sees LOCAL_RANK / RANK in its environment and does the work instead of launching again. Shared by
train/ and eval/ (which must not import each other).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from vittle_cli.errors import UsageError, VittleError

LAUNCHERS = ("torchrun", "deepspeed")
# `vittle train` / `vittle eval` options that configure the launch; the children must not see them.
LAUNCH_OPTIONS = (
    "--nproc-per-node", "--nnodes", "--node-rank", "--master-addr", "--master-port", "--launcher", "--hostfile",
)  # fmt: skip
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "")
_GRACE_S = 30.0  # how long an interrupted child may take to stop before it is killed


@dataclass
class LaunchOptions:
    """Multi-process options of `vittle train` / `vittle eval` (all defaults = one process, no launcher)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "torchrun"
    hostfile: str | None = None

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def wants_launch(self) -> bool:
        return self.world_size > 1 or self.hostfile is not None


def is_distributed_child() -> bool:
    """True inside a process started by torchrun / the deepspeed launcher (LOCAL_RANK or RANK is set)."""
    return "LOCAL_RANK" in os.environ or "RANK" in os.environ


def strip_launch_options(argv: list[str]) -> list[str]:
    """`argv` without the launch options (both `--opt value` and `--opt=value` forms)."""
    out: list[str] = []
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
        elif arg in LAUNCH_OPTIONS:
            skip_next = True
        elif not arg.startswith(tuple(f"{o}=" for o in LAUNCH_OPTIONS)):
            out.append(arg)
    return out


def build_launch_command(
    argv: list[str],
    *,
    nproc_per_node: int,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
    launcher: str = "torchrun",
    hostfile: str | None = None,
    command: str = "train",
) -> list[str]:
    """The command that runs `vittle <command> <argv>` in `nproc_per_node` processes on each of `nnodes`
    nodes.

    Args:
        argv: the command's arguments, with or without the leading command name; launch options in it
            are dropped.
        launcher: "torchrun" (run the command on every node with its --node-rank) or "deepspeed" (run it
            once; with a hostfile the DeepSpeed launcher starts the other nodes over ssh/pdsh).

    Raises:
        UsageError: inconsistent options (bad counts or ranks, several nodes on a loopback address,
            a missing hostfile, a hostfile without the deepspeed launcher, an unknown launcher).
        VittleError: the deepspeed launcher is asked for but DeepSpeed is not installed.
    """
    _validate(nproc_per_node, nnodes, node_rank, master_addr, master_port, launcher, hostfile)
    args = strip_launch_options(list(argv))
    if not args or args[0] != command:
        args.insert(0, command)
    if launcher == "torchrun":
        return [
            sys.executable, "-m", "torch.distributed.run",
            "--nproc-per-node", str(nproc_per_node),
            "--nnodes", str(nnodes),
            "--node-rank", str(node_rank),
            "--master-addr", master_addr,
            "--master-port", str(master_port),
            "-m", "vittle_cli", *args,
        ]  # fmt: skip
    if importlib.util.find_spec("deepspeed") is None:
        raise VittleError("--launcher deepspeed needs DeepSpeed; run `pip install 'vittle[deepspeed]'`")
    command = [sys.executable, "-m", "deepspeed.launcher.runner"]
    if hostfile:
        command += ["--hostfile", str(Path(hostfile).expanduser())]
    command += [
        "--num_nodes", str(nnodes),
        "--num_gpus", str(nproc_per_node),
        "--master_addr", master_addr,
        "--master_port", str(master_port),
        # The children read LOCAL_RANK from the environment; a --local_rank argument would be an
        # unknown option to `vittle train` / `vittle eval`.
        "--no_local_rank",
        "--module", "vittle_cli", *args,
    ]  # fmt: skip
    return command


def _validate(
    nproc_per_node: int,
    nnodes: int,
    node_rank: int,
    master_addr: str,
    master_port: int,
    launcher: str,
    hostfile: str | None,
) -> None:
    problems = []
    if launcher not in LAUNCHERS:
        problems.append(f"--launcher {launcher!r} is unknown; use {' or '.join(LAUNCHERS)}")
    if nproc_per_node < 1 or nnodes < 1:
        problems.append("--nproc-per-node and --nnodes must be at least 1")
    if not 0 <= node_rank < max(nnodes, 1):
        problems.append(f"--node-rank {node_rank} must lie in 0..{nnodes - 1} for --nnodes {nnodes}")
    if not 0 < master_port < 65536:
        problems.append(f"--master-port {master_port} is not a TCP port (1..65535)")
    if hostfile is not None:
        if launcher != "deepspeed":
            problems.append("--hostfile is read by the DeepSpeed launcher; add --launcher deepspeed")
        if not Path(hostfile).expanduser().is_file():
            problems.append(
                f"--hostfile {hostfile} does not exist; write one line per node: `<host> slots=<gpus>`"
            )
    if nnodes > 1:
        if master_addr.strip() in _LOOPBACK:
            problems.append(
                f"--nnodes {nnodes} needs --master-addr set to the address of node 0 (reachable from every node), "
                f"not {master_addr!r}"
            )
        if launcher == "deepspeed" and hostfile is None:
            problems.append(f"--launcher deepspeed with --nnodes {nnodes} needs --hostfile listing the nodes")
    if problems:
        raise UsageError("; ".join(problems))


def run_launch(cmd: list[str], console=None) -> int:
    """Print `cmd` exactly, run it, and return its exit code.

    Ctrl-C is forwarded to the launcher (which stops its workers) and returns 130; a child killed by a
    signal returns 128 + the signal number, as a shell would.

    Raises:
        VittleError: the launcher executable cannot be started.
    """
    from rich.console import Console
    from rich.markup import escape

    console = console or Console(stderr=True)
    console.print(f"[bold]launching:[/bold] {escape(shlex.join(cmd))}", highlight=False, soft_wrap=True)
    try:
        child = subprocess.Popen(cmd)
    except OSError as e:
        raise VittleError(
            f"cannot start {cmd[0]}: {e.strerror}; check that it is installed and on PATH"
        ) from e
    try:
        code = child.wait()
    except KeyboardInterrupt:
        _stop(child)
        return 130
    return 128 - code if code < 0 else code


def _stop(child: subprocess.Popen) -> None:
    """Forward the interrupt; escalate to SIGTERM and SIGKILL if the child does not stop in time."""
    for sig, wait_s in ((signal.SIGINT, _GRACE_S), (signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        if child.poll() is not None:
            return
        child.send_signal(sig)
        try:
            child.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # a second Ctrl-C: move on to the next, harder signal
            continue


def world_from_env() -> tuple[int, int, int]:
    """(rank, local rank, world size) of this process, from the launcher's environment; (0, 0, 1) alone."""
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, local, int(os.environ.get("WORLD_SIZE", "1"))
