"""Closed-form QA questions of one suite variant, ready for the model.

The prompt comes from the suite's templates (`data.closedqa.prompt`). A text shift perturbs the question
stem only, never the options, the context or the instruction; inside an MMMU stem the `<image N>` tags
are kept intact and only the text between them is perturbed. Images are perturbed like POPE's: seeded
by (suite seed, visual spec, image key), cached as PNG. MMMU's images go where the text names them: the
first `<image N>` of each picture becomes that image in the message, later mentions stay as text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image

from vittle_cli.data.benchmarks.closedqa import IMAGE_TAG, ClosedQAItem, ClosedQASet
from vittle_cli.data.shift.cache import cached_perturbed_image, default_cache_dir
from vittle_cli.data.shift.registry import derive_seed
from vittle_cli.data.shift.suite import ClosedQAPrompt, Suite, Variant
from vittle_cli.data.shift.text import perturb_text


@dataclass(frozen=True)
class ClosedQAQuestion:
    """One question of one variant: `content` is the user message as text and images in order."""

    question_id: str
    split: str
    image_key: str
    content: tuple  # of str and PIL.Image.Image
    text: str  # the message's text with every image tag kept (what results and caches record)
    label: str

    @property
    def images(self) -> list[Image.Image]:
        return [p for p in self.content if isinstance(p, Image.Image)]


def render_text(item: ClosedQAItem, prompt: ClosedQAPrompt, question: str | None = None) -> str:
    """The message text of `item` by the suite's templates (`question` replaces the stem if given)."""
    options = prompt.option_separator.join(
        prompt.option.format(letter=chr(ord("A") + i), option=o) for i, o in enumerate(item.options)
    )
    hint = item.fields.get("hint", "")
    template = prompt.open_template if item.kind == "open" and prompt.open_template else prompt.template
    return template.format(
        question=item.question if question is None else question,
        options=options,
        context=prompt.context.format(hint=hint) if hint else "",
        options_text=item.fields.get("options_text", ""),
    )


def perturb_stem(stem: str, name: str, rate: int, seed: int) -> str:
    """Perturb the text between `<image N>` tags (each piece with its own seed), keeping the tags."""
    pieces = IMAGE_TAG.split(stem)  # text, tag number, text, ...
    out = []
    for k, piece in enumerate(pieces):
        if k % 2:
            out.append(f"<image {piece}>")
        elif piece.strip():
            out.append(perturb_text(piece, name, rate, derive_seed(seed, "piece", k)))
        else:
            out.append(piece)
    return "".join(out)


def interleave(text: str, images: dict[str, Image.Image]) -> tuple:
    """Split `text` at `<image N>` tags: the first tag of each image in `images` ("image_N" keys)
    becomes the image; text without any such tag gets its images first, as single-image prompts do."""
    parts: list = []
    placed: set[str] = set()
    pos = 0
    for m in IMAGE_TAG.finditer(text):
        col = f"image_{m.group(1)}"
        if col in images and col not in placed:
            parts += [text[pos : m.start()], images[col]]
            placed.add(col)
            pos = m.end()
    parts.append(text[pos:])
    leading = [im for col, im in images.items() if col not in placed]
    return tuple(leading + [p for p in parts if not (isinstance(p, str) and p == "")])


def _variant_images(suite: Suite, variant: Variant, data: ClosedQASet, item, cache: Path) -> dict:
    images = {}
    for col in item.image_columns:
        image = data.image(item, col)
        if variant.visual is not None:
            vs = variant.visual
            key = item.image_key if len(item.image_columns) == 1 else f"{item.image_key}/{col}"
            seed = derive_seed(suite.seed, vs.spec, key)
            make = partial(_perturb_image, image, vs.name, vs.severity, seed)
            image = cached_perturbed_image(image, vs.spec, seed, cache, make)
        images[col] = image
    return images


def _perturb_image(image, name, severity, seed):
    from vittle_cli.data.shift.visual import perturb_image

    return perturb_image(image, name, severity, seed)


def iter_closedqa_groups(
    suite: Suite,
    variant: Variant,
    data: ClosedQASet,
    items: list[ClosedQAItem],
    cache_dir: Path | None = None,
) -> Iterator[list[ClosedQAQuestion]]:
    """Yield the variant's questions one picture at a time (items sharing an image key, in first
    appearance order); each picture is decoded and perturbed once and its questions share the object."""
    prompt = suite.data.closedqa.prompt
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    by_key: dict[str, list[ClosedQAItem]] = {}
    for it in items:
        by_key.setdefault(it.image_key, []).append(it)
    for key, group in by_key.items():
        shared = _variant_images(suite, variant, data, group[0], cache)
        out = []
        for it in group:
            images = shared if it.image_columns == group[0].image_columns else None
            images = images or _variant_images(suite, variant, data, it, cache)
            stem = it.question
            if variant.text is not None:
                ts = variant.text
                stem = perturb_stem(stem, ts.name, ts.rate, derive_seed(suite.seed, ts.spec, it.question_id))
            text = render_text(it, prompt, stem)
            interleaved = data.benchmark == "mmmu"  # the only benchmark whose text names its images
            content = interleave(text, images) if interleaved else (*images.values(), text)
            out.append(ClosedQAQuestion(it.question_id, it.split, key, content, text, it.answer))
        yield out
