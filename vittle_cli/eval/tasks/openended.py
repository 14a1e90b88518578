"""The LLM-judged family (`task: openended`): LLaVA-Bench-COCO and its shifts, LLaVA-Bench-in-the-Wild,
LLaVA-Bench-Wilder and WildVision-Bench.

Its runs have stages the generic runner has no place for: translations made before answering, several
judge runs per answer cached in judgments.jsonl, and the representation shift per variant. So `vittle eval`
hands a whole run of this family to vittle_cli.eval.openended.run_openended_eval; the class here declares
the family (its suite check, metrics and table columns) for the registry, compare and the docs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vittle_cli.data.shift.suite import OpenEndedData, Suite
from vittle_cli.errors import UsageError
from vittle_cli.eval.openended import TASK_INFO
from vittle_cli.eval.tasks import register_task
from vittle_cli.eval.tasks.base import Column, TaskFamily


@register_task
class OpenEndedTask(TaskFamily):
    name = "openended"
    metric_keys = tuple(TASK_INFO["metric_keys"])
    primary_metric = "relative_score"
    drop_metrics = ("relative_score",)
    columns = tuple(Column(h, k, p) for h, k, p in TASK_INFO["columns"])

    def check_suite(self, suite: Suite) -> list[str]:
        problems = []
        if not isinstance(suite.data, OpenEndedData):
            problems.append(
                "data must be {openended: {layout, questions, rules, answers, context, image_root}}"
            )
        bad = [m for m in suite.metrics if m != "relative_score"]
        if bad:
            problems.append(f"metrics {', '.join(bad)} do not apply; the judged suites report relative_score")
        return problems

    def score(self, records: Sequence[Mapping], items, resources) -> dict:
        # Scores come from the judge's cached reviews of each answer, which the records do not hold.
        raise UsageError(
            "LLM-judged runs cannot be rescored from their predictions alone (compare --common); compare "
            "runs of the same questions, or rerun vittle eval with --limit to score a common subset"
        )
