"""run_eval with a fake model: caching, resume, no model work on rerun, results.json, compare."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from vittle_cli.errors import DataError, UsageError
from vittle_cli.eval.compare import run_compare
from vittle_cli.eval.runner import run_eval

LIMIT = 2
VARIANTS = [
    {"name": "clean", "group": "clean"},
    {"group": "visual", "visual": {"name": "contrast", "severity": 3}},
    {"group": "text", "text": {"name": "word_swap", "rate": 3}},
    {
        "group": "joint",
        "visual": {"name": "contrast", "severity": 3},
        "text": {"name": "word_swap", "rate": 3},
    },
]


class FakeModel:
    """Counts calls; answers from a hash of the prompt, so answers differ across variants."""

    def __init__(self):
        self.loads = 0
        self.requests = []

    def load(self, model, *, base=None, dtype="float32", device="cpu"):
        self.loads += 1
        return object(), object()

    def generate(self, model, processor, requests, *, batch_size=16, max_new_tokens=8, on_progress=None):
        self.requests += list(requests)
        answers = [
            "Yes" if hashlib.sha256(r.text.encode()).digest()[0] % 2 else "No, there is not."
            for r in requests
        ]
        if on_progress:
            on_progress(len(requests))
        return answers


@pytest.fixture()
def suite_file(tmp_path) -> Path:
    p = tmp_path / "mini.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "name": "mini",
                "description": "test suite",
                "data": "builtin:shapes",
                "seed": 3,
                "variants": VARIANTS,
            }
        )
    )
    return p


def _run(suite_file, out, fake, **kw):
    return run_eval(
        str(suite_file),
        "fake-model",
        out=out,
        limit=LIMIT,
        batch_size=2,
        generate=fake.generate,
        load_model=fake.load,
        cache_dir=out.parent / "img-cache",
        console=Console(quiet=True),
        **kw,
    )


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_full_run_writes_results_and_groups_requests(suite_file, tmp_path):
    fake, out = FakeModel(), tmp_path / "ev"
    res = _run(suite_file, out, fake)
    n_questions = 3 * LIMIT
    assert fake.loads == 1 and len(fake.requests) == 4 * n_questions
    for r in fake.requests:  # one image object per (visual shift, image) group
        same = [o for o in fake.requests if o.group == r.group]
        assert all(o.image is r.image for o in same)
    # text-only variants share the clean image's group, joint variants their visual variant's
    assert {r.group[0] for r in fake.requests} == {None, "contrast@3"}
    assert len({r.group for r in fake.requests}) == len({r.group[1] for r in fake.requests}) * 2

    doc = json.loads((out / "results.json").read_text())
    assert doc == res
    assert doc["suite"]["name"] == "mini" and doc["suite"]["seed"] == 3
    assert doc["prompt_suffix"] == "\nAnswer the question using a single word or phrase."
    assert [v["name"] for v in doc["variants"]] == [
        "clean",
        "contrast@3",
        "word_swap@3",
        "contrast@3+word_swap@3",
    ]
    assert doc["variants"][3]["visual"] == {"name": "contrast", "severity": 3}
    assert doc["limit_per_split"] == LIMIT and doc["questions_per_variant"] == n_questions
    assert set(doc["metrics"]["clean"]["splits"]) == {"adversarial", "popular", "random"}
    assert doc["metrics"]["clean"]["all"]["n"] == n_questions
    assert set(doc["summary"]["groups"]) == {"clean", "visual", "text", "joint"}
    assert doc["versions"]["vittle"]
    preds = _lines(out / "predictions.jsonl")
    assert len(preds) == 4 * n_questions
    clean_f1 = doc["metrics"]["clean"]["all"]["f1"]
    assert doc["summary"]["deltas"]["word_swap@3"]["f1"] == pytest.approx(
        doc["metrics"]["word_swap@3"]["all"]["f1"] - clean_f1
    )
    assert (out / "results.png").stat().st_size > 1000


def test_rerun_makes_no_model_calls_and_needs_overwrite(suite_file, tmp_path):
    out = tmp_path / "ev"
    first = _run(suite_file, out, FakeModel())
    with pytest.raises(UsageError, match="--overwrite"):
        _run(suite_file, out, FakeModel())
    fake = FakeModel()
    again = _run(suite_file, out, fake, overwrite=True)
    assert fake.loads == 0 and fake.requests == []
    assert again["metrics"] == first["metrics"]


def test_resume_makes_only_the_missing_calls(suite_file, tmp_path):
    full = _run(suite_file, tmp_path / "full", FakeModel())
    out = tmp_path / "ev"
    _run(suite_file, out, FakeModel())
    (out / "results.json").unlink()  # as if the run was interrupted before the end...
    pred = out / "predictions.jsonl"
    lines = pred.read_text().splitlines()
    pred.write_text("\n".join(lines[:9]) + "\n" + lines[9][:25])  # ...mid-way through writing line 10
    fake = FakeModel()
    res = _run(suite_file, out, fake)
    assert len(fake.requests) == len(lines) - 9
    recs = _lines(pred)
    assert len(recs) == len(lines) and len({(r["variant"], r["question_id"]) for r in recs}) == len(lines)
    assert res["metrics"] == full["metrics"]


def test_cache_of_another_eval_is_never_mixed_in(suite_file, tmp_path):
    out = tmp_path / "ev"
    _run(suite_file, out, FakeModel())
    (out / "results.json").unlink()
    with pytest.raises(UsageError, match="max_new_tokens differ"):
        _run(suite_file, out, FakeModel(), max_new_tokens=3)
    fake = FakeModel()
    _run(suite_file, out, fake, max_new_tokens=3, overwrite=True)
    assert len(fake.requests) == 4 * 3 * LIMIT


def test_larger_limit_reuses_cached_answers(suite_file, tmp_path):
    out = tmp_path / "ev"
    _run(suite_file, out, FakeModel())
    fake = FakeModel()
    run_eval(
        str(suite_file),
        "fake-model",
        out=out,
        limit=LIMIT + 1,
        generate=fake.generate,
        load_model=fake.load,
        overwrite=True,
        cache_dir=tmp_path / "img-cache",
        console=Console(quiet=True),
    )
    assert len(fake.requests) == 4 * 3  # one more question per split, for each variant


def test_compare_reports_deltas_names_columns_by_model_and_plots_group_means(suite_file, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = _run(suite_file, a, FakeModel())
    rb = run_eval(str(suite_file), "other-model", out=b, limit=LIMIT, generate=FakeModel().generate,
                  load_model=FakeModel().load, cache_dir=tmp_path / "c", console=Console(quiet=True))  # fmt: skip
    doc = run_compare([str(a), str(b / "results.json")], out=tmp_path / "cmp", console=Console(quiet=True))
    assert doc["columns"] == ["fake-model", "other-model"] and doc["metric"] == "f1"
    assert doc["variants"] == [v["name"] for v in ra["variants"]]
    assert doc["values"][1][0] == rb["metrics"]["clean"]["all"]["f1"]
    assert doc["groups"] == ["clean", "visual", "text", "joint"]
    assert doc["group_values"][0][2] == ra["summary"]["groups"]["text"]["f1"]
    assert (tmp_path / "cmp" / "compare.png").is_file() and (tmp_path / "cmp" / "compare.json").is_file()
    with pytest.raises(UsageError, match="at least two"):
        run_compare([str(a)])
    with pytest.raises(UsageError, match="no results at"):
        run_compare([str(a), str(tmp_path / "nothing")])


def test_compare_refuses_runs_that_measured_different_things_unless_common(suite_file, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _run(suite_file, a, FakeModel())
    run_eval(str(suite_file), "fake-model", out=b, limit=LIMIT + 1, generate=FakeModel().generate,
             load_model=FakeModel().load, cache_dir=tmp_path / "ic", console=Console(quiet=True))  # fmt: skip
    with pytest.raises(UsageError, match=r"limit 2 vs 3.*--common"):
        run_compare([str(a), str(b)], console=Console(quiet=True))
    doc = run_compare([str(a), str(b)], common=True, console=Console(quiet=True))
    assert doc["common_questions"] == 3 * LIMIT
    assert doc["values"][0] == doc["values"][1]  # same fake answers on the same questions
    other = json.loads((a / "results.json").read_text())
    other["suite"]["name"] = "another-suite"
    c.mkdir()
    (c / "results.json").write_text(json.dumps(other))
    with pytest.raises(UsageError, match="suite 'mini' vs 'another-suite'"):
        run_compare([str(a), str(c)], console=Console(quiet=True))
    with pytest.raises(UsageError, match="unknown metric 'bleu'"):
        run_compare([str(a), str(a)], metric="bleu", console=Console(quiet=True))


@pytest.mark.parametrize("layout", ["llava", "hf"])
def test_pope_suite_on_real_layouts_asks_every_question_once_with_one_instruction(tmp_path, layout):
    """The shipped `pope` suite on a small POPE folder (--pope-root); the join rule of each split is in
    results.json; a label file that cannot label every question stops the run before the model loads."""
    from pope_fixtures import SUFFIX, make_hf_layout, make_llava_layout

    root = (make_llava_layout if layout == "llava" else make_hf_layout)(tmp_path / "pope")
    fake = FakeModel()
    res = run_eval(
        "pope",
        "fake-model",
        out=tmp_path / "ev",
        data_vars={"pope_root": str(root)},
        generate=fake.generate,
        load_model=fake.load,
        cache_dir=tmp_path / "img-cache",
        console=Console(quiet=True),
    )
    assert len(fake.requests) == 18 and all(r.text.count(SUFFIX) == 1 for r in fake.requests)
    assert res["metrics"]["clean"]["all"]["n"] == 18
    report = res["data_report"]
    assert report["layout"] == layout
    if layout == "llava":
        assert {s: v["joined_by"] for s, v in report["splits"].items()} == {
            "adversarial": "question_id",
            "popular": "image+text",
            "random": "image+text",
        }
        labels = root / "coco" / "coco_pope_random.json"
        labels.write_text("".join(labels.read_text().splitlines(keepends=True)[:-1]))
        fake = FakeModel()
        with pytest.raises(DataError, match="1 of 6 questions of split 'random'"):
            run_eval("pope", "m", out=tmp_path / "ev2", data_vars={"pope_root": str(root)},
                     generate=fake.generate, load_model=fake.load, console=Console(quiet=True))  # fmt: skip
        assert fake.loads == 0


def test_prefetch_keeps_order_and_raises_producer_errors():
    from vittle_cli.eval.answering import prefetch as _prefetch

    assert list(_prefetch(iter(range(5)))) == [0, 1, 2, 3, 4]

    def broken():
        yield 1
        raise ValueError("bad image")

    with pytest.raises(ValueError, match="bad image"):
        list(_prefetch(broken()))


def test_questions_are_streamed_in_chunks_not_materialised(suite_file, tmp_path):
    fake = FakeModel()
    sizes = []

    def generate(model, processor, requests, **kw):
        sizes.append(len(requests))
        return fake.generate(model, processor, requests, **kw)

    run_eval(
        str(suite_file),
        "fake-model",
        out=tmp_path / "ev",
        limit=6,
        batch_size=1,
        generate=generate,
        load_model=fake.load,
        cache_dir=tmp_path / "img-cache",
        console=Console(quiet=True),
    )
    assert sum(sizes) == 4 * 3 * 6
    # variants sharing an image are answered together (2 per visual shift here), a few images per call
    assert len(sizes) >= 4 and max(sizes) < 2 * 3 * 6


def test_compare_columns_are_the_shortest_tails_that_tell_models_apart():
    from vittle_cli.eval.compare import column_labels

    docs = [
        {"model": m, "_path": f"/e/{i}/results.json"}
        for i, m in enumerate(
            ["demo-out/runs/tiny_baseline", "demo-out/runs/tiny", "other/runs/tiny", "other/runs/tiny"]
        )
    ]
    assert column_labels(docs[:2]) == ["tiny_baseline", "tiny"]
    assert column_labels(docs[1:3]) == ["demo-out/runs/tiny", "other/runs/tiny"]
    assert column_labels(docs[2:]) == ["tiny (/e/2)", "tiny (/e/3)"]
