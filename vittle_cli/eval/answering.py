"""Compute the missing answers of an eval: chunking across variants, prefetching images, the progress bar.

Variants that show the same image (clean and every text-only variant; a visual variant and the joint
variants with the same visual shift) are answered together: their questions on one image carry one
generation group, (visual shift, image keys), so the engine encodes that image and the shared prompt
prefix once for all of them instead of once per variant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from vittle_cli.data.shift.cache import default_cache_dir
from vittle_cli.data.shift.items import EvalItem, ItemSet
from vittle_cli.data.shift.questions import SuiteQuestion, shifted_image, shifted_question
from vittle_cli.data.shift.suite import Suite, Variant
from vittle_cli.eval.tasks import TaskFamily

T = TypeVar("T")
CHUNK_BATCHES = 4  # questions handed to the generator at a time = batch_size x this (bounds memory)

Pending = list[tuple[Variant, SuiteQuestion]]


def visual_key(variant: Variant) -> str | None:
    """What decides the image a variant shows: its visual shift (None: the clean image)."""
    return variant.visual.spec if variant.visual is not None else None


def shard_items(items: list[EvalItem], rank: int, world: int) -> list[EvalItem]:
    """This process's share: whole images (all questions on an image stay together, so prefixes are
    shared within one process), dealt round-robin in first-appearance order."""
    if world <= 1:
        return list(items)
    order = {k: n for n, k in enumerate(dict.fromkeys(it.images for it in items))}
    return [it for it in items if order[it.images] % world == rank]


def iter_work(
    suite: Suite,
    task: TaskFamily,
    todo: dict[str, list[EvalItem]],
    data: ItemSet,
    size: int,
    cache_dir: Path | None,
) -> Iterator[Pending]:
    """Chunks of about `size` (variant, question) pairs, whole images only. Variants with the same visual
    shift are walked together, image by image, so each image is loaded and shifted once for all of them."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    families: dict[str | None, list[Variant]] = {}
    for v in suite.variants:
        if todo.get(v.name):
            families.setdefault(visual_key(v), []).append(v)
    for variants in families.values():
        wanted = {v.name: {it.question_id for it in todo[v.name]} for v in variants}
        by_images: dict[tuple[str, ...], list[EvalItem]] = {}
        for v in variants:
            for it in todo[v.name]:
                by_images.setdefault(it.images, [])
                if it not in by_images[it.images]:
                    by_images[it.images].append(it)
        pending: Pending = []
        for keys, group in by_images.items():
            images = tuple(shifted_image(suite, variants[0], data, k, cache) for k in keys)
            for v in variants:
                for it in group:
                    if it.question_id in wanted[v.name]:
                        text = task.prompt(suite, it, shifted_question(suite, v, it))
                        pending.append(
                            (v, SuiteQuestion(it.question_id, it.split, keys, images, text, it.label, it))
                        )
            if len(pending) >= size:
                yield pending
                pending = []
        if pending:
            yield pending


def prefetch(items: Iterator[T]) -> Iterator[T]:
    """Produce the next item in a background thread while the caller works on this one, so loading and
    perturbing images overlaps with generation. One producer at a time, and perturbations seed the global
    RNGs per sample while greedy generation draws from none, so the thread changes no result."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vittle-prefetch") as pool:
        future = pool.submit(next, items, None)
        while (item := future.result()) is not None:
            future = pool.submit(next, items, None)
            yield item


def answer_missing(
    work: Iterator[Pending],
    total: int,
    generate: Callable,
    model,
    processor,
    on_answers: Callable[[Pending, list[str]], None],
    *,
    batch_size: int,
    max_new_tokens: int,
    console,
) -> None:
    """Generate the answers of every chunk of `work` and hand them to `on_answers` as they come."""
    from vittle_cli.eval.generate import GenerationRequest

    with _progress(console) as progress:
        bar = progress.add_task("questions", total=total)
        for chunk in prefetch(work):
            names = list(dict.fromkeys(v.name for v, _ in chunk))
            progress.update(bar, description=f"{' '.join(names):<28.28}")
            requests = [GenerationRequest(q.images, q.text, (visual_key(v), q.image_keys)) for v, q in chunk]
            answers = generate(
                model,
                processor,
                requests,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                on_progress=lambda n: progress.advance(bar, n),
            )
            on_answers(chunk, answers)


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
