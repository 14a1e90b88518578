"""The run directory: create or refuse it, resolve `--resume`, write config.yaml and run_info.json.

Layout (docs/architecture.md): config.yaml, run_info.json, metrics.jsonl, checkpoint-N/, final/, loss.png.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.fileio import write_text_atomic
from vittle_cli.layout import RUN_CONFIG, RUN_INFO, STAGING_DIR, list_checkpoints


def run_dir_for(output_dir: str, run_name: str | None, recipe_path: str | None) -> Path:
    """output.dir / output.run_name; without a run name, the recipe file's stem (else "run")."""
    name = run_name or (Path(recipe_path).stem if recipe_path else "run")
    return Path(output_dir).expanduser() / name


def resolve_resume(run_dir: Path, resume: str | None) -> Path | None:
    """Map `--resume` ("latest", a checkpoint path, or None) to a checkpoint directory.

    Raises:
        UsageError: nothing to resume from, or the path is not a checkpoint.
    """
    if resume is None:
        return None
    if resume == "latest":
        ckpts = [p for _, p in list_checkpoints(run_dir)]
        if not ckpts:
            raise UsageError(
                f"--resume latest: no checkpoint-N folder in {run_dir}; train without --resume or pass a checkpoint path"
            )
        return ckpts[-1]
    path = Path(resume).expanduser()
    if not (path / "trainer_state.json").is_file():
        raise UsageError(
            f"--resume {resume}: not a checkpoint folder (no trainer_state.json); pass a checkpoint-N path"
        )
    return path


def prepare_run_dir(run_dir: Path, *, overwrite: bool, resume: bool, is_main: bool = True) -> None:
    """Create the run directory; refuse one with content unless overwriting or resuming.

    Raises:
        UsageError: the directory has content and neither --overwrite nor --resume was given.
    """
    has_content = run_dir.is_dir() and any(run_dir.iterdir())
    if has_content and not (overwrite or resume):
        raise UsageError(
            f"run directory {run_dir} already exists; pass --resume to continue it, --overwrite to replace it, "
            "or set output.run_name=<new name>"
        )
    if not is_main:
        return
    if overwrite and has_content and not resume:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # A checkpoint interrupted mid-write never reaches its final name; drop the leftovers.
    shutil.rmtree(run_dir / STAGING_DIR, ignore_errors=True)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def run_info(
    *, seed: int, world_size: int, resumed_from: str | None, command: list[str] | None = None
) -> dict:
    """What produced this run: versions, command line (default: this process's), seed, world size, host,
    start time."""
    from vittle_cli import __version__

    return {
        "vittle": __version__,
        "python": platform.python_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "peft": _version("peft"),
        "deepspeed": _version("deepspeed"),
        "bitsandbytes": _version("bitsandbytes"),
        "command": command or [Path(sys.argv[0]).name, *sys.argv[1:]],
        "seed": seed,
        "world_size": world_size,
        "hostname": platform.node(),
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "resumed_from": resumed_from,
    }


def write_run_files(run_dir: Path, recipe_yaml: str, info: dict) -> None:
    """Write config.yaml and run_info.json; a resumed run keeps earlier run_info entries in `history`."""
    write_text_atomic(run_dir / RUN_CONFIG, recipe_yaml)
    info_path = run_dir / RUN_INFO
    if info.get("resumed_from") and info_path.is_file():
        previous = json.loads(info_path.read_text())
        history = previous.pop("history", [])
        info = {**info, "history": [*history, previous]}
    write_text_atomic(info_path, json.dumps(info, indent=2) + "\n")
