"""Closed-form QA families: ScienceQA-IMG, MMMU, MME and MMStar (`task: scienceqa | mmmu | mme | mmstar`).

Data: the lmms-eval task data (vittle_cli.data.benchmarks), from `data: {source, split, config}` with
`${source}` filled by `--source`. Prompt: the suite's `task_options.prompt` templates (only the question
stem is ever shifted). Scoring: each benchmark's reference parser and aggregation
(vittle_cli.eval.scoring.closedqa), with the count of unparsed answers next to every accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from pydantic import ValidationError

from vittle_cli.data.benchmarks.closedqa import load_closedqa
from vittle_cli.data.benchmarks.images import TableImages
from vittle_cli.data.benchmarks.prompt import place_images, render_text
from vittle_cli.data.benchmarks.spec import ClosedQAData, ClosedQAOptions, validation_problems
from vittle_cli.data.benchmarks.tables import BenchmarkSchemaError, empty_image_rows
from vittle_cli.data.shift.items import DataReport, EvalItem, ItemSet
from vittle_cli.data.shift.suite import Suite
from vittle_cli.errors import UsageError
from vittle_cli.eval.scoring.closedqa import score_closedqa
from vittle_cli.eval.tasks import register_task
from vittle_cli.eval.tasks.base import Column, TaskFamily
from vittle_cli.model.prompt import IMAGE_SLOT

HUB_IDS = {
    "scienceqa": "lmms-lab/ScienceQA",
    "mmmu": "MMMU/MMMU",
    "mme": "lmms-lab/MME",
    "mmstar": "Lin-Chen/MMStar",
}
ACCURACY = (Column("acc", "accuracy"), Column("unparsed", "unparsed", percent=False))


class ClosedQATask(TaskFamily):
    """What the four benchmarks share; subclasses name the benchmark and its headline metrics."""

    metric_keys: ClassVar[tuple[str, ...]] = ("accuracy", "unparsed")
    primary_metric = "accuracy"
    drop_metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    columns = ACCURACY

    def check_suite(self, suite: Suite) -> list[str]:
        problems = []
        if not isinstance(suite.data, dict):
            problems.append("data: needs a mapping {source, split, config} (see recipes/suites/mmmu.yaml)")
        else:
            try:
                ClosedQAData.model_validate(suite.data)
            except ValidationError as e:
                problems += validation_problems(e, "data")
        try:
            ClosedQAOptions.model_validate(suite.task_options)
        except ValidationError as e:
            problems += validation_problems(e, "task_options")
        return problems

    def load(self, suite: Suite, *, check_images: bool = True) -> ItemSet:
        if suite.placeholders():
            raise UsageError(
                f"suite {suite.name!r} needs its data: pass --source FILE|DIR|HUB_ID (a parquet file or "
                f"folder, a save_to_disk folder, or the hub id, e.g. --source {HUB_IDS[self.name]})"
            )
        spec = ClosedQAData.model_validate(suite.data)
        data = load_closedqa(self.name, spec.source, split=spec.split, config=spec.config)
        if check_images:
            _check_images(data)
        items, cells = [], {}
        for it in data.items:
            keys = []
            for col in it.image_columns:
                key = f"{it.image_key}/{col}" if self.name == "mmmu" else it.image_key
                cells.setdefault(key, (it.row, col))
                keys.append(key)
            items.append(
                EvalItem(
                    it.question_id, it.split, tuple(keys), it.question, it.answer, it.options, {"item": it}
                )
            )
        groups: dict[str, int] = {}
        for it in items:
            groups[it.split] = groups.get(it.split, 0) + 1
        report = DataReport(
            layout=self.name,
            splits={g: {"questions": n} for g, n in sorted(groups.items())},
            extra={
                "source": data.table.source,
                "split": spec.split,
                "config": spec.config,
                "rows": len(items),
            },
        )
        return ItemSet(items, TableImages(data.table, cells), report)

    def prompt(self, suite: Suite, item: EvalItem, question: str) -> str:
        it = item.metadata["item"]
        text = render_text(it, ClosedQAOptions.model_validate(suite.task_options).prompt, question)
        return place_images(text, it.image_columns, IMAGE_SLOT) if self.name == "mmmu" else text

    def record_fields(self, item: EvalItem) -> dict:
        it = item.metadata["item"]
        return {"kind": it.kind, "options": list(it.options)} if it.options else {"kind": it.kind}

    def resources(self, suite, out_dir, console) -> dict:
        return {"seed": suite.seed}  # MMMU's random pick for unparsed answers is seeded per question

    def score(self, records: Sequence[Mapping], items: Mapping[str, EvalItem], resources) -> dict:
        answered = [(items[r["question_id"]].metadata["item"], r["answer"]) for r in records]
        metrics = score_closedqa(self.name, answered, seed=(resources or {}).get("seed", 0))
        metrics["splits"] = metrics.pop("groups")
        return metrics


def _check_images(data) -> None:
    """Every image a question shows is in the table (named by row id and column)."""
    for col in sorted({c for it in data.items for c in it.image_columns}):
        empty = set(empty_image_rows(data.table, col))
        bad = [it.question_id for it in data.items if it.row in empty and col in it.image_columns]
        if bad:
            listed = ", ".join(bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
            raise BenchmarkSchemaError(
                f"{len(bad)} {data.benchmark} question(s) have no image in column {col!r}: {listed}; "
                "use the dataset's parquet files, which embed the image bytes"
            )


@register_task
class ScienceQATask(ClosedQATask):
    """ScienceQA-IMG: accuracy by LLaVA's eval_science_qa rule, per subject."""

    name = "scienceqa"


@register_task
class MMMUTask(ClosedQATask):
    """MMMU: accuracy by MMMU's parsers (choice and open), per subject and discipline."""

    name = "mmmu"


@register_task
class MMETask(ClosedQATask):
    """MME: the official perception and cognition totals (sums of acc + acc+ per subtask)."""

    name = "mme"
    metric_keys = ("perception", "cognition", "accuracy", "unparsed")
    primary_metric = "perception"
    secondary_metric = "cognition"
    drop_metrics = ("perception", "cognition", "accuracy")
    columns = (
        Column("perception", "perception", percent=False),
        Column("cognition", "cognition", percent=False),
        *ACCURACY,
    )


@register_task
class MMStarTask(ClosedQATask):
    """MMStar: the mean over l2 categories (lmms-eval's "average"), plain accuracy too."""

    name = "mmstar"
    metric_keys = ("average", "accuracy", "unparsed")
    primary_metric = "average"
    secondary_metric = "accuracy"
    drop_metrics = ("average", "accuracy")
    columns = (Column("average", "average"), *ACCURACY)
