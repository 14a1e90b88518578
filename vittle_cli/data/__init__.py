"""Training and evaluation data: built-in synthetic sets, LLaVA JSON / HF datasets, rendering, collate.

Names are imported lazily so that `from vittle_cli.data.shapes import ...` stays light (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ShapesData": "vittle_cli.data.shapes",
    "resolve_builtin_data": "vittle_cli.data.shapes",
    "TrainDataset": "vittle_cli.data.llava",
    "build_dataset": "vittle_cli.data.llava",
    "build_train_dataset": "vittle_cli.data.mixture",
    "build_eval_dataset": "vittle_cli.data.mixture",
    "MixedDataset": "vittle_cli.data.mixture",
    "BadDataError": "vittle_cli.data.report",
    "DataCollator": "vittle_cli.data.collate",
    "DataReport": "vittle_cli.data.report",
    "GroupedSampler": "vittle_cli.data.sampler",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
