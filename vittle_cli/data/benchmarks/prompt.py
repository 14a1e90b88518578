"""The user message of a closed-form question, from the suite's templates (task_options.prompt).

A text shift perturbs the question stem only (the runner shifts `EvalItem.text` before calling the
family's prompt), never the options, the context or the instruction; `<image N>` references in MMMU
stems are kept intact (data/shift/text.py perturb_question). MMMU's images go where the text names them: an image slot precedes the first mention of each image.
"""

from __future__ import annotations

from vittle_cli.data.benchmarks.closedqa import IMAGE_TAG, ClosedQAItem
from vittle_cli.data.benchmarks.spec import ClosedQAPrompt


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


def mention_order(text: str) -> list[str]:
    """Image columns ("image_N") in the order the text first mentions them."""
    seen: list[str] = []
    for n in IMAGE_TAG.findall(text):
        if f"image_{n}" not in seen:
            seen.append(f"image_{n}")
    return seen


def place_images(text: str, columns: tuple[str, ...], slot: str) -> str:
    """Put `slot` just before the first mention of each image in `columns`, when the text mentions
    exactly those images in that order (the order the images are handed to the model); otherwise return
    `text` unchanged, and the images are shown before it. The `<image N>` text itself stays, so a chat
    template that puts every image first (LLaVA-1.5's) still shows which image the text means."""
    if tuple(mention_order(text)) != tuple(columns):
        return text
    out, placed, pos = [], set(), 0
    for m in IMAGE_TAG.finditer(text):
        col = f"image_{m.group(1)}"
        if col not in placed:
            out += [text[pos : m.start()], slot]
            placed.add(col)
            pos = m.start()
    return "".join(out) + text[pos:]
