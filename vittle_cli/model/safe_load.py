"""Refuse pickled checkpoint files that hold anything but tensors and plain data, before anything
unpickles them for real.

DeepSpeed reads its shards (global_step*/…model_states.pt, …optim_states.pt) with `torch.load(...,
weights_only=False)`, both in zero_to_fp32 (`vittle merge`) and in its checkpoint engine (`vittle train
--resume` with a ZeRO preset): a planted pickle would run its code there. Every shard DeepSpeed may open is
first read with torch's weights-only unpickler, which allows tensors, containers and plain values plus the
few DeepSpeed classes a real checkpoint holds (found by saving real ZeRO-2/3 checkpoints: the optimizer
state names the ZeRO stage enum, the loss scaler and, under ZeRO-2, tensor fragment addresses).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from vittle_cli.errors import ModelError

# module path, class name: imported only when a shard is checked (deepspeed is optional).
DEEPSPEED_CHECKPOINT_CLASSES = (
    ("deepspeed.runtime.zero.config", "ZeroStageEnum"),
    ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),
    ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler"),
    ("deepspeed.utils.tensor_fragment", "fragment_address"),
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _allowed_classes() -> list:
    import importlib

    import numpy as np

    # Trainer's rng_state.pth holds numpy RNG states (transformers reads it weights-only with these too).
    core = getattr(np, "_core", None) or np.core
    found: list = [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    for module, name in DEEPSPEED_CHECKPOINT_CLASSES:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # deepspeed absent or a release without the class
            continue
    return found


def _reason(err: BaseException) -> str:
    """The short cause inside torch's long weights-only error (e.g. "Unsupported global: GLOBAL posix.system")."""
    text = _ANSI.sub("", str(err))
    match = re.search(r"(Unsupported global: GLOBAL \S+|Unsupported operand \S+|Trying to [^\n]*)", text)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else type(err).__name__


def check_weights_only(path: str | Path) -> None:
    """Read the pickled file `path` with the weights-only unpickler (DeepSpeed's checkpoint classes allowed).

    The tensors are memory-mapped, not read, so this costs about what reading the pickle itself costs.

    Raises:
        ModelError: the file holds something else (code, unknown objects) or is not a readable checkpoint;
            one line naming the file.
    """
    import torch

    path = Path(path)
    use_mmap = zipfile.is_zipfile(path)  # torch's current format; the legacy one cannot be mapped
    try:
        with torch.serialization.safe_globals(_allowed_classes()):
            torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except Exception as err:  # noqa: BLE001 - every failure means: do not let anything unpickle this file
        raise ModelError(
            f"refusing to load {path}: it is not a plain weights file ({_reason(err)}); a checkpoint written "
            "by vittle/DeepSpeed never holds that - delete the file or use a checkpoint from a trusted source"
        ) from None


def deepspeed_shards(checkpoint: str | Path) -> list[Path]:
    """Every pickled file DeepSpeed may load from a checkpoint folder: those in its global_step*/ folders
    and in the folder its `latest` file names.

    Raises:
        ModelError: `latest` names a folder outside the checkpoint.
    """
    root = Path(checkpoint)
    tag_dirs = {p for p in root.glob("global_step*") if p.is_dir()}
    latest = root / "latest"
    if latest.is_file():
        tag = latest.read_text(encoding="utf-8", errors="replace").strip()
        target = (root / tag).resolve()
        if target != root.resolve() and root.resolve() not in target.parents:
            raise ModelError(
                f"{latest} names {tag!r}, a folder outside the checkpoint {root}; a DeepSpeed checkpoint names "
                "its own global_step folder there - fix or delete the file"
            )
        if target.is_dir():
            tag_dirs.add(target)
    return sorted(
        f for d in tag_dirs for f in d.iterdir() if f.is_file() and f.suffix in (".pt", ".pth", ".bin")
    )


TRAINER_PICKLES = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "pytorch_model*.bin", "scaler.pt")


def check_checkpoint_pickles(checkpoint: str | Path) -> int:
    """Check every DeepSpeed shard of `checkpoint`, and the pickles Trainer reads on a resume, with
    `check_weights_only` (so a refusal is one line naming the file); returns how many were checked.

    Raises:
        ModelError: a file that holds more than weights (one line naming it).
    """
    root = Path(checkpoint)
    shards = deepspeed_shards(root) + sorted(f for pattern in TRAINER_PICKLES for f in root.glob(pattern))
    for shard in shards:
        check_weights_only(shard)
    return len(shards)


def check_safetensors(path: str | Path) -> None:
    """Check that a .safetensors file is complete: its header parses and every tensor lies inside the file.

    Reads only the header (a copy cut short by a full disk or an interrupted download fails here, with its
    name, instead of deep inside a loader).

    Raises:
        ModelError: a truncated or corrupt file, naming it and the fix.
    """
    import json
    import struct

    path = Path(path)
    size = path.stat().st_size
    problem = None
    with path.open("rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if n is None or n > size - 8:
            problem = f"{size} bytes, too short for its header"
        else:
            try:
                header = json.loads(f.read(n))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, KeyError, TypeError, IndexError):
                problem = "its header is not valid"
            else:
                if 8 + n + end > size:
                    problem = f"{size} bytes, its tensors need {8 + n + end}"
    if problem:
        raise ModelError(
            f"{path} is truncated or corrupt ({problem}); copy or download it again (or re-save the model)"
        )


def check_safetensors_dir(directory: str | Path) -> None:
    """check_safetensors on every .safetensors file directly in `directory`."""
    for f in sorted(Path(directory).glob("*.safetensors")):
        check_safetensors(f)


def remote_code_warning(model_name: str, revision: str | None = None) -> str:
    """The warning for model.trust_remote_code=true: which code will run (the model's own Python files)."""
    local = Path(model_name).expanduser()
    if local.is_dir():
        files = sorted(p.name for p in local.glob("*.py"))
        where = f"the Python files in {local} ({', '.join(files) or 'none found now'})"
    else:
        at = f" at revision {revision}" if revision else " at its newest revision"
        where = f"the Python files of the hub repository {model_name}{at} (those its config's auto_map names)"
    return (
        f"model.trust_remote_code=true: {where} will be imported and run with your permissions; use it only "
        "with a model source you trust, and pin model.revision to a commit you have read"
    )
