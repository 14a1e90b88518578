"""How many DataLoader workers to use when data.num_workers is null."""

from __future__ import annotations

import os

MAX_DEFAULT_WORKERS = 8  # beyond this, workers mostly add memory; a 7B step needs ~15 samples/s (docs)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (containers, taskset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_num_workers(local_processes: int = 1) -> int:
    """Workers per training process: this machine's CPUs shared by the processes on it, one CPU per process
    left for the training loop itself, at most MAX_DEFAULT_WORKERS."""
    per_process = available_cpus() // max(local_processes, 1)
    return max(0, min(MAX_DEFAULT_WORKERS, per_process - 1))


def resolve_num_workers(configured: int | None, local_processes: int = 1) -> int:
    return default_num_workers(local_processes) if configured is None else configured
