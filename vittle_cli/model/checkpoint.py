"""vittle_config.json + vittle_bottleneck.safetensors beside HF weights or a PEFT adapter, and loading any
model reference (builtin, hub name, model dir, adapter dir, run dir) back with its bottleneck.

A plain `from_pretrained` silently drops `vittle_bottleneck.*` keys, so the bottleneck lives in its own
file and is re-attached after loading (shared/PLATFORM.md "Saving").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vittle_cli.errors import ModelError, UsageError
from vittle_cli.fileio import write_atomic
from vittle_cli.layout import ADAPTER_CONFIG, PROCESSOR_FILES, VITTLE_CONFIG, VITTLE_WEIGHTS
from vittle_cli.model.attach import (
    BOTTLENECK_ATTR,
    attach_bottleneck,
    get_bottleneck,
)
from vittle_cli.model.bottleneck import VittleConfig
from vittle_cli.model.reference import loadable_model_ref

_SEP = f".{BOTTLENECK_ATTR}."


def strip_vittle_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The state dict without `vittle_bottleneck.*` entries (they go to their own file, never the base's)."""
    return {k: v for k, v in state_dict.items() if _SEP not in f".{k}"}


def _bottleneck_entries(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Bottleneck weights keyed as in VittleBottleneck.state_dict(), taken from a full model state dict.

    Under peft modules_to_save the trained copy (`.modules_to_save.<adapter>.`) wins over `original_module`.
    """
    plain: dict[str, Tensor] = {}
    trained: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        full = f".{key}"
        if _SEP not in full:
            continue
        rest = full.split(_SEP, 1)[1]
        if rest.startswith("original_module."):
            continue
        if rest.startswith("modules_to_save."):
            trained[rest.split(".", 2)[2]] = value
        else:
            plain[rest] = value
    return trained or plain


def _gathered_state(module: nn.Module) -> dict[str, Tensor]:
    """The module's full state dict on CPU, gathering ZeRO-3 partitions (collective: every rank calls it)."""
    params = list(module.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _is_main_process() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


def save_vittle(
    model: nn.Module, directory: str | Path, *, state_dict: dict[str, Tensor] | None = None
) -> None:
    """Write vittle_config.json + vittle_bottleneck.safetensors into `directory` (atomically).

    Args:
        model: a model with an attached bottleneck (plain, PeftModel, or DeepSpeed-wrapped).
        directory: created if missing.
        state_dict: a full model state dict that already holds the bottleneck weights (e.g. the
            consolidated ZeRO-3 one the Trainer saves); without it the weights are read from the model,
            gathering ZeRO-3 partitions - then every rank must call this, and rank 0 writes.

    Raises:
        ModelError: no bottleneck is attached, or `state_dict` lacks some of its weights.
    """
    from safetensors.torch import save_file

    bottleneck = get_bottleneck(model)
    if bottleneck is None:
        raise ModelError("the model has no Vittle bottleneck attached; nothing to save")
    expected = set(bottleneck.state_dict())
    weights = _bottleneck_entries(state_dict) if state_dict else {}
    if not weights:
        weights = _gathered_state(bottleneck)
    if set(weights) != expected:
        raise ModelError(
            f"the bottleneck weights to save are incomplete (missing {sorted(expected - set(weights))}); "
            "pass the full state dict or none"
        )
    if not _is_main_process():
        return
    config = bottleneck.config  # holds the layers resolved when attaching: a reload never re-derives them
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    write_atomic(out / VITTLE_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    write_atomic(out / VITTLE_CONFIG, lambda tmp: Path(tmp).write_text(config.to_json()))


def load_vittle_weights(model: nn.Module, directory: str | Path) -> None:
    """Load `directory/vittle_bottleneck.safetensors` into the model's attached bottleneck (strict).

    Raises:
        ModelError: no bottleneck attached, file missing, or weights that do not fit.
    """
    from safetensors.torch import load_file

    bottleneck = get_bottleneck(model)
    if bottleneck is None:
        raise ModelError("attach a bottleneck before loading its weights")
    path = Path(directory) / VITTLE_WEIGHTS
    if not path.is_file():
        raise ModelError(
            f"{path.parent} has {VITTLE_CONFIG} but no {VITTLE_WEIGHTS}; copy the weights file too"
        )
    try:
        bottleneck.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ModelError(f"{path} does not fit this model's bottleneck ({first})") from None


def _check_vittle_files(directory: Path) -> bool:
    """True when `directory` holds a complete bottleneck; False when it holds none."""
    has_config = (directory / VITTLE_CONFIG).is_file()
    has_weights = (directory / VITTLE_WEIGHTS).is_file()
    if has_weights and not has_config:
        raise ModelError(f"{directory} has {VITTLE_WEIGHTS} but no {VITTLE_CONFIG}; copy the config file too")
    if has_config and not has_weights:
        raise ModelError(
            f"{directory} has {VITTLE_CONFIG} but no {VITTLE_WEIGHTS}; copy the weights file too"
        )
    return has_config


def _load_base(source: str, dtype: str):
    from transformers import AutoModelForImageTextToText

    from vittle_cli.model.families import load_processor

    try:
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
        processor = load_processor(source)
    except (OSError, ValueError) as err:  # transformers' "not found" / "not a model" errors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"cannot load model {source}: {first} (pass a hub name, or a local model, adapter or run directory)"
        ) from err
    return model, processor


def load_vittle_model(
    path: str | Path,
    *,
    base: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    role: str = "--model",
) -> tuple[nn.Module, Any]:
    """Load (model, processor) in eval mode, with the bottleneck attached when the source has one.

    `path` may be a `builtin:` name, a hub name, an HF model directory (with vittle files: Vittle model;
    without: the plain baseline), a PEFT adapter directory (base from `base` or the adapter's
    base_model_name_or_path), or a vittle run directory (its final/ is used).

    Raises:
        UsageError: a reference that is missing, a file, of the wrong kind or ZeRO shards only (see
            model/reference.py); an adapter whose base model is unknown and no `base` given.
        ModelError: a model that fails to load, incomplete vittle files.
    """
    ref = loadable_model_ref(str(path), role)
    directory = ref.folder
    if directory is None:  # builtin or hub name: a plain model, as published
        model, processor = _load_base(ref.source, dtype)
        return model.to(device).eval(), processor
    has_vittle = _check_vittle_files(directory)
    from vittle_cli.model.safe_load import check_safetensors_dir

    check_safetensors_dir(directory)  # a truncated file fails here with its name, not inside a loader
    if ref.kind == "adapter":
        model, processor = _load_adapter(directory, base, dtype, has_vittle)
    else:
        model, processor = _load_base(str(directory), dtype)
        if has_vittle:
            attach_bottleneck(model, VittleConfig.read(directory))
            load_vittle_weights(model, directory)
    return model.to(device).eval(), processor


def _load_adapter(directory: Path, base: str | None, dtype: str, has_vittle: bool):
    from peft import PeftModel

    from vittle_cli.model.families import load_processor

    base_name = base or json.loads((directory / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base_name:
        raise UsageError(f"the adapter in {directory} does not name its base model; pass --base <model>")
    model, processor = _load_base(loadable_model_ref(base_name, "--base").source, dtype)
    if has_vittle:
        # Attach before peft so the adapter's modules_to_save copy of the bottleneck finds its place.
        attach_bottleneck(model, VittleConfig.read(directory))
    model = PeftModel.from_pretrained(model, str(directory))
    if has_vittle:
        load_vittle_weights(model, directory)
    if any((directory / name).is_file() for name in PROCESSOR_FILES):
        processor = load_processor(str(directory))
    return model, processor
