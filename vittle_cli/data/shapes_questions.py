"""Questions and answers for `builtin:shapes`: POPE-style negatives and the training conversations.

Negative sampling follows POPE: "random" draws any absent object, "popular" takes the most frequent
absent objects, "adversarial" the absent objects that co-occur most with the ones present. Frequency and
co-occurrence always come from the training images, for the training set and the eval set alike.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from vittle_cli.data.shapes_draw import COLOURS, OBJECTS, SHAPES

Obj = tuple[str, str]
SPLITS = ("random", "popular", "adversarial")
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
EXIST_Q = "Is there a {} in the image?"
COLOUR_Q = "What colour is the {}?"
COUNT_Q = "How many shapes are there?"
DESCRIBE_Q = "Describe the image briefly."
# Mostly existence questions (the POPE task the eval measures), several per image.
TURN_KINDS = {"exist": 0.8, "colour": 0.08, "count": 0.06, "describe": 0.06}
NUM_TURNS_WEIGHTS = {1: 0.05, 2: 0.25, 3: 0.70}
TOP_CHOICES = 3  # training picks among the top few popular/adversarial negatives, for variety


def name(obj: Obj) -> str:
    return f"{obj[0]} {obj[1]}"


@dataclass
class ObjectStats:
    """Object frequency and pairwise co-occurrence counted over a set of images."""

    freq: Counter = field(default_factory=Counter)
    cooc: dict[Obj, Counter] = field(default_factory=dict)

    @classmethod
    def count(cls, images: list[list[Obj]]) -> ObjectStats:
        stats = cls(cooc={o: Counter() for o in OBJECTS})
        for objs in images:
            stats.freq.update(objs)
            for a in objs:
                stats.cooc[a].update(b for b in objs if b != a)
        return stats

    def popular_ranking(self) -> list[Obj]:
        return sorted(OBJECTS, key=lambda o: (-self.freq[o], o))

    def adversarial_ranking(self, present: list[Obj]) -> list[Obj]:
        score = Counter()
        for p in present:
            score.update(self.cooc[p])
        return sorted(OBJECTS, key=lambda o: (-score[o], -self.freq[o], o))


def negatives(
    strategy: str, present: list[Obj], k: int, stats: ObjectStats, rng: random.Random, top: int | None = None
) -> list[Obj]:
    """k distinct absent objects by POPE strategy; with `top`, draw them from the best `top` candidates."""
    if strategy == "random":
        ranked = [o for o in OBJECTS if o not in present]
        return rng.sample(ranked, k)
    ranking = stats.popular_ranking() if strategy == "popular" else stats.adversarial_ranking(present)
    ranked = [o for o in ranking if o not in present]
    return rng.sample(ranked[: max(k, top)], k) if top else ranked[:k]


def describe(objects: list[Obj]) -> str:
    """'The image shows a red circle, an orange square and a green star.' (objects in reading order)."""
    parts = [("an " if o[0][0] in "aeiou" else "a ") + name(o) for o in objects]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"The image shows {listed}."


def _turn(kind: str, objects: list[Obj], stats: ObjectStats, rng: random.Random) -> tuple[str, str]:
    if kind == "exist":
        if rng.random() < 0.5:
            return EXIST_Q.format(name(rng.choice(objects))) + SHORT_ANSWER, "Yes"
        neg = negatives(rng.choice(SPLITS), objects, 1, stats, rng, top=TOP_CHOICES)[0]
        return EXIST_Q.format(name(neg)) + SHORT_ANSWER, "No"
    if kind == "colour":
        shape_counts = Counter(s for _, s in objects)
        unique = [o for o in objects if shape_counts[o[1]] == 1]  # "the <shape>" must be unambiguous
        if unique:
            colour, shape = rng.choice(unique)
            return COLOUR_Q.format(shape) + SHORT_ANSWER, colour.capitalize()
        kind = "count"
    if kind == "count":
        return COUNT_Q + SHORT_ANSWER, str(len(objects))
    return DESCRIBE_Q, describe(objects)


def image_conversation(objects: list[Obj], stats: ObjectStats, rng: random.Random) -> list[dict]:
    """1-3 QA turns about one image, in LLaVA form ('<image>\\n' opens the first human turn)."""
    n_turns = rng.choices(list(NUM_TURNS_WEIGHTS), weights=list(NUM_TURNS_WEIGHTS.values()))[0]
    conv: list[dict] = []
    asked: set[str] = set()
    for _ in range(20):  # a few redraws avoid asking the same question twice
        if len(conv) == 2 * n_turns:
            break
        kind = rng.choices(list(TURN_KINDS), weights=list(TURN_KINDS.values()))[0]
        question, answer = _turn(kind, objects, stats, rng)
        if question in asked:
            continue
        asked.add(question)
        prefix = "<image>\n" if not conv else ""
        conv += [{"from": "human", "value": prefix + question}, {"from": "gpt", "value": answer}]
    return conv


def text_conversation(rng: random.Random) -> list[dict]:
    """A text-only question answerable without an image (colour/shape words, counting a list)."""
    kind = rng.choice(("is_colour", "is_shape", "count"))
    if kind == "count":
        objs = rng.sample(OBJECTS, rng.randint(1, 4))
        listed = describe(objs)[len("The image shows ") : -1]
        question = f"How many shapes are in this list: {listed}?" + SHORT_ANSWER
        answer = str(len(objs))
    else:
        word = rng.choice(list(COLOURS) + list(SHAPES))
        truth = word in COLOURS if kind == "is_colour" else word in SHAPES
        question = f"Is {word} a {'colour' if kind == 'is_colour' else 'shape'}?" + SHORT_ANSWER
        answer = "Yes" if truth else "No"
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def pope_questions(
    objects: list[Obj], stats: ObjectStats, rng: random.Random, per_image: int = 2
) -> dict[str, list[tuple[str, str]]]:
    """Per split, (question text, 'yes'|'no') pairs for one eval image: k yes + k no, k = min(per_image, n).

    The yes questions are shared by the three splits (as in POPE); only the negatives differ.
    """
    k = min(per_image, len(objects))
    yes = rng.sample(objects, k)
    out = {}
    for split in SPLITS:
        qs = [(EXIST_Q.format(name(o)), "yes") for o in yes]
        qs += [(EXIST_Q.format(name(o)), "no") for o in negatives(split, objects, k, stats, rng)]
        rng.shuffle(qs)
        out[split] = qs
    return out
