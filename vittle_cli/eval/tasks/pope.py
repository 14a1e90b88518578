"""The POPE family: yes/no questions, scored by LLaVA's eval_pope.py rule (vittle_cli.eval.metrics)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vittle_cli.data.shift.items import ItemSet
from vittle_cli.data.shift.questions import load_suite_data
from vittle_cli.data.shift.suite import Suite
from vittle_cli.eval.metrics import METRIC_KEYS, score_predictions
from vittle_cli.eval.tasks import register_task
from vittle_cli.eval.tasks.base import Column, TaskFamily


@register_task
class PopeTask(TaskFamily):
    name = "pope"
    metric_keys = METRIC_KEYS
    primary_metric = "f1"
    secondary_metric = "accuracy"
    drop_metrics = ("f1", "accuracy")
    columns = (
        Column("acc", "accuracy"),
        Column("prec", "precision"),
        Column("rec", "recall"),
        Column("F1", "f1"),
        Column("yes", "yes_ratio"),
        Column("ambig.", "ambiguous", percent=False),
    )

    def load(self, suite: Suite, *, check_images: bool = True) -> ItemSet:
        return load_suite_data(suite, check_images=check_images)

    def score(self, records: Sequence[Mapping], items, resources) -> dict:
        return score_predictions(records)
