"""The pieces behind data.max_bad_fraction and data.num_workers: counting, the problem log, the fraction
check, the default worker count."""

from __future__ import annotations

import json

import pytest

from vittle_cli.data.report import BadDataError, DataReport, SampleProblem, check_bad_fraction
from vittle_cli.data.workers import default_num_workers


def _report(total: int, bad: int) -> DataReport:
    report = DataReport(source="s.json", total=total)
    for i in range(bad):
        report.record("missing_image", f"id{i}", SampleProblem("missing_image", f"/x/{i}.jpg"))
    return report


def test_the_fraction_is_bad_over_total_and_the_limit_is_strict():
    check_bad_fraction(_report(100, 1), 0.01)  # exactly at the limit: fine
    with pytest.raises(BadDataError) as info:
        check_bad_fraction(_report(100, 2), 0.01)
    message = str(info.value)
    assert (
        "2 of 100 samples are bad (2.0%)" in message and "missing_image" in message and "id0, id1" in message
    )
    assert info.value.exit_code == 1


def test_truncated_samples_are_not_bad():
    report = _report(10, 0)
    report.record("truncated", "long")
    assert report.bad_fraction == 0 and report.to_json()["counts"] == {"truncated": 1}


def test_merged_reports_add_up():
    a, b = _report(10, 1), _report(30, 2)
    a.merge(b)
    assert (a.total, a.skipped, a.examples["missing_image"]) == (40, 3, ["id0", "id0", "id1"])


def test_the_callback_counts_each_logged_sample_once_and_skips_a_half_written_line(tmp_path):
    from transformers import TrainerControl, TrainerState

    from vittle_cli.train.bad_data import BadDataCallback

    log = tmp_path / "bad_samples.jsonl"
    event = {"source": "s.json", "id": "a", "kind": "corrupt_image", "detail": "a.jpg: OSError"}
    log.write_text(json.dumps(event) + "\n" + json.dumps(event) + "\n" + '{"source": "s.json", "id": "b"')
    callback = BadDataCallback(_report(100, 0), 0.015, log)
    control = callback.on_step_end(None, TrainerState(), TrainerControl())
    assert callback.report.counts == {"corrupt_image": 1} and not control.should_training_stop
    with log.open("a") as f:  # the half-written line is completed, and one more sample goes bad
        f.write(', "kind": "corrupt_image"}\n')
    control = callback.on_step_end(None, TrainerState(), TrainerControl())
    assert callback.report.counts == {"corrupt_image": 2}
    assert control.should_training_stop and control.should_save and callback.exceeded


@pytest.mark.parametrize(
    ("cpus", "procs", "expected"), [(2, 1, 1), (1, 1, 0), (16, 1, 8), (16, 4, 3), (64, 8, 7)]
)
def test_default_workers_share_the_cpus_between_processes(monkeypatch, cpus, procs, expected):
    import vittle_cli.data.workers as workers

    monkeypatch.setattr(workers, "available_cpus", lambda: cpus)
    assert default_num_workers(procs) == expected
