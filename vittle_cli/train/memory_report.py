"""The memory plan of a recipe: find the model's shapes offline, plan, compare with the GPU, say what would fit
instead, print.

Shapes come from, in order: the built-in model's config, a local model folder, a hub model's config.json
already in the Hugging Face cache (local_files_only: never the network), and vittle's table of the models the
shipped recipes name. The plan says which one it used.
"""

from __future__ import annotations

from dataclasses import replace

from vittle_cli.train.memory import (
    GIB,
    MemoryPlan,
    PlanSettings,
    optimizer_state_bytes,
    parameter_groups,
    plan_memory,
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


def _alternatives(s: PlanSettings) -> list[tuple[list[str], PlanSettings]]:
    """One-change alternatives to `s`, cheapest first, as (recipe overrides, settings)."""
    out: list[tuple[list[str], PlanSettings]] = []
    if not s.gradient_checkpointing:
        out.append((["train.gradient_checkpointing=true"], replace(s, gradient_checkpointing=True)))
    if s.batch > 1:
        batch = s.batch // 2
        accumulation = s.accumulation * s.batch // batch
        out.append(
            (
                [f"train.per_device_batch_size={batch}", f"train.gradient_accumulation_steps={accumulation}"],
                replace(s, batch=batch, accumulation=accumulation),
            )
        )
    if s.optimizer not in ("adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd"):
        out.append((["train.optimizer=paged_adamw_8bit"], replace(s, optimizer="paged_adamw_8bit")))
    # QLoRA stays off DeepSpeed here: 4-bit weights and parameter offload do not mix.
    if s.zero_stage < 3 and s.world_size > 1 and s.mode != "qlora":
        out.append((["train.deepspeed=zero3"], replace(s, zero_stage=3)))
    if not s.offload_optimizer and s.mode != "qlora":
        offloaded = replace(s, zero_stage=3, offload_optimizer=True, offload_params=True)
        out.append((["train.deepspeed=zero3_offload"], offloaded))
    if s.mode == "full":
        out.append((["train.lora.enabled=true"], replace(s, mode="lora")))
    if s.mode != "qlora":
        overrides = ["train.lora.enabled=true", "train.qlora.enabled=true", "train.deepspeed=null"]
        out.append(
            (overrides, replace(s, mode="qlora", zero_stage=0, offload_optimizer=False, offload_params=False))
        )
    if s.mode != "full" and s.lora_r > 16:
        # alpha halves with r: the adapters' scale alpha / r stays as the recipe set it
        halved = [f"train.lora.r={s.lora_r // 2}", f"train.lora.alpha={max(s.lora_alpha // 2, 1)}"]
        out.append((halved, replace(s, lora_r=s.lora_r // 2, lora_alpha=max(s.lora_alpha // 2, 1))))
    if s.seq_len > 512:  # shorter samples change what the model learns from: the last resort
        out.append(([f"data.max_length={s.seq_len // 2}"], replace(s, seq_len=s.seq_len // 2)))
    return out


def suggest(shapes: ModelShapes, s: PlanSettings, capacity: int, limit: int = 3) -> list[str]:
    """What would fit on a GPU of `capacity` bytes instead: single changes that fit, else the first
    combination (changes applied in order, cheapest first) that does."""
    usable = usable_bytes(capacity)
    fitting = []
    for overrides, alt in _alternatives(s):
        total = plan_memory(shapes, alt).total
        if total <= usable:
            fitting.append(f"{' '.join(overrides)} ({total / GIB:.1f} GiB)")
    if fitting:
        return fitting[:limit]
    combined: list[str] = []
    current = s
    for _ in range(16):  # each round applies the cheapest change left (batch halving takes several)
        options = _alternatives(current)
        if not options:
            break
        overrides, current = options[0]
        combined = [o for o in combined if o.split("=")[0] not in {x.split("=")[0] for x in overrides}]
        combined += overrides
        total = plan_memory(shapes, current).total
        if total <= usable:
            return [f"{' '.join(combined)} ({total / GIB:.1f} GiB)"]
    return []


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


def counted_params(shapes: ModelShapes, settings: PlanSettings) -> int:
    """Parameters the plan counts, as model.components.parameter_summary counts a model (peft's frozen
    originals of modules_to_save left out)."""
    return sum(g.count for g in parameter_groups(shapes, settings) if "frozen original" not in g.name)


def memory_plan_for_recipe(
    recipe,
    *,
    world_size: int = 1,
    ds_config: dict | None = None,
    capacity: int | None = None,
    parameters: list[tuple[str, int, int]] | None = None,
) -> MemoryPlan:
    """The recipe's per-device memory plan, compared with this machine's GPU (or `capacity` bytes).

    `parameters`: the (component, trainable, total) counts of the real model where the caller built it; the
    plan notes when its own count differs (a model the planner's layout assumptions do not describe).

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
    if parameters:
        real, planned = sum(total for _, _, total in parameters), counted_params(shapes, settings)
        if abs(planned - real) > 0.005 * real:
            plan.notes.append(
                f"the plan counts {planned:,} parameters, the model has {real:,}: it is not the "
                "Llama-decoder + CLIP-tower layout the planner assumes, so take the plan as a rough guide"
            )
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
