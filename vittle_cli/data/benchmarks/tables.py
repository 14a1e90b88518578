"""Read a benchmark's table from wherever the user keeps it: a parquet file, a folder of parquet files
(a Hugging Face dataset repo checked out or downloaded), a `datasets.save_to_disk` folder, or a hub id
loaded through `datasets.load_dataset` (only when the user names one; honours HF_HUB_OFFLINE).

Everything becomes one pyarrow Table. Image columns keep the `datasets` Image encoding, a struct
{bytes, path}, and are decoded one row at a time when a question is asked, so a 1.7 GB benchmark is
never held decoded in memory.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vittle_cli.errors import DataError


class BenchmarkSchemaError(DataError):
    """A benchmark table that lacks a column or an image (exit 2: the user fixes the data or the flag)."""

    exit_code = 2


@dataclass
class BenchmarkTable:
    """A loaded table and where it came from (for messages and for image paths relative to it)."""

    table: object  # pyarrow.Table
    source: str
    root: Path | None  # folder that relative image paths are resolved against

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def __len__(self) -> int:
        return self.table.num_rows

    def rows(self, columns: list[str]) -> list[dict]:
        """The given (non-image) columns as a list of row dicts."""
        return self.table.select(columns).to_pylist()

    def cell(self, row: int, column: str):
        return self.table.column(column)[row].as_py()


def _parquet_files(folder: Path, split: str, config: str | None) -> list[Path]:
    """The folder's parquet files of `split` (HF layout `<split>-00000-of-0000N.parquet`, in any
    subfolder, e.g. one per MMMU subject), limited to the `config` subfolder when there is one."""
    base = folder / config if config and (folder / config).is_dir() else folder
    files = sorted(base.rglob("*.parquet"))
    of_split = [f for f in files if f.name.startswith(f"{split}-") or f.name == f"{split}.parquet"]
    return of_split or files  # single-file sets (MMStar's mmstar.parquet) carry one split


def _concat(tables: list, source: str):
    import pyarrow as pa

    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(f"the parquet files of {source} do not share one schema: {e}") from None


def _from_disk(folder: Path, split: str):
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(folder))
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise BenchmarkSchemaError(
                f"{folder} (save_to_disk) has splits {', '.join(ds)}, not {split!r}; set the suite's "
                "data.closedqa.split"
            )
        ds = ds[split]
    return ds.data.table


def _from_hub(repo: str, config: str | None, split: str):
    from datasets import load_dataset

    try:
        ds = load_dataset(repo, config, split=split)
    except Exception as e:  # datasets raises many types (offline, missing config, auth)
        raise DataError(
            f"cannot load {repo!r} (config {config!r}, split {split!r}) from the Hugging Face hub: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__} (download it once, or pass a "
            "local parquet file or folder with --source)"
        ) from None
    return ds.data.table


def open_table(
    source: str, *, split: str, config: str | None = None, hub_configs: list[str] | None = None
) -> BenchmarkTable:
    """Load `source` as one table.

    Args:
        source: a .parquet file, a folder of parquet files, a save_to_disk folder, or a hub id.
        split: the split to read (file-name prefix in parquet folders, key in a DatasetDict, hub split).
        config: the hub config (also the subfolder of a parquet folder, e.g. ScienceQA-IMG).
        hub_configs: configs to load and concatenate from the hub when `config` is None (MMMU's subjects).
    Raises:
        DataError: the source does not exist or cannot be read.
    """
    import pyarrow.parquet as pq

    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".parquet":
            raise DataError(f"{path} is not a .parquet file (pass a parquet file or folder, or a hub id)")
        return BenchmarkTable(pq.read_table(path, memory_map=True), str(path), path.parent)
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            return BenchmarkTable(_from_disk(path, split), str(path), path)
        files = _parquet_files(path, split, config)
        if not files:
            raise DataError(f"no .parquet files under {path} (expected <split>-*.parquet files)")
        tables = [pq.read_table(f, memory_map=True) for f in files]
        return BenchmarkTable(_concat(tables, str(path)), str(path), path)
    if source.count("/") == 1 and not source.startswith((".", "/", "~")):
        configs = [config] if config or not hub_configs else hub_configs
        tables = [_from_hub(source, c, split) for c in configs]
        return BenchmarkTable(_concat(tables, source), source, None)
    raise DataError(f"benchmark data not found: {source} (a parquet file or folder, or a hub id owner/name)")


def require_columns(table: BenchmarkTable, needed: list[str], benchmark: str, hint: str) -> None:
    """Raise BenchmarkSchemaError naming every missing column and where the right layout comes from."""
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise BenchmarkSchemaError(
            f"{benchmark} data {table.source} lacks column(s) {', '.join(missing)} (it has "
            f"{', '.join(table.columns)}); {hint}"
        )


def decode_image(value, *, root: Path | None, what: str) -> Image.Image:
    """An RGB image from a `datasets` Image cell ({bytes, path}, or raw bytes).

    Raises:
        BenchmarkSchemaError: an empty cell or a file that is not there. DataError: undecodable bytes.
    """
    data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (value, None)
    try:
        if data:
            with Image.open(io.BytesIO(data)) as im:
                return im.convert("RGB")
        if path:
            full = Path(path) if Path(path).is_absolute() or root is None else root / path
            if full.is_file():
                with Image.open(full) as im:
                    return im.convert("RGB")
    except OSError as e:
        raise DataError(f"cannot decode {what}: {e}") from None
    raise BenchmarkSchemaError(
        f"{what} has no image (empty bytes{f', path {path} not found' if path else ''}); use the "
        "dataset's parquet files, which embed the image bytes"
    )


def empty_image_rows(table: BenchmarkTable, column: str) -> list[int]:
    """Rows whose image cell holds neither bytes nor a path (checked column-wise, without decoding)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.table.column(column)
    if not pa.types.is_struct(col.type):
        return [i for i, v in enumerate(col.to_pylist()) if not v]
    empty = pc.and_(pc.is_null(pc.struct_field(col, "bytes")), pc.is_null(pc.struct_field(col, "path")))
    empty = pc.or_(empty, pc.is_null(col))
    return [i for i, e in enumerate(empty.to_pylist()) if e]
