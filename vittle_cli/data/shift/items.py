"""What every evaluation task's data loads into: items, an image source and a data report.

A task family (vittle_cli.eval.tasks) turns its files into an `ItemSet`; the runner perturbs and prompts
the items without knowing the benchmark. An item may show no image, one, or several (keys into the
set's `ImageSource`), and may carry a reference answer, options and free metadata for its scorer.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from vittle_cli.errors import DataError


@dataclass(frozen=True)
class EvalItem:
    """One question of a benchmark, before any shift.

    Attributes:
        question_id: the benchmark's id (a string). split: the split / category it is scored in.
        images: image keys (0, 1 or several), looked up in the set's ImageSource.
        text: the question alone (the part text shifts perturb), without the suite's instruction.
        label: the reference answer ("yes"/"no" for POPE, a letter, a reference text), or None.
        options: answer options of a multiple-choice item. metadata: anything else a scorer needs.
    """

    question_id: str
    split: str
    images: tuple[str, ...]
    text: str
    label: str | None
    options: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> str | None:
        """The first image key, or None for a text-only item."""
        return self.images[0] if self.images else None


class ImageSource:
    """Where item images come from: `open(key)` gives an RGB PIL image."""

    def open(self, key: str) -> Image.Image:
        raise NotImplementedError

    def missing(self, keys: Iterable[str]) -> list[str]:
        """Keys that cannot be opened (checked cheaply, before any model work)."""
        return []

    def describe(self) -> str:
        return type(self).__name__


def _decode(data: bytes | Path, what: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            return im.convert("RGB")
    except OSError as e:
        raise DataError(f"cannot read image {what}: {e}") from None


@dataclass
class FolderImages(ImageSource):
    """Images as files under `root`; keys are paths relative to it."""

    root: Path

    def open(self, key: str) -> Image.Image:
        return _decode(self.root / key, str(self.root / key))

    def missing(self, keys: Iterable[str]) -> list[str]:
        return sorted({k for k in keys if not (self.root / k).is_file()})

    def describe(self) -> str:
        return str(self.root)


@dataclass
class BytesImages(ImageSource):
    """Encoded images held in memory (e.g. the bytes column of a parquet file); keys are their ids."""

    data: dict[str, bytes]
    origin: str = "embedded image bytes"

    def open(self, key: str) -> Image.Image:
        if key not in self.data:
            raise DataError(f"no image {key!r} in {self.origin}")
        return _decode(self.data[key], f"{key!r} of {self.origin}")

    def missing(self, keys: Iterable[str]) -> list[str]:
        return sorted({k for k in keys if k not in self.data})

    def describe(self) -> str:
        return self.origin


@dataclass
class DataReport:
    """What loading found: the layout, counts and join rule per split, the instruction found in the
    files, and warnings. Written into results.json as `data_report`."""

    layout: str = ""
    splits: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"layout": self.layout, "splits": self.splits, "warnings": list(self.warnings), **self.extra}


@dataclass
class ItemSet:
    """A loaded benchmark: items in file order, where their images come from, and the report."""

    items: list[EvalItem]
    images: ImageSource
    report: DataReport
