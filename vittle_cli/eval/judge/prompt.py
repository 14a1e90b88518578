"""The review prompt of LLaVA's GPT judge and its score rule (llava/eval/eval_gpt_review_visual.py, _bench.py).

The judge reads a text context (COCO captions and boxes, or an image caption), the question, the reference
answer as Assistant 1 and the model's answer as Assistant 2, then the category's rule from rule.json; it never
sees the image. It replies with "s1 s2" on its first line. vittle always puts the reference first, so
relative score = 100 * mean(s2) / mean(s1) is "higher is better" for every suite (the authors' LB-Wilder
script puts the model first; docs/evaluation.md explains the difference).

The reference parser turns a reply it cannot read into (-1, -1) and averages it in; vittle returns None,
counts it and leaves it out of the means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The system message of the reference scripts, word for word.
SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."


@dataclass(frozen=True)
class Rule:
    """One entry of rule.json: the role name ("Assistant") and the instructions that end the prompt."""

    role: str
    prompt: str


def review_prompt(context: str | None, question: str, reference: str, answer: str, rule: Rule) -> str:
    """The user message of one review, laid out exactly as the reference scripts lay it out.

    Args:
        context: the [Context] block body (built by vittle_cli.data.shift.openended), or None for suites
            without one (LB-Wilder, WV-Bench).
        question: the clean question (text-shifted variants are judged on the clean question).
        reference: the reference answer, shown as Assistant 1. answer: the model's, Assistant 2.
    """
    role = rule.role
    head = f"[Context]\n{context}\n\n" if context is not None else ""
    return (
        f"{head}[Question]\n{question}\n\n"
        f"[{role} 1]\n{reference}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule.prompt}\n\n"
    )


def parse_scores(reply: str | None) -> tuple[float, float] | None:
    """The reference rule: the first line, commas read as spaces, split on single spaces, exactly two
    numbers. Returns (reference score, model score), or None when the reply does not follow it."""
    if not reply:
        return None
    parts = reply.split("\n")[0].replace(",", " ").split(" ")
    if len(parts) != 2:
        return None
    try:
        scores = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return scores if all(math.isfinite(x) for x in scores) else None
