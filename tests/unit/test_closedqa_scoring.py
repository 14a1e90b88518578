"""Closed-form QA parsers and scores, on tables of tricky answers.

Each table is checked against the reference rule, written out here:
- ScienceQA, LLaVA's llava/eval/eval_science_qa.py: newlines become ". "; the stripped answer is a bare
  letter of A-E; else it starts "X. "; else it contains "The answer is X." or "The answer is X"; the
  letter must be one of the item's choices. Anything else is wrong ("FAILED").
- MMMU, parse_multi_choice_response (MMMU eval_utils.py, as in lmms-eval): strip , . ! ? ; : ' from the
  ends one mark at a time, pad with spaces; candidates are "(X)", else "X ", else "X."; else, for answers
  over 5 words, options whose text appears; several: the one found last; none: a random option.
  parse_open_response: per sentence the shortest tail after "could be ", "so ", "is ", "thus ",
  "therefore ", "final ", "answer ", "result " ("=" in the last sentence), plus the numbers in it; a gold
  number matches an equal float (2 decimals), a gold string matches when contained.
- MME, parse_pred_ans (Otter, lmms-eval): lower, strip, drop "."; "yes"/"no"; one letter y/n; else "yes"
  or "no" inside the first 4 characters; else "other". Score per subtask = acc + acc+ (x100).
- MMStar, exact_match: lower/strip; gold == first char, or after "(", "option ", "the answer is ".
  Category and overall scores are means over l2 categories.
"""

from __future__ import annotations

import random

import pytest

from vittle_cli.data.benchmarks.closedqa import ClosedQAItem
from vittle_cli.eval.scoring import parsers
from vittle_cli.eval.scoring.closedqa import judge, score_closedqa


def item(qid="q", split="s", kind="choice", options=("a", "b", "c", "d"), answer="A", **meta):
    return ClosedQAItem(qid, split, 0, kind, "stem", tuple(options), answer, ("image",), meta=meta)


SQA = [  # (answer, n_choices, letter)
    ("A", 4, "A"),
    ("  B ", 4, "B"),
    ("B. Louisiana", 4, "B"),
    ("B.Louisiana", 4, None),  # no space after the period
    ("b", 4, None),  # case matters
    ("AB", 4, None),  # not one option
    ("(A)", 4, None),
    ("The answer is C.", 4, "C"),
    ("Because of the map, The answer is D", 4, "D"),
    ("the answer is C", 4, None),  # case matters
    ("E", 4, None),  # beyond the item's choices
    ("C", 3, "C"),
    ("D", 3, None),
    ("A\nWest Virginia", 4, "A"),  # newline -> ". " -> "A. West Virginia"
    ("", 4, None),
    ("West Virginia", 4, None),  # the option's text is not parsed
]


@pytest.mark.parametrize(("answer", "n", "letter"), SQA)
def test_scienceqa_rule(answer, n, letter):
    assert parsers.scienceqa_letter(answer, n) == letter


def test_scienceqa_judge_counts_unparsed_as_wrong():
    it = item(answer="B")
    assert judge("scienceqa", it, "B. x") == (True, True)
    assert judge("scienceqa", it, "A") == (False, True)
    assert judge("scienceqa", it, "Louisiana") == (False, False)


MMMU_OPTIONS = ["$6", "$7", "$8", "$9"]
MMMU_CHOICE = [  # (response, letter, parsed)
    ("A", "A", True),
    ("(B)", "B", True),
    ("The answer is (C).", "C", True),
    ("C.", "C", True),  # the period is stripped first
    ("D:", "D", True),
    ("A and B", "B", True),  # two hits: the last one
    ("(A) or maybe (B) or (A)", "A", True),  # bracketed: last position of each, "(A)" wins
    ("I would say the correct amount is $7 here", "B", True),  # > 5 words: option text
    ("not $6 but the amount should be $7 surely", "B", True),  # several texts: the last one
    ("$7", None, False),  # short answers are never matched by option text
    ("B) seven", None, False),
]


@pytest.mark.parametrize(("response", "letter", "parsed"), MMMU_CHOICE)
def test_mmmu_choice_rule(response, letter, parsed):
    got, ok = parsers.mmmu_choice(response, MMMU_OPTIONS, random.Random(0))
    assert ok is parsed
    if parsed:
        assert got == letter
    else:
        assert got in "ABCD"


def test_mmmu_random_pick_is_seeded_per_question():
    it = item(qid="validation_Art_1", options=MMMU_OPTIONS, answer="A")
    picks = {judge("mmmu", it, "no idea", seed=s)[0] for s in range(40)}
    assert picks == {True, False}  # a random option, sometimes right
    assert judge("mmmu", it, "no idea", seed=3) == judge("mmmu", it, "no idea", seed=3)


MMMU_OPEN = [  # (response, gold, correct)
    ("3.5", "3.5", True),
    ("The payback period is 3.50 years", "3.5", True),  # tail after "is ", number 3.50 == 3.5
    ("about 4 years", "3.5", False),
    ("Therefore, the answer = 1,000", "1000", True),  # "=" in the last sentence; "1,000" -> 1000.0
    ("It is the renaissance period", "Renaissance", True),  # gold string contained in the tail
    ("b", "a", False),  # one-letter golds are padded: " a" / "a "
    ("it is a", "a", True),  # the tail "a" is padded like the gold: " a" in " a"
    ("it is an apple", "a", True),  # " a" is inside " apple": the reference is that loose
    ("it is the end", "a", False),
    ("24/7", "['24/7', '3.429']", True),  # a list-literal gold: any element
]


@pytest.mark.parametrize(("response", "gold", "correct"), MMMU_OPEN)
def test_mmmu_open_rule(response, gold, correct):
    it = item(kind="open", options=(), answer=gold)
    assert judge("mmmu", it, response)[0] is correct


def test_mmmu_open_parse_keeps_tails_and_numbers():
    assert set(parsers.mmmu_open("So the result is 12.345 kg")) == {"12.345 kg", 12.35}
    # a trailing "=" leaves an empty (shortest) tail, so the sentence has no key part: the whole
    # response is kept, with its numbers
    assert parsers.mmmu_open("x is 5 =") == ["x is 5 =", 5.0]


MME = [
    ("Yes", "yes"),
    ("No.", "no"),
    ("yes, there is a train", "yes"),
    ("There is no train", "other"),  # "no" is not within the first 4 characters
    ("Not really", "no"),
    ("Y", "yes"),
    ("n", "no"),
    ("x", "other"),
    ("", "other"),
    ("I think yes", "other"),
]


@pytest.mark.parametrize(("answer", "parsed"), MME)
def test_mme_rule(answer, parsed):
    assert parsers.mme_answer(answer) == parsed


def test_mme_official_score_and_totals():
    def pair(cat, name, golds):
        return [item(f"{name}#{k}", cat, "yesno", (), g, pair=name) for k, g in enumerate(golds)]

    items = pair("existence", "e.jpg", "yes no".split()) + pair("count", "c.jpg", "yes no".split())
    items += pair("count", "c2.jpg", "yes no".split()) + pair("code_reasoning", "r.png", "yes no".split())
    answers = ["Yes", "No", "Yes", "Yes", "Yes", "No", "No", "hmm"]
    m = score_closedqa("mme", zip(items, answers, strict=True))
    cats = m["categories"]
    assert cats["existence"]["score"] == pytest.approx(200.0)  # acc 100 + acc+ 100
    # count: 3 of 4 questions right (75), 1 of 2 images with both right (50)
    assert (cats["count"]["acc"], cats["count"]["acc_plus"]) == pytest.approx((75.0, 50.0))
    assert cats["code_reasoning"]["score"] == pytest.approx(0.0)
    assert cats["code_reasoning"]["unparsed"] == 1
    assert m["perception"] == pytest.approx(325.0)
    assert m["cognition"] == pytest.approx(0.0)
    assert m["all"]["perception"] == m["perception"]


MMSTAR = [  # (answer, gold, correct, letter read)
    ("A", "A", True, "a"),
    ("(A) The suitcase is on the book.", "A", True, "a"),
    ("Option A", "A", True, "a"),
    ("The answer is A", "A", True, "a"),
    ("the answer is: A", "A", False, None),  # index 14 is ":"
    ("Answer: A", "A", True, "a"),  # quirk: the first character is "a"
    ("B", "A", False, "b"),
    ("c", "C", True, "c"),
    ("", "A", False, None),
    ("The suitcase", "A", False, None),
]


@pytest.mark.parametrize(("answer", "gold", "correct", "letter"), MMSTAR)
def test_mmstar_rule(answer, gold, correct, letter):
    assert parsers.mmstar_correct(answer, gold) is correct
    assert parsers.mmstar_letter(answer) == letter


def test_mmstar_scores_are_means_over_l2_categories():
    items = [item(f"q{i}", "math", answer="A", l2_category="geometry") for i in range(3)]
    items.append(item("q3", "math", answer="A", l2_category="statistical reasoning"))
    m = score_closedqa("mmstar", zip(items, ["A", "A", "B", "A"], strict=True))
    assert m["l2_categories"]["geometry"]["accuracy"] == pytest.approx(2 / 3)
    assert m["category_scores"]["math"]["score"] == pytest.approx((2 / 3 + 1) / 2)  # not 3/4
    assert m["category_scores"]["math"]["unparsed"] == 0
    assert m["average"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["all"]["accuracy"] == pytest.approx(3 / 4)


def test_mmmu_disciplines_are_instance_weighted():
    items = [item(f"validation_Accounting_{i}", "Accounting", options=MMMU_OPTIONS) for i in range(3)]
    items.append(item("validation_Economics_1", "Economics", options=MMMU_OPTIONS))
    items.append(item("validation_Art_1", "Art", options=MMMU_OPTIONS))
    m = score_closedqa("mmmu", zip(items, ["A", "A", "C", "B", "A"], strict=True))
    assert m["groups"]["Accounting"]["accuracy"] == pytest.approx(2 / 3)
    assert m["disciplines"]["Business"]["accuracy"] == pytest.approx(2 / 4)  # not mean(2/3, 0)
    assert m["disciplines"]["Art and Design"]["n"] == 1
    assert m["all"]["accuracy"] == pytest.approx(3 / 5)


def test_every_accuracy_has_its_unparsed_count():
    items = [item("1", "x", answer="A"), item("2", "y", answer="B")]
    m = score_closedqa("scienceqa", zip(items, ["A", "no idea"], strict=True))
    assert m["all"] == {"n": 2, "accuracy": 0.5, "unparsed": 1}
    assert m["groups"]["y"] == {"n": 1, "accuracy": 0.0, "unparsed": 1}
