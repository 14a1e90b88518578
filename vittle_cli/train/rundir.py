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
from vittle_cli.layout import FINAL_DIR, RUN_CONFIG, RUN_INFO, RUN_MARKER, STAGING_DIR, list_checkpoints


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: no path separator, not `.` or `..`, so it is never absolute and
    never leaves output.dir (with --overwrite it names the folder that may be deleted).

    Raises:
        UsageError: anything else, naming the fix.
    """
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise UsageError(
            f"output.run_name={name!r} is not a plain folder name (no '/', no '..', not absolute); "
            "put the parent folder in output.dir instead"
        )
    return name


def run_dir_for(output_dir: str, run_name: str | None, recipe_path: str | None) -> Path:
    """output.dir / output.run_name; without a run name, the recipe file's stem (else "run").

    Raises:
        UsageError: a run name that is not a plain folder name.
    """
    name = check_run_name(run_name) if run_name else (Path(recipe_path).stem if recipe_path else "run")
    return Path(output_dir).expanduser() / name


def is_vittle_run(run_dir: Path) -> bool:
    """True when vittle created `run_dir` (its run marker, or the run_info.json of older releases)."""
    if (run_dir / RUN_MARKER).is_file():
        return True
    try:
        info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and "vittle" in info and (run_dir / RUN_CONFIG).is_file()


def has_trained(run_dir: Path) -> bool:
    """A run that got somewhere: a complete checkpoint or a final model. A run dir without either (a start
    that failed while loading) is not a run to protect: rerunning the command starts it afresh."""
    return bool(list_checkpoints(run_dir)) or (run_dir / FINAL_DIR).is_dir()


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
    """Create the run directory; refuse one with a trained run in it unless overwriting or resuming.

    A folder vittle did not create is never used or deleted; a vittle folder with no checkpoint and no
    final/ (a start that failed) is started afresh.

    Raises:
        UsageError: a trained run without --overwrite/--resume, or a non-empty folder that is not a vittle run.
    """
    exists = run_dir.is_dir()
    has_content = exists and any(p.name != RUN_MARKER for p in run_dir.iterdir())
    if run_dir.exists() and not exists:
        raise UsageError(f"run directory {run_dir} is a file; set output.run_name=<new name> or output.dir")
    if has_content and not is_vittle_run(run_dir):
        raise UsageError(
            f"{run_dir} exists and is not a vittle run directory (no {RUN_MARKER}); vittle neither writes into "
            "nor deletes it, even with --overwrite - set output.run_name=<new name> or output.dir"
        )
    trained = has_content and has_trained(run_dir)
    if trained and not (overwrite or resume):
        raise UsageError(
            f"run directory {run_dir} already exists; pass --resume to continue it, --overwrite to replace it, "
            "or set output.run_name=<new name>"
        )
    if not is_main:
        return
    if has_content and not resume:  # --overwrite, or a failed start that is rerun
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / RUN_MARKER
    if not marker.is_file():
        write_text_atomic(
            marker, json.dumps({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n"
        )
    # A checkpoint interrupted mid-write never reaches its final name; drop the leftovers.
    shutil.rmtree(run_dir / STAGING_DIR, ignore_errors=True)


def lock_run_dir(run_dir: Path):
    """Hold the run directory's lock (a PathLock) for this process.

    Raises:
        UsageError: another vittle process trains into it (exit 2).
    """
    from vittle_cli.fileio import PathLock

    return PathLock(run_dir, "run directory", "set output.run_name=<new name>").acquire()


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
