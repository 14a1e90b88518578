"""The one query prompt vittle puts to a model when it asks a question (eval, inspect, merge's check):
a single user turn, image first, through the model's own chat template, ending in the generation prompt.

Training conversations are rendered by data/render.py; a question asked later must look like a training
user turn, which is why both go through the processor's chat template and nothing else.
"""

from __future__ import annotations

from typing import Any


def query_messages(text: str, has_image: bool | int) -> list[dict[str, Any]]:
    """The chat messages of one question: [{"role": "user", "content": [image*, text]}]; `has_image` may
    be a number of images (several images come in order, all before the text)."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(int(has_image))]
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def render_query_prompt(processor: Any, text: str, has_image: bool | int = True) -> str:
    """The full prompt text for one question (images as the template's placeholders, not yet expanded).

    Args:
        processor: a Hugging Face processor (or tokenizer) with a chat template.
        text: the user's message: question plus any answer-format suffix.
        has_image: whether an image comes with the question (placed before the text), or how many.
    """
    return processor.apply_chat_template(
        query_messages(text, has_image), add_generation_prompt=True, tokenize=False
    )
