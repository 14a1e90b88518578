"""Array output of `vittle inspect` (the generic atomic writers live in vittle_cli.fileio)."""

from __future__ import annotations

from pathlib import Path

from vittle_cli.fileio import write_atomic


def save_arrays(path: Path, arrays: dict, metadata: dict[str, str] | None = None) -> Path:
    """numpy/torch arrays -> one safetensors file, atomically."""
    import numpy as np
    from safetensors.numpy import save_file

    clean = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
    return write_atomic(path, lambda tmp: save_file(clean, tmp, metadata=metadata))
