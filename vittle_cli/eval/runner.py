"""`vittle eval`: answer every question of every variant of a suite, cache the answers, score, report.

Answers stream into predictions.jsonl keyed by (variant, question_id): an interrupted eval resumes
without repeating work, and a rerun over a complete cache scores without loading the model at all.
Under a launcher (`--nproc-per-node N`), each process answers its shard of the images into its own part
of the cache; process 0 then merges the parts and writes the same files a single process would.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from vittle_cli.data.shift import Suite, Variant, load_suite
from vittle_cli.data.shift.questions import SuiteQuestion, limit_items
from vittle_cli.errors import UsageError
from vittle_cli.eval.answering import CHUNK_BATCHES, answer_missing, iter_work, shard_items
from vittle_cli.eval.metrics import summarise_variants
from vittle_cli.eval.predictions import PredictionCache, check_fingerprint
from vittle_cli.eval.report import plot_results, print_table, versions
from vittle_cli.eval.shards import Shards
from vittle_cli.eval.tasks import TaskFamily, get_task
from vittle_cli.fileio import write_json

RESULTS = "results.json"
CHART = "results.png"


def default_out_dir(model: str, suite_name: str) -> Path:
    """evals/<model as a slug>/<suite>, relative to the working directory."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(model).strip("/")).strip("-.") or "model"
    return Path("evals") / slug / suite_name


def _fingerprint(
    suite: Suite, model: str, max_new_tokens: int, base: str | None, dtype: str = "float32"
) -> dict:
    """What the cached answers depend on: the model's files (a model retrained in place must not reuse
    its old answers), the suite, and the generation settings (reduced precision changes some greedy
    answers). Limit, batch size, device and process count are left out: they change which answers exist
    or how fast they come, not what any one answer is."""
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
    """Check --out is a folder (or absent) and hold its lock for this process (a PathLock); in a sharded
    eval only process 0 holds it (the others write their own parts under it).

    Raises:
        UsageError: --out is a file, or another vittle process writes into it (exit 2).
    """
    from vittle_cli.fileio import PathLock
    from vittle_cli.launch import world_from_env

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder (it is created if missing)")
    if world_from_env()[0] != 0:
        return None
    return PathLock(out, "eval folder", "choose another --out").acquire()


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


def _check_options(limit: int | None, batch_size: int) -> None:
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {limit})")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1 (got {batch_size})")


def prepare_suite(suite: str | Suite, data_vars=None, pope_files=None) -> tuple[Suite, TaskFamily]:
    """The suite with its data paths filled, and its task family (checked against it)."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    suite = suite.with_data(data_vars, **(pope_files or {}))
    task = get_task(suite.task)
    problems = task.check_suite(suite)
    if problems:
        raise UsageError(f"suite {suite.name!r} does not fit task {task.name!r}: " + "; ".join(problems))
    return suite, task


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
    extend_results: Callable | None = None,
) -> dict:
    """Evaluate `model` on `suite`; write results.json, predictions.jsonl and results.png into `out`.

    Args:
        suite: a shipped suite name, a suite YAML path, or a loaded Suite.
        model: anything load_vittle_model takes (run dir, model dir, adapter dir, hub name, builtin:...).
        limit: the first N questions of each split.
        device, dtype: "auto" picks CUDA + bfloat16 when a GPU is visible, else CPU + float32.
        data_vars / pope_files: fill `${var}` placeholders / replace the POPE paths of the suite.
        generate, load_model: replace generate_answers / load_vittle_model (tests, other engines).
        judge, judge_runs, judge_options, judge_backend: the LLM judge of the open-ended suites
            (vittle_cli.eval.openended); judge_backend is a ready judge object (tests).
        extend_results: `(results, out, console) -> dict` of more results.json sections, computed from
            the scored results and the eval folder before results.json is written (the commands layer
            adds EMID this way: eval does not import inspect).
    Returns:
        The results document (also written to results.json); {} in the non-main processes of a
        sharded eval.
    Raises:
        UsageError: finished results.json without `overwrite`, bad suite or options.
        DataError / ModelError: bad data files, a model that cannot be loaded.
    """
    from rich.console import Console

    from vittle_cli.model.device import resolve_device_dtype

    console = console or Console(stderr=True)
    suite, task = prepare_suite(suite, data_vars, pope_files)
    _check_options(limit, batch_size)
    device, dtype = resolve_device_dtype(device, dtype)
    if load_model is None:  # a bad --model fails now, before any work, with every command's message
        from vittle_cli.model.reference import loadable_model_ref

        loadable_model_ref(model)
    max_new_tokens = max_new_tokens or suite.max_new_tokens
    out = Path(out) if out is not None else default_out_dir(model, suite.name)
    lock = _lock_out(out)
    try:
        return _run_eval_locked(
            suite, task, model, out, batch_size=batch_size, limit=limit, device=device, dtype=dtype,
            max_new_tokens=max_new_tokens, overwrite=overwrite, base=base, cache_dir=cache_dir,
            generate=generate, load_model=load_model, console=console, judge=judge, judge_runs=judge_runs,
            judge_options=judge_options, judge_backend=judge_backend, extend_results=extend_results,
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _run_eval_locked(
    suite, task, model, out, *, batch_size, limit, device, dtype, max_new_tokens, overwrite, base, cache_dir,
    generate, load_model, console, judge, judge_runs, judge_options, judge_backend, extend_results,
) -> dict:  # fmt: skip
    """run_eval's body, with --out locked."""
    from rich.console import Console

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
            generate=generate, load_model=load_model, console=console, extend_results=extend_results,
        )  # fmt: skip
    data = task.load(suite)  # validates every file before any model work
    items = limit_items(data.items, limit)
    fingerprint = _fingerprint(suite, model, max_new_tokens, base, dtype)
    check_fingerprint(out, fingerprint, discard_other=overwrite)  # same verdict in every process
    shards = Shards.from_env()
    try:
        if not shards.is_main:
            console = Console(stderr=True, quiet=True)
        for w in data.report.warnings:
            console.print(f"[yellow]warning:[/] {w}")
        device = shards.device(device)
        console.print(
            f"device {device}, dtype {dtype}" + (f", {shards.world} processes" if shards.world > 1 else "")
        )
        cache = _open_cache(out, fingerprint, overwrite, shards)
        if cache.discarded:
            console.print(
                f"cached answers in {out} came from a different eval ({', '.join(cache.discarded)} changed): "
                "discarded, recomputing"
            )
        computed = sum(not cache.has(v.name, it.question_id) for v in suite.variants for it in items)
        started = time.time()
        _answer_shard(suite, task, model, items, data, cache, shards, batch_size=batch_size,
                      max_new_tokens=max_new_tokens, device=device, dtype=dtype, base=base, cache_dir=cache_dir,
                      generate=generate, load_model=load_model, console=console)  # fmt: skip
        shards.barrier()  # every shard's answers are on disk
        if not shards.is_main:
            return {}
        cache.finalize((v.name, it.question_id) for v in suite.variants for it in items)
        results = _results(
            suite, task, model, items, cache, data, limit=limit, max_new_tokens=max_new_tokens,
            seconds=time.time() - started, computed=computed,
            resources=task.resources(suite, out, console) if items else None,
            runtime={"device": device, "dtype": dtype, "processes": shards.world},
        )  # fmt: skip
    finally:
        shards.close()
    if extend_results is not None:
        results.update(extend_results(results, out, console))
    write_json(out / RESULTS, results)
    plot_results(results, out / CHART)
    print_table(results, console)
    console.print(f"wrote {out / RESULTS}, {out / CHART}, {cache.main}")
    return results


def _open_cache(out: Path, fingerprint: dict, overwrite: bool, shards: Shards) -> PredictionCache:
    """Process 0 opens the cache first (it may discard another eval's answers), then the others."""
    part = shards.rank if shards.world > 1 else None
    cache = None
    if shards.is_main:
        cache = PredictionCache(out, fingerprint, discard_other=overwrite, part=part)
    shards.barrier()
    if cache is None:
        cache = PredictionCache(out, fingerprint, discard_other=overwrite, part=part, owner=False)
    return cache


def _answer_shard(suite, task, model, items, data, cache, shards: Shards, **kw) -> None:
    """Compute this process's missing answers (all of them in a one-process eval)."""
    mine = shard_items(items, shards.rank, shards.world)
    todo = {v.name: [it for it in mine if not cache.has(v.name, it.question_id)] for v in suite.variants}
    missing = sum(len(t) for t in todo.values())
    total = len(mine) * len(suite.variants)
    if not missing:
        kw["console"].print(f"{suite.name}: all {total} answers cached in {cache.dir}")
        return
    kw["console"].print(
        f"{suite.name}: {missing} of {total} answers to compute ({len(suite.variants)} variants x {len(mine)} "
        "questions)"
    )
    _answer(suite, task, model, todo, data, cache, missing, **kw)


def _answer(
    suite, task, model, todo, data, cache, total, *, batch_size, max_new_tokens, device, dtype, base,
    cache_dir, generate, load_model, console,
) -> None:  # fmt: skip
    """Load the model and generate the missing answers, appending them to the cache as they come."""
    if generate is None:
        from vittle_cli.eval.generate import generate_answers as generate
    if load_model is None:
        from vittle_cli.model.checkpoint import load_vittle_model as load_model
    console.print(f"loading {model} ({dtype}, {device})")
    mdl, processor = load_model(model, base=base, dtype=dtype, device=device)
    work = iter_work(suite, task, todo, data, batch_size * CHUNK_BATCHES, cache_dir)

    def store(chunk, answers) -> None:
        cache.add([_record(v, q, a, task) for (v, q), a in zip(chunk, answers, strict=True)])

    answer_missing(
        work, total, generate, mdl, processor, store,
        batch_size=batch_size, max_new_tokens=max_new_tokens, console=console,
    )  # fmt: skip


def _results(
    suite, task, model, items, cache, data, *, limit, max_new_tokens, seconds, computed, resources, runtime
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
        **runtime,
        "prompt_suffix": suite.prompt_suffix,
        "max_new_tokens": max_new_tokens,
        "limit_per_split": limit,
        "question_ids": hashlib.sha256("\n".join(sorted(by_id)).encode()).hexdigest()[:16],
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
