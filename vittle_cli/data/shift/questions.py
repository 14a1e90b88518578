"""Materialise a suite variant as model-ready questions (used by `vittle eval` and `vittle inspect`).

    from vittle_cli.data.shift import load_suite, suite_questions
    suite = load_suite("shapes-shift")
    qs = suite_questions(suite, "snow@3+char_delete@3", limit_per_split=20)
    qs[0].image, qs[0].text, qs[0].label     # PIL image, question + prompt suffix, "yes"

Seeding: the visual perturbation of an image is seeded by (suite seed, visual spec, image key) and the
text perturbation of a question by (suite seed, text spec, question id). A joint variant therefore shows
exactly the image of its visual variant and the question of its text variant, and every question on one
image shares one perturbed image object (generation reuses its prefix cache).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image

from vittle_cli.data.shift.cache import cached_perturbed_image, default_cache_dir
from vittle_cli.data.shift.items import EvalItem, ItemSet
from vittle_cli.data.shift.registry import derive_seed
from vittle_cli.data.shift.suite import PopeFiles, Suite, Variant
from vittle_cli.data.shift.text import perturb_question
from vittle_cli.data.shift.visual import perturb_image
from vittle_cli.errors import UsageError


@dataclass(frozen=True)
class SuiteQuestion:
    """One question of one variant, ready for the model.

    question_id: id from the question file (a string). split: the split it is scored in. image_keys: the
    images' keys in the data's ImageSource (one key = one picture). images: the (perturbed) RGB images,
    none for a text-only question. text: the prompt text, the (perturbed) question + the suite's
    instruction; only the question is ever perturbed. label: the reference answer, or None.
    item: the unperturbed EvalItem (options and metadata for scorers).
    """

    question_id: str
    split: str
    image_keys: tuple[str, ...]
    images: tuple[Image.Image, ...]
    text: str
    label: str | None
    item: EvalItem | None = None

    @property
    def image(self) -> Image.Image | None:
        """The first image, or None for a text-only question."""
        return self.images[0] if self.images else None

    @property
    def image_key(self) -> str | None:
        return self.image_keys[0] if self.image_keys else None


PromptFn = Callable[[EvalItem, str], str]


def suffix_prompt(suite: Suite) -> PromptFn:
    """The default prompt: the (perturbed) question followed by the suite's instruction, once."""
    return lambda item, question: question + suite.prompt_suffix


def load_suite_data(suite: Suite, *, check_images: bool = True) -> ItemSet:
    """Load (and validate) the suite's POPE questions and labels, from whichever layout they are in.

    Raises:
        UsageError: POPE paths still hold ${placeholders} (names the CLI option that fills them).
        DataError: no data, missing or malformed files (see data/shift/pope_layout.py).
    """
    from vittle_cli.data.shift.pope_layout import load_pope_files, no_data_message

    if isinstance(suite.data, str):
        from vittle_cli.data.shapes import resolve_builtin_data

        d = resolve_builtin_data(suite.data)
        files = PopeFiles(
            questions=str(d.pope_questions), labels_dir=str(d.pope_labels_dir), image_root=str(d.image_root)
        )
    else:
        files = suite.data.pope
        todo = files.unfilled()
        if todo == ["pope_root"]:
            raise UsageError(no_data_message(suite.name))
        if todo:
            raise UsageError(
                f"suite {suite.name!r} has unfilled placeholders {', '.join(todo)} in its POPE paths: pass "
                + " ".join(f"--{v.replace('_', '-')} PATH" for v in todo)
            )
        files = files.without_unfilled_root()
    return load_pope_files(
        files, suite.splits, instruction=suite.prompt_suffix, check_images=check_images, suite_name=suite.name
    )


def limit_items(items: list[EvalItem], limit_per_split: int | None) -> list[EvalItem]:
    """The first `limit_per_split` questions of each split, in file order (all when None)."""
    if limit_per_split is None:
        return list(items)
    seen: dict[str, int] = {}
    out = []
    for it in items:
        if seen.get(it.split, 0) < limit_per_split:
            seen[it.split] = seen.get(it.split, 0) + 1
            out.append(it)
    return out


def shifted_image(suite: Suite, variant: Variant, data: ItemSet, key: str, cache_dir: Path) -> Image.Image:
    """Image `key` under the variant's visual shift (seeded by suite seed, shift and key; cached)."""
    image = data.images.open(key)
    if variant.visual is None:
        return image
    vs = variant.visual
    seed = derive_seed(suite.seed, vs.spec, key)
    make = partial(perturb_image, image, vs.name, vs.severity, seed)
    return cached_perturbed_image(image, vs.spec, seed, cache_dir, make)


def shifted_question(suite: Suite, variant: Variant, item: EvalItem) -> str:
    """The item's question under the variant's text shift (seeded by suite seed, shift and question id)."""
    if variant.text is None:
        return item.text
    ts = variant.text
    seed = derive_seed(suite.seed, ts.spec, item.question_id)
    return perturb_question(item.text, ts.name, ts.rate, seed)  # <image N> references stay intact


def iter_image_groups(
    suite: Suite,
    variant: Variant,
    data: ItemSet,
    items: list[EvalItem],
    cache_dir: Path | None = None,
    prompt: PromptFn | None = None,
) -> Iterator[list[SuiteQuestion]]:
    """Yield the variant's questions one image set at a time (first appearance order), so callers can
    stream. Each image is loaded and perturbed once; questions on the same images share the objects.

    Args:
        prompt: (item, shifted question) -> prompt text; default: question + the suite's instruction.
    """
    prompt = prompt or suffix_prompt(suite)
    by_images: dict[tuple[str, ...], list[EvalItem]] = {}
    for it in items:
        by_images.setdefault(it.images, []).append(it)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    for keys, group in by_images.items():
        images = tuple(shifted_image(suite, variant, data, k, cache) for k in keys)
        yield [
            SuiteQuestion(
                it.question_id,
                it.split,
                keys,
                images,
                prompt(it, shifted_question(suite, variant, it)),
                it.label,
                it,
            )
            for it in group
        ]


def suite_questions(
    suite: Suite,
    variant: Variant | str,
    *,
    limit_per_split: int | None = None,
    cache_dir: Path | None = None,
    data: ItemSet | None = None,
) -> list[SuiteQuestion]:
    """All questions of one variant of a suite, perturbed, with labels.

    Args:
        suite: a loaded suite (`load_suite(...)`, POPE placeholders filled with `suite.with_data(...)`).
        variant: a Variant of the suite or its name (e.g. "clean", "snow@3", "snow@3+char_delete@3").
        limit_per_split: keep the first N questions of each split (file order).
        cache_dir: where perturbed images are cached as PNG (default $VITTLE_CACHE/perturbed).
        data: an already loaded ItemSet (saves reloading when materialising several variants).
    Returns:
        SuiteQuestion list in question-file order grouped by image (questions on one image are adjacent).
    Raises:
        UsageError: unknown variant, unfilled POPE paths. DataError: bad or missing data files.
    """
    v = suite.variant(variant) if isinstance(variant, str) else variant
    data = data if data is not None else load_suite_data(suite)
    items = limit_items(data.items, limit_per_split)
    return [q for group in iter_image_groups(suite, v, data, items, cache_dir) for q in group]
