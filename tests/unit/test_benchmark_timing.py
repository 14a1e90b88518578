"""benchmarks/_timing.py: the interleaving order, the paired ratios and the spread (its formulas)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _timing import Side, agreement_pct, interleave, paired_ratio, spread_pct  # noqa: E402


def test_sides_alternate_and_the_first_side_alternates_per_round():
    calls = []
    sides = [
        Side(
            "a",
            lambda: calls.append("a"),
            before=lambda: calls.append("+a"),
            after=lambda: calls.append("-a"),
        ),
        Side("b", lambda: calls.append("b")),
    ]
    samples = interleave(sides, rounds=3, block=2, warmup=1, device="cpu")
    assert calls == ["+a", "a", "-a", "b",  # warm-up, then rounds: a b | b a | a b
                     "+a", "a", "a", "-a", "b", "b",
                     "b", "b", "+a", "a", "a", "-a",
                     "+a", "a", "a", "-a", "b", "b"]  # fmt: skip
    assert {k: len(v) for k, v in samples.per_side.items()} == {"a": 3, "b": 3}
    assert samples.clock == "process CPU time"


def test_paired_ratio_is_the_median_of_per_round_ratios():
    ratio = paired_ratio([1.1, 2.4, 3.0], [1.0, 2.0, 3.0])
    assert ratio.per_round == pytest.approx((1.1, 1.2, 1.0))
    assert ratio.median == pytest.approx(1.1)
    assert ratio.spread_pct == pytest.approx(50 * 0.2 / 1.1)  # under 4 rounds: half the min-max range


def test_spread_is_half_the_interquartile_range_from_four_values():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0]
    q1, q3 = 2.25, 6.75  # statistics.quantiles' default (exclusive) method; the outlier does not move them
    assert spread_pct(values) == pytest.approx(50 * (q3 - q1) / 4.5)
    assert spread_pct([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) == spread_pct(values)
    assert spread_pct([5.0]) == 0.0


def test_agreement_percentage():
    assert agreement_pct(["yes", "no", "yes", "no"], ["yes", "no", "no", "no"]) == 75.0
