"""The closed-form QA families through `run_eval`: shipped suites on the schema-exact fixtures, prompts as
the model receives them, stem-only shifts, multi-image requests, scores, resumability and bad data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from tests.cli_runner import run_cli
from vittle_cli.data.shift.suite import load_suite, suites_dir
from vittle_cli.eval.generate import GenerationRequest, render_prompt
from vittle_cli.eval.runner import run_eval
from vittle_cli.model.prompt import IMAGE_SLOT

FIX = Path(__file__).parents[1] / "fixtures" / "closedqa"


def _run(suite, tmp_path, answer, *, name="ev", **kw):
    """run_eval with a fake engine that answers by `answer(request)`; returns (results, requests)."""
    seen: list[GenerationRequest] = []

    def generate(model, processor, requests, *, batch_size, max_new_tokens, on_progress=None):
        seen.extend(requests)
        return [answer(r) for r in requests]

    source = kw.pop("source", str(FIX / Path(str(suite)).stem.removesuffix("-shift")))
    res = run_eval(
        suite,
        "m",
        out=tmp_path / name,
        data_vars={"source": source},
        generate=generate,
        load_model=lambda *a, **k: (None, None),
        cache_dir=tmp_path / "cache",
        console=Console(quiet=True),
        **kw,
    )
    return res, seen


def test_scienceqa_prompt_and_llava_rule(tmp_path):
    answers = {"Which of these": "A", "Identify": "The answer is B.", "Which animal": "gecko"}
    res, seen = _run("scienceqa", tmp_path, lambda r: next(a for k, a in answers.items() if k in r.text))
    assert seen[0].text == (
        "Which of these states is farthest north?\nA. West Virginia\nB. Louisiana\nC. Arizona\n"
        "D. Oklahoma\nAnswer with the option's letter from the given choices directly."
    )
    assert len(seen[0].images) == 1 and seen[0].images[0].size == (48, 40)
    m = res["metrics"]["clean"]
    assert m["all"]["n"] == 3 and m["all"]["accuracy"] == pytest.approx(2 / 3) and m["all"]["unparsed"] == 1
    assert m["splits"]["natural science"] == {"n": 2, "accuracy": 0.5, "unparsed": 1}
    assert res["task"]["name"] == "scienceqa" and res["max_new_tokens"] == 16


def test_mmmu_multi_image_request_and_scores(tmp_path):
    res, seen = _run("mmmu", tmp_path, lambda r: {2: "(A)"}.get(len(r.images), "3.5"))
    multi = next(r for r in seen if len(r.images) == 2)
    assert multi.text.startswith(
        f"Compare {IMAGE_SLOT}<image 1> and {IMAGE_SLOT}<image 2>. Which was painted"
    )
    assert multi.text.endswith(
        "A. <image 1>\nB. <image 2>\nC. Both at once\n\nAnswer with the option's letter from the given choices directly."
    )
    assert [im.size for im in multi.images] == [(48, 40), (40, 48)]  # image_1 then image_2
    m = res["metrics"]["clean"]
    # Accounting_1 (choice, gold B) answered "3.5": no letter -> seeded random pick; the open one and
    # the two-image one are right
    assert m["question_types"]["open"]["accuracy"] == 1.0
    assert m["splits"]["Art_Theory"]["accuracy"] == 1.0
    assert m["disciplines"]["Business"]["n"] == 2 and m["all"]["unparsed"] == 1
    rec = json.loads((tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()[-1])
    assert rec["images"] == ["validation_Art_Theory_3/image_1", "validation_Art_Theory_3/image_2"]


def test_mme_official_totals_and_pairs_share_one_prefix_group(tmp_path):
    res, seen = _run("mme", tmp_path, lambda r: "Yes")
    assert seen[0].text == "Is there a train in this image? Please answer yes or no."
    assert seen[0].group == seen[1].group != seen[2].group  # the two questions of an image
    m = res["metrics"]["clean"]
    # "Yes" to every pair: acc 50, acc+ 0 per subtask
    assert m["categories"]["existence"]["score"] == pytest.approx(50.0)
    assert m["all"]["perception"] == pytest.approx(100.0)  # existence + count
    assert m["all"]["cognition"] == pytest.approx(50.0)  # code_reasoning


def test_mmstar_prompt_and_l2_average(tmp_path):
    res, seen = _run("mmstar", tmp_path, lambda r: "A")
    assert seen[1].text.startswith(
        "What is the main feature in the background of the image?\nOptions: A: A house"
    )
    assert seen[1].text.endswith(
        "D: A parking lot\nAnswer with the option's letter from the given choices directly"
    )
    m = res["metrics"]["clean"]["all"]
    assert m["accuracy"] == pytest.approx(1 / 3) and m["average"] == pytest.approx(1 / 3)


def test_shifts_touch_the_stem_and_images_only(tmp_path):
    spec = yaml.safe_load((suites_dir() / "mmmu-shift.yaml").read_text())
    spec["variants"] = [v for v in spec["variants"] if v.get("name") == "clean"] + [
        {"group": "joint", "visual": {"name": "snow"}, "text": {"name": "char_swap", "rate": 5}}
    ]
    path = tmp_path / "mmmu-shift.yaml"
    path.write_text(yaml.safe_dump(spec))
    res, seen = _run(str(path), tmp_path, lambda r: "A", source=str(FIX / "mmmu"))
    clean, shifted = seen[:3], seen[3:]
    for c, s in zip(clean, shifted, strict=True):
        c_stem, c_rest = c.text.split("\n", 1)
        s_stem, s_rest = s.text.split("\n", 1)
        assert s_rest == c_rest  # options and instruction untouched
        assert s_stem != c_stem and s_stem.count(IMAGE_SLOT) == c_stem.count(IMAGE_SLOT)
        assert all(a.tobytes() != b.tobytes() for a, b in zip(c.images, s.images, strict=True))
    assert "<image 1>" in shifted[2].text.split("\n")[0] and "<image 2>" in shifted[2].text.split("\n")[0]
    assert set(res["summary"]["groups"]) == {"clean", "joint"}


def test_answers_are_cached_and_reused(tmp_path):
    _run("mmstar", tmp_path, lambda r: "B")
    res, seen = _run("mmstar", tmp_path, lambda r: "C", overwrite=True)
    assert seen == [] and res["metrics"]["clean"]["all"]["accuracy"] == pytest.approx(1 / 3)


def test_render_prompt_puts_images_at_their_slots():
    class Chat:
        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            return messages[0]["content"]

    img = object()
    req = GenerationRequest((img, img), f"Compare {IMAGE_SLOT}<image 1> and {IMAGE_SLOT}<image 2>.")
    assert [c.get("text", c["type"]) for c in render_prompt(Chat(), req)] == [
        "Compare ",
        "image",
        "<image 1> and ",
        "image",
        "<image 2>.",
    ]
    plain = GenerationRequest((img,), "no slot here")
    assert [c["type"] for c in render_prompt(Chat(), plain)] == ["image", "text"]


@pytest.mark.parametrize("name", ["scienceqa", "mmmu", "mme", "mmstar"])
def test_shipped_suites_validate(name):
    for suite in (name, f"{name}-shift"):
        s = load_suite(suite)
        assert s.task == name and s.placeholders() == ["source"]
        assert len(s.variants) == (28 if suite.endswith("shift") else 1)


def test_cli_missing_source_and_missing_column_exit_2(tmp_path, capsys):
    assert (
        run_cli(["eval", "--suite", "mme", "--model", "builtin:tiny-llava", "--out", str(tmp_path / "a")])
        == 2
    )
    assert "--source" in capsys.readouterr().err
    import pyarrow.parquet as pq

    table = pq.read_table(FIX / "mme/data/test-00000-of-00001.parquet").drop_columns(["category"])
    pq.write_table(table, tmp_path / "mme.parquet")
    code = run_cli(
        [
            "eval",
            "--suite",
            "mme",
            "--model",
            "builtin:tiny-llava",
            "--source",
            str(tmp_path / "mme.parquet"),
            "--out",
            str(tmp_path / "b"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "lacks column(s) category" in err and "lmms-lab/MME" in err


def test_real_engine_answers_multi_image_questions_like_the_reference(tmp_path, tiny_llava):
    """MMMU's two-image question batched with one-image ones through the fast engine gives the answers
    of one-at-a-time generation (builtin:tiny-llava)."""
    from vittle_cli.eval.generate import generate_answers, generate_one_at_a_time

    model, processor = tiny_llava
    requests: list[GenerationRequest] = []

    def generate(mdl, proc, reqs, *, batch_size, max_new_tokens, on_progress=None):
        requests.extend(reqs)
        return generate_answers(mdl, proc, reqs, batch_size=batch_size, max_new_tokens=max_new_tokens)

    run_eval(
        "mmmu",
        "builtin:tiny-llava",
        out=tmp_path / "ev",
        data_vars={"source": str(FIX / "mmmu")},
        generate=generate,
        load_model=lambda *a, **k: (model, processor),
        cache_dir=tmp_path / "cache",
        console=Console(quiet=True),
        batch_size=3,
    )
    assert sorted(len(r.images) for r in requests) == [1, 1, 2]
    prompt = render_prompt(processor, next(r for r in requests if len(r.images) == 2))
    assert prompt.count("<image>") == 2 and "<image 1>" in prompt  # the references stay as text
    cached = [
        json.loads(line)["answer"]
        for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()
    ]
    assert cached == generate_one_at_a_time(model, processor, requests, max_new_tokens=16)
