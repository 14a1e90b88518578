"""`vittle eval --emid`: EMID as a section of the eval's own results (the pipeline of `vittle inspect emid`).

eval may not import inspect, so the commands layer joins them: run_eval takes an `extend_results` step,
called with the scored results before results.json is written, and this module builds that step from
vittle_cli/inspect/emid_run.py. An interrupted EMID step leaves no results.json (the same command resumes,
every answer, judgment, embedding and estimator cached); a rerun reuses the cached embeddings and estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vittle_cli.errors import UsageError


def check_emid_request(suite, vision_encoder: str, text_encoder: str, club: str | None) -> None:
    """Refuse --emid before any work: a suite without reference answers, a missing encoder or --club.

    Args:
        suite: the suite name or file as given, or the loaded Suite (a severity sweep).
    Raises:
        UsageError: the suite is not open-ended (POPE and closed-QA suites have labels, not reference
            answers), or an encoder path / --club file that does not exist.
    """
    from vittle_cli.data.shift.suite import Suite, load_suite
    from vittle_cli.inspect.emid import OPENENDED_SUITES
    from vittle_cli.model.emid_embed import check_emid_sources

    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    if not loaded.is_openended:
        raise UsageError(
            f"--emid needs free-form answers and reference answers ({OPENENDED_SUITES}); suite "
            f"{loaded.name!r} is a {loaded.task} suite scored against labels: drop --emid"
        )
    check_emid_sources(vision_encoder, text_encoder, club)


def emid_step(vision_encoder: str, text_encoder: str, club: str | None, club_steps: int, device: str,
              batch_size: int) -> Callable[[dict, Path, object], dict]:  # fmt: skip
    """The `extend_results` step that adds results.json's `emid` section (emid.json's report, the same
    numbers `vittle inspect emid EVAL_DIR` prints with these options)."""

    def add_emid(results: dict, out: Path, console) -> dict:
        from vittle_cli.inspect.emid_run import EmidOptions, run_inspect_emid
        from vittle_cli.model.device import resolve_device_dtype

        opts = EmidOptions(vision_encoder=vision_encoder, text_encoder=text_encoder, club=club,
                           train_steps=club_steps, batch_size=batch_size,
                           device=resolve_device_dtype(device, "auto")[0])  # fmt: skip
        console.print(f"EMID with {vision_encoder} + {text_encoder} (cached in {out / 'emid'})")
        report = run_inspect_emid(out, opts, console, results=results)
        return {"emid": {k: v for k, v in report.items() if k != "eval_dir"}}

    return add_emid
