"""model/prompt.py: the one query prompt, pinned per chat-template family by a golden snapshot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vittle_cli.model.prompt import query_messages, render_query_prompt

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "prompts.json"
QUESTION = "Is there a red circle in the image?\nAnswer the question using a single word or phrase."


@pytest.fixture(scope="module")
def processors():
    """The chat-template families vittle ships: builtin:tiny-llava and LLaVA-1.5 (model.compose)."""
    from transformers import AutoProcessor

    from vittle_cli.model.builtin import resolve_builtin_model
    from vittle_cli.model.compose import llava15_chat_template

    tiny = AutoProcessor.from_pretrained(resolve_builtin_model("builtin:tiny-llava"))
    llava15 = AutoProcessor.from_pretrained(resolve_builtin_model("builtin:tiny-llava"))
    llava15.chat_template = llava15_chat_template()
    return {"tiny-llava": tiny, "llava-1.5": llava15}


def current_golden(processors) -> dict:
    return {
        f"{family}/{kind}": render_query_prompt(processor, QUESTION, has_image=kind == "image")
        for family, processor in processors.items()
        for kind in ("image", "text")
    }


def test_query_prompts_match_the_golden_snapshot(processors):
    """Prompts must not drift (set VITTLE_UPDATE_GOLDEN=1 to rewrite on purpose)."""
    got = current_golden(processors)
    if os.environ.get("VITTLE_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert GOLDEN.is_file(), "golden file missing: run once with VITTLE_UPDATE_GOLDEN=1"
    assert got == json.loads(GOLDEN.read_text())


def test_query_messages_put_the_image_first():
    assert query_messages("q", has_image=True) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}
    ]
    assert query_messages("q", has_image=False) == [
        {"role": "user", "content": [{"type": "text", "text": "q"}]}
    ]


def test_the_query_prompt_is_the_training_prompt_up_to_the_answer(processors):
    """A question at eval time renders exactly like a training user turn before its answer."""
    from vittle_cli.data.render import template_text

    for processor in processors.values():
        conversation = [
            *query_messages(QUESTION, has_image=True),
            {"role": "assistant", "content": [{"type": "text", "text": "Yes"}]},
        ]
        prompt = render_query_prompt(processor, QUESTION)
        assert template_text(processor, conversation).startswith(prompt)
        assert prompt == template_text(processor, conversation[:1], add_generation_prompt=True)
