"""The task family seam: a family registered in a test plugs into run_eval without runner changes."""

from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image
from rich.console import Console

from vittle_cli.data.shift.items import BytesImages, DataReport, EvalItem, ItemSet
from vittle_cli.errors import UsageError
from vittle_cli.eval.runner import run_eval
from vittle_cli.eval.tasks import Column, TaskFamily, get_task, list_tasks, register_task


def _png(colour) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


@register_task
class ToyChoice(TaskFamily):
    """Multiple choice over 0, 1 or 2 images, scored with an external 'resource'."""

    name = "toy-choice"
    metric_keys = ("exact", "judged")
    primary_metric = "exact"
    secondary_metric = "judged"
    drop_metrics = ("exact",)
    columns = (Column("EM", "exact"), Column("judge", "judged"))
    resources_built = 0

    def check_suite(self, suite):
        return [] if suite.task_options.get("letters") else ["task_options.letters is required"]

    def load(self, suite, *, check_images=True):
        images = BytesImages({"a": _png((255, 0, 0)), "b": _png((0, 0, 255))}, "toy bytes")
        items = [
            EvalItem("1", "s", ("a", "b"), "Which is red?", "A", ("left", "right"), {"k": 1}),
            EvalItem("2", "s", (), "Two plus two?", "B", ("3", "4")),
            EvalItem("3", "t", ("b",), "Colour?", "A", ("blue", "red")),
        ]
        return ItemSet(items, images, DataReport(layout="toy"))

    def prompt(self, suite, item, question):
        opts = "\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(item.options))
        return f"{question}\n{opts}{suite.prompt_suffix}"

    def record_fields(self, item):
        return {"options": list(item.options)}

    def resources(self, suite, out_dir, console):
        type(self).resources_built += 1
        return {"bonus": 0.5}

    def score(self, records, items, resources):
        hits = [r["answer"] == items[r["question_id"]].label for r in records]
        m = {"n": len(hits), "exact": sum(hits) / len(hits), "judged": resources["bonus"]}
        return {"splits": {}, "all": m}


def test_registry_lists_pope_and_refuses_unknown_names():
    assert "pope" in list_tasks() and get_task("pope").primary_metric == "f1"
    with pytest.raises(UsageError, match="known tasks: .*pope"):
        get_task("nope")


def test_a_registered_family_runs_end_to_end(tmp_path):
    suite = tmp_path / "toy.yaml"
    spec = {
        "name": "toy",
        "task": "toy-choice",
        "task_options": {"letters": True},
        "data": {"anything": "the family reads"},
        "prompt_suffix": "\nAnswer with the letter.",
        "max_new_tokens": 5,
        "metrics": ["exact"],
        "variants": [{"name": "clean", "group": "clean"}, {"group": "text", "text": {"name": "keyboard"}}],
    }
    suite.write_text(yaml.safe_dump(spec))
    seen = []

    def generate(model, processor, requests, *, batch_size, max_new_tokens, on_progress=None):
        seen.extend((r, max_new_tokens) for r in requests)
        return ["A" for _ in requests]

    res = run_eval(
        str(suite),
        "m",
        out=tmp_path / "ev",
        generate=generate,
        load_model=lambda *a, **k: (None, None),
        cache_dir=tmp_path / "c",
        console=Console(quiet=True),
    )
    assert {n for _, n in seen} == {5}
    first = [r for r, _ in seen if r.text.startswith("Which is red?")][0]
    assert first.text == "Which is red?\nA. left\nB. right\nAnswer with the letter."
    assert len(first.images) == 2 and first.images[0].getpixel((0, 0)) == (255, 0, 0)
    assert [r.images for r, _ in seen if "plus" in r.text][0] == ()
    assert res["task"]["name"] == "toy-choice" and res["task"]["metric_keys"] == ["exact", "judged"]
    assert res["metrics"]["clean"]["all"]["exact"] == pytest.approx(2 / 3)
    assert res["summary"]["groups"]["text"]["drop_exact"] == pytest.approx(
        2 / 3 - res["metrics"]["keyboard@3"]["all"]["exact"]
    )
    assert ToyChoice.resources_built == 1
    rec = json.loads((tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()[0])
    assert rec["options"] == ["left", "right"] and rec["images"] == ["a", "b"]

    spec["task_options"] = {}
    suite.write_text(yaml.safe_dump(spec))
    with pytest.raises(UsageError, match="task_options.letters is required"):
        run_eval(str(suite), "m", out=tmp_path / "ev2", console=Console(quiet=True))
