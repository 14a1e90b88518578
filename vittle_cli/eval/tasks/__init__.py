"""Task families of `vittle eval`: one registered TaskFamily subclass per kind of benchmark.

Adding a family is one file in this folder holding a `@register_task` class (see base.py for the
interface and tasks/pope.py for an example) plus its import at the bottom of this module. Importing this
package imports no torch.
"""

from __future__ import annotations

from vittle_cli.errors import UsageError
from vittle_cli.eval.tasks.base import Column, TaskFamily

_REGISTRY: dict[str, type[TaskFamily]] = {}


def register_task(cls: type[TaskFamily]) -> type[TaskFamily]:
    """Class decorator: make `cls` the family of suites with `task: <cls.name>`."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"task family {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get_task(name: str) -> TaskFamily:
    """A fresh instance of the family called `name`.

    Raises:
        UsageError: unknown name (lists the known families).
    """
    if name not in _REGISTRY:
        raise UsageError(f"unknown task {name!r} in the suite; known tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


def list_tasks() -> list[str]:
    return sorted(_REGISTRY)


# Importing a family's module registers it.
from vittle_cli.eval.tasks import closedqa as _closedqa  # noqa: E402,F401
from vittle_cli.eval.tasks import openended as _openended  # noqa: E402,F401
from vittle_cli.eval.tasks import pope as _pope  # noqa: E402,F401

__all__ = ["Column", "TaskFamily", "get_task", "list_tasks", "register_task"]
