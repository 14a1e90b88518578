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
from functools import partial
from pathlib import Path
from typing import TypeVar

from vittle_cli.data.shift import Suite, Variant, load_suite
from vittle_cli.data.shift.questions import SuiteQuestion, iter_image_groups, limit_items
from vittle_cli.errors import UsageError
from vittle_cli.eval.metrics import summarise_variants
from vittle_cli.eval.predictions import PredictionCache
from vittle_cli.eval.report import plot_results, print_table, versions
from vittle_cli.eval.tasks import TaskFamily, get_task
from vittle_cli.fileio import write_json

T = TypeVar("T")
RESULTS = "results.json"
CHART = "results.png"
DTYPES = ("float32", "bfloat16", "float16", "auto")
CHUNK_BATCHES = 4  # questions handed to the generator at a time = batch_size x this (bounds memory)


def default_out_dir(model: str, suite_name: str) -> Path:
    """evals/<model as a slug>/<suite>, relative to the working directory."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(model).strip("/")).strip("-.") or "model"
    return Path("evals") / slug / suite_name


def _fingerprint(suite: Suite, model: str, max_new_tokens: int, base: str | None) -> dict:
    """What the cached answers depend on. Limit and batch size are left out: they change which answers
    exist or how fast they come, not what any one answer is."""
    spec = suite.model_dump(mode="json", exclude={"description", "metrics"})
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "model": str(model),
        "base": base,
        "suite": suite.name,
        "suite_sha": digest,
        "max_new_tokens": max_new_tokens,
    }


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


def _record(variant: Variant, q: SuiteQuestion, answer: str, task: TaskFamily) -> dict:
    rec = {
        "variant": variant.name,
        "group": variant.group,
        "question_id": q.question_id,
        "split": q.split,
        "image": q.image_key,
        "text": q.text,
        "answer": answer,
        "label": q.label,
    }
    if len(q.image_keys) > 1:
        rec["images"] = list(q.image_keys)
    return {**rec, **(task.record_fields(q.item) if q.item is not None else {})}


def run_eval(
    suite: str | Suite,
    model: str,
    *,
    out: Path | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    max_new_tokens: int | None = None,
    overwrite: bool = False,
    base: str | None = None,
    data_vars: dict[str, str] | None = None,
    pope_files: dict[str, str | None] | None = None,
    cache_dir: Path | None = None,
    generate: Callable | None = None,
    load_model: Callable | None = None,
    console=None,
) -> dict:
    """Evaluate `model` on `suite`; write results.json, predictions.jsonl and results.png into `out`.

    Args:
        suite: a shipped suite name, a suite YAML path, or a loaded Suite.
        model: anything load_vittle_model takes (run dir, model dir, adapter dir, hub name, builtin:...).
        limit: the first N questions of each split.
        data_vars / pope_files: fill `${var}` placeholders / replace the POPE paths of the suite.
        generate, load_model: replace generate_answers / load_vittle_model (tests, other engines).
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
    task = get_task(suite.task)
    problems = task.check_suite(suite)
    if problems:
        raise UsageError(f"suite {suite.name!r} does not fit task {task.name!r}: " + "; ".join(problems))
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {limit})")
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)} (got {dtype!r})")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (got {batch_size})")
    max_new_tokens = max_new_tokens or suite.max_new_tokens
    out = Path(out) if out is not None else default_out_dir(model, suite.name)
    if (out / RESULTS).is_file() and not overwrite:
        raise UsageError(
            f"{out / RESULTS} exists (a finished eval); pass --overwrite to redo it "
            "(cached answers are reused) or choose another --out"
        )
    data = task.load(suite)  # validates every file before any model work
    for w in data.report.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    items = limit_items(data.items, limit)
    cache = PredictionCache(out, _fingerprint(suite, model, max_new_tokens, base), discard_other=overwrite)
    todo = {v.name: [it for it in items if not cache.has(v.name, it.question_id)] for v in suite.variants}
    missing = sum(len(t) for t in todo.values())
    started = time.time()
    if missing:
        console.print(
            f"{suite.name}: {missing} of {len(items) * len(suite.variants)} answers to compute "
            f"({len(suite.variants)} variants x {len(items)} questions)"
        )
        _answer(
            suite,
            task,
            model,
            todo,
            data,
            cache,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            device=device,
            dtype=dtype,
            base=base,
            cache_dir=cache_dir,
            generate=generate,
            load_model=load_model,
            console=console,
        )
    else:
        console.print(f"{suite.name}: all {len(items) * len(suite.variants)} answers cached in {cache.path}")
    results = _results(
        suite,
        task,
        model,
        items,
        cache,
        data,
        limit=limit,
        max_new_tokens=max_new_tokens,
        seconds=time.time() - started,
        computed=missing,
        resources=task.resources(suite, out, console) if items else None,
    )
    write_json(out / RESULTS, results)
    plot_results(results, out / CHART)
    print_table(results, console)
    console.print(f"wrote {out / RESULTS}, {out / CHART}, {cache.path}")
    return results


def _answer(
    suite,
    task,
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
    work = _prefetch(_chunks(suite, task, todo, data, batch_size * CHUNK_BATCHES, cache_dir))
    with _progress(console) as progress:
        bar = progress.add_task("questions", total=sum(len(t) for t in todo.values()))
        for variant, questions in work:
            progress.update(bar, description=f"{variant.name:<28.28}")
            requests = [GenerationRequest(q.images, q.text, (variant.name, q.image_keys)) for q in questions]
            answers = generate(
                mdl,
                processor,
                requests,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                on_progress=lambda n: progress.advance(bar, n),
            )
            cache.add([_record(variant, q, a, task) for q, a in zip(questions, answers, strict=True)])


def _chunks(suite, task, todo, data, size, cache_dir) -> Iterator[tuple[Variant, list[SuiteQuestion]]]:
    """(variant, questions) chunks of about `size` questions, whole images only, in suite order."""
    prompt = partial(task.prompt, suite)
    for variant in suite.variants:
        if not todo[variant.name]:
            continue
        pending: list[SuiteQuestion] = []
        for group in iter_image_groups(suite, variant, data, todo[variant.name], cache_dir, prompt):
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


def _results(
    suite, task, model, items, cache, data, *, limit, max_new_tokens, seconds, computed, resources
) -> dict:
    """Score the cached answers of exactly `items` for every variant and assemble results.json."""
    by_id = {it.question_id: it for it in items}
    per_variant = {}
    for v in suite.variants:
        records = [cache.get(v.name, it.question_id) for it in items]
        per_variant[v.name] = task.score(records, by_id, resources)
    summary = summarise_variants(
        per_variant, {v.name: v.group for v in suite.variants}, task.metric_keys, task.drop_metrics
    )
    return {
        "task": {
            "name": task.name,
            "metric_keys": list(task.metric_keys),
            "primary_metric": task.primary_metric,
            "secondary_metric": task.secondary_metric,
            "columns": [[c.header, c.key, c.percent] for c in task.columns],
            "options": suite.task_options,
        },
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
