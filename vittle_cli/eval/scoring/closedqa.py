"""Scores of the closed-form QA benchmarks, aggregated as each community reports them.

- ScienceQA-IMG: accuracy over the test set (LLaVA's "IMG-Accuracy"), and per subject.
- MMMU: accuracy over all questions (choice and open), per subject and per discipline (instance
  weighted, as MMMU's calculate_ins_level_acc).
- MME: per subtask acc (% of questions right) + acc+ (% of images with both questions right), each x100,
  summed over the 10 perception and over the 4 cognition subtasks: the official totals (max 2000 / 800).
- MMStar: accuracy per l2 category; a category's score and the overall "average" are means over l2
  categories (lmms-eval's mmstar_aggregate_results); the plain question-level accuracy is reported too.
Every accuracy comes with `unparsed`: answers in which the reference parser found no answer.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterable

from vittle_cli.eval.scoring import parsers

MME_PERCEPTION = "existence count position color posters celebrity scene landmark artwork OCR".split()
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
MMMU_DISCIPLINES = {
    "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
    "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
    "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
    "Health and Medicine": [
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ],
    "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
    "Tech and Engineering": [
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ],
}
HEADLINE = {"scienceqa": "accuracy", "mmmu": "accuracy", "mme": "perception", "mmstar": "average"}


def _acc(rows: list[tuple[bool, bool]]) -> dict:
    """{n, accuracy, unparsed} of (correct, parsed) rows."""
    n = len(rows)
    return {
        "n": n,
        "accuracy": sum(c for c, _ in rows) / n if n else 0.0,
        "unparsed": sum(not p for _, p in rows),
    }


def _by(keys: list[str], rows: list[tuple[bool, bool]]) -> dict[str, dict]:
    groups: dict[str, list] = {}
    for k, r in zip(keys, rows, strict=True):
        groups.setdefault(k, []).append(r)
    return {k: _acc(groups[k]) for k in sorted(groups)}


def _mmmu_gold(answer: str):
    """An open answer written as a list literal ("['24/7', '3.429']") counts each element as gold,
    like the list answers of MMMU's own answer files."""
    if answer.startswith("["):
        try:
            value = ast.literal_eval(answer)
        except (ValueError, SyntaxError):
            return answer
        if isinstance(value, list):
            return [str(v) for v in value]
    return answer


def judge(benchmark: str, item, answer: str, seed: int = 0) -> tuple[bool, bool]:
    """(correct, parsed) of one answer by the benchmark's reference rule."""
    if benchmark == "scienceqa":
        letter = parsers.scienceqa_letter(answer, len(item.options))
        return letter == item.answer, letter is not None
    if benchmark == "mme":
        pred = parsers.mme_answer(answer)
        return pred == item.answer, pred != "other"
    if benchmark == "mmstar":
        return parsers.mmstar_correct(answer, item.answer), parsers.mmstar_letter(answer) is not None
    if item.kind == "choice":  # MMMU; the random pick is seeded per question, so reruns agree
        rng = random.Random(f"{seed}:{item.question_id}")
        letter, parsed = parsers.mmmu_choice(answer, list(item.options), rng)
        return letter == item.answer, parsed
    parsed = parsers.mmmu_open(answer)
    return parsers.mmmu_open_correct(_mmmu_gold(item.answer), parsed), bool(answer.strip())


def _mme(items, rows) -> dict:
    cats: dict[str, dict] = {}
    for it, (correct, parsed) in zip(items, rows, strict=True):
        c = cats.setdefault(it.split, {"rows": [], "pairs": {}})
        c["rows"].append((correct, parsed))
        c["pairs"].setdefault(it.meta["pair"], []).append(correct)
    out = {}
    for name in sorted(cats):
        c = cats[name]
        acc = _acc(c["rows"])
        acc_plus = sum(all(v) for v in c["pairs"].values()) / len(c["pairs"])
        out[name] = {
            **acc,
            "acc": 100 * acc["accuracy"],
            "acc_plus": 100 * acc_plus,
            "score": 100 * acc["accuracy"] + 100 * acc_plus,
            "incomplete_pairs": sum(len(v) != 2 for v in c["pairs"].values()),
        }
    return {
        "categories": out,
        "perception": sum(out[c]["score"] for c in MME_PERCEPTION if c in out),
        "cognition": sum(out[c]["score"] for c in MME_COGNITION if c in out),
    }


def _mmmu(items, rows) -> dict:
    subjects = _by([it.split for it in items], rows)
    disciplines = {}
    for domain, members in MMMU_DISCIPLINES.items():
        present = [subjects[s] for s in members if s in subjects]
        n = sum(s["n"] for s in present)
        if n:
            disciplines[domain] = {
                "n": n,
                "accuracy": sum(s["accuracy"] * s["n"] for s in present) / n,
                "unparsed": sum(s["unparsed"] for s in present),
            }
    kinds = _by([it.kind for it in items], rows)
    return {"disciplines": disciplines, "question_types": kinds}


def _mmstar(items, rows) -> dict:
    l2 = _by([it.meta["l2_category"] for it in items], rows)
    l2_of: dict[str, set] = {}
    for it in items:
        l2_of.setdefault(it.split, set()).add(it.meta["l2_category"])
    macro = {
        c: {
            "n": sum(l2[x]["n"] for x in xs),
            "score": sum(l2[x]["accuracy"] for x in xs) / len(xs),
            "unparsed": sum(l2[x]["unparsed"] for x in xs),
        }
        for c, xs in sorted(l2_of.items())
    }
    return {
        "l2_categories": l2,
        "category_scores": macro,
        "average": sum(v["accuracy"] for v in l2.values()) / len(l2) if l2 else 0.0,
    }


def score_closedqa(benchmark: str, answered: Iterable[tuple[object, str]], seed: int = 0) -> dict:
    """Score (item, answer) pairs of one variant.

    Returns:
        {"all": {n, accuracy, unparsed, <headline>}, "groups": {group: {n, accuracy, unparsed}}, plus
        the benchmark's own breakdown (MME categories and totals, MMMU disciplines, MMStar l2 scores).
    """
    answered = list(answered)
    items = [it for it, _ in answered]
    rows = [judge(benchmark, it, a, seed) for it, a in answered]
    result = {"all": _acc(rows), "groups": _by([it.split for it in items], rows)}
    extra = {"mme": _mme, "mmmu": _mmmu, "mmstar": _mmstar}.get(benchmark)
    if extra is not None and items:
        result.update(extra(items, rows))
    for key in ("perception", "cognition", "average"):
        if key in result:
            result["all"][key] = result[key]
    return result
