"""Several sources in one run: data.train / data.eval as a list, each entry with its weight or limit.

    dataset, report = build_train_dataset(recipe.data, processor, seed=recipe.train.seed)

An entry's `weight` w makes the source contribute round(w * n) samples to an epoch (n = its usable
samples): 0.5 = half of them, 2 = each twice, 1.5 = each once plus half of them again; the part below one
whole copy is drawn without replacement (seeded). The epoch size, and so the number of optimizer steps T
the alpha schedule runs over, is the sum over the sources. A single source with weight 1 is returned as
its own dataset.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from vittle_cli.data.llava import SourceEntry, TrainDataset, build_dataset
from vittle_cli.data.report import DataReport, check_bad_fraction


def source_entries(value: Any, data: Any) -> list[SourceEntry]:
    """data.train / data.eval (a string, or a list of strings and entries) as resolved SourceEntry list."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(SourceEntry(item, limit=data.limit, image_root=data.image_root, format=data.format))
            continue
        out.append(
            SourceEntry(
                item.path,
                weight=item.weight,
                limit=item.limit if item.limit is not None else data.limit,
                shuffle=item.shuffle,
                image_root=item.image_root if item.image_root is not None else data.image_root,
                format=item.format if item.format is not None else data.format,
            )
        )
    return out


def epoch_indices(n: int, weight: float, seed: int) -> list[int]:
    """The indices (into a source of n samples) one epoch draws for `weight`: whole copies, then the
    fractional part without replacement."""
    count = round(weight * n)
    whole, rest = divmod(count, n) if n else (0, 0)
    picked = list(range(n)) * whole
    picked += sorted(random.Random(seed).sample(range(n), rest))
    return picked


class MixedDataset(Dataset):
    """The datasets of several sources as one, each contributing its weighted share of an epoch.

    Attributes mirror TrainDataset's (lengths, has_image, ids) so samplers and reports work unchanged.
    """

    def __init__(self, parts: list[TrainDataset], entries: list[SourceEntry], seed: int):
        self.parts = parts
        self.entries = entries
        self.index: list[tuple[int, int]] = []
        self.epoch_counts: list[int] = []
        for p, (part, entry) in enumerate(zip(parts, entries, strict=True)):
            picked = epoch_indices(len(part), entry.weight, seed * 1_000_003 + p)
            self.index.extend((p, i) for i in picked)
            self.epoch_counts.append(len(picked))
        self.lengths = [parts[p].lengths[i] for p, i in self.index]
        self.has_image = [parts[p].has_image[i] for p, i in self.index]
        self.seed = seed

    def __len__(self) -> int:
        return len(self.index)

    @property
    def ids(self) -> list[str]:
        return [self.parts[p].ids[i] for p, i in self.index]

    @property
    def problem_log(self) -> Path | None:
        return self.parts[0].problem_log

    @problem_log.setter
    def problem_log(self, path: Path | None) -> None:
        for part in self.parts:
            part.problem_log = path

    def sample_id(self, index: int) -> str:
        p, i = self.index[index]
        return self.parts[p].ids[i]

    def __getitem__(self, index: int):
        p, i = self.index[index]
        return self.parts[p][i]


def combined_report(reports: list[DataReport], name: str) -> DataReport:
    if len(reports) == 1:
        return reports[0]
    combined = DataReport(source=name)
    for report in reports:
        combined.merge(report)
    return combined


def build_mixture(
    value: Any, data: Any, processor: Any, seed: int = 0, cache_dir: Path | None = None
) -> tuple[TrainDataset | MixedDataset, DataReport]:
    """Build every source of `value` (data.train or data.eval) and mix them.

    Returns the dataset (one TrainDataset when it is a single source of weight 1) and the report of all
    sources together; a MixedDataset keeps the per-source reports in `dataset.reports`.
    """
    entries = source_entries(value, data)
    built = [build_dataset(entry, data, processor, seed, cache_dir) for entry in entries]
    parts, reports = [b[0] for b in built], [b[1] for b in built]
    report = combined_report(reports, f"{len(entries)} sources")
    if len(entries) == 1 and entries[0].weight == 1:
        return parts[0], report
    dataset = MixedDataset(parts, entries, seed)
    dataset.reports = reports
    return dataset, report


def build_train_dataset(
    data: Any, processor: Any, seed: int = 0, cache_dir: Path | None = None
) -> tuple[TrainDataset | MixedDataset, DataReport]:
    """The training set of a recipe's data section (data.train), after the pre-scan.

    Raises:
        BadDataError: more than data.max_bad_fraction of the samples failed the pre-scan (exit 1).
        DataError: an unusable source; with on_bad_sample=error, the first bad sample.
    """
    dataset, report = build_mixture(data.train, data, processor, seed, cache_dir)
    check_bad_fraction(report, data.max_bad_fraction)
    return dataset, report


def build_eval_dataset(
    data: Any, processor: Any, seed: int = 0, cache_dir: Path | None = None
) -> tuple[TrainDataset | MixedDataset, DataReport] | None:
    """The held-out set of data.eval (rendered like training data, for eval loss), or None if unset."""
    if not data.eval:
        return None
    return build_mixture(data.eval, data, processor, seed, cache_dir)


def source_rows(dataset, report: DataReport) -> list[tuple[str, int, int, float, int]]:
    """Per source: (name, samples scanned, bad, weight, samples per epoch) for --dry-run and logs."""
    if not isinstance(dataset, MixedDataset):
        return [(report.source, report.total, report.skipped, 1.0, len(dataset))]
    return [
        (r.source, r.total, r.skipped, e.weight, n)
        for r, e, n in zip(dataset.reports, dataset.entries, dataset.epoch_counts, strict=True)
    ]
