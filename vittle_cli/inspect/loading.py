"""Load the model a `vittle inspect` view looks at (run dir, checkpoint, merged, adapter, hub, builtin)."""

from __future__ import annotations


def load_for_inspect(name: str, dtype: str = "auto", device: str = "auto", base: str | None = None):
    """(model, processor) in eval mode for any model reference `load_vittle_model` understands.

    Args:
        dtype, device: either dtype spelling, `auto` included (model/device.py).
        base: base model of a PEFT adapter whose config does not name one.

    Raises:
        UsageError / ModelError: as load_vittle_model (one set of messages for every command).
    """
    from transformers.utils import logging as hf_logging

    from vittle_cli.model.checkpoint import load_vittle_model
    from vittle_cli.model.device import resolve_device_dtype

    hf_logging.disable_progress_bar()  # rich owns the terminal; per-file "Loading weights" bars are noise
    device, dtype = resolve_device_dtype(device, dtype)
    model, processor = load_vittle_model(name, base=base, dtype=dtype, device=device)
    return model.eval(), processor
