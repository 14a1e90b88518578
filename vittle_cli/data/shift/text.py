"""Text perturbations of a question, at rate 1-5 (word probability 0.05 x rate, METHOD.md section 6).

Character level, via nlpaug: keyboard typos, OCR errors, random character insert / substitute / swap /
delete. nlpaug picks ceil(p x words) words (at least one; words under 4 characters are left alone) and
changes about 30% of the characters in each.

Word level, EDA (Wei & Zou 2019) on whitespace tokens, n = max(1, ceil(p x words)) operations:
random swap (two positions, n times), random deletion (n words, never all), random insertion (a copy of a
word already in the question, as EDA does without WordNet), and AEDA punctuation insertion (Karimi et al.
2021: n marks from . ; ? : ! , at random gaps). EDA's synonym replacement needs WordNet, which is not
available offline: it is registered so that suites can name it, and fails with a clear message.
"""

from __future__ import annotations

import math
import random
import re
from functools import lru_cache

from vittle_cli.data.shift.registry import derive_seed, get_perturbation, register_text, seeded_global_rngs
from vittle_cli.errors import UsageError

WORD_P_PER_RATE = 0.05
AEDA_MARKS = (".", ";", "?", ":", "!", ",")
IMAGE_REFERENCE = re.compile(r"<image (\d+)>")  # MMMU's references to its n-th image


def word_probability(rate: int) -> float:
    return WORD_P_PER_RATE * rate


def _n_ops(words: list[str], rate: int) -> int:
    return max(1, math.ceil(word_probability(rate) * len(words)))


@lru_cache(maxsize=64)
def _nlpaug_char(kind: str, rate: int):
    """Build (once) the nlpaug character augmenter; it holds no RNG state of its own."""
    import nlpaug.augmenter.char as nac

    p = word_probability(rate)
    if kind == "keyboard":
        return nac.KeyboardAug(aug_word_p=p)
    if kind == "ocr":
        return nac.OcrAug(aug_word_p=p)
    return nac.RandomCharAug(action=kind, aug_word_p=p)


def _char(kind: str, text: str, rate: int, seed: int) -> str:
    if not text.strip():
        return text
    out = _nlpaug_char(kind, rate).augment(text)  # global RNGs are seeded by perturb_text
    return out[0] if isinstance(out, list) else out


for _name, _kind, _what in [
    ("keyboard", "keyboard", "keyboard typos (QWERTY neighbours)"),
    ("ocr", "ocr", "OCR confusions (0/o, 1/l, ...)"),
    ("char_insert", "insert", "random character insertion"),
    ("char_substitute", "substitute", "random character substitution"),
    ("char_swap", "swap", "random swap of neighbouring characters"),
    ("char_delete", "delete", "random character deletion"),
]:
    register_text(_name, family="char", description=_what)(
        lambda text, rate, seed, _k=_kind: _char(_k, text, rate, seed)
    )


@register_text("word_swap", family="word")
def word_swap(text: str, rate: int, seed: int) -> str:
    """EDA random swap: swap two random words, n times."""
    rng, words = random.Random(seed), text.split()
    if len(words) < 2:
        return text
    for _ in range(_n_ops(words, rate)):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


@register_text("word_delete", family="word")
def word_delete(text: str, rate: int, seed: int) -> str:
    """EDA random deletion: delete n random words (one always stays)."""
    rng, words = random.Random(seed), text.split()
    if len(words) < 2:
        return text
    drop = set(rng.sample(range(len(words)), min(_n_ops(words, rate), len(words) - 1)))
    return " ".join(w for i, w in enumerate(words) if i not in drop)


@register_text("word_insert", family="word")
def word_insert(text: str, rate: int, seed: int) -> str:
    """EDA random insertion: insert a copy of a random word of the question at a random place, n times."""
    rng, words = random.Random(seed), text.split()
    if not words:
        return text
    for _ in range(_n_ops(words, rate)):
        words.insert(rng.randint(0, len(words)), rng.choice(words))
    return " ".join(words)


@register_text("punctuation", family="word")
def punctuation(text: str, rate: int, seed: int) -> str:
    """AEDA: insert n random punctuation marks at random gaps between words."""
    rng, words = random.Random(seed), text.split()
    if not words:
        return text
    for _ in range(_n_ops(words, rate)):
        words.insert(rng.randint(0, len(words)), rng.choice(AEDA_MARKS))
    return " ".join(words)


@register_text("synonym", family="word")
def synonym(text: str, rate: int, seed: int) -> str:
    """EDA synonym replacement (needs WordNet, which vittle cannot download)."""
    raise UsageError(
        "text perturbation 'synonym' needs the WordNet corpus, which is not available offline; "
        "use word_insert, word_swap, word_delete or punctuation instead"
    )


def perturb_text(text: str, name: str, rate: int, seed: int) -> str:
    """Return `text` under text perturbation `name` at `rate`, deterministically from `seed`.

    Raises:
        UsageError: for an unknown name (or one that cannot run here, like 'synonym').
    """
    pert = get_perturbation(name, "text")
    with seeded_global_rngs(seed):
        return pert.fn(text, rate, seed)


def perturb_question(text: str, name: str, rate: int, seed: int) -> str:
    """`perturb_text` that never touches `<image N>` references: the text between them is perturbed
    piece by piece (each with a seed derived from `seed`). Text without references gets exactly
    `perturb_text(text, name, rate, seed)`."""
    pieces = IMAGE_REFERENCE.split(text)  # text, number, text, number, ...
    if len(pieces) == 1:
        return perturb_text(text, name, rate, seed)
    out = []
    for k, piece in enumerate(pieces):
        if k % 2:
            out.append(f"<image {piece}>")
        elif piece.strip():
            core = piece.strip()  # keep the spaces around a reference (perturbations re-join words)
            lead, trail = piece[: piece.index(core)], piece[piece.index(core) + len(core) :]
            out.append(lead + perturb_text(core, name, rate, derive_seed(seed, "piece", k)) + trail)
        else:
            out.append(piece)
    return "".join(out)
