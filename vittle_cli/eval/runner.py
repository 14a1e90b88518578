"""`vittle eval`: answer every question of every variant of a suite, cache the answers, score, report.

Answers stream into predictions.jsonl keyed by (variant, question_id): an interrupted eval resumes
without repeating work, and a rerun over a complete cache scores without loading the model at all.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from vittle_cli.data.shift import Suite, Variant, load_suite, load_suite_data
from vittle_cli.data.shift.questions import SuiteQuestion, iter_image_groups, limit_items
from vittle_cli.errors import UsageError
from vittle_cli.eval.metrics import score_predictions, summarise_variants
from vittle_cli.eval.predictions import PredictionCache
from vittle_cli.eval.report import plot_results, print_table, versions
from vittle_cli.fileio import write_json

T = TypeVar("T")
RESULTS = "results.json"
CHART = "results.png"
CHUNK_BATCHES = 4  # questions handed to the generator at a time = batch_size x this (bounds memory)


def default_out_dir(model: str, suite_name: str) -> Path:
    """evals/<model as a slug>/<suite>, relative to the working directory."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(model).strip("/")).strip("-.") or "model"
    return Path("evals") / slug / suite_name


def _fingerprint(
    suite: Suite, model: str, max_new_tokens: int, base: str | None, dtype: str = "float32"
) -> dict:
    """What the cached answers depend on: the model's files (a model retrained in place must not reuse
    its old answers), the suite, and the generation settings (reduced precision changes some greedy
    answers). Limit and batch size are left out: they change which answers exist or how fast they come,
    not what any one answer is."""
    from vittle_cli.model.fingerprint import weights_fingerprint

    spec = suite.model_dump(mode="json", exclude={"description", "metrics"})
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "model": str(model),
        "model_files": weights_fingerprint(str(model), base),
        "base": base,
        "suite": suite.name,
        "suite_sha": digest,
        "max_new_tokens": max_new_tokens,
        "dtype": dtype,
        "decoding": "greedy",
    }


def _lock_out(out: Path):
    """Check --out is a folder (or absent) and hold its lock for this process (a PathLock).

    Raises:
        UsageError: --out is a file, or another vittle process writes into it (exit 2).
    """
    from vittle_cli.fileio import PathLock

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder (it is created if missing)")
    return PathLock(out, "eval folder", "choose another --out").acquire()


def _progress(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.1f} q/s" if task.speed else "- q/s")

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _record(variant: str, group: str, q: SuiteQuestion, answer: str) -> dict:
    return {
        "variant": variant,
        "group": group,
        "question_id": q.question_id,
        "split": q.split,
        "image": q.image_key,
        "text": q.text,
        "answer": answer,
        "label": q.label,
    }


# long: the public entry point; its keyword options mirror `vittle eval`'s flags one per line.
def run_eval(
    suite: str | Suite,
    model: str,
    *,
    out: Path | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    max_new_tokens: int | None = None,
    overwrite: bool = False,
    base: str | None = None,
    data_vars: dict[str, str] | None = None,
    pope_files: dict[str, str | None] | None = None,
    cache_dir: Path | None = None,
    generate: Callable | None = None,
    load_model: Callable | None = None,
    console=None,
    judge: str | None = None,
    judge_runs: int | None = None,
    judge_options=None,
    judge_backend=None,
) -> dict:
    """Evaluate `model` on `suite`; write results.json, predictions.jsonl and results.png into `out`.

    Args:
        suite: a shipped suite name, a suite YAML path, or a loaded Suite.
        model: anything load_vittle_model takes (run dir, model dir, adapter dir, hub name, builtin:...).
        limit: the first N questions of each split.
        data_vars / pope_files: fill `${var}` placeholders / replace the POPE paths of the suite.
        generate, load_model: replace generate_answers / load_vittle_model (tests, other engines).
        judge, judge_runs, judge_options, judge_backend: the LLM judge of the open-ended suites
            (vittle_cli.eval.openended); judge_backend is a ready judge object (tests).
    Returns:
        The results document (also written to results.json).
    Raises:
        UsageError: finished results.json without `overwrite`, bad suite or options.
        DataError / ModelError: bad data files, a model that cannot be loaded.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    suite = suite.with_data(data_vars, **(pope_files or {}))
    device, dtype = _check_options(model, limit, batch_size, device, dtype, check_model=load_model is None)
    max_new_tokens = max_new_tokens or suite.max_new_tokens
    out = Path(out) if out is not None else default_out_dir(model, suite.name)
    lock = _lock_out(out)
    try:
        return _run_eval_locked(
            suite, model, out, batch_size=batch_size, limit=limit, device=device, dtype=dtype,
            max_new_tokens=max_new_tokens, overwrite=overwrite, base=base, cache_dir=cache_dir,
            generate=generate, load_model=load_model, console=console, judge=judge, judge_runs=judge_runs,
            judge_options=judge_options, judge_backend=judge_backend,
        )  # fmt: skip
    finally:
        lock.release()


def _run_eval_locked(
    suite, model, out, *, batch_size, limit, device, dtype, max_new_tokens, overwrite, base, cache_dir,
    generate, load_model, console, judge, judge_runs, judge_options, judge_backend,
) -> dict:  # fmt: skip
    """run_eval's body, with --out locked."""
    if (out / RESULTS).is_file() and not overwrite:
        raise UsageError(
            f"{out / RESULTS} exists (a finished eval); pass --overwrite to redo it "
            "(cached answers are reused) or choose another --out"
        )
    if suite.is_openended:
        from vittle_cli.eval.openended import run_openended_eval

        return run_openended_eval(
            suite, model, out=out, judge_spec=judge, judge_runs=judge_runs, judge_options=judge_options,
            judge=judge_backend, batch_size=batch_size, limit=limit, device=device, dtype=dtype,
            max_new_tokens=max_new_tokens, overwrite=overwrite, base=base, cache_dir=cache_dir,
            generate=generate, load_model=load_model, console=console,
        )  # fmt: skip
    data = load_suite_data(suite)  # validates every file before any model work
    for w in data.report.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    items = [it for it in limit_items(data.items, limit) if it.label is not None]
    fingerprint = _fingerprint(suite, model, max_new_tokens, base, dtype)
    cache = PredictionCache(out, fingerprint, discard_other=overwrite)
    if cache.discarded:
        console.print(
            f"cached answers in {out} came from a different eval ({', '.join(cache.discarded)} changed): "
            "discarded, recomputing"
        )
    todo = {v.name: [it for it in items if not cache.has(v.name, it.question_id)] for v in suite.variants}
    missing = sum(len(t) for t in todo.values())
    started = time.time()
    if missing:
        console.print(
            f"{suite.name}: {missing} of {len(items) * len(suite.variants)} answers to compute "
            f"({len(suite.variants)} variants x {len(items)} questions)"
        )
        _answer(
            suite, model, todo, data, cache, batch_size=batch_size, max_new_tokens=max_new_tokens,
            device=device, dtype=dtype, base=base, cache_dir=cache_dir, generate=generate,
            load_model=load_model, console=console,
        )  # fmt: skip
    else:
        console.print(f"{suite.name}: all {len(items) * len(suite.variants)} answers cached in {cache.path}")
    return _write_results(
        _results(
            suite, model, items, cache, data,
            limit=limit, max_new_tokens=max_new_tokens, seconds=time.time() - started, computed=missing,
        ),
        out, cache, console, device=device, dtype=dtype,
    )  # fmt: skip


def _write_results(results: dict, out: Path, cache, console, *, device: str, dtype: str) -> dict:
    """Record what this invocation ran on, write results.json + results.png, print the table."""
    results.update(device=device, dtype=dtype)  # auto resolved
    write_json(out / RESULTS, results)
    plot_results(results, out / CHART)
    print_table(results, console)
    console.print(f"wrote {out / RESULTS}, {out / CHART}, {cache.path}")
    return results


def _check_options(model, limit, batch_size, device, dtype, check_model: bool) -> tuple[str, str]:
    """Refuse bad options before any work; returns (device, dtype) with `auto` resolved."""
    from vittle_cli.model.device import resolve_device_dtype

    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {limit})")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (got {batch_size})")
    if check_model:  # a bad --model fails now with every command's message (not after data loading)
        from vittle_cli.model.reference import loadable_model_ref

        loadable_model_ref(model)
    return resolve_device_dtype(device, dtype)


def _answer(
    suite,
    model,
    todo,
    data,
    cache,
    *,
    batch_size,
    max_new_tokens,
    device,
    dtype,
    base,
    cache_dir,
    generate,
    load_model,
    console,
) -> None:
    """Generate the missing answers variant by variant, a chunk of images at a time, appending to the cache."""
    from vittle_cli.eval.generate import GenerationRequest

    if generate is None:
        from vittle_cli.eval.generate import generate_answers as generate
    if load_model is None:
        from vittle_cli.model.checkpoint import load_vittle_model as load_model
    console.print(f"loading {model} ({dtype}, {device})")
    mdl, processor = load_model(model, base=base, dtype=dtype, device=device)
    work = _prefetch(_chunks(suite, todo, data, batch_size * CHUNK_BATCHES, cache_dir))
    with _progress(console) as progress:
        task = progress.add_task("questions", total=sum(len(t) for t in todo.values()))
        for variant, questions in work:
            progress.update(task, description=f"{variant.name:<28.28}")
            requests = [GenerationRequest(q.image, q.text, (variant.name, q.image_key)) for q in questions]
            answers = generate(
                mdl,
                processor,
                requests,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                on_progress=lambda n: progress.advance(task, n),
            )
            cache.add(
                [_record(variant.name, variant.group, q, a) for q, a in zip(questions, answers, strict=True)]
            )


def _chunks(suite, todo, data, size, cache_dir) -> Iterator[tuple[Variant, list[SuiteQuestion]]]:
    """(variant, questions) chunks of about `size` questions, whole images only, in suite order."""
    for variant in suite.variants:
        if not todo[variant.name]:
            continue
        pending: list[SuiteQuestion] = []
        for group in iter_image_groups(suite, variant, data, todo[variant.name], cache_dir):
            pending += group
            if len(pending) >= size:
                yield variant, pending
                pending = []
        if pending:
            yield variant, pending


def _prefetch(items: Iterator[T]) -> Iterator[T]:
    """Produce the next item in a background thread while the caller works on this one, so loading and
    perturbing images overlaps with generation. One producer at a time, and perturbations seed the global
    RNGs per sample while greedy generation draws from none, so the thread changes no result."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vittle-prefetch") as pool:
        future = pool.submit(next, items, None)
        while (item := future.result()) is not None:
            future = pool.submit(next, items, None)
            yield item


def _results(suite, model, items, cache, data, *, limit, max_new_tokens, seconds, computed) -> dict:
    """Score the cached answers of exactly `items` for every variant and assemble results.json."""
    per_variant = {}
    for v in suite.variants:
        per_variant[v.name] = score_predictions(cache.get(v.name, it.question_id) for it in items)
    summary = summarise_variants(per_variant, {v.name: v.group for v in suite.variants})
    return {
        "suite": {
            "name": suite.name,
            "description": suite.description,
            "seed": suite.seed,
            "splits": suite.splits,
            "data": suite.model_dump(mode="json")["data"],
        },
        "model": str(model),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "prompt_suffix": suite.prompt_suffix,
        "max_new_tokens": max_new_tokens,
        "limit_per_split": limit,
        "seeding": "visual: sha256(suite seed, visual spec, image key); text: sha256(suite seed, text spec, "
        "question id)",
        "variants": [v.model_dump(mode="json") for v in suite.variants],
        "data_report": data.report.to_json(),
        "questions_per_variant": len(items),
        "answers_computed": computed,
        "seconds": round(seconds, 2),
        "metrics": per_variant,
        "summary": summary,
    }
