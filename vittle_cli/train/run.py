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
from vittle_cli.train.rundir import (
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
        dataloader_num_workers=recipe.data.num_workers,
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
) -> TrainResult:
    """Train one run described by `recipe` into output.dir/run_name.

    Args:
        recipe: a validated vittle_cli.recipe.Recipe.
        recipe_path: the recipe file (names the run when output.run_name is unset).
        resume: None, "latest", or a checkpoint-N path.
        overwrite: remove an existing run directory first.
        console: rich Console for the progress display (stderr by default).
        command: the command line to record in run_info.json (default: this process's argv).
    Raises:
        UsageError: the run directory exists (without --resume/--overwrite) or has nothing to resume.
    """
    import torch
    from transformers import set_seed

    from vittle_cli.data import DataCollator, build_train_dataset
    from vittle_cli.model.load import load_model_for_recipe
    from vittle_cli.plots import plot_metrics
    from vittle_cli.train.callbacks import RichProgressCallback
    from vittle_cli.train.deepspeed import zero_stage
    from vittle_cli.train.trainer import VittleTrainer

    if overwrite and resume:
        raise UsageError("--overwrite and --resume contradict each other; pass only one")
    world = WorldInfo.from_env()
    run_dir, checkpoint, ds_config, args = _start_run(recipe, recipe_path, resume, overwrite, command, world)

    set_seed(recipe.train.seed)  # the bottleneck's initial weights come from this seed
    model, processor = load_model_for_recipe(recipe)
    dataset, report = build_train_dataset(recipe.data, processor, seed=recipe.train.seed)
    if world.is_main:
        logger.info(report.summary())

    callbacks = _callbacks(model, recipe, run_dir, console)
    progress = next(c for c in callbacks if isinstance(c, RichProgressCallback))
    trainer = VittleTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollator(processor),
        processing_class=processor,
        callbacks=callbacks,
        train_sampler=_train_sampler(recipe, dataset, args, world),
        zero3=ds_config is not None and zero_stage(ds_config) == 3,
    )
    try:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        final_dir = _save_final(trainer, run_dir)
    except BaseException:
        progress.close()
        if world.is_main:  # a checkpoint interrupted mid-write never got its final name
            shutil.rmtree(run_dir / STAGING_DIR, ignore_errors=True)
        raise
    if world.is_main and (run_dir / METRICS_FILE).is_file():
        plot_metrics(run_dir / METRICS_FILE, run_dir / LOSS_PLOT)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        # Tear the group down explicitly: left to interpreter exit, gloo's threads are destroyed while
        # still joinable and a rank can die with SIGABRT ("terminate called without an active exception")
        # after a successful run.
        torch.distributed.destroy_process_group()
    return TrainResult(
        run_dir=run_dir,
        final_dir=final_dir,
        global_step=trainer.state.global_step,
        max_steps=trainer.state.max_steps,
        train_loss=output.training_loss,
    )


def _start_run(recipe, recipe_path, resume, overwrite, command, world: WorldInfo):
    """Check and create the run directory, start DeepSpeed / the process group, write config.yaml and
    run_info.json; returns (run_dir, checkpoint to resume or None, DeepSpeed config or None, TrainingArguments).
    """
    from vittle_cli.model.builtin import resolve_model_source
    from vittle_cli.recipe import dump_recipe
    from vittle_cli.train.callbacks import truncate_metrics

    run_dir = run_dir_for(recipe.output.dir, recipe.output.run_name, recipe_path)
    checkpoint = resolve_resume(run_dir, resume)
    # Every rank checks before any rank writes, so all of them see the same directory.
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
    with args.main_process_first(desc="run directory", local=False):
        if world.is_main:
            prepare_run_dir(run_dir, overwrite=overwrite, resume=checkpoint is not None, is_main=True)
            info = run_info(
                seed=recipe.train.seed,
                world_size=world.world_size,
                resumed_from=checkpoint and str(checkpoint),
                command=command,
            )
            write_run_files(run_dir, dump_recipe(recipe), info)
            if checkpoint is not None:
                truncate_metrics(run_dir / METRICS_FILE, _checkpoint_step(checkpoint))
    return run_dir, checkpoint, ds_config, args


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
