"""Perturbation registry: a visual or text perturbation is one decorated function.

    @register_visual("gaussian_noise", family="noise")
    def gaussian_noise(image: np.ndarray, severity: int, seed: int) -> np.ndarray: ...

    @register_text("keyboard", family="char")
    def keyboard(text: str, rate: int, seed: int) -> str: ...

Visual functions take and return an HxWx3 uint8 array; text functions take and return a string. Both get
an explicit seed and must be deterministic given it. The built-in perturbations (vittle_cli.data.shift.visual
and .text) register themselves on first lookup, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from vittle_cli.errors import UsageError

Kind = Literal["visual", "text"]


@dataclass(frozen=True)
class Perturbation:
    """A registered perturbation: `fn(x, level, seed)` with level = severity (visual) or rate (text)."""

    name: str
    kind: Kind
    family: str
    fn: Callable
    description: str = ""


_REGISTRY: dict[Kind, dict[str, Perturbation]] = {"visual": {}, "text": {}}
_builtins_loaded = False


def _register(kind: Kind, name: str, family: str, description: str | None):
    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY[kind]:
            raise ValueError(f"{kind} perturbation {name!r} is registered twice")
        doc = description if description is not None else (fn.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[kind][name] = Perturbation(name=name, kind=kind, family=family, fn=fn, description=doc)
        return fn

    return deco


def register_visual(name: str, *, family: str = "other", description: str | None = None):
    """Decorator: register `fn(image: np.ndarray uint8 HxWx3, severity: int, seed: int) -> np.ndarray`."""
    return _register("visual", name, family, description)


def register_text(name: str, *, family: str = "other", description: str | None = None):
    """Decorator: register `fn(text: str, rate: int, seed: int) -> str`."""
    return _register("text", name, family, description)


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        from vittle_cli.data.shift import text, translate, visual  # noqa: F401  (they register on import)


def list_perturbations(kind: Kind | None = None) -> list[Perturbation]:
    """All registered perturbations (of one kind, or both), sorted by kind then name."""
    _load_builtins()
    kinds: list[Kind] = [kind] if kind else ["visual", "text"]
    return [p for k in kinds for _, p in sorted(_REGISTRY[k].items())]


def get_perturbation(name: str, kind: Kind | None = None) -> Perturbation:
    """Look a perturbation up by name.

    Raises:
        UsageError: for an unknown name; the message lists the known ones.
    """
    _load_builtins()
    kinds: list[Kind] = [kind] if kind else ["visual", "text"]
    for k in kinds:
        if name in _REGISTRY[k]:
            return _REGISTRY[k][name]
    known = ", ".join(p.name for p in list_perturbations(kind))
    what = f"{kind} perturbation" if kind else "perturbation"
    raise UsageError(f"unknown {what} {name!r}; known: {known}")


def derive_seed(suite_seed: int, spec: str, sample_id: object) -> int:
    """A 32-bit seed from a stable hash of (suite seed, perturbation spec, sample id).

    hashlib, not hash(): Python salts str hashes per process, and reruns must be bit-identical.
    The result fits numpy's legacy `np.random.seed` (< 2**32).
    """
    key = f"{suite_seed}\x1f{spec}\x1f{sample_id}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big")


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed python `random` and numpy's global RNG for one call, then restore their previous states.

    The libraries underneath (imagecorruptions, nlpaug) draw from these global generators; restoring them
    keeps a perturbation from changing the caller's random stream.
    """
    import random

    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
