"""`vittle inspect run`: recipe summary, checkpoints, last metrics and the loss curve of a run directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vittle_cli import layout
from vittle_cli.errors import UsageError
from vittle_cli.layout import (
    ADAPTER_CONFIG,
    FINAL_DIR,
    LOSS_PLOT,
    METRICS_FILE,
    MODEL_CONFIG,
    RUN_CONFIG,
    VITTLE_CONFIG,
    VITTLE_WEIGHTS,
    has_full_weights,
    has_zero_shards,
)

VITTLE_FILES = (VITTLE_CONFIG, VITTLE_WEIGHTS)


@dataclass
class CheckpointInfo:
    name: str
    step: int | None  # None for final/
    kind: str  # "adapter" | "full" | "zero" | "empty"
    has_vittle: bool


@dataclass
class RunReport:
    run_dir: str
    recipe: dict
    checkpoints: list[CheckpointInfo] = field(default_factory=list)
    last_metrics: dict | None = None
    n_metric_rows: int = 0
    loss_png: str | None = None
    peak_memory_gib: dict | None = None  # max over the run of each MEMORY_FIELDS value; None if not measured

    def to_json(self) -> dict:
        return asdict(self)


def checkpoint_kind(path: Path) -> str:
    """What a checkpoint folder holds: a PEFT adapter, full HF weights, only ZeRO shards, or nothing."""
    if (path / ADAPTER_CONFIG).is_file():
        return "adapter"
    if has_full_weights(path):
        return "full"
    if has_zero_shards(path):
        return "zero"
    return "empty"


def list_checkpoints(run_dir: Path) -> list[CheckpointInfo]:
    """checkpoint-N/ folders sorted by step, then final/ if present."""
    found: list[tuple[int | None, Path]] = list(layout.list_checkpoints(run_dir))
    if (run_dir / FINAL_DIR).is_dir():
        found.append((None, run_dir / FINAL_DIR))
    return [
        CheckpointInfo(p.name, step, checkpoint_kind(p), all((p / f).is_file() for f in VITTLE_FILES))
        for step, p in found
    ]


def _recipe_summary(run_dir: Path) -> dict:
    """The resolved recipe's key facts (validated through `load_recipe` when the schema still accepts it)."""
    import yaml

    raw = yaml.safe_load((run_dir / RUN_CONFIG).read_text(encoding="utf-8")) or {}
    try:
        from vittle_cli.recipe import load_recipe

        raw = load_recipe(run_dir / RUN_CONFIG, []).model_dump()
    except Exception:  # an older schema: show the file as written rather than fail the view
        pass
    m, d, b, t = (raw.get(k) or {} for k in ("model", "data", "bottleneck", "train"))
    lora, qlora = t.get("lora") or {}, t.get("qlora") or {}
    tuning = "qlora" if qlora.get("enabled") else "lora" if lora.get("enabled") else "full"
    bn = (
        f"{b.get('prior', 'F')} beta_v={b.get('beta_v')} beta_t={b.get('beta_t')} alpha_end={b.get('alpha_end')} "
        f"layer_v={_or_default(b.get('layer_v'))} layer_t={_or_default(b.get('layer_t'))}"
        if b.get("enabled", True)
        else "off"
    )
    return {
        "model": m.get("name"),
        "data": d.get("train"),
        "bottleneck": bn,
        "tuning": tuning,
        "deepspeed": t.get("deepspeed"),
        "steps": t.get("max_steps") if t.get("max_steps") else f"{t.get('epochs')} epochs",
        "batch": f"{t.get('per_device_batch_size')} x {t.get('gradient_accumulation_steps')} accum",
        "lr": f"{t.get('lr')} {t.get('scheduler')}",
        "precision": t.get("precision"),
        "seed": t.get("seed"),
    }


def run_inspect_run(run: str, out: str | None = None) -> RunReport:
    """Summarise a run directory and draw its loss curve into `out` (default RUN/inspect/loss.png).

    Raises:
        UsageError: the path is missing or is not a vittle run directory.
    """
    run_dir = Path(run).expanduser()
    if not run_dir.is_dir():
        raise UsageError(f"no such run directory: {run}")
    if not (run_dir / RUN_CONFIG).is_file():
        hint = (
            " (this looks like a model folder: use `vittle inspect model`)"
            if (run_dir / MODEL_CONFIG).is_file()
            else ""
        )
        raise UsageError(f"{run} is not a vittle run directory: no {RUN_CONFIG}{hint}")
    report = RunReport(
        run_dir=str(run_dir), recipe=_recipe_summary(run_dir), checkpoints=list_checkpoints(run_dir)
    )
    metrics = run_dir / METRICS_FILE
    if metrics.is_file():
        from vittle_cli.plots import plot_metrics, read_metrics

        rows = [r for r in read_metrics(metrics) if "step" in r]
        report.n_metric_rows = len(rows)
        with_loss = [r for r in rows if r.get("loss") is not None]
        report.last_metrics = (with_loss or rows or [None])[-1]
        report.peak_memory_gib = peak_memory(rows)
        if rows:
            png = Path(out).expanduser() / LOSS_PLOT if out else run_dir / "inspect" / LOSS_PLOT
            report.loss_png = str(plot_metrics(metrics, png))
    return report


def peak_memory(rows: list[dict]) -> dict | None:
    """The run's peak allocated / reserved GPU memory (GiB) over all metrics rows; None when never measured."""
    peaks = {
        key: max(values)
        for key in layout.MEMORY_FIELDS
        if (values := [r[key] for r in rows if isinstance(r.get(key), (int, float))])
    }
    return peaks or None


def render_run_report(report: RunReport, console) -> None:
    """Print the report as rich tables."""
    from rich.table import Table

    head = Table(title=f"run: {report.run_dir}", show_header=False)
    for key, value in report.recipe.items():
        head.add_row(key, str(value))
    console.print(head)
    ckpts = Table(title="checkpoints")
    for col in ("name", "step", "kind", "vittle files"):
        ckpts.add_column(col)
    for c in report.checkpoints:
        ckpts.add_row(c.name, "" if c.step is None else str(c.step), c.kind, "yes" if c.has_vittle else "no")
    if not report.checkpoints:
        ckpts.add_row("(none yet)", "", "", "")
    console.print(ckpts)
    if report.last_metrics:
        last = Table(title=f"last metrics ({report.n_metric_rows} rows)")
        keys = [
            k
            for k in (
                "step",
                "epoch",
                "loss",
                "ce",
                "kl_v",
                "kl_t",
                "alpha",
                "lr",
                "grad_norm",
                "tokens_per_s",
            )
            if k in report.last_metrics
        ]
        for k in keys:
            last.add_column(k, justify="right")
        last.add_row(*[_fmt(report.last_metrics[k]) for k in keys])
        console.print(last)
    else:
        console.print("no metrics.jsonl rows yet")
    if report.peak_memory_gib:
        allocated = report.peak_memory_gib.get("max_mem_allocated_gib")
        reserved = report.peak_memory_gib.get("max_mem_reserved_gib")
        console.print(f"peak GPU memory per device: {allocated} GiB allocated, {reserved} GiB reserved")
    if report.loss_png:
        console.print(f"loss curve: {report.loss_png}")


def _or_default(value) -> str:
    return "default (0.75 n_layers)" if value is None else str(value)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
