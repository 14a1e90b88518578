"""POPE in the Hugging Face `lmms-lab/POPE` layout (what lmms-eval reads).

Columns: question_id (string), question, answer ("yes"/"no"), image_source (COCO file stem, e.g.
"COCO_val2014_000000310196"), image ({bytes, path} struct in parquet), category (the split). Accepted
as one parquet file, a folder of parquet shards (`data/test-0000N-of-00003.parquet` in the hub repo), a
`Dataset.save_to_disk` folder, or a hub id loaded through `datasets.load_dataset` (online only).
Images come from the embedded bytes, one copy per image_source.
"""

from __future__ import annotations

from pathlib import Path

from vittle_cli.data.shift.items import BytesImages, DataReport, EvalItem, ItemSet
from vittle_cli.errors import DataError

HUB_ID = "lmms-lab/POPE"
COLUMNS = ("question_id", "question", "answer", "image_source", "image", "category")


def parquet_files(path: Path) -> list[Path]:
    """The parquet files of a file or folder (searched recursively, sorted), [] when none."""
    if path.is_file():
        return [path] if path.suffix == ".parquet" else []
    return sorted(path.rglob("*.parquet")) if path.is_dir() else []


def is_saved_dataset(path: Path) -> bool:
    """A `save_to_disk` folder (a Dataset, or a DatasetDict of them)."""
    return path.is_dir() and any((path / f).is_file() for f in ("state.json", "dataset_dict.json"))


def _rows_from_parquet(files: list[Path]) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for f in files:
        try:
            table = pq.read_table(f)
        except Exception as e:  # pyarrow raises several types for a corrupt or non-parquet file
            raise DataError(f"cannot read parquet file {f}: {e}") from None
        _check_columns(table.column_names, f)
        rows += table.select(list(COLUMNS)).to_pylist()
    return rows


def _rows_from_datasets(source: str | Path) -> list[dict]:
    """Rows of a save_to_disk folder or a hub dataset, with images as {bytes, path} (not decoded)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"reading {source} needs the `datasets` package: pip install datasets") from None
    try:
        if isinstance(source, Path):
            ds = datasets.load_from_disk(str(source))
        else:
            ds = datasets.load_dataset(source, split="test")
    except Exception as e:  # offline, unknown id, corrupt folder: one line, with the way out
        raise DataError(
            f"cannot load {source} with datasets ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            f"download it once (huggingface-cli download {HUB_ID} --repo-type dataset --local-dir DIR) and "
            "pass --pope-root DIR"
        ) from None
    if isinstance(ds, datasets.DatasetDict):
        if "test" not in ds:
            raise DataError(f"{source} has splits {', '.join(ds)}; expected a 'test' split")
        ds = ds["test"]
    _check_columns(ds.column_names, source)
    ds = ds.cast_column("image", datasets.Image(decode=False))
    return [dict(r) for r in ds.select_columns(list(COLUMNS))]


def _check_columns(names: list[str], source) -> None:
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{source} lacks column(s) {', '.join(missing)} of the {HUB_ID} layout (has {', '.join(names)})"
        )


def load_hf_layout(source: str | Path, splits: list[str]) -> ItemSet:
    """Load POPE from parquet file(s), a save_to_disk folder or a hub id (see the module docstring).

    Raises:
        DataError: unreadable files, missing columns, bad answers, duplicate ids, rows without image bytes.
    """
    if isinstance(source, Path) and not is_saved_dataset(source):
        files = parquet_files(source)
        if not files:
            raise DataError(f"no parquet files under {source}")
        rows, origin = _rows_from_parquet(files), f"{len(files)} parquet file(s) under {source}"
    else:
        rows, origin = _rows_from_datasets(source), str(source)
    images: dict[str, bytes] = {}
    items: list[EvalItem] = []
    seen: set[str] = set()
    other: dict[str, int] = {}
    for n, r in enumerate(rows, 1):
        qid, split = str(r["question_id"]), str(r["category"])
        if split not in splits:
            other[split] = other.get(split, 0) + 1
            continue
        if qid in seen:
            raise DataError(f"{origin} repeats question_id {qid}; ids must be unique")
        seen.add(qid)
        answer = str(r["answer"]).strip().lower()
        if answer not in ("yes", "no"):
            raise DataError(
                f"{origin} row {n} (question_id {qid}) has answer {r['answer']!r}; expected yes or no"
            )
        key = str(r["image_source"])
        blob = (r["image"] or {}).get("bytes") if isinstance(r["image"], dict) else None
        if key not in images:
            if not blob:
                raise DataError(f"{origin} row {n} (question_id {qid}) has no image bytes")
            images[key] = blob
        items.append(EvalItem(qid, split, (key,), str(r["question"]).strip(), answer))
    report = DataReport(layout="hf", extra={"source": str(source), "instruction_in_file": None})
    report.warnings += [
        f"{n} questions of category {c!r} skipped (not one of the suite's splits {splits})"
        for c, n in sorted(other.items())
    ]
    for split in splits:
        count = sum(it.split == split for it in items)
        report.splits[split] = {"questions": count, "label_rows": count, "joined_by": "same row"}
    return ItemSet(items=items, images=BytesImages(images, origin), report=report)
