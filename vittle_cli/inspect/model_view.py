"""`vittle inspect model`: family, depth, where the bottleneck hooks in, parameter counts, dtype."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ModelReport:
    """What `vittle inspect model` shows (also written as JSON)."""

    source: str
    family: str
    architecture: str
    n_layers: int
    hidden_size: int
    dtype: str
    decoder_layers_path: str
    bottleneck: dict | None  # None: "no bottleneck"
    parameters: list[dict] = field(default_factory=list)  # {component, trainable, total}
    trainable_basis: str = "as loaded"  # or "per the run's recipe"
    total_parameters: int = 0
    bottleneck_parameters: int = 0

    @property
    def bottleneck_share(self) -> float:
        """Bottleneck parameters as % of all parameters."""
        return 100.0 * self.bottleneck_parameters / max(self.total_parameters, 1)

    def to_json(self) -> dict:
        out = asdict(self)
        out["bottleneck_share_pct"] = round(self.bottleneck_share, 4)
        return out


def module_path(model, module) -> str:
    """Dotted path of `module` inside `model` (the name a hook or a state-dict key uses)."""
    for name, mod in model.named_modules():
        if mod is module:
            return name
    return "?"


def _architecture(model) -> str:
    """Class name, with the wrapped model's for a PEFT adapter: "PeftModel over LlavaForConditionalGeneration"."""
    from vittle_cli.model.attach import unwrap_model

    inner = unwrap_model(model)
    name = type(inner).__name__
    return name if inner is model else f"{type(model).__name__} over {name}"


def _run_recipe(source: str):
    """The Recipe of the run `source` belongs to (run dir, its final/ or a checkpoint), else None."""
    from pathlib import Path

    from vittle_cli.layout import RUN_CONFIG
    from vittle_cli.model.reference import run_dir_of

    run_dir = run_dir_of(Path(source).expanduser())
    if run_dir is None:
        return None
    recipe_file = run_dir / RUN_CONFIG
    try:
        from vittle_cli.recipe import load_recipe

        return load_recipe(recipe_file, [])
    except Exception:  # an older or hand-edited recipe: fall back to the model as loaded
        return None


def apply_recipe_trainability(model, recipe) -> None:
    """Mark parameters trainable the way the run trained them (full components, or LoRA + modules_to_save)."""
    if callable(getattr(model, "get_base_model", None)):  # PeftModel: adapters and saved modules trained
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name or ".modules_to_save." in name)
        return
    from vittle_cli.model.prepare import set_trainable_as_recipe

    set_trainable_as_recipe(model, recipe)


def describe_model(model, source: str) -> ModelReport:
    """Build the report for an already loaded model (a PEFT wrapper is looked through). Trainable counts
    follow the run's recipe when `source` is part of a run, else the flags the model was loaded with."""
    from vittle_cli.model.attach import find_decoder_layers, get_bottleneck
    from vittle_cli.model.components import parameter_summary

    layers = find_decoder_layers(model)
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    bn = get_bottleneck(model)
    bn_info = None
    if bn is not None:
        cfg = bn.config
        hooks = {}
        for modality, idx in (("visual", cfg.layer_v), ("text", cfg.layer_t)):  # resolved when attached
            hooks[modality] = {"layer": idx, "hook_module": module_path(model, layers[idx])}
        bn_info = {
            "module": module_path(model, bn),
            "prior": cfg.prior,
            "alpha_end": cfg.alpha_end,
            "beta_v": cfg.beta_v,
            "beta_t": cfg.beta_t,
            "logvar_clamp": cfg.logvar_clamp,
            "hooks": hooks,
        }
    recipe = _run_recipe(source)
    if recipe is not None:
        apply_recipe_trainability(model, recipe)
    rows = [{"component": c, "trainable": int(t), "total": int(n)} for c, t, n in parameter_summary(model)]
    total = sum(p.numel() for p in model.parameters())
    bn_params = sum(p.numel() for p in bn.parameters()) if bn is not None else 0
    first = next(model.parameters(), None)
    return ModelReport(
        source=source,
        family=str(getattr(config, "model_type", type(model).__name__)),
        architecture=_architecture(model),
        n_layers=len(layers),
        hidden_size=int(getattr(text_config, "hidden_size", 0) or 0),
        dtype=str(first.dtype).replace("torch.", "") if first is not None else "?",
        decoder_layers_path=module_path(model, layers),
        bottleneck=bn_info,
        parameters=rows,
        total_parameters=int(total),
        bottleneck_parameters=int(bn_params),
        trainable_basis="per the run's recipe" if recipe is not None else "as loaded",
    )


def run_inspect_model(name: str) -> ModelReport:
    """Load `name` (run dir, checkpoint, merged/plain HF dir, adapter, builtin or hub id) and describe it."""
    from vittle_cli.inspect.loading import load_for_inspect

    model, _ = load_for_inspect(name)
    return describe_model(model, name)


def render_model_report(report: ModelReport, console) -> None:
    """Print the report as rich tables."""
    from rich.table import Table

    head = Table(title=f"model: {report.source}", show_header=False)
    head.add_row("family", f"{report.family} ({report.architecture})")
    head.add_row(
        "decoder layers", f"{report.n_layers} at {report.decoder_layers_path}, hidden {report.hidden_size}"
    )
    head.add_row("dtype", report.dtype)
    if report.bottleneck is None:
        head.add_row("bottleneck", "no bottleneck")
    else:
        b = report.bottleneck
        for modality, hook in b["hooks"].items():
            head.add_row(
                f"{modality} bottleneck", f"after layer {hook['layer']} (hook on {hook['hook_module']})"
            )
        head.add_row("prior / alpha_end", f"{b['prior']} / {b['alpha_end']}")
        head.add_row(
            "bottleneck params",
            f"{report.bottleneck_parameters:,} ({report.bottleneck_share:.2f}% of {report.total_parameters:,})",
        )
    console.print(head)
    params = Table(title="parameters by component")
    params.add_column("component")
    params.add_column(f"trainable ({report.trainable_basis})", justify="right")
    params.add_column("total", justify="right")
    for row in report.parameters:
        params.add_row(row["component"], f"{row['trainable']:,}", f"{row['total']:,}")
    params.add_row("all", "", f"{report.total_parameters:,}", style="bold")
    console.print(params)
