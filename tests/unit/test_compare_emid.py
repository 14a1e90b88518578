"""`vittle eval compare`'s EMID table: which runs it covers, deltas, and the notes on what is not like for like."""

from __future__ import annotations

import io

from rich.console import Console

from vittle_cli.eval.compare_emid import emid_comparison, emid_table


def _section(snow: float, digest: str = "d1", vision: str = "clip") -> dict:
    entry = {"emid": snow, "ci95": [snow - 0.1, snow + 0.1], "bound": 1.0, "group": "visual"}
    return {
        "against": "clean", "variants": {"snow@3": entry}, "groups": {"visual": {**entry, "variants": 1}},
        "mean": {**entry, "variants": 1}, "encoders": {"vision": vision, "text": "xlmr"},
        "club": {"source": "fitted on this eval's pooled variants", "data_digest": digest},
    }  # fmt: skip


def test_only_runs_with_emid_and_notes_when_estimators_differ():
    docs = [{"emid": _section(0.30)}, {}, {"emid": _section(0.10)}]
    assert emid_comparison(docs[:2], ["a", "b"]) is None  # one run has EMID: nothing to compare
    cmp = emid_comparison(docs, ["a", "b", "c"])
    assert cmp["columns"] == ["a", "c"] and cmp["values"] == [[0.30], [0.10]] and cmp["mean"] == [0.30, 0.10]
    assert cmp["notes"] == []  # one estimator (same data digest), same encoders
    other = emid_comparison([{"emid": _section(0.3)}, {"emid": _section(0.1, "d2", "siglip")}], ["a", "b"])
    assert any("own CLUB estimator" in n for n in other["notes"])
    assert any("different encoders" in n for n in other["notes"])
    buf = io.StringIO()
    Console(file=buf, width=120).print(emid_table(cmp))
    assert "+0.1000 (-0.2000)" in buf.getvalue()  # c's EMID and its delta against a
