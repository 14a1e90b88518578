"""The images of a benchmark table as an ImageSource: key -> (row, column), decoded on demand."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image

from vittle_cli.data.benchmarks.tables import BenchmarkTable, decode_image
from vittle_cli.data.shift.items import ImageSource
from vittle_cli.errors import DataError


@dataclass
class TableImages(ImageSource):
    """Image cells ({bytes, path} structs) of a benchmark table, looked up by key."""

    table: BenchmarkTable
    cells: dict[str, tuple[int, str]]  # key -> (row, column)

    def open(self, key: str) -> Image.Image:
        if key not in self.cells:
            raise DataError(f"no image {key!r} in {self.table.source}")
        row, column = self.cells[key]
        value = self.table.cell(row, column)
        return decode_image(
            value, root=self.table.root, what=f"{self.table.source} row {row} column {column!r}"
        )

    def missing(self, keys: Iterable[str]) -> list[str]:
        return sorted({k for k in keys if k not in self.cells})

    def describe(self) -> str:
        return self.table.source
