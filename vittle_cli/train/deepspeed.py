"""DeepSpeed configs: the shipped ZeRO presets (recipes/deepspeed/*.json) or a user's JSON file.

The presets leave the micro batch, accumulation, clipping and precision to the Trainer ("auto"), omit
train_batch_size (DeepSpeed derives it from its own world size) and carry no "optimizer" block, so the Trainer builds torch AdamW: an optimizer block makes DeepSpeed JIT-compile its
fused/CPU Adam at start-up (about 35 s on CPU). On GPUs you may add one to a copy of a preset.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from vittle_cli.errors import UsageError, VittleError, did_you_mean
from vittle_cli.recipe import DEEPSPEED_PRESETS
from vittle_cli.recipe_files import recipes_dir


def presets_dir() -> Path:
    """The folder holding the preset JSON files."""
    return recipes_dir() / "deepspeed"


def resolve_deepspeed_config(name_or_path: str) -> dict[str, Any]:
    """Return the DeepSpeed config for a preset name (zero2, zero3, zero3_offload) or a JSON file path.

    Raises:
        UsageError: neither a preset nor an existing file, or the file is not a JSON object.
        VittleError: a preset file is missing from the installation.
    """
    if name_or_path in DEEPSPEED_PRESETS:
        path = presets_dir() / f"{name_or_path}.json"
        if not path.is_file():
            raise VittleError(f"the DeepSpeed preset file {path} is missing; reinstall vittle")
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            hint = did_you_mean(name_or_path, DEEPSPEED_PRESETS)
            raise UsageError(
                f"train.deepspeed={name_or_path!r} is neither a preset nor an existing JSON file{hint}; "
                f"use one of {', '.join(DEEPSPEED_PRESETS)} or a path to a DeepSpeed config"
            )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UsageError(
            f"DeepSpeed config {path} is not valid JSON (line {e.lineno}: {e.msg}); fix the file"
        ) from e
    if not isinstance(config, dict):
        raise UsageError(f"DeepSpeed config {path} must be a JSON object, got {type(config).__name__}")
    return config


def zero_stage(config: dict[str, Any]) -> int:
    """The ZeRO stage of a DeepSpeed config (0 when it has no zero_optimization section)."""
    return int(config.get("zero_optimization", {}).get("stage", 0))


def require_deepspeed() -> None:
    """Fail early, with the fix, when a recipe asks for DeepSpeed but it is not installed.

    Raises:
        VittleError: deepspeed cannot be imported.
    """
    if importlib.util.find_spec("deepspeed") is None:
        raise VittleError(
            "train.deepspeed is set but DeepSpeed is not installed; run `pip install 'vittle[deepspeed]'` "
            "(or remove train.deepspeed to train without it)"
        )


def quiet_unless_debug():
    """A context that swallows what DeepSpeed prints to stdout (not through its logger), unless --debug."""
    import contextlib
    import io

    from vittle_cli.errors import debug_enabled

    return contextlib.nullcontext() if debug_enabled() else contextlib.redirect_stdout(io.StringIO())
