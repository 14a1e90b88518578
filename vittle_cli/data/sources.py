"""Open a training-data source as an Arrow-backed `datasets.Dataset` of raw rows.

Sources (each entry of data.train / data.eval):
  builtin:shapes                      the built-in synthetic set (LLaVA JSON + its image folder)
  builtin:shapes-captions             its stage-1 captions (one per training image, same images)
  file.json / file.jsonl              one sample per element/line, in any format of formats.py
  file.parquet / a save_to_disk dir   any of those forms, as written by `datasets`
  owner/name                          a Hugging Face hub data set (split "train"), via datasets.load_dataset

JSON is parsed with the json module and normalised before it becomes Arrow: `datasets`' own JSON reader
turns ids such as "000123" into 123 when ints and strings mix, and rejects rows with extra keys.
Rows are read back in Arrow format, so image columns stay undecoded ({"bytes", "path"}) until needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vittle_cli.data.formats import (
    FORMATS,
    LLAVA,
    as_list,
    check_format_fits,
    detect_format,
    item_path,
    turns_of,
)
from vittle_cli.errors import DataError, MissingDataError
from vittle_cli.fileio import read_utf8

NORMALISED_VERSION = 3  # bump when the normalisation changes, so cached Arrow copies of JSON are redone
FORMAT_FILE = "vittle_format.txt"  # the detected format, kept beside a cached Arrow copy
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Source:
    """Rows of one data source, their format, and the path rule for the image paths written in them."""

    name: str
    rows: Any  # datasets.Dataset in Arrow format
    form: str  # one of formats.FORMATS
    image_root: Path
    enforce_root: bool = False  # data.image_root was given: paths must stay inside it

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> dict:
        return self.rows[index].to_pylist()[0]

    def iter_rows(self, batch_size: int = 1000):
        for batch in self.rows.iter(batch_size=batch_size):
            yield from batch.to_pylist()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _normalise_llava(row: dict, index: int) -> dict:
    return {
        "id": str(index if row.get("id") is None else row["id"]),
        "image": [str(p) for p in as_list(row.get("image"))],
        "conversations": [
            {"from": _text(t.get("from", t.get("role"))), "value": _text(t.get("value", t.get("content")))}
            for t in turns_of(row)
            if isinstance(t, dict)
        ],
    }


def _normalise_item(c: dict) -> dict:
    path = item_path(c)
    return {
        "type": _text(c.get("type", "text")),
        "text": None if c.get("text") is None else str(c.get("text")),
        "image": None if path is None or isinstance(path, dict) else str(path),
    }


def _normalise_content(content: Any) -> list[dict]:
    # Arrow needs one type per column: a plain-string content becomes one text item
    if not isinstance(content, list | tuple):
        return [{"type": "text", "text": _text(content), "image": None}]
    return [_normalise_item(c) for c in content if isinstance(c, dict)]


def _path_of(value: Any) -> str:
    return str(value.get("path") if isinstance(value, dict) else value)


def _normalise_video(value: Any) -> dict:
    """A video file or a list of frame files (LLaMA-Factory's two forms) as one Arrow type."""
    frames = value.get("frames") if isinstance(value, dict) else value
    if isinstance(frames, list | tuple):
        return {"path": None, "frames": [_path_of(f) for f in frames]}
    return {"path": _path_of(value), "frames": None}


def _normalise_messages(row: dict, index: int) -> dict:
    return {
        "id": str(index if row.get("id") is None else row["id"]),
        "images": [_path_of(p) for p in as_list(row.get("images"))],
        "videos": [_normalise_video(v) for v in as_list(row.get("videos"))],
        "messages": [
            {
                "role": _text(m.get("role", m.get("from"))),
                "content": _normalise_content(m.get("content", m.get("value"))),
            }
            for m in turns_of(row)
            if isinstance(m, dict)
        ],
    }


def _read_json_rows(path: Path) -> list:
    text = read_utf8(path, "data source")
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"data source {path}: line {n} is not valid JSON ({e}); fix the file") from e
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"data source {path}: not valid JSON ({e}); fix the file") from e
    if not isinstance(data, list):
        raise DataError(f"data source {path}: expected a JSON list of samples, got {type(data).__name__}")
    return data


def _json_to_arrow(path: Path, fmt: str | None = None):
    """(normalised Arrow rows, format) of a JSON/JSONL file; `fmt` forces the format, None detects it."""
    from datasets import Dataset

    raw = [r for r in _read_json_rows(path) if isinstance(r, dict)]
    if not raw:
        raise DataError(f"data source {path}: no samples found; check the file")
    if fmt is None:
        fmt = detect_format(raw, str(path))
    check_format_fits(fmt, raw[0], str(path))
    norm = _normalise_llava if fmt == LLAVA else _normalise_messages
    return Dataset.from_list([norm(r, i) for i, r in enumerate(raw)]), fmt


@contextmanager
def _quiet_datasets():
    """No `datasets` progress bars for vittle's own bookkeeping (the user sees vittle's report instead)."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _from_json(path: Path, cache_dir: Path | None, fmt: str | None = None):
    """The normalised rows of a JSON/JSONL file and their format. With a cache_dir they are saved once as
    Arrow and memory-mapped from then on, so a large file is parsed once, not once per run and rank."""
    import datasets

    if cache_dir is None:
        return _json_to_arrow(path, fmt)
    st = path.stat()
    stamp = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{NORMALISED_VERSION}|{fmt}"
    cached = Path(cache_dir) / "json-sources" / f"{path.stem}-{hashlib.sha1(stamp.encode()).hexdigest()[:16]}"
    if not cached.is_dir():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}.", dir=cached.parent))
        try:
            with _quiet_datasets():
                rows, detected = _json_to_arrow(path, fmt)
                rows.save_to_disk(str(tmp))
            (tmp / FORMAT_FILE).write_text(detected)
            try:
                tmp.rename(cached)
            except OSError:  # another rank won the race; its copy is identical
                if not cached.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(cached)), (cached / FORMAT_FILE).read_text().strip()


def _format_of_rows(rows, fmt: str | None, name: str) -> str:
    """The format of an Arrow source (parquet, save_to_disk, hub), from its first row unless forced."""
    first = rows[0] if len(rows) else {c: None for c in rows.column_names}
    if fmt is None:  # the schema names every column any row has (a null where a row lacks it)
        return detect_format({**{c: None for c in rows.column_names}, **first}, name)
    check_format_fits(fmt, first, name)
    return fmt


def _from_hub(name: str, cache_dir: Path | None):
    """A hub data set's train split (online; honours HF_HUB_OFFLINE)."""
    import datasets

    kwargs = {"cache_dir": str(cache_dir)} if cache_dir else {}
    try:
        with _quiet_datasets():
            return datasets.load_dataset(name, split="train", **kwargs)
    except Exception as e:  # offline, unknown name, no train split: all mean "cannot use this source"
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") in ("1", "true") else ""
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"data source {name}: not a local file or folder, and loading it from the hub failed{offline}: "
            f"{first}; check the name, or download it first (datasets' load_dataset(...).save_to_disk(folder))"
        ) from e


def _open_local(path: Path, spec: str, cache_dir: Path | None, fmt: str | None):
    """(rows, format, default image folder) of a local file or folder."""
    if path.is_dir():
        import datasets

        try:
            rows = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as e:
            raise DataError(f"data source {spec}: not a `datasets` save_to_disk folder ({e})") from e
        if isinstance(rows, datasets.DatasetDict):
            if "train" not in rows:
                raise DataError(f"data source {spec}: dataset dict without a 'train' split ({list(rows)})")
            rows = rows["train"]
        return rows, _format_of_rows(rows, fmt, spec), path
    if path.suffix in (".json", ".jsonl"):
        rows, form = _from_json(path, cache_dir, fmt)
        return rows, form, path.parent
    if path.suffix == ".parquet":
        import datasets

        kwargs = {"cache_dir": str(cache_dir)} if cache_dir else {}
        with _quiet_datasets():
            rows = datasets.load_dataset("parquet", data_files=str(path), split="train", **kwargs)
        return rows, _format_of_rows(rows, fmt, spec), path.parent
    raise DataError(
        f"data source {spec}: unsupported file type {path.suffix!r}; use .json, .jsonl, .parquet, "
        "a `datasets` save_to_disk folder, a hub data set id (owner/name), or builtin:shapes"
    )


def load_source(
    spec: str, image_root: str | None = None, cache_dir: Path | None = None, fmt: str | None = None
) -> Source:
    """Open `spec` (a builtin name, a file, a `save_to_disk` folder or a hub id).

    Args:
        spec: one data source of data.train or data.eval.
        image_root: the folder image paths must lie in (data.image_root); None: relative paths resolve
            against the source's own folder and absolute paths are allowed.
        cache_dir: where Arrow copies of JSON sources and `datasets`' caches go; None: no caching.
        fmt: force a format (formats.FORMATS); None or "auto" detects it.

    Raises:
        DataError: unknown builtin, missing path, unsupported format or columns, hub load failure.
    """
    fmt = None if fmt in (None, "auto") else fmt
    if fmt is not None and fmt not in FORMATS:
        raise DataError(
            f"data source {spec}: unknown format {fmt!r}; use auto or one of {', '.join(FORMATS)}"
        )
    root = Path(image_root).expanduser() if image_root else None
    if spec.startswith("builtin:"):
        from vittle_cli.data.shapes import CAPTIONS_NAME, resolve_builtin_data

        shapes = resolve_builtin_data(spec)
        train = shapes.captions_json if spec == f"builtin:{CAPTIONS_NAME}" else shapes.train_json
        rows, form = _from_json(train, cache_dir, fmt)
        return Source(spec, rows.with_format("arrow"), form, root or shapes.image_root, root is not None)
    path = Path(spec).expanduser()
    if path.exists():
        rows, form, default_root = _open_local(path, spec, cache_dir, fmt)
    elif HUB_ID.match(spec) and not path.suffix:
        rows = _from_hub(spec, cache_dir)
        form, default_root = _format_of_rows(rows, fmt, spec), Path.cwd()
    else:
        raise MissingDataError(
            f"data source {spec}: no such file or folder; check data.train / data.eval (a hub data set is "
            "written owner/name)"
        )
    return Source(spec, rows.with_format("arrow"), form, root or default_root, root is not None)
