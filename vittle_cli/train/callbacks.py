"""Trainer callbacks: the alpha schedule, metrics.jsonl, and the rich progress display."""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback

from vittle_cli.model.attach import get_bottleneck
from vittle_cli.model.bottleneck import alpha_at
from vittle_cli.train.metrics import EVAL_FIELDS, MEMORY_FIELDS, METRIC_FIELDS


class AlphaCallback(TrainerCallback):
    """Sets bottleneck.alpha = alpha_at(global_step, max_steps) before every optimizer step.

    state.max_steps is the real number of optimizer steps (after accumulation and world size), and the
    value derives only from global_step, so a resumed run continues the same schedule.
    """

    def __init__(self, config) -> None:
        self.config = config

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        bottleneck = get_bottleneck(model) if model is not None else None
        if bottleneck is not None:
            bottleneck.alpha = float(alpha_at(state.global_step, state.max_steps, self.config))


def metrics_row(logs: dict, state) -> dict | None:
    """One metrics.jsonl row from a Trainer log dict: a training step, an evaluation (EVAL_FIELDS), or None."""
    if "loss" not in logs:
        evals = {k: logs[k] for k in EVAL_FIELDS if logs.get(k) is not None}
        if not evals:
            return None
        return {"step": state.global_step, "epoch": logs.get("epoch", state.epoch), **evals}
    values = {
        **logs,
        "step": state.global_step,
        "epoch": logs.get("epoch", state.epoch),
        "lr": logs.get("learning_rate"),
    }
    row = {}
    for key in METRIC_FIELDS:
        value = values.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            value = None  # JSON has no NaN/inf; a null is honest and still parses
        row[key] = value
    row.update({key: logs[key] for key in MEMORY_FIELDS if key in logs})
    return row


class MetricsJsonlCallback(TrainerCallback):
    """Appends one JSON object per training log step to metrics.jsonl (main process only, flushed)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = metrics_row(logs, state)
        if row is None:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()


def truncate_metrics(path: Path, after_step: int) -> None:
    """Drop rows logged after `after_step` (a resumed run logs those steps again)."""
    from vittle_cli.fileio import write_text_atomic
    from vittle_cli.plots import read_metrics

    if not path.is_file():
        return
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= after_step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


class RichProgressCallback(TrainerCallback):
    """Steps, rate, ETA and the latest loss/alpha on the main process; one printed line per log step."""

    def __init__(self, console=None) -> None:
        self.console = console
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[latest]}"),
            console=self.console or Console(stderr=True),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=state.max_steps, completed=state.global_step, rate="", latest=""
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        row = metrics_row(logs or {}, state)
        if self.progress is None or row is None:
            return
        if "loss" not in row:  # an evaluation row: one printed line
            parts = "  ".join(f"{k} {row[k]:.4g}" for k in EVAL_FIELDS if row.get(k) is not None)
            self.progress.console.print(f"step {row['step']:>6}  {parts}", soft_wrap=True)
            return
        latest = f"loss {row['loss']:.4f}"
        if row.get("alpha") is not None:
            latest += f"  alpha {row['alpha']:.3f}"
        rate = f"{row['tokens_per_s']:.0f} tok/s" if row.get("tokens_per_s") else ""
        self.progress.update(self.task, latest=latest, rate=rate)
        parts = [
            f"{k} {row[k]:.4g}"
            for k in ("loss", "ce", "kl_v", "kl_t", "alpha", "lr", "grad_norm")
            if row.get(k) is not None
        ]
        self.progress.console.print(f"step {row['step']:>6}  " + "  ".join(parts), soft_wrap=True)

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        """Stop the live display (also on Ctrl-C, so the terminal is left clean)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
