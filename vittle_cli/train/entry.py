"""What `vittle train` does with its options: dry run, re-launch under torchrun/deepspeed, or train here."""

from __future__ import annotations

import sys

from vittle_cli.errors import Interrupted, UsageError
from vittle_cli.launch import (
    LaunchOptions,
    is_distributed_child,
)  # commands/train.py takes LaunchOptions from here


def child_argv(
    recipe_path: str,
    overrides: list[str],
    run_name: str | None,
    *,
    resume: str | None,
    overwrite: bool,
    allow_changes: bool = False,
) -> list[str]:
    """Arguments of the re-executed `vittle train` (without the launch options); `run_name` pins the run
    directory the parent checked (None: the recipe already names it)."""
    argv = ["train", recipe_path, *overrides]
    if run_name is not None:
        argv.append(f"output.run_name={run_name}")
    if resume:
        argv += ["--resume", resume]
    if overwrite:
        argv.append("--overwrite")
    if allow_changes:
        argv.append("--allow-changes")
    return argv


def _launch_command(recipe_path, overrides, recipe, run_dir, launch, resume, overwrite, allow_changes):
    """The torchrun / deepspeed command that re-runs `vittle train` in every process, or None when this
    process trains itself (one process, or already a launched child)."""
    if not launch.wants_launch:
        return None
    from vittle_cli.launch import build_launch_command, is_distributed_child

    if is_distributed_child():
        return None
    return build_launch_command(
        child_argv(
            recipe_path,
            overrides,
            None if recipe.output.run_name else run_dir.name,
            resume=resume,
            overwrite=overwrite,
            allow_changes=allow_changes,
        ),
        launcher=launch.launcher,
        nproc_per_node=launch.nproc_per_node,
        nnodes=launch.nnodes,
        node_rank=launch.node_rank,
        master_addr=launch.master_addr,
        master_port=launch.master_port,
        hostfile=launch.hostfile,
    )


def interrupted_message(
    run_dir, recipe_path: str, overrides: list[str], launch: LaunchOptions, recipe
) -> str:
    """What an interrupted run kept and the exact command that continues it."""
    import shlex

    from vittle_cli.layout import list_checkpoints

    defaults = LaunchOptions()
    flags = []
    for name in (
        "nproc_per_node",
        "nnodes",
        "node_rank",
        "master_addr",
        "master_port",
        "launcher",
        "hostfile",
    ):
        value = getattr(launch, name)
        if value != getattr(defaults, name):
            flags += [f"--{name.replace('_', '-')}", str(value)]
    command = ["vittle", "train", recipe_path, *overrides, *flags]
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        return (
            f"interrupted before the first checkpoint (one every output.save_steps={recipe.output.save_steps} "
            f"steps): nothing in {run_dir} to resume; start again with: {shlex.join(command)}"
        )
    step, folder = checkpoints[-1]
    return (
        f"interrupted; kept {folder} (step {step}) in {run_dir}; later steps are lost; "
        f"resume with: {shlex.join([*command, '--resume'])}"
    )


def run_train_command(
    recipe_path: str,
    overrides: list[str],
    *,
    dry_run: bool = False,
    resume: str | None = None,
    overwrite: bool = False,
    launch: LaunchOptions | None = None,
    console=None,
    allow_changes: bool = False,
) -> int:
    """Run `vittle train`: returns the exit code (a launched child's code is passed through).

    Raises:
        RecipeError / UsageError / ModelError / DataError: problems found before or while training.
    """
    from rich.console import Console

    from vittle_cli.recipe import load_recipe
    from vittle_cli.train.rundir import prepare_run_dir, resolve_resume, run_dir_for

    console = console or Console(stderr=True)
    launch = launch or LaunchOptions()
    recipe = load_recipe(recipe_path, overrides)
    if overwrite and resume:
        raise UsageError("--overwrite and --resume contradict each other; pass only one")
    run_dir = run_dir_for(recipe.output.dir, recipe.output.run_name, recipe_path)
    command = _launch_command(
        recipe_path, overrides, recipe, run_dir, launch, resume, overwrite, allow_changes
    )
    relaunch = command is not None
    if dry_run:
        from vittle_cli.train.dryrun import build_plan, print_plan

        plan = build_plan(recipe, world_size=launch.world_size, launch_command=command, run_dir=run_dir)
        print_plan(plan, Console(highlight=False, soft_wrap=True))
        return 0
    # Fail fast, before any process starts: the run directory and the checkpoint to resume.
    checkpoint = resolve_resume(run_dir, resume)
    if relaunch:  # the children check again; this makes a bad resume fail once, before any process starts
        from vittle_cli.recipe import dump_recipe
        from vittle_cli.train.resume import check_resume

        check_resume(recipe, run_dir, checkpoint, dump_recipe(recipe), allow_changes=allow_changes)
    prepare_run_dir(run_dir, overwrite=overwrite, resume=checkpoint is not None, is_main=False)
    if relaunch:
        from vittle_cli.launch import run_launch

        code = run_launch(command, console=console)
        if code == 130:
            raise Interrupted(interrupted_message(run_dir, recipe_path, overrides, launch, recipe))
        return code

    from vittle_cli.train.run import run_train

    argv = ["vittle", "train", recipe_path, *overrides, *(["--resume", resume] if resume else [])]
    argv += (["--overwrite"] if overwrite else []) + (["--allow-changes"] if allow_changes else [])
    interrupted = False
    try:
        result = run_train(recipe, recipe_path=recipe_path, resume=resume, overwrite=overwrite,
                           console=console, command=argv, allow_changes=allow_changes)  # fmt: skip
    except KeyboardInterrupt:
        if is_distributed_child():  # the launching parent says it once, for all ranks
            raise
        interrupted = True
    if interrupted:  # raised outside `except`: no chained traceback keeps the run's data loaders alive
        raise Interrupted(interrupted_message(run_dir, recipe_path, overrides, launch, recipe))
    from vittle_cli.train.plan import WorldInfo

    if WorldInfo.from_env().is_main:
        loss = f", train loss {result.train_loss:.4f}" if result.train_loss is not None else ""
        print(
            f"trained {result.global_step}/{result.max_steps} steps{loss}; model in {result.final_dir}",
            file=sys.stdout,
        )
    return 0
