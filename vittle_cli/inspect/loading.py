"""Resolve and load the model a `vittle inspect` view looks at (run dir, checkpoint, merged, adapter, hub)."""

from __future__ import annotations

import re
from pathlib import Path

from vittle_cli.errors import ModelError, UsageError

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_model_ref(name: str) -> None:
    """Fail early (exit 2) on a local path that does not exist; builtins and hub ids pass through.

    Raises:
        UsageError: the path is missing, or is a file rather than a model directory.
    """
    from vittle_cli.model.builtin import is_builtin

    if is_builtin(name):
        return
    path = Path(name).expanduser()
    if path.is_file():
        raise UsageError(f"{name} is a file; pass a model, run or checkpoint directory")
    if not path.exists() and not (_HUB_NAME.match(name) and not name.startswith((".", "/", "~"))):
        raise UsageError(f"no such model directory: {name}; pass a run dir, a model dir or a hub id")
    markers = ("config.json", "adapter_config.json", "final")
    if path.is_dir() and not any((path / m).exists() for m in markers):
        hint = (
            " (a ZeRO checkpoint: run `vittle merge` on it first)" if any(path.glob("global_step*")) else ""
        )
        raise UsageError(
            f"{name} is not a model, adapter or run directory (no config.json, adapter_config.json or final/){hint}"
        )


def load_for_inspect(name: str, dtype: str = "float32", device: str = "cpu", base: str | None = None):
    """(model, processor) in eval mode for any model reference `load_vittle_model` understands.

    Args:
        base: base model of a PEFT adapter whose config does not name one.
    """
    from transformers.utils import logging as hf_logging

    from vittle_cli.model.checkpoint import load_vittle_model

    check_model_ref(name)
    hf_logging.disable_progress_bar()  # rich owns the terminal; per-file "Loading weights" bars are noise
    try:
        model, processor = load_vittle_model(name, base=base, dtype=dtype, device=device)
    except (OSError, ValueError) as err:  # transformers' own "not a model folder" errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"cannot load a model from {name}: {first}") from err
    return model.eval(), processor
