"""`vittle train`: train a recipe (one process, or re-launched under torchrun / the deepspeed launcher)."""

from __future__ import annotations

import typer
from typer.core import TyperCommand


def _bare_resume_means_latest(args: list[str]) -> list[str]:
    """Let `--resume` stand alone: insert "latest" when no value follows (end, an option, or a key=value)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--resume":
            nxt = out[i + 1] if i + 1 < len(out) else None
            if nxt is None or nxt.startswith("-") or "=" in nxt:
                out.insert(i + 1, "latest")
            break
    return out


class _TrainCommand(TyperCommand):
    """`vittle train` with an optional value for --resume (Typer has no optional-value options)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _bare_resume_means_latest(args))


def train(
    recipe: str = typer.Argument(
        ..., help="Recipe YAML path or shipped recipe name (see `vittle recipes ls`)."
    ),
    overrides: list[str] = typer.Argument(
        None, help="Recipe overrides as key.sub=value, e.g. train.lr=1e-5."
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print the resolved recipe and plan (layers, parameters, steps, alpha) and exit.",
    ),
    resume: str = typer.Option(
        None,
        "--resume",
        metavar="[latest|PATH]",
        help="Continue the run from its newest checkpoint (bare --resume or 'latest') or from a checkpoint-N path.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Delete an existing run directory and start afresh."
    ),
    allow_changes: bool = typer.Option(
        False,
        "--allow-changes",
        help="With --resume: continue even though the recipe differs from the run's (recorded in run_info.json).",
    ),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", min=1, help="Processes (GPUs) per node."),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="Number of nodes."),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="This node's rank (multi-node torchrun)."),
    master_addr: str = typer.Option("127.0.0.1", "--master-addr", help="Address of the rank-0 node."),
    master_port: int = typer.Option(29500, "--master-port", help="Port of the rank-0 node."),
    launcher: str = typer.Option(
        "torchrun", "--launcher", help="Multi-process launcher: torchrun or deepspeed."
    ),
    hostfile: str = typer.Option(None, "--hostfile", help="DeepSpeed hostfile (with --launcher deepspeed)."),
) -> None:
    """Train a model with the Vittle bottleneck (or the baseline) as a recipe describes.

    Writes a run directory (output.dir/output.run_name) with config.yaml, run_info.json, metrics.jsonl,
    TensorBoard events, checkpoint-N/ folders, final/ and loss.png. With --nproc-per-node/--nnodes > 1
    it re-runs itself under torchrun (or the deepspeed launcher) and prints the exact command.

    Examples:

      vittle train recipes/tiny.yaml

      vittle train recipes/tiny.yaml train.max_steps=50 output.run_name=quick --dry-run

      vittle train recipes/llava15_7b_vittle_f_zero3.yaml --nproc-per-node 8 --resume
    """
    from vittle_cli.errors import UsageError
    from vittle_cli.train.entry import LaunchOptions, run_train_command

    if launcher not in ("torchrun", "deepspeed"):
        raise UsageError(f"--launcher {launcher!r} is unknown; use torchrun or deepspeed")
    if hostfile and launcher != "deepspeed":
        raise UsageError("--hostfile needs --launcher deepspeed")
    code = run_train_command(
        recipe,
        list(overrides or []),
        dry_run=dry_run,
        resume=resume,
        overwrite=overwrite,
        allow_changes=allow_changes,
        launch=LaunchOptions(
            nproc_per_node=nproc_per_node,
            nnodes=nnodes,
            node_rank=node_rank,
            master_addr=master_addr,
            master_port=master_port,
            launcher=launcher,
            hostfile=hostfile,
        ),
    )
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer, inspect_app: typer.Typer) -> None:
    """Add `vittle train` to the app."""
    app.command("train", cls=_TrainCommand)(train)
