"""Atomic file writes: every file vittle writes goes to a temp file beside its target and is renamed into
place, so an interrupted run never leaves a half-written file. Imports nothing heavy (the CLI start-up
path and recipe.py use it)."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vittle_cli.errors import UsageError, VittleError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` on a temp file next to `path`, then rename it over `path`.

    The file gets ordinary permissions (0666 less the umask; mkstemp alone would leave 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(path) from None
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


class DiskFullError(VittleError):
    """No space left while writing `path` (the old file, if any, is untouched)."""

    def __init__(self, path: str | Path | None):
        where = f"while writing {path}" if path else "while writing"
        super().__init__(
            f"disk full {where}; nothing half-written was kept - free space (or choose another output "
            "folder) and rerun (a training run continues with --resume)"
        )


class PathLock:
    """An exclusive lock on a path that vittle writes (a run directory, an eval --out folder), held until
    `release()` or process exit. The lock file sits beside the target (`.<name>.lock`), so deleting or
    replacing the target never drops the lock. Two processes writing one folder would interleave rows and
    race on its staging files."""

    def __init__(self, target: str | Path, what: str, hint: str):
        self.target = Path(target)
        self.path = self.target.parent / f".{self.target.name}.lock"
        self.what, self.hint = what, hint
        self._fd: int | None = None

    def acquire(self) -> PathLock:
        """Take the lock without waiting.

        Raises:
            UsageError: another process holds it (naming that process and the fix).
        """
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): run unlocked
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UsageError(
                f"{self.what} {self.target} is in use by another vittle process (pid {holder}); wait for it "
                f"to finish, or {self.hint}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> PathLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Pretty JSON, atomically (values JSON cannot hold are written as strings)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def read_utf8(path: str | Path, what: str, error: type[VittleError] | None = None) -> str:
    """The text of a UTF-8 file vittle reads (data, suites, labels).

    Raises:
        DataError (or `error`): the file is not UTF-8, naming the file, the byte and the fix.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        from vittle_cli.errors import DataError

        raise (error or DataError)(
            f"{what} {path} is not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r}); "
            "re-save it as UTF-8"
        ) from None
