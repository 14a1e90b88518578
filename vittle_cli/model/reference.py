"""What a model reference is: the one answer to "what does this path or name point at", for every command.

A reference is a `builtin:` name, a hub name (org/name), or a local folder: a model folder (config.json),
a PEFT adapter folder (adapter_config.json), a folder of ZeRO shards only (global_stepN/), or a vittle run
directory (config.yaml / final/), which stands for its final/ folder. Every command classifies with
`classify_model_ref` and so says the same words, with the same exit code (2: a usage error, fixable before
anything loads), about a path that is missing, a file, or a folder of the wrong kind. Failures while
*loading* a well-formed reference stay ModelError (exit 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vittle_cli.errors import UsageError
from vittle_cli.layout import (
    ADAPTER_CONFIG,
    FINAL_DIR,
    MODEL_CONFIG,
    RUN_CONFIG,
    has_full_weights,
    has_zero_shards,
    list_checkpoints,
)
from vittle_cli.model.builtin import is_builtin, resolve_model_source

RefKind = Literal["builtin", "hub", "model", "adapter", "zero"]
# org/name as the Hugging Face Hub spells repository ids.
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WHAT = "a run dir, a model or adapter dir, a hub name (org/name) or builtin:tiny-llava"


@dataclass(frozen=True)
class ModelRef:
    """A classified model reference.

    Attributes:
        given: the text as the user wrote it.
        kind: builtin | hub | model (HF model folder) | adapter (PEFT) | zero (ZeRO shards only).
        folder: the local folder to load (a run directory's final/); None for builtin and hub names.
        run_dir: the vittle run directory the folder belongs to (itself, or one level up), if any.
    """

    given: str
    kind: RefKind
    folder: Path | None = None
    run_dir: Path | None = None

    @property
    def source(self) -> str:
        """What `from_pretrained` takes: the folder, the built (cached) builtin folder, or the hub name."""
        if self.folder is not None:
            return str(self.folder)
        return resolve_model_source(self.given)

    @property
    def recipe_file(self) -> Path | None:
        """The run's config.yaml (the resolved recipe it was trained with), if there is one."""
        return self.run_dir / RUN_CONFIG if self.run_dir is not None else None


def folder_kind(folder: Path) -> Literal["model", "adapter", "zero"] | None:
    """What a local folder holds: a PEFT adapter, an HF model, only ZeRO shards, or (None) none of those."""
    if (folder / ADAPTER_CONFIG).is_file():
        return "adapter"
    if (folder / MODEL_CONFIG).is_file() and (has_full_weights(folder) or not has_zero_shards(folder)):
        return "model"
    if has_zero_shards(folder):
        return "zero"
    return None


def run_dir_of(folder: Path) -> Path | None:
    """The vittle run directory `folder` belongs to: itself (it holds config.yaml) or its parent (`folder` is
    a run's final/ or checkpoint-N/); None otherwise."""
    for candidate in (folder, folder.parent):
        if (candidate / RUN_CONFIG).is_file():
            return candidate
    return None


def _is_run_dir(folder: Path) -> bool:
    return folder_kind(folder) is None and ((folder / RUN_CONFIG).is_file() or (folder / FINAL_DIR).is_dir())


def classify_model_ref(given: str, role: str = "--model") -> ModelRef:
    """Classify `given` (a `builtin:` name, hub name or local path) without loading anything.

    Args:
        given: the reference as written.
        role: how the user passed it (`--model`, `--base`, `model.name`, a positional SOURCE), for messages.

    Raises:
        UsageError: a local path that does not exist, is a file, is a run without final/, or holds no model.
    """
    if is_builtin(given):
        return ModelRef(given, "builtin")
    path = Path(given).expanduser()
    if not path.exists():
        if _HUB_NAME.match(given) and not given.startswith((".", "/", "~")):
            return ModelRef(given, "hub")
        raise UsageError(f"{role} {given}: no such directory; pass {_WHAT}")
    if not path.is_dir():
        raise UsageError(f"{role} {given} is a file; pass {_WHAT}")
    run_dir = run_dir_of(path)
    if _is_run_dir(path):
        run_dir = path
        if not (path / FINAL_DIR).is_dir():
            found = list_checkpoints(path)
            hint = (
                f"pass one of its checkpoints, e.g. {found[-1][1]}" if found else "it has no checkpoints yet"
            )
            raise UsageError(f"{role} {given}: the run has no {FINAL_DIR}/ (training did not finish); {hint}")
        path = path / FINAL_DIR
    kind = folder_kind(path)
    if kind is None:
        raise UsageError(
            f"{role} {given} is not a model, adapter or run directory "
            f"(no {MODEL_CONFIG}, {ADAPTER_CONFIG} or {FINAL_DIR}/); pass {_WHAT}"
        )
    return ModelRef(given, kind, folder=path, run_dir=run_dir)


def loadable_model_ref(given: str, role: str = "--model") -> ModelRef:
    """classify_model_ref, refusing what cannot be loaded as it is (ZeRO shards need `vittle merge` first).

    Raises:
        UsageError: as classify_model_ref, or a folder of ZeRO shards only.
    """
    ref = classify_model_ref(given, role)
    if ref.kind == "zero":
        raise UsageError(
            f"{role} {given} holds only ZeRO shards; consolidate it first: vittle merge {given} --out <dir>"
        )
    return ref


def trainable_source(given: str, role: str = "model.name") -> str:
    """The `from_pretrained` source of a model to train from: a builtin, hub name, model folder or a run
    whose final/ is a full model.

    Raises:
        UsageError: as loadable_model_ref, or a PEFT adapter (which needs merging into its base first).
    """
    ref = loadable_model_ref(given, role)
    if ref.kind == "adapter":
        raise UsageError(
            f"{role} {given} is a LoRA adapter, not a model; merge it first (vittle merge {given} --out <dir>) "
            "and train from the merged folder"
        )
    return ref.source
