"""`vittle train --dry-run`: the resolved recipe and the plan, without a training setup.

The built-in model is small and is loaded for real; any other model is built from its config on the meta
device (no weights are read), so a dry run of a 7B recipe costs seconds and no GPU memory.
"""

from __future__ import annotations

import json

from vittle_cli.train.plan import TrainPlan, alpha_points, total_optimizer_steps


def _skeleton(recipe):
    """(model, processor-or-None) with the bottleneck attached, parts frozen and LoRA applied as in training."""
    from vittle_cli.model.builtin import is_builtin
    from vittle_cli.model.load import load_model_for_recipe

    if is_builtin(recipe.model.name):
        return load_model_for_recipe(recipe)
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vittle_cli.model.families import require_supported
    from vittle_cli.model.prepare import prepare_for_training
    from vittle_cli.model.reference import trainable_source

    m = recipe.model
    if m.compose is not None:
        raise NotImplementedError("a composed model (model.compose) is only built when training starts")
    source = processor_source = trainable_source(m.name, "model.name")
    hub = {"revision": m.revision, "trust_remote_code": m.trust_remote_code}
    config = AutoConfig.from_pretrained(source, **hub)
    require_supported(config)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, trust_remote_code=m.trust_remote_code)
        model = prepare_for_training(model, recipe)
    processor = None
    try:
        from vittle_cli.model.families import load_processor

        processor = load_processor(processor_source, **hub)
    except (OSError, ValueError):
        pass
    return model, processor


def _inspect_data(plan: TrainPlan, recipe, processor) -> None:
    """Run the data pre-scan: per-source counts into the plan; too much bad data fails the dry run (exit 2)."""
    from vittle_cli.data import BadDataError, build_train_dataset
    from vittle_cli.data.mixture import source_rows
    from vittle_cli.errors import UsageError

    try:
        dataset, report = build_train_dataset(recipe.data, processor, seed=recipe.train.seed)
    except BadDataError as err:  # data the user must fix before running: a usage-class error (exit 2)
        raise UsageError(f"--dry-run: {err}") from None
    except Exception as err:
        plan.notes.append(f"data not inspected: {type(err).__name__}: {err}")
        return
    plan.n_samples = len(dataset)
    plan.data_summary = report.summary()
    plan.data_sources = source_rows(dataset, report)


def build_plan(recipe, *, world_size: int = 1, launch_command: list[str] | None = None) -> TrainPlan:
    """Everything `--dry-run` shows; parts that cannot be computed offline become notes, not errors."""
    from vittle_cli.recipe import dump_recipe

    plan = TrainPlan(
        recipe_yaml=dump_recipe(recipe),
        bottleneck=recipe.bottleneck.enabled,
        world_size=world_size,
        launch_command=launch_command,
    )
    model = processor = config = None
    if recipe.bottleneck.enabled:  # the attached module's copy replaces this once the model is built
        from vittle_cli.model.bottleneck import VittleConfig

        config = VittleConfig.from_section(recipe.bottleneck)
    try:
        model, processor = _skeleton(recipe)
    except Exception as err:  # a dry run reports what it could not see instead of failing
        plan.notes.append(
            f"model not inspected: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        )
    if model is not None:
        from vittle_cli.model.attach import attached_layers, find_decoder_layers, get_bottleneck
        from vittle_cli.model.components import parameter_summary

        plan.n_layers = len(find_decoder_layers(model))
        plan.layers = attached_layers(model)
        if (bottleneck := get_bottleneck(model)) is not None:
            config = bottleneck.config
        plan.parameters = parameter_summary(model)
    if processor is not None:
        _inspect_data(plan, recipe, processor)
    t = recipe.train
    if t.max_steps or plan.n_samples:
        plan.total_steps = total_optimizer_steps(
            plan.n_samples or 0,
            t.per_device_batch_size,
            t.gradient_accumulation_steps,
            world_size,
            t.epochs,
            t.max_steps,
        )
    if recipe.bottleneck.enabled and plan.total_steps:
        plan.alphas = alpha_points(plan.total_steps, config)
    if t.deepspeed:
        from vittle_cli.train.deepspeed import resolve_deepspeed_config

        plan.deepspeed_config = resolve_deepspeed_config(t.deepspeed)
    _add_memory_plan(plan, recipe)
    return plan


def _add_memory_plan(plan: TrainPlan, recipe) -> None:
    from vittle_cli.train.memory_report import memory_plan_for_recipe

    try:
        plan.memory = memory_plan_for_recipe(
            recipe, world_size=plan.world_size, ds_config=plan.deepspeed_config, parameters=plan.parameters
        )
    except ValueError as err:
        plan.notes.append(f"no memory plan: {err}")


def print_plan(plan: TrainPlan, console) -> None:
    """Render a TrainPlan with rich (tables for parameters, plain lines for the rest)."""
    from rich.markup import escape
    from rich.table import Table

    console.print("[bold]resolved recipe[/]")
    console.print(escape(plan.recipe_yaml.rstrip()), highlight=False)
    console.print()
    if plan.n_layers is not None:
        console.print(f"decoder layers: {plan.n_layers}")
    if plan.layers is not None:
        console.print(f"bottleneck layers: visual {plan.layers[0]}, text {plan.layers[1]}")
    elif plan.bottleneck:
        console.print("bottleneck layers: unknown until the model config can be read")
    else:
        console.print("bottleneck: off (baseline)")
    if plan.parameters:
        table = Table(title="parameters", title_justify="left")
        table.add_column("component")
        table.add_column("trainable", justify="right")
        table.add_column("total", justify="right")
        for component, trainable, total in plan.parameters:
            table.add_row(component, f"{trainable:,}", f"{total:,}")
        all_trainable = sum(r[1] for r in plan.parameters)
        all_total = sum(r[2] for r in plan.parameters)
        table.add_row("[bold]all[/]", f"[bold]{all_trainable:,}[/]", f"[bold]{all_total:,}[/]")
        console.print(table)
    if plan.data_summary:
        console.print(f"data: {escape(plan.data_summary)}")
    if len(plan.data_sources) > 1 or any(row[3] != 1 for row in plan.data_sources):
        table = Table(title="data sources", title_justify="left")
        for column in ("source", "samples", "bad", "weight", "per epoch"):
            table.add_column(column, justify="left" if column == "source" else "right")
        for name, total, bad, weight, per_epoch in plan.data_sources:
            table.add_row(escape(name), f"{total:,}", f"{bad:,}", f"{weight:g}", f"{per_epoch:,}")
        console.print(table)
    if plan.n_samples is not None:
        console.print(f"training samples: {plan.n_samples:,}")
    console.print(f"world size: {plan.world_size}")
    steps = f"{plan.total_steps:,}" if plan.total_steps else "unknown"
    console.print(f"total optimizer steps: {steps}")
    if plan.alphas:
        console.print("alpha: " + ", ".join(f"{k} {v:.4f}" for k, v in plan.alphas.items()))
    if plan.deepspeed_config is not None:
        console.print("[bold]DeepSpeed config[/]")
        console.print(escape(json.dumps(plan.deepspeed_config, indent=2)), highlight=False)
    if plan.launch_command:
        import shlex

        console.print("launch command: " + escape(shlex.join(plan.launch_command)), highlight=False)
    if plan.memory is not None:
        from vittle_cli.train.memory_report import render_memory_plan

        render_memory_plan(plan.memory, console)
    for note in plan.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
