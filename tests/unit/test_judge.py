"""The judge prompt (golden snapshot + the reference layout), the score rule, relative scores, the cache."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from openended_data import FIXTURES, make_lbcoco, make_lbwild

from vittle_cli.data.shift.openended import load_llava_bench
from vittle_cli.eval.judge.cache import JudgeJob, JudgmentCache, collect_scores, judge_jobs, judgment_key
from vittle_cli.eval.judge.prompt import SYSTEM_PROMPT, Rule, parse_scores, review_prompt
from vittle_cli.eval.judge.scores import relative_score, score_variant, summarise_rp

GOLDEN = Path(__file__).parents[1] / "golden" / "judge_prompt_lbcoco_q12.txt"
ANSWER = "The cart is in a hotel lobby."


def _lbcoco(tmp_path):
    d = make_lbcoco(tmp_path)
    return load_llava_bench(
        "lbcoco",
        d / "qa90_questions.jsonl",
        d / "qa90_gpt4_answer.jsonl",
        d / "caps_boxes_coco2014_val_80.jsonl",
        d / "rule.json",
        d / "val2014",
    )


def _prompt(data, qid: str) -> str:
    it = next(i for i in data.items if i.question_id == qid)
    return review_prompt(it.context, it.text, it.reference, ANSWER, Rule(**data.rules[it.rule]))


def test_lbcoco_prompt_matches_golden_snapshot(tmp_path):
    assert _prompt(_lbcoco(tmp_path), "12") == GOLDEN.read_text(encoding="utf-8")


def test_lbcoco_prompt_is_the_reference_layout(tmp_path):
    """Rebuilt here straight from the raw rows with the f-strings of eval_gpt_review_visual.py."""
    ques = json.loads((FIXTURES / "lbcoco" / "qa90_questions.jsonl").read_text().splitlines()[0])
    ans1 = json.loads((FIXTURES / "lbcoco" / "qa90_gpt4_answer.jsonl").read_text().splitlines()[0])
    ctx = {
        json.loads(r)["image"]: json.loads(r)
        for r in (FIXTURES / "lbcoco" / "caps_boxes_coco2014_val_80.jsonl").read_text().splitlines()
    }
    inst = ctx[ques["image"]]
    rule = json.loads((FIXTURES / "rule.json").read_text())[ques["category"]]
    cap_str = "\n".join(inst["captions"])
    box_str = "\n".join([f"{i['category']}: {i['bbox']}" for i in inst["instances"]])
    role = rule["role"]
    expected = (
        f"[Context]\n{cap_str}\n\n{box_str}\n\n"
        f"[Question]\n{ques['text']}\n\n"
        f"[{role} 1]\n{ans1['text']}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{ANSWER}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule['prompt']}\n\n"
    )
    assert _prompt(_lbcoco(tmp_path), str(ques["question_id"])) == expected
    assert SYSTEM_PROMPT == "You are a helpful and precise assistant for checking the quality of the answer."


def test_lbwild_prompt_uses_caption_and_llava_bench_rule(tmp_path):
    d = make_lbwild(tmp_path)
    data = load_llava_bench(
        "lbwild",
        d / "questions.jsonl",
        d / "answers_gpt4.jsonl",
        d / "context.jsonl",
        d / "rule.json",
        d / "images",
    )
    p = _prompt(data, "0")
    assert p.startswith("[Context]\nAn aerial view of Diamond Head in the Hawaiian Islands.\n\n[Question]\n")
    assert "represented with a few sentences describing the image" in p  # llava_bench_conv, not conv
    assert "[Assistant 1]\nThe famous sight in the photo is Diamond Head.\n\n[End of Assistant 1]" in p


def test_no_context_block_for_wilder_style_prompts():
    p = review_prompt(None, "Q?", "ref", "ans", Rule("Assistant", "rule text"))
    assert (
        p
        == "[Question]\nQ?\n\n[Assistant 1]\nref\n\n[End of Assistant 1]\n\n[Assistant 2]\nans\n\n[End of Assistant 2]\n\n[System]\nrule text\n\n"
    )


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("8 7\nAssistant 1 is more detailed.", (8.0, 7.0)),
        ("9,6\nexplanation", (9.0, 6.0)),  # the rule reads commas as spaces
        ("7.5 8", (7.5, 8.0)),
        ("8  7\nx", None),  # two spaces: three parts under split(' '), as in the reference
        ("Scores: 8 7", None),
        ("Assistant 1: 8\nAssistant 2: 7", None),
        ("", None),
        ("nan 7", None),
    ],
)
def test_parse_scores_follows_the_reference_rule(reply, expected):
    assert parse_scores(reply) == expected


def test_relative_score_numbers():
    # mean ref = (8 + 6) / 2 = 7, mean model = (6 + 4) / 2 = 5 -> 100 * 5 / 7
    assert relative_score([(8, 6), (6, 4)]) == pytest.approx(100 * 5 / 7)
    # an unparseable reply is left out, not averaged in as (-1, -1) (which would give 100 * 3 / 4.333)
    assert relative_score([(8, 6), (6, 4), None]) == pytest.approx(100 * 5 / 7)
    assert relative_score([None]) is None


def test_score_variant_runs_spread_categories_and_unparseable():
    rows = [
        ("conv", [(10, 5), (10, 7), None]),
        ("detail", [(8, 8), (8, 4), (8, 6)]),
    ]
    s = score_variant(rows, runs=3)["all"]
    run0, run1, run2 = 6.5 / 9, 5.5 / 9, 6 / 8  # RP / 100 of each run
    assert s["relative_score_runs"] == pytest.approx([run0, run1, run2])
    assert s["relative_score"] == pytest.approx((run0 + run1 + run2) / 3)
    assert s["relative_score_std"] == pytest.approx(statistics.stdev([run0, run1, run2]))
    assert s["unparseable"] == 1 and s["judgments"] == 6 and s["n"] == 2
    assert s["reference_score"] == pytest.approx((10 + 10 + 8 + 8 + 8) / 5)
    split = score_variant(rows, runs=3)["splits"]
    assert split["conv"]["relative_score_runs"] == pytest.approx([0.5, 0.7])
    assert split["detail"]["n"] == 1


def test_summarise_rp_groups_and_deltas():
    def v(x):
        return {"all": {"relative_score": x}}

    per = {"clean": v(0.80), "a": v(0.70), "b": v(0.60), "t": v(0.75), "lost": v(None)}
    s = summarise_rp(per, {"clean": "clean", "a": "visual", "b": "visual", "t": "text", "lost": "joint"})
    assert s["groups"]["visual"]["relative_score"] == pytest.approx(0.65)
    assert s["groups"]["visual"]["delta_relative_score"] == pytest.approx(-0.15)  # variant - clean, as POPE
    assert s["deltas"] == {
        k: {"relative_score": pytest.approx(d)} for k, d in {"a": -0.1, "b": -0.2, "t": -0.05}.items()
    }
    assert "joint" not in s["groups"]  # a variant without any readable judgment has no score to average


class _Scripted:
    id = "scripted"

    def __init__(self, replies):
        self.replies, self.calls = list(replies), 0

    def complete(self, prompts, on_reply, system=SYSTEM_PROMPT):
        for i, _ in enumerate(prompts):
            self.calls += 1
            on_reply(i, self.replies.pop(0))


def test_judgments_cache_resumes_and_keys_by_run(tmp_path):
    jobs = [JudgeJob("clean", "0", "conv", "p0"), JudgeJob("clean", "1", "conv", "p1")]
    cache = JudgmentCache(tmp_path / "judgments.jsonl")
    judge = _Scripted(["8 6", "garbled", "8 4", "9 9"])
    assert judge_jobs(judge, jobs, 2, cache, lambda n: None) == 4
    with (tmp_path / "judgments.jsonl").open("a") as f:
        f.write('{"key": "cut sh')  # an interrupted write
    again = JudgmentCache(tmp_path / "judgments.jsonl")
    assert judge_jobs(_Scripted([]), jobs, 2, again, lambda n: None) == 0
    assert judgment_key("scripted", "p0", 0) != judgment_key("scripted", "p0", 1)
    pairs = collect_scores("scripted", jobs, 2, again)
    assert pairs[("clean", "0")] == [(8.0, 6.0), (8.0, 4.0)]
    assert pairs[("clean", "1")] == [None, (9.0, 9.0)]
    assert (tmp_path / "judgments.jsonl").read_text().endswith("\n")
