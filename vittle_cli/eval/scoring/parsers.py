"""Answer parsers, one per benchmark, each reproducing its reference scorer's rule (written out in
tests/unit/test_closedqa_scoring.py). Each returns what the reference compares with the gold answer,
or None where the reference finds nothing to compare: those answers score as wrong (MMMU: a seeded
random option, as MMMU's own parser picks) and are counted as "unparsed".
"""

from __future__ import annotations

import random
import re

SQA_LETTERS = ("A", "B", "C", "D", "E")  # eval_science_qa's --options default (a list: "AB" is no option)


def scienceqa_letter(answer: str, n_choices: int) -> str | None:
    """LLaVA's eval_science_qa.py: the bare letter, else a leading "X. ", else "The answer is X" (with or
    without the period); newlines count as ". ". A letter beyond the item's choices scores as wrong."""
    text = answer.replace("\n", ". ")
    letter = None
    if text.strip() in SQA_LETTERS:
        letter = text.strip()
    elif len(text) >= 3 and text[0] in SQA_LETTERS and text[1:3] == ". ":
        letter = text[0]
    elif "The answer is " in text:
        m = re.search(r"The answer is ([A-E])\.", text) or re.search(r"The answer is ([A-E])", text)
        letter = m.group(1) if m else None
    return letter if letter is not None and letter in SQA_LETTERS[:n_choices] else None


def mme_answer(answer: str) -> str:
    """MME's yes/no rule (lmms-eval's parse_pred_ans, from Otter): "yes", "no" or "other"."""
    text = answer.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    if len(text) == 1:
        return {"y": "yes", "n": "no"}.get(text, "other")
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def mmstar_correct(answer: str, gold: str) -> bool:
    """MMStar's exact_match: the gold letter is the first character, or follows "(", "option " or
    "the answer is " at the start (case-insensitive)."""
    gold = gold.lower().strip().replace("\n", " ")
    pred = answer.lower().strip().replace("\n", " ")
    forms = ((0, ""), (1, "("), (7, "option "), (14, "the answer is "))
    return any(pred.startswith(prefix) and len(pred) > at and pred[at] == gold for at, prefix in forms)


def mmstar_letter(answer: str, letters: str = "abcd") -> str | None:
    """The option letter MMStar's rule reads from `answer` (None: no option letter where it looks)."""
    pred = answer.lower().strip().replace("\n", " ")
    for at, prefix in ((1, "("), (7, "option "), (14, "the answer is ")):
        if pred.startswith(prefix) and len(pred) > at and pred[at] in letters:
            return pred[at]
    return pred[0] if pred and pred[0] in letters else None


def mmmu_choice(response: str, options: list[str], rng: random.Random) -> tuple[str, bool]:
    """MMMU's parse_multi_choice_response: (letter, parsed). Looks for "(X)", then "X ", then "X.",
    then (answers over 5 words) an option's text; several hits: the last one in the response;
    none: a random option (parsed=False)."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    for ch in ",.!?;:'":
        response = response.strip(ch)
    padded = f" {response} "
    bracketed = [c for c in letters if f"({c})" in padded]
    found = (
        bracketed or [c for c in letters if f"{c} " in padded] or [c for c in letters if f"{c}." in padded]
    )
    by_content = False
    if not found and len(padded.split()) > 5:
        found = [c for c, o in zip(letters, options, strict=True) if o.lower() in padded.lower()]
        by_content = bool(found)
    if not found:
        return rng.choice(letters), False
    if len(found) == 1:
        return found[0], True
    if by_content:
        where = [padded.lower().rfind(options[letters.index(c)].lower()) for c in found]
    elif bracketed:
        where = [padded.rfind(f"({c})") for c in found]
    else:
        where = [padded.rfind(f" {c} ") for c in found]
    return found[where.index(max(where))], True  # first of equal maxima, like np.argmax


def _extract_numbers(text: str) -> list[str]:
    with_commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return with_commas + scientific + simple


def _normalize(text: str) -> list:
    """MMMU's normalize_str: a number becomes a float rounded to 2 places; a one-letter string is
    padded with a space on either side (two forms) so it cannot match inside words."""
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        text = text.lower()
        return [" " + text, text + " "] if len(text) == 1 else [text]


_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def mmmu_open(response: str) -> list:
    """MMMU's parse_open_response: the tails after key words ("is ", "therefore ", ...; "=" in the
    last sentence) of each sentence, plus every number in them, normalised."""
    text = response.strip().strip(".").lower()
    sentences = re.split(r"\.\s(?=[A-Z])|\n", text)
    keys = []
    for k, sentence in enumerate(sentences):
        indicators = _KEY_INDICATORS + (("=",) if k == len(sentences) - 1 else ())
        shortest = None
        for ind in indicators:
            if ind in sentence:
                tail = sentence.split(ind)[-1].strip()
                # the reference's test: an empty tail found so far is replaced by any later one
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    keys = keys or [text]
    candidates = keys + [n for key in keys for n in _extract_numbers(key)]
    out = []
    for c in candidates:
        for v in _normalize(c):
            if v not in out:
                out.append(v)
    return out


def mmmu_open_correct(gold: str | list[str], parsed: list) -> bool:
    """MMMU's eval_open: a parsed string containing a normalised gold string, or an equal number."""
    golds = gold if isinstance(gold, list) else [gold]
    norm = [v for g in golds for v in _normalize(str(g))]
    for p in parsed:
        if isinstance(p, str):
            if any(isinstance(g, str) and g in p for g in norm):
                return True
        elif p in norm:
            return True
    return False
