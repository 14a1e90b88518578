"""The memory plan of a recipe: find the model's shapes offline, plan, compare with the GPU, print.

Shapes come from, in order: the built-in model's config, a local model folder, a hub model's config.json
already in the Hugging Face cache (local_files_only: never the network), and vittle's table of the models the
shipped recipes name. The plan says which one it used.
"""

from __future__ import annotations

from vittle_cli.train.memory import (
    GIB,
    MemoryPlan,
    PlanSettings,
    optimizer_state_bytes,
    parameter_groups,
    plan_memory,
    suggest,
    usable_bytes,
)
from vittle_cli.train.model_shapes import (
    KNOWN_CONFIGS,
    ModelShapes,
    composed_shapes,
    known_shapes,
    shapes_from_config,
)


def _local_config(name: str, revision: str | None = None):
    """A transformers config from a local folder or the local HF cache; None when neither has it."""
    from transformers import AutoConfig

    from vittle_cli.model.builtin import resolve_model_source

    try:
        return AutoConfig.from_pretrained(
            resolve_model_source(name), revision=revision, local_files_only=True
        )
    except (OSError, ValueError):
        return None


def shapes_for_recipe(recipe) -> ModelShapes:
    """The model's shapes for the memory plan, without downloading anything.

    Raises:
        ValueError: no config found offline and the model is not in the known-shapes table, or not LLaVA-style.
    """
    m = recipe.model
    if m.compose is not None:
        names = (m.compose.language_model, m.compose.vision_tower)
        configs = [_local_config(n) or KNOWN_CONFIGS.get(n) for n in names]
        if any(c is None for c in configs):
            raise ValueError(f"no config for {' / '.join(names)} in the local cache (and not a known model)")
        return composed_shapes(*configs, source=f"the configs of {' + '.join(names)}")
    config = _local_config(m.name, m.revision)
    if config is not None:
        return shapes_from_config(config, source=f"the config of {m.name}")
    known = known_shapes(m.name)
    if known is None:
        raise ValueError(
            f"{m.name}'s config.json is not in the local cache and the model is not in vittle's table of "
            "known shapes; download the config once (`hf download <name> config.json`) to plan its memory"
        )
    return known


def deepspeed_estimate(shapes: ModelShapes, s: PlanSettings) -> float | None:
    """GPU bytes of the model states by DeepSpeed's own estimator (ZeRO-2/3 with Adam-type fp32 states),
    for the trained parameters, plus the frozen parameters' 16-bit (or quantised) weights; None where the
    estimator does not apply or DeepSpeed is not installed."""
    if s.zero_stage not in (2, 3) or optimizer_state_bytes(s.optimizer, 4) != 8:
        return None
    try:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    except Exception:  # not installed, or it cannot import on this machine
        return None
    groups = parameter_groups(shapes, s)
    trained = sum(g.count for g in groups if g.trainable)
    frozen = sum(g.count * g.weight_bytes for g in groups if not g.trainable)
    if s.zero_stage == 2:
        _, gpu = estimate_zero2_model_states_mem_needs(
            trained, num_gpus_per_node=s.world_size, cpu_offload=s.offload_optimizer
        )
        return gpu + frozen
    _, gpu, _ = estimate_zero3_model_states_mem_needs(
        trained,
        shapes.largest_layer_params(),
        num_gpus_per_node=s.world_size,
        cpu_offload=s.offload_optimizer,
        cpu_offload_params=s.offload_params,
    )
    return gpu + (0 if s.offload_params else frozen / s.world_size)


def gpu_capacity() -> tuple[int | None, str | None]:
    """(total bytes, name) of this process's GPU, or (None, None) without CUDA."""
    try:
        import torch
    except ImportError:
        return None, None
    if not torch.cuda.is_available():
        return None, None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return int(props.total_memory), props.name


def memory_plan_for_recipe(
    recipe, *, world_size: int = 1, ds_config: dict | None = None, capacity: int | None = None
) -> MemoryPlan:
    """The recipe's per-device memory plan, compared with this machine's GPU (or `capacity` bytes).

    Raises:
        ValueError: the model's shapes cannot be found offline (see shapes_for_recipe).
    """
    shapes = shapes_for_recipe(recipe)
    settings = PlanSettings.from_recipe(recipe, ds_config, world_size)
    device = None
    if capacity is None:
        capacity, device = gpu_capacity()
    plan = plan_memory(shapes, settings, capacity=capacity)
    plan.device = device
    plan.deepspeed_estimate = deepspeed_estimate(shapes, settings)
    if settings.zero_stage and world_size == 1:
        plan.notes.append("planned for 1 process: add --nproc-per-node N to see the per-GPU plan of N GPUs")
    if plan.capacity is not None and not plan.fits:
        plan.suggestions = suggest(shapes, settings, plan.capacity)
    elif plan.capacity is None and not plan.fits_cards():
        plan.suggestions = suggest(shapes, settings, 80 * 10**9)
        plan.notes.append("fits nowhere as configured; the changes above are for 80 GB GPUs")
    return plan


def render_memory_plan(plan: MemoryPlan, console) -> None:
    """Print the plan: a table of parts, the total against the GPU, and what would fit instead."""
    from rich.markup import escape
    from rich.table import Table

    s = plan.settings
    where = f"ZeRO-{s.zero_stage}" if s.zero_stage else "no DeepSpeed"
    title = (
        f"memory per device (estimate): {s.mode}, {where}, {s.world_size} process(es), batch {s.batch} x "
        f"{s.seq_len} tokens, gradient checkpointing {'on' if s.gradient_checkpointing else 'off'}, {s.optimizer}"
    )
    table = Table(title=escape(title), title_justify="left")
    table.add_column("part")
    table.add_column("GiB", justify="right")
    for name, value in plan.rows.items():
        table.add_row(escape(name), f"{value / GIB:.2f}")
    table.add_row("[bold]total[/]", f"[bold]{plan.total / GIB:.2f}[/]")
    console.print(table)
    console.print(f"shapes from {escape(plan.shapes_source)}")
    if plan.deepspeed_estimate is not None:
        console.print(f"model states by DeepSpeed's estimator: {plan.deepspeed_estimate / GIB:.2f} GiB")
    if plan.cpu_bytes:
        console.print(f"offloaded to CPU memory: {plan.cpu_bytes / GIB:.1f} GiB (whole job, per node)")
    if plan.capacity is not None:
        name = escape(plan.device or "the GPU")
        verdict = "[green]fits[/]" if plan.fits else "[red]does not fit[/]"
        console.print(
            f"{verdict} on {name}: {plan.capacity / GIB:.1f} GiB, of which {usable_bytes(plan.capacity) / GIB:.1f} "
            "GiB usable by tensors (CUDA context and fragmentation set aside)"
        )
    else:
        cards = ", ".join(f"{gb} GB" for gb in plan.fits_cards()) or "none of 16-141 GB"
        console.print(f"no GPU here; fits on cards of: {cards}")
    for line in plan.suggestions:
        console.print(f"fits instead with: {escape(line)}", highlight=False)
    if plan.capacity is not None and not plan.fits and not plan.suggestions:
        console.print(
            "nothing vittle can change fits this GPU: use more GPUs (--nproc-per-node) or a larger one"
        )
    for note in plan.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
