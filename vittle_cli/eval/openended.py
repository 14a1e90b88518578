"""`vittle eval` for the LLM-judged suites (lbcoco, lbcoco-shift, lbwild, lbwilder, wvbench).

Three resumable stages, each cached in the eval folder so that a rerun redoes nothing:
  1. translations of the questions for the translation shifts ($VITTLE_CACHE/translations.jsonl), made
     once through the judge backend;
  2. the model's answers (predictions.jsonl, the same cache as the POPE suites);
  3. the judge's reviews (judgments.jsonl), `judge_runs` per answer, keyed by (judge, prompt, run).
Then relative scores per variant, category and group (RP = 100 * mean model / mean reference score).
The judge sees the clean question for every variant, as the reference protocol has no shifted context.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.fileio import write_json

# What results.json says about how its metrics read (the shape the POPE family's results use too).
TASK_INFO = {
    "name": "openended",
    "metric_keys": ["relative_score", "relative_score_std", "unparseable", "judgments", "n"],
    "primary_metric": "relative_score",
    "secondary_metric": None,
    "columns": [["RP", "relative_score", True], ["unparseable", "unparseable", False]],
    "options": {},
}
JUDGMENTS_NOTE = (
    "judge prompt: LLaVA eval_gpt_review_visual.py / _bench.py layout ([Context] / [Question] / "
    "[Assistant 1] = reference / [Assistant 2] = model / [System] = rule.json entry); the judge never sees "
    "the image and always gets the clean question; unparseable replies are counted, not averaged"
)


def run_openended_eval(
    suite,
    model: str,
    *,
    out: Path,
    judge_spec: str | None,
    judge_runs: int | None = None,
    judge_options=None,
    judge=None,
    batch_size: int = 16,
    limit: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    max_new_tokens: int | None = None,
    overwrite: bool = False,
    base: str | None = None,
    cache_dir: Path | None = None,
    generate=None,
    load_model=None,
    console=None,
    representation: bool = True,
    extend_results=None,
) -> dict:
    """Answer, judge and score an open-ended suite; write results.json, results.png and the caches.

    Args:
        judge_spec: --judge (an API model name, azure:DEPLOYMENT or hf:NAME_OR_PATH).
        judge_runs: judgments per answer (default: 3 for API judges, 1 for a local greedy judge).
        judge: a ready judge object (tests); replaces judge_spec.
        representation: also measure the internal representation shift (JSD) per shifted variant.
        extend_results: more results.json sections from the scored results (run_eval's argument).
    Raises:
        UsageError: no judge, bad options, a finished results.json without `overwrite`.
        DataError: bad data files. JudgeError: a judge that does not answer (work so far is kept).
    """
    from vittle_cli.data.shift.openended import load_openended_suite
    from vittle_cli.data.shift.questions import limit_items
    from vittle_cli.eval.judge.backends import JudgeOptions, make_judge
    from vittle_cli.eval.judge.cache import JUDGMENTS, JudgmentCache
    from vittle_cli.eval.openended_repr import LazyModel, representation_shift
    from vittle_cli.eval.predictions import PredictionCache
    from vittle_cli.eval.runner import RESULTS, _fingerprint

    _check_options(suite, out / RESULTS, judge is not None or bool(judge_spec), judge_runs, overwrite)
    max_new_tokens = max_new_tokens or suite.max_new_tokens
    data = load_openended_suite(suite)  # validates every file before any model or judge work
    items = limit_items(data.items, limit)
    # a local judge runs where the model does (`device` is resolved, never "auto")
    options = dataclasses.replace(judge_options or JudgeOptions(), device=device)
    judge = judge or make_judge(judge_spec, options)
    runs = judge_runs or judge.default_runs
    started = time.time()
    translated = translate_questions(suite, items, judge, console)
    fingerprint = _fingerprint(suite, model, max_new_tokens, base, dtype)  # answers depend on the dtype
    cache = PredictionCache(out, fingerprint, discard_other=overwrite)
    handle = LazyModel(load_model, model, base, dtype, device, console)
    computed = answer_missing(
        suite, handle, data, items, cache,
        batch_size=batch_size, max_new_tokens=max_new_tokens, cache_dir=cache_dir, generate=generate,
        console=console,
    )  # fmt: skip
    shift = (
        representation_shift(suite, data, items, handle, out, batch_size, cache_dir) if representation else {}
    )
    jobs = review_jobs(suite, data, items, cache)
    judgments = JudgmentCache(out / JUDGMENTS)
    requests = judge_missing(judge, jobs, runs, judgments, console)
    results = assemble_results(
        suite, model, data, items, jobs, judge.id, runs, judgments,
        limit=limit, max_new_tokens=max_new_tokens, seconds=time.time() - started,
        computed=computed, requests={"translations": translated, "judgments": requests}, shift=shift,
    )  # fmt: skip
    results.update(device=device, dtype=dtype)  # what this invocation ran on (auto resolved)
    if extend_results is not None:  # e.g. EMID; before the write, so results.json is never half of it
        results.update(extend_results(results, out, console))
    write_outputs(results, out, [cache.path, judgments.path], console)
    return results


def _check_options(
    suite, results_file: Path, has_judge: bool, judge_runs: int | None, overwrite: bool
) -> None:
    """Refuse a run without a judge, bad --judge-runs, or a finished results.json (without --overwrite)."""
    if not has_judge:
        raise UsageError(
            f"suite {suite.name!r} is scored by an LLM judge: pass --judge MODEL (e.g. gpt-4o with "
            "$OPENAI_API_KEY, --judge-url for a local vLLM/SGLang/Ollama server) or --judge hf:NAME_OR_PATH"
        )
    if judge_runs is not None and judge_runs < 1:
        raise UsageError(f"--judge-runs must be at least 1 (got {judge_runs})")
    if results_file.is_file() and not overwrite:
        raise UsageError(
            f"{results_file} exists (a finished eval); pass --overwrite to redo it "
            "(cached answers and judgments are reused) or choose another --out"
        )


def write_outputs(results: dict, out: Path, caches: list[Path], console) -> None:
    """results.json and results.png, and the table on the console."""
    from vittle_cli.eval.openended_report import plot_rp, print_rp_table
    from vittle_cli.eval.runner import CHART, RESULTS

    write_json(out / RESULTS, results)
    plot_rp(results, out / CHART)
    print_rp_table(results, console)
    console.print(f"wrote {out / RESULTS}, {out / CHART}, " + ", ".join(str(c) for c in caches))


def translate_questions(suite, items, judge, console) -> int:
    """Translate, once, every question a translation shift of the suite needs. Returns requests made."""
    from vittle_cli.data.shift.translate import (
        TRANSLATOR_SYSTEM,
        TranslationStore,
        translate_lang,
        translation_request,
    )

    store = TranslationStore()
    langs = sorted({translate_lang(v.text.name) for v in suite.variants if v.text is not None} - {None})
    todo = [(lang, it.text) for lang in langs for it in items if store.get(lang, it.text) is None]
    todo = list(dict.fromkeys(todo))
    if not todo:
        return 0
    console.print(f"translating {len(todo)} questions ({', '.join(langs)}) with {judge.id}")

    def keep(index: int, reply: str) -> None:
        lang, text = todo[index]
        store.add(lang, text, reply.strip(), judge.id)

    judge.complete([translation_request(lang, text) for lang, text in todo], keep, system=TRANSLATOR_SYSTEM)
    return len(todo)


def answer_missing(suite, handle, data, items, cache, *, batch_size, max_new_tokens, cache_dir, generate,
                   console) -> int:  # fmt: skip
    """Generate the answers the cache lacks, variant by variant, a chunk at a time. Returns how many."""
    from vittle_cli.data.shift.openended import variant_questions
    from vittle_cli.eval.answering import CHUNK_BATCHES, _progress

    todo = {v.name: [it for it in items if not cache.has(v.name, it.question_id)] for v in suite.variants}
    missing = sum(len(t) for t in todo.values())
    total = len(items) * len(suite.variants)
    if not missing:
        console.print(f"{suite.name}: all {total} answers cached in {cache.path}")
        return 0
    console.print(f"{suite.name}: {missing} of {total} answers to compute")
    from vittle_cli.eval.generate import GenerationRequest

    if generate is None:
        from vittle_cli.eval.generate import generate_answers as generate
    mdl, processor = handle.get()
    size = batch_size * CHUNK_BATCHES
    with _progress(console) as progress:
        task = progress.add_task("answers", total=missing)
        for variant in suite.variants:
            if not todo[variant.name]:
                continue
            progress.update(task, description=f"{variant.name:<28.28}")
            rows = list(variant_questions(suite, variant, data, todo[variant.name], cache_dir))
            for start in range(0, len(rows), size):
                chunk = rows[start : start + size]
                requests = [GenerationRequest(img, text, (variant.name, it.image)) for it, img, text in chunk]
                answers = generate(
                    mdl, processor, requests, batch_size=batch_size, max_new_tokens=max_new_tokens,
                    on_progress=lambda n: progress.advance(task, n),
                )  # fmt: skip
                cache.add(
                    [_record(variant, it, text, a) for (it, _, text), a in zip(chunk, answers, strict=True)]
                )
    return missing


def _record(variant, item, text: str, answer: str) -> dict:
    return {
        "variant": variant.name,
        "group": variant.group,
        "question_id": item.question_id,
        "split": item.category,
        "image": item.image,
        "text": text,
        "answer": answer,
    }


def review_jobs(suite, data, items, cache) -> list:
    """One review per (variant, question): the clean question, the reference first, the model second."""
    from vittle_cli.eval.judge.cache import JudgeJob
    from vittle_cli.eval.judge.prompt import Rule, review_prompt

    jobs = []
    for v in suite.variants:
        for it in items:
            answer = cache.get(v.name, it.question_id)["answer"]
            rule = Rule(**data.rules[it.rule])
            prompt = review_prompt(it.context, it.text, it.reference, answer, rule)
            jobs.append(JudgeJob(v.name, it.question_id, it.category, prompt))
    return jobs


def judge_missing(judge, jobs, runs: int, judgments, console) -> int:
    from vittle_cli.eval.answering import _progress
    from vittle_cli.eval.judge.cache import judge_jobs, judgment_key

    missing = sum(
        judgments.get(judgment_key(judge.id, j.prompt, r)) is None for r in range(runs) for j in jobs
    )
    if not missing:
        console.print(f"all {len(jobs) * runs} judgments cached in {judgments.path}")
        return 0
    console.print(
        f"judging {missing} of {len(jobs) * runs} reviews with {judge.id} ({runs} run(s) per answer)"
    )
    with _progress(console) as progress:
        task = progress.add_task("judgments", total=missing)
        return judge_jobs(judge, jobs, runs, judgments, lambda n: progress.advance(task, n))


def assemble_results(suite, model, data, items, jobs, judge_id, runs, judgments, *, limit, max_new_tokens,
                     seconds, computed, requests, shift) -> dict:  # fmt: skip
    from vittle_cli.eval.judge.cache import collect_scores
    from vittle_cli.eval.judge.scores import score_variant, summarise_rp
    from vittle_cli.eval.report import versions

    pairs = collect_scores(judge_id, jobs, runs, judgments)
    per_variant = {}
    for v in suite.variants:
        rows = [(it.category, pairs[(v.name, it.question_id)]) for it in items]
        per_variant[v.name] = score_variant(rows, runs)
    return {
        "suite": {"name": suite.name, "description": suite.description, "seed": suite.seed,
                  "data": suite.model_dump(mode="json")["data"]},
        "task": TASK_INFO,
        "model": str(model),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "judge": {"id": judge_id, "runs": runs, "temperature": 0.0, "requests": requests, "protocol": JUDGMENTS_NOTE},
        "prompt_suffix": suite.prompt_suffix,
        "max_new_tokens": max_new_tokens,
        "limit_per_split": limit,
        "seeding": "visual: sha256(suite seed, visual spec, image key); text: sha256(suite seed, text spec, "
        "question id); translations: made once by the judge backend, cached by (language, question)",
        "variants": [v.model_dump(mode="json") for v in suite.variants],
        "data_report": data.report,
        "questions_per_variant": len(items),
        "answers_computed": computed,
        "seconds": round(seconds, 2),
        "metrics": per_variant,
        "summary": summarise_rp(per_variant, {v.name: v.group for v in suite.variants}),
        "representation_shift": shift,
        "representation_shift_note": "matrix-based JSD (nats) between clean and shifted prompts' hidden states "
        "after the bottleneck layer, mean-pooled per sample over visual / text tokens (vittle_cli/model/"
        "repr_metrics.py); the EMID JSD terms on external encoders are another quantity",
    }  # fmt: skip
