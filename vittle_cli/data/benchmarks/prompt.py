"""The user message of a closed-form question, from the suite's templates (task_options.prompt).

A text shift perturbs the question stem only, never the options, the context or the instruction; inside
an MMMU stem the `<image N>` references are kept intact and only the text between them is perturbed.
MMMU's images go where the text names them: the first mention of each image becomes an image slot.
"""

from __future__ import annotations

from vittle_cli.data.benchmarks.closedqa import IMAGE_TAG, ClosedQAItem
from vittle_cli.data.benchmarks.spec import ClosedQAPrompt
from vittle_cli.data.shift.registry import derive_seed
from vittle_cli.data.shift.text import perturb_text


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
    """`perturb_text` that leaves `<image N>` tags alone: with tags, each text piece between them is
    perturbed with its own seed derived from `seed`; without, this is exactly perturb_text."""
    pieces = IMAGE_TAG.split(stem)  # text, tag number, text, ...
    if len(pieces) == 1:
        return perturb_text(stem, name, rate, seed)
    out = []
    for k, piece in enumerate(pieces):
        if k % 2:
            out.append(f"<image {piece}>")
        elif piece.strip():
            # keep the spaces around a tag: the perturbations re-join words with single spaces
            lead, core, trail = (
                piece[: len(piece) - len(piece.lstrip())],
                piece.strip(),
                piece[len(piece.rstrip()) :],
            )
            out.append(lead + perturb_text(core, name, rate, derive_seed(seed, "piece", k)) + trail)
        else:
            out.append(piece)
    return "".join(out)


def mention_order(text: str) -> list[str]:
    """Image columns ("image_N") in the order the text first mentions them."""
    seen: list[str] = []
    for n in IMAGE_TAG.findall(text):
        if f"image_{n}" not in seen:
            seen.append(f"image_{n}")
    return seen


def place_images(text: str, columns: tuple[str, ...], slot: str) -> str:
    """Replace the first mention of each image in `columns` by `slot`, when the text mentions exactly
    those images in that order (the order the images are handed to the model); otherwise return `text`
    unchanged, and the images are shown before it."""
    if tuple(mention_order(text)) != tuple(columns):
        return text
    out, placed, pos = [], set(), 0
    for m in IMAGE_TAG.finditer(text):
        col = f"image_{m.group(1)}"
        if col not in placed:
            out += [text[pos : m.start()], slot]
            placed.add(col)
            pos = m.end()
    return "".join(out) + text[pos:]
