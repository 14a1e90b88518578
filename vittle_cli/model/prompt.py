"""The one query prompt vittle puts to a model when it asks a question (eval, inspect, merge's check):
a single user turn, image(s) first, through the model's own chat template, ending in the generation prompt.

Training conversations are rendered by data/render.py; a question asked later must look like a training
user turn, which is why both go through the processor's chat template and nothing else.
"""

from __future__ import annotations

from typing import Any

# In a question's text: where the next image goes. A text holding one slot per image gets its images
# there, in order (MMMU's interleaved questions); otherwise the images come first.
IMAGE_SLOT = "<|vittle:image|>"


def query_messages(text: str, has_image: bool | int) -> list[dict[str, Any]]:
    """The chat messages of one question: [{"role": "user", "content": [images..., text]}].

    Args:
        has_image: whether one image comes with the question, or how many images do.
    """
    n = int(has_image)
    content: list[dict[str, Any]] = [{"type": "image"}] * n
    content.append({"type": "text", "text": text})
    if n and text.count(IMAGE_SLOT) == n:  # interleaved: each image at its slot
        pieces = text.split(IMAGE_SLOT)
        content = [{"type": "text", "text": pieces[0]}] if pieces[0] else []
        for piece in pieces[1:]:
            content += [{"type": "image"}] + ([{"type": "text", "text": piece}] if piece else [])
    return [{"role": "user", "content": content}]


def render_query_prompt(processor: Any, text: str, has_image: bool | int = True) -> str:
    """The full prompt text for one question (images as the template's placeholders, not yet expanded).

    Args:
        processor: a Hugging Face processor (or tokenizer) with a chat template.
        text: the user's message: question plus any answer-format suffix.
        has_image: whether an image comes with the question (placed before the text), or how many
            images do (before the text, or at the text's IMAGE_SLOTs).
    """
    return processor.apply_chat_template(
        query_messages(text, has_image), add_generation_prompt=True, tokenize=False
    )
