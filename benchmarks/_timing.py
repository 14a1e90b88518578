"""Shared timing and statistics for the benchmarks: interleaved A/B measurement whose ratio survives a shared
machine.

Why this design (issue #17): timing all of one side and then all of the other lets drift of a shared machine
(other processes, thermal, allocator warm-up) land on one side only, and wall-clock time counts the time other
processes hold the CPU. So:
- the two sides alternate in single steps (or short blocks), and which side goes first alternates per round;
- on CPU the clock is this process's CPU time (`time.process_time`: all its threads, not time spent waiting
  for the CPU); on CUDA it is CUDA events around the work (GPU time, not host jitter);
- each round gives one paired ratio (neighbouring measurements, so slow drift cancels); the median of those
  ratios is the result, and their spread (half the interquartile range, in % of the median) says how far to
  trust one round; rerunning the script shows how far to trust the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Side:
    """One side of an A/B comparison: `step` is timed; `before`/`after` (untimed) switch the model into and
    out of this side's configuration around each of its blocks."""

    name: str
    step: Callable[[], object]
    before: Callable[[], object] | None = None
    after: Callable[[], object] | None = None


@dataclass
class Samples:
    """Seconds per step of each side, one value per round, in round order."""

    per_side: dict[str, list[float]] = field(default_factory=dict)
    clock: str = ""


def make_clock(device: str) -> tuple[str, Callable[[Callable[[], object]], float]]:
    """(name, timer) where timer(fn) runs fn once and returns its seconds on this device's honest clock."""
    if device.startswith("cuda"):
        import torch

        def cuda_timer(fn: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000.0

        return "CUDA events", cuda_timer

    def cpu_timer(fn: Callable[[], object]) -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    return "process CPU time", cpu_timer


def interleave(sides: list[Side], *, rounds: int, block: int, warmup: int, device: str) -> Samples:
    """Time `block` steps of each side per round, alternating the order of the sides every round.

    Every side first runs `warmup` untimed steps (first-call costs: allocator, kernels, optimizer state).
    """
    clock_name, timer = make_clock(device)
    samples = Samples({side.name: [] for side in sides}, clock_name)
    for side in sides:
        _run(side, lambda side=side: [side.step() for _ in range(warmup)])
    for round_ in range(rounds):
        for side in sides if round_ % 2 == 0 else list(reversed(sides)):
            seconds = _run(side, lambda side=side: timer(lambda: [side.step() for _ in range(block)]))
            samples.per_side[side.name].append(seconds / block)
    return samples


def _run(side: Side, fn: Callable[[], float | object]):
    if side.before is not None:
        side.before()
    try:
        return fn()
    finally:
        if side.after is not None:
            side.after()


@dataclass(frozen=True)
class Ratio:
    """Median of the per-round ratios and their spread (spread_pct, % of the median)."""

    median: float
    spread_pct: float
    per_round: tuple[float, ...]


def paired_ratio(numerator: list[float], denominator: list[float]) -> Ratio:
    """numerator[i] / denominator[i] per round; the median and spread of those ratios."""
    ratios = tuple(n / d for n, d in zip(numerator, denominator, strict=True))
    return Ratio(statistics.median(ratios), spread_pct(ratios), ratios)


def spread_pct(values: tuple[float, ...] | list[float]) -> float:
    """The spread of `values` in % of their median: half the interquartile range from 4 values on (single
    rounds on a shared machine have outliers the median ignores), half the min-max range below that, 0 for
    fewer than two values."""
    if len(values) < 2:
        return 0.0
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4)
        return 50.0 * (q3 - q1) / statistics.median(values)
    return 50.0 * (max(values) - min(values)) / statistics.median(values)


def describe(seconds: list[float]) -> str:
    """'12.3 ms median (±1.2%, 8 rounds)' for per-step seconds."""
    return f"{1000 * statistics.median(seconds):.1f} ms median (±{spread_pct(seconds):.1f}%, {len(seconds)} rounds)"


def agreement_pct(answers: list[str], reference: list[str]) -> float:
    """% of answers identical to the reference answers (reduced precision may flip a few by rounding)."""
    if not reference:
        return 100.0
    return 100.0 * sum(a == b for a, b in zip(answers, reference, strict=True)) / len(reference)
