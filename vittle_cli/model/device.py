"""Device and dtype names shared by every command, and what `auto` resolves to.

`--device auto` is CUDA when a GPU is visible, else the CPU; `--dtype auto` is bfloat16 on a GPU that
supports it (float16 on older ones) and float32 on the CPU, where half precision is slower, not faster.
"""

from __future__ import annotations

import torch

from vittle_cli.errors import UsageError

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPES = ("auto", *TORCH_DTYPES)


def resolve_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """Resolve `auto` values; return (device, dtype) as strings (e.g. ("cuda", "bfloat16")).

    Raises:
        UsageError: an unknown dtype, or a CUDA device asked for on a machine without one.
    """
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)} (got {dtype!r})")
    device = (device or "auto").strip()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is visible here; use --device cpu or auto")
    if dtype == "auto":
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"
    return device, dtype
