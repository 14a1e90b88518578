"""Evaluators that training runs on the live model, by name, without train/ importing eval/.

Imports point one way (train and eval never import each other), yet a run should show its robustness
curve while it trains. So the evaluator is named here, below both, as "module:function", and imported only
when a recipe asks for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

EVALUATORS: dict[str, str] = {
    # (model, processor, suite_section, out_dir, console) -> {"clean_accuracy", "shift_accuracy", ...}
    "suite": "vittle_cli.eval.in_training:evaluate_suite",
}


def get_evaluator(name: str) -> Callable:
    """The evaluator function registered as `name`.

    Raises:
        KeyError: an unknown name (lists the known ones).
    """
    if name not in EVALUATORS:
        raise KeyError(f"no evaluator {name!r}; known: {', '.join(sorted(EVALUATORS))}")
    module, _, attr = EVALUATORS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
