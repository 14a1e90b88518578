"""The task family interface: what `vittle eval` needs to know about a kind of benchmark.

The runner owns everything benchmark-independent (variants and shifts, batching, the resumable answer
cache, sharding, results.json, compare); a family owns its data files, its prompt, its scoring and the
metrics it reports. A suite names its family with `task:` (default "pope") and may pass it
`task_options:`; `max_new_tokens:` in the suite caps answer length per suite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from vittle_cli.data.shift.items import EvalItem, ItemSet
from vittle_cli.data.shift.suite import Suite


@dataclass(frozen=True)
class Column:
    """A column of the terminal table: header, metric key, and whether the value is a ratio (shown x100)."""

    header: str
    key: str
    percent: bool = True


class TaskFamily:
    """Base class of a task family; subclass it and decorate the subclass with `@register_task`.

    Class attributes:
        name: the suite's `task:` value.
        metric_keys: keys of every metrics dict the family's `score` returns (results.json `metrics`,
            group means, drops, `vittle eval compare --metric`).
        primary_metric / secondary_metric: the chart's two panels and the default of compare.
        drop_metrics: metrics whose clean-minus-group drop is added to each group mean (`drop_<key>`).
        columns: the terminal table's metric columns.
    """

    name: ClassVar[str]
    metric_keys: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    secondary_metric: ClassVar[str | None] = None
    drop_metrics: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[tuple[Column, ...]] = ()

    def check_suite(self, suite: Suite) -> list[str]:
        """Problems with the suite's `data`, `task_options` or `metrics` for this family (all at once);
        checked before any file is read."""
        return []

    def load(self, suite: Suite, *, check_images: bool = True) -> ItemSet:
        """Read and validate the suite's data (every problem that would spoil a score, up front).

        Raises:
            UsageError: paths still unfilled (name the CLI option). DataError: bad or missing files.
        """
        raise NotImplementedError

    def prompt(self, suite: Suite, item: EvalItem, question: str) -> str:
        """The user message for `item`, given its (possibly perturbed) question. Only `question` may be
        shifted; instructions and options are added here, after the shift."""
        return question + suite.prompt_suffix

    def record_fields(self, item: EvalItem) -> dict[str, Any]:
        """Extra JSON-able fields stored with each prediction (e.g. the options shown)."""
        return {}

    def resources(self, suite: Suite, out_dir: Path, console) -> Any:
        """What scoring needs besides the records (e.g. a judge client); built once per run, and only
        when there are answers to score. `out_dir` may hold the family's own caches (e.g. judge scores)."""
        return None

    def score(
        self, records: Sequence[Mapping], items: Mapping[str, EvalItem], resources: Any
    ) -> dict[str, Any]:
        """Metrics of one variant's prediction records (keys: variant, question_id, split, text, answer,
        label, and `record_fields`).

        Returns:
            {"splits": {split: {metric: value, ..., "n": count}}, "all": {...}}; every metric of
            `metric_keys` present in "all". Must not depend on the order of `records`.
        """
        raise NotImplementedError
