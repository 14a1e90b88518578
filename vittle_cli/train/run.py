"""run_train: one training run, from a validated recipe to a complete run directory.

Order matters: the TrainingArguments (which carry the DeepSpeed config) exist before the model is loaded,
so ZeRO-3 partitions the weights while loading; nothing is written before every rank has checked the run
directory; only rank 0 writes run files.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.layout import FINAL_DIR, LOSS_PLOT, METRICS_FILE, STAGING_DIR
from vittle_cli.train.plan import WorldInfo
from vittle_cli.train.resume import check_resume
from vittle_cli.train.rundir import (
    lock_run_dir,
    prepare_run_dir,
    resolve_resume,
    run_dir_for,
    run_info,
    write_run_files,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    final_dir: Path
    global_step: int
    max_steps: int
    train_loss: float | None


def _precision_flags(precision: str) -> dict:
    import torch

    if precision == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        precision = "bf16" if cuda_bf16 else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def _checkpointing_args(enabled: bool) -> dict:
    """Activation checkpointing arguments under the name this transformers uses (renamed in 5.x)."""
    import dataclasses

    from transformers import TrainingArguments

    if not enabled:
        return {}
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    prefix = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    # Non-reentrant: gives the same gradients as no checkpointing, also with frozen inputs (LoRA).
    return {prefix: True, f"{prefix}_kwargs": {"use_reentrant": False}}


def build_training_arguments(recipe, run_dir: Path, ds_config: dict | None, world: WorldInfo):
    """transformers.TrainingArguments for a recipe (vittle does its own progress, TensorBoard dir, saving)."""
    import torch
    from transformers import TrainingArguments

    from vittle_cli.train.data_setup import num_workers
    from vittle_cli.train.in_training_eval import eval_arguments
    from vittle_cli.train.optim import economy_training_args

    t, o = recipe.train, recipe.output
    report_to = [r for r in o.report_to if r not in ("tensorboard", "none")]
    return TrainingArguments(
        output_dir=str(run_dir),
        run_name=run_dir.name,
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        learning_rate=t.lr,
        lr_scheduler_type=t.scheduler,
        # A float below 1 is a ratio of the total steps (transformers 5.x semantics).
        warmup_steps=min(t.warmup_ratio, 0.999999),
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        **_checkpointing_args(t.gradient_checkpointing),
        deepspeed=ds_config,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=o.save_steps,
        save_total_limit=o.save_total_limit,
        report_to=report_to or "none",
        dataloader_num_workers=(workers := num_workers(recipe, world)),
        dataloader_persistent_workers=workers > 0,  # re-forking workers every epoch costs seconds
        remove_unused_columns=False,
        disable_tqdm=True,
        log_level="warning",
        # Without CUDA, accelerate only sets up multi-process training when told it runs on CPU.
        use_cpu=not torch.cuda.is_available(),
        ddp_backend=None if torch.cuda.is_available() or world.world_size == 1 else "gloo",
        # None = transformers decides (on unless gradient checkpointing): a trained CLIP tower has
        # parameters LLaVA never uses (post_layernorm), which plain DDP would otherwise reject.
        ddp_find_unused_parameters=None,
        **_precision_flags(t.precision),
        **eval_arguments(recipe, has_eval_dataset=bool(recipe.data.eval)),
        **economy_training_args(t),
    )


def _tensorboard_callback(run_dir: Path):
    try:
        from transformers.integrations import TensorBoardCallback

        callback = TensorBoardCallback()
    except (ImportError, RuntimeError) as err:  # tensorboard not installed
        logger.warning("TensorBoard logging is off: %s", err)
        return None
    callback.logging_dir = str(run_dir / "tensorboard")
    return callback


def _train_sampler(recipe, dataset, args, world: WorldInfo):
    """vittle's GroupedSampler when the recipe asks for length/modality grouping, else Trainer's default."""
    d = recipe.data
    if not (d.group_by_length or d.group_by_modality):
        return None
    from vittle_cli.data import GroupedSampler

    return GroupedSampler(
        lengths=dataset.lengths,
        has_image=dataset.has_image,
        batch_size=args.per_device_train_batch_size * args.gradient_accumulation_steps * world.world_size,
        by_length=d.group_by_length,
        by_modality=d.group_by_modality,
        seed=recipe.train.seed,
    )


def _init_distributed(ds_config: dict | None, world: WorldInfo) -> None:
    """DeepSpeed must own the process group (gloo on CPU) before the model exists.

    A single process started without a launcher has no RANK/MASTER_ADDR: give it a one-rank group on
    localhost, or DeepSpeed falls back to MPI discovery (mpi4py) and fails.
    """
    if ds_config is None:
        return
    import os
    import socket

    import deepspeed
    import torch

    if world.world_size == 1 and "RANK" not in os.environ:
        with socket.socket() as s:  # a free port for the one-rank rendezvous
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        for key, value in (
            ("RANK", "0"),
            ("LOCAL_RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", str(port)),
        ):
            os.environ.setdefault(key, value)

    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def run_train(
    recipe,
    *,
    recipe_path: str | None = None,
    resume: str | None = None,
    overwrite: bool = False,
    console=None,
    command: list[str] | None = None,
    allow_changes: bool = False,
) -> TrainResult:
    """Train one run described by `recipe` into output.dir/run_name.

    Args:
        recipe: a validated vittle_cli.recipe.Recipe.
        recipe_path: the recipe file (names the run when output.run_name is unset).
        resume: None, "latest", or a checkpoint-N path.
        overwrite: remove an existing run directory first.
        console: rich Console for the progress display (stderr by default).
        command: the command line to record in run_info.json (default: this process's argv).
        allow_changes: let --resume continue with a recipe that differs from the run's (recorded).
    Raises:
        UsageError: the run directory exists (without --resume/--overwrite), has nothing to resume, is
            in use by another process, or the resume changes the recipe without allow_changes.
        ModelError: a checkpoint with planted pickles or one that does not fit the recipe.
    """
    if overwrite and resume:
        raise UsageError("--overwrite and --resume contradict each other; pass only one")
    world = WorldInfo.from_env()
    run_dir = run_dir_for(recipe.output.dir, recipe.output.run_name, recipe_path)
    lock = lock_run_dir(run_dir) if world.is_main else None  # released when this call ends
    try:
        return _run_locked(
            recipe, run_dir, world, recipe_path, resume, overwrite, console, command, allow_changes
        )
    finally:
        if lock is not None:
            lock.release()


def _start_run(recipe, run_dir, resume, overwrite, allow_changes, world: WorldInfo, console):
    """Check the run directory and the checkpoint to resume (every rank, before any rank writes), start
    DeepSpeed / the process group; returns (checkpoint or None, resolved recipe YAML, allowed recipe
    changes, DeepSpeed config or None, TrainingArguments). Writes nothing into the run directory."""
    from vittle_cli.model.builtin import resolve_model_source
    from vittle_cli.recipe import dump_recipe

    checkpoint = resolve_resume(run_dir, resume)
    recipe_yaml = dump_recipe(recipe)
    changes = check_resume(recipe, run_dir, checkpoint, recipe_yaml, allow_changes=allow_changes)
    prepare_run_dir(run_dir, overwrite=overwrite, resume=checkpoint is not None, is_main=False)

    # Build a built-in model now, outside ZeRO-3's partitioned init (its random init cannot run there).
    resolve_model_source(recipe.model.name)
    ds_config = None
    if recipe.train.deepspeed:
        from vittle_cli.train.deepspeed import require_deepspeed, resolve_deepspeed_config

        require_deepspeed()
        ds_config = resolve_deepspeed_config(recipe.train.deepspeed)
    _init_distributed(ds_config, world)
    args = build_training_arguments(recipe, run_dir, ds_config, world)
    if recipe.model.trust_remote_code and world.is_main:
        from vittle_cli.model.safe_load import remote_code_warning

        _warn(console, remote_code_warning(recipe.model.name, recipe.model.revision))
    return checkpoint, recipe_yaml, changes, ds_config, args


def _start_run_dir(run_dir, world, *, overwrite, checkpoint, recipe, recipe_yaml, changes, command) -> None:
    """Make the run directory real (main process): clear it if asked, write config.yaml + run_info.json."""
    from vittle_cli.train.callbacks import truncate_metrics

    prepare_run_dir(run_dir, overwrite=overwrite, resume=checkpoint is not None, is_main=True)
    info = run_info(
        seed=recipe.train.seed,
        world_size=world.world_size,
        resumed_from=checkpoint and str(checkpoint),
        command=command,
    )
    if changes:
        info["recipe_changes"] = changes  # allowed with --allow-changes
    write_run_files(run_dir, recipe_yaml, info)
    if checkpoint is not None:
        truncate_metrics(run_dir / METRICS_FILE, _checkpoint_step(checkpoint))


def _run_locked(recipe, run_dir, world, recipe_path, resume, overwrite, console, command, allow_changes):
    """run_train's body, with the run directory locked by the main process."""
    import torch
    from transformers import set_seed

    from vittle_cli.data import DataCollator
    from vittle_cli.model.load import load_model_for_recipe
    from vittle_cli.plots import plot_metrics
    from vittle_cli.train.bad_data import write_data_report
    from vittle_cli.train.callbacks import RichProgressCallback
    from vittle_cli.train.data_setup import build_data, suite_callback
    from vittle_cli.train.deepspeed import zero_stage
    from vittle_cli.train.trainer import VittleTrainer

    checkpoint, recipe_yaml, changes, ds_config, args = _start_run(
        recipe, run_dir, resume, overwrite, allow_changes, world, console
    )
    set_seed(recipe.train.seed)  # the bottleneck's initial weights come from this seed
    model, processor = load_model_for_recipe(recipe)
    dataset, eval_dataset, bad_data = build_data(recipe, processor, run_dir, world)
    # Only now, with model and data loaded, does the run exist: a start that failed before leaves
    # nothing that would block its own rerun (and --overwrite deletes the old run only here).
    with args.main_process_first(desc="run directory", local=False):
        if world.is_main:
            _start_run_dir(
                run_dir, world, overwrite=overwrite, checkpoint=checkpoint, recipe=recipe,
                recipe_yaml=recipe_yaml, changes=changes, command=command,
            )  # fmt: skip

    callbacks = _callbacks(model, recipe, run_dir, console)
    progress = next(c for c in callbacks if isinstance(c, RichProgressCallback))
    suite_eval = suite_callback(recipe, run_dir, processor, world)
    callbacks += [bad_data] + ([suite_eval] if suite_eval is not None else [])
    trainer = VittleTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        data_collator=DataCollator(processor),
        processing_class=processor,
        callbacks=callbacks,
        train_sampler=_train_sampler(recipe, dataset, args, world),
        zero3=ds_config is not None and zero_stage(ds_config) == 3,
    )
    if suite_eval is not None:
        suite_eval.trainer = trainer  # it logs through the trainer, like every other row
    if checkpoint is not None and checkpoint.resolve().parent == run_dir.resolve():
        trainer.protected_checkpoint = str(Path(args.output_dir) / checkpoint.name)
    try:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        # A run stopped for bad data has its checkpoint (the callback asked for one), not a final model.
        final_dir = None if bad_data.exceeded else _save_final(trainer, run_dir)
    except BaseException:
        progress.close()
        if world.is_main:  # a checkpoint interrupted mid-write never got its final name
            shutil.rmtree(run_dir / STAGING_DIR, ignore_errors=True)
        raise
    if world.is_main and (run_dir / METRICS_FILE).is_file():
        plot_metrics(run_dir / METRICS_FILE, run_dir / LOSS_PLOT)
    bad_data.read_new_problems()
    if world.is_main:
        write_data_report(run_dir, bad_data.report, console)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        # Tear the group down explicitly: left to interpreter exit, gloo's threads are destroyed while
        # still joinable and a rank can die with SIGABRT ("terminate called without an active exception")
        # after a successful run.
        torch.distributed.destroy_process_group()
    if bad_data.exceeded:
        raise bad_data.error()
    return TrainResult(
        run_dir=run_dir,
        final_dir=final_dir,
        global_step=trainer.state.global_step,
        max_steps=trainer.state.max_steps,
        train_loss=_whole_run_loss(trainer, output, checkpoint),
    )


def _callbacks(model, recipe, run_dir: Path, console) -> list:
    """Alpha schedule (when the bottleneck is on), peak memory, metrics.jsonl, progress, TensorBoard."""
    from vittle_cli.model.attach import get_bottleneck
    from vittle_cli.train.callbacks import AlphaCallback, MetricsJsonlCallback, RichProgressCallback
    from vittle_cli.train.memory_callbacks import BottleneckInOptimizerCallback, PeakMemoryCallback

    # PeakMemoryCallback first: it adds its fields to the log row the others write.
    callbacks = [
        PeakMemoryCallback(),
        MetricsJsonlCallback(run_dir / METRICS_FILE),
        RichProgressCallback(console=console),
        BottleneckInOptimizerCallback(),
    ]
    if (bottleneck := get_bottleneck(model)) is not None:
        callbacks.insert(0, AlphaCallback(bottleneck.config))
    if "tensorboard" in recipe.output.report_to and (tb := _tensorboard_callback(run_dir)) is not None:
        callbacks.append(tb)
    return callbacks


def _checkpoint_step(checkpoint: Path) -> int:
    import json

    return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


def _save_final(trainer, run_dir: Path) -> Path:
    """Save the model/adapter + processor + vittle files to final/, via a staging folder (all ranks call)."""
    staging = run_dir / STAGING_DIR / FINAL_DIR
    final = run_dir / FINAL_DIR
    trainer.save_model(str(staging))
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        shutil.rmtree(run_dir / STAGING_DIR, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return final


def _warn(console, message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    (console or Console(stderr=True)).print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def _whole_run_loss(trainer, output, checkpoint: Path | None) -> float | None:
    """The printed train loss: the mean over the whole run, also when this process resumed it."""
    from vittle_cli.train.resume import checkpoint_step, whole_run_loss

    start = checkpoint_step(checkpoint) if checkpoint is not None else 0
    session_total = getattr(trainer, "_total_loss_scalar", None)
    if session_total is None and output.training_loss is not None:
        session_total = output.training_loss * max(trainer.state.global_step - start, 0)
    return whole_run_loss(checkpoint, session_total, trainer.state.global_step)
