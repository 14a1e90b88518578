"""Device and dtype names shared by every command (`--device`, `--dtype`), and what `auto` resolves to.

Both dtype spellings are accepted everywhere: float32 / fp32, bfloat16 / bf16, float16 / fp16, plus `auto`.
`--device auto` is CUDA when present, else the CPU; `--dtype auto` is bfloat16 on a CUDA device that
supports it, else float32. Commands call `resolve_device_dtype` once and record the values it returns.
"""

from __future__ import annotations

import torch

from vittle_cli.errors import UsageError

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
DTYPE_CHOICES = "auto, float32 (fp32), bfloat16 (bf16), float16 (fp16)"


def resolve_device(device: str = "auto") -> str:
    """`auto` -> "cuda" when a GPU is visible, else "cpu"; any other torch device string is checked.

    Raises:
        UsageError: not a torch device, or a CUDA device on a machine without one.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device}: not a torch device; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is visible here; use --device cpu (or auto)")
    return device


def resolve_dtype_name(dtype: str = "auto", device: str = "cpu") -> str:
    """The canonical dtype name (float32, bfloat16, float16) for `dtype` in either spelling, on `device`.

    Raises:
        UsageError: an unknown dtype name.
    """
    name = DTYPE_ALIASES.get(dtype, dtype)
    if name == "auto":
        on_cuda = torch.device(device).type == "cuda"
        return "bfloat16" if on_cuda and torch.cuda.is_bf16_supported() else "float32"
    if name not in TORCH_DTYPES:
        raise UsageError(f"--dtype {dtype}: expected one of {DTYPE_CHOICES}")
    return name


def resolve_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """(device, dtype name) with `auto` resolved: what eval, inspect and merge run on and record."""
    resolved = resolve_device(device)
    return resolved, resolve_dtype_name(dtype, resolved)
