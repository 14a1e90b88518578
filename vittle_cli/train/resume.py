"""What `--resume` may and may not do: the recipe must be the run's own (or the changes allowed and
recorded), the checkpoint must fit the recipe, and the reported train loss covers the whole run.

No torch here: the checks run before any model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from vittle_cli.errors import ModelError, UsageError
from vittle_cli.layout import RUN_CONFIG, VITTLE_CONFIG, VITTLE_WEIGHTS

# Keys whose change does not change what the run computes: where logs go and how fast data loads.
HARMLESS_KEYS = frozenset(
    {
        "data.num_workers",
        "output.dir",
        "output.run_name",
        "output.report_to",
        "output.save_total_limit",
    }
)
CHECKPOINT_BOTTLENECK_FILES = (VITTLE_CONFIG, VITTLE_WEIGHTS)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def recipe_changes(old_yaml: str, new_yaml: str) -> list[dict]:
    """The keys that differ between two resolved recipes (config.yaml texts) and change the run, each as
    {"key", "from", "to"}, sorted by key."""
    old = _flatten(yaml.safe_load(old_yaml) or {})
    new = _flatten(yaml.safe_load(new_yaml) or {})
    return [
        {"key": key, "from": old.get(key), "to": new.get(key)}
        for key in sorted(set(old) | set(new))
        if key not in HARMLESS_KEYS and old.get(key) != new.get(key)
    ]


def run_config_for(run_dir: Path, checkpoint: Path) -> Path | None:
    """The config.yaml the resumed run was trained with: the run dir's, else the checkpoint's run's."""
    for candidate in (run_dir / RUN_CONFIG, checkpoint.parent / RUN_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def check_recipe_unchanged(
    run_dir: Path, checkpoint: Path, new_yaml: str, *, allow_changes: bool
) -> list[dict]:
    """Compare the recipe of a resume with the run's config.yaml; returns the allowed changes (to record).

    Raises:
        UsageError: the recipe changes the run (naming every key) and `allow_changes` is false.
    """
    config = run_config_for(run_dir, checkpoint)
    if config is None:
        return []
    changes = recipe_changes(config.read_text(encoding="utf-8"), new_yaml)
    if changes and not allow_changes:
        listed = ", ".join(f"{c['key']} {c['from']!r} -> {c['to']!r}" for c in changes)
        raise UsageError(
            f"--resume with a recipe that differs from the run's {config} in {listed}; resume with the "
            "run's own recipe, or pass --allow-changes to continue with the change (recorded in run_info.json)"
        )
    return changes


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was saved at (its trainer_state.json)."""
    return int(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def check_checkpoint_fits(checkpoint: Path, *, max_steps: int | None, bottleneck_enabled: bool) -> None:
    """Refuse a resume that cannot continue the run from `checkpoint`.

    Raises:
        UsageError: train.max_steps is already reached at the checkpoint's step.
        ModelError: the recipe trains a bottleneck but the checkpoint has no bottleneck files.
    """
    step = checkpoint_step(checkpoint)
    if max_steps is not None and max_steps <= step:
        raise UsageError(
            f"{checkpoint} is at step {step} and train.max_steps={max_steps} is reached already; "
            "set train.max_steps above that (with --allow-changes) or start a new run"
        )
    missing = [n for n in CHECKPOINT_BOTTLENECK_FILES if not (checkpoint / n).is_file()]
    if bottleneck_enabled and missing:
        raise ModelError(
            f"{checkpoint} has no bottleneck files ({', '.join(missing)}): it comes from a baseline run "
            "(bottleneck.enabled=false); resume it with its own recipe, or start a new Vittle run from it "
            "with model.name=<its final/ folder>"
        )


def whole_run_loss(checkpoint: Path | None, session_total: float | None, global_step: int) -> float | None:
    """The mean train loss over every step of the run, also after a resume.

    `session_total` is the sum of the step losses this process trained (Trainer's `_total_loss_scalar`);
    Trainer's own mean covers only these steps (or, in older releases, divides them by all steps). The
    steps before the checkpoint come from its log history: interval means weighted by their steps.
    """
    if session_total is None:
        return None
    start = checkpoint_step(checkpoint) if checkpoint is not None else 0
    if global_step <= start:
        return None
    if start == 0:
        return session_total / global_step
    history = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8")).get(
        "log_history", []
    )
    total, last = 0.0, 0
    for row in history:
        step = row.get("step")
        if "loss" in row and isinstance(step, int) and last < step <= start:
            total += float(row["loss"]) * (step - last)
            last = step
    if last == 0:  # nothing logged before the checkpoint: only this process's steps are known
        return session_total / (global_step - start)
    before = total / last  # the logged steps' mean stands in for any unlogged steps up to the checkpoint
    return (before * start + session_total) / global_step


def check_resume(
    recipe, run_dir: Path, checkpoint: Path | None, recipe_yaml: str, *, allow_changes: bool
) -> list:
    """Every check of a resume that needs no model: planted pickles in DeepSpeed shards, recipe changes,
    fit. Returns the allowed recipe changes (to record in run_info.json).

    Raises:
        ModelError / UsageError: as check_checkpoint_pickles, check_recipe_unchanged, check_checkpoint_fits.
    """
    from vittle_cli.model.safe_load import check_checkpoint_pickles, check_safetensors_dir

    if checkpoint is None:
        return []
    check_checkpoint_pickles(checkpoint)  # DeepSpeed's engine unpickles them with weights_only=False
    check_safetensors_dir(checkpoint)
    changes = check_recipe_unchanged(run_dir, checkpoint, recipe_yaml, allow_changes=allow_changes)
    check_checkpoint_fits(
        checkpoint, max_steps=recipe.train.max_steps, bottleneck_enabled=recipe.bottleneck.enabled
    )
    return changes
