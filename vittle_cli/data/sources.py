"""Open a training-data source as an Arrow-backed `datasets.Dataset` of raw rows.

Sources (data.train / data.eval):
  builtin:shapes                      the built-in synthetic set (LLaVA JSON + its image folder)
  file.json / file.jsonl              LLaVA conversations ({"id", "image", "conversations"}) or
                                      chat messages ({"messages", "images"}), one sample per element/line
  file.parquet / a save_to_disk dir   either form, as written by `datasets`

JSON is parsed with the json module and normalised before it becomes Arrow: `datasets`' own JSON reader
turns ids such as "000123" into 123 when ints and strings mix, and rejects rows with extra keys.
Rows are read back in Arrow format, so image columns stay undecoded ({"bytes", "path"}) until needed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vittle_cli.errors import DataError
from vittle_cli.fileio import read_utf8

LLAVA, MESSAGES = "llava", "messages"
NORMALISED_VERSION = 1  # bump when the normalisation changes, so cached Arrow copies of JSON are redone


@dataclass
class Source:
    """Rows of one data source, their form, and the folder relative image paths live in."""

    name: str
    rows: Any  # datasets.Dataset in Arrow format
    form: str  # LLAVA or MESSAGES
    image_root: Path

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> dict:
        return self.rows[index].to_pylist()[0]

    def iter_rows(self, batch_size: int = 1000):
        for batch in self.rows.iter(batch_size=batch_size):
            yield from batch.to_pylist()


def _form_of(columns: list[str], name: str) -> str:
    if "conversations" in columns:
        return LLAVA
    if "messages" in columns:
        return MESSAGES
    raise DataError(
        f"data source {name}: found columns {sorted(columns)}, expected 'conversations' (LLaVA JSON) or "
        "'messages' (+ 'images'); convert the data to one of these forms"
    )


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _normalise_llava(row: dict, index: int) -> dict:
    turns = row.get("conversations")
    return {
        "id": str(index if row.get("id") is None else row["id"]),
        "image": [str(p) for p in _as_list(row.get("image"))],
        "conversations": [
            {"from": str(t.get("from", "")), "value": "" if t.get("value") is None else str(t.get("value"))}
            for t in (turns if isinstance(turns, list) else [])
            if isinstance(t, dict)
        ],
    }


def _normalise_content(content: Any) -> list[dict]:
    # Arrow needs one type per column: a plain-string content becomes one text item
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    items = []
    for c in _as_list(content):
        if isinstance(c, dict):
            text = c.get("text")
            items.append({"type": str(c.get("type", "text")), "text": None if text is None else str(text)})
    return items


def _normalise_messages(row: dict, index: int) -> dict:
    msgs = row.get("messages")
    images = [p.get("path") if isinstance(p, dict) else p for p in _as_list(row.get("images"))]
    return {
        "id": str(index if row.get("id") is None else row["id"]),
        "images": [str(p) for p in images],
        "messages": [
            {"role": str(m.get("role", "")), "content": _normalise_content(m.get("content"))}
            for m in (msgs if isinstance(msgs, list) else [])
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


def _json_to_arrow(path: Path):
    from datasets import Dataset

    raw = [r for r in _read_json_rows(path) if isinstance(r, dict)]
    if not raw:
        raise DataError(f"data source {path}: no samples found; check the file")
    form = _form_of(list(raw[0]), str(path))
    norm = _normalise_llava if form == LLAVA else _normalise_messages
    return Dataset.from_list([norm(r, i) for i, r in enumerate(raw)])


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


def _from_json(path: Path, cache_dir: Path | None):
    """The normalised rows of a JSON/JSONL file. With a cache_dir they are saved once as Arrow and memory-mapped
    from then on, so a large file is parsed once, not once per run and rank."""
    import datasets

    if cache_dir is None:
        rows = _json_to_arrow(path)
        return rows, _form_of(rows.column_names, str(path))
    st = path.stat()
    stamp = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{NORMALISED_VERSION}"
    cached = Path(cache_dir) / "json-sources" / f"{path.stem}-{hashlib.sha1(stamp.encode()).hexdigest()[:16]}"
    if not cached.is_dir():
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cached.name}.", dir=cached.parent))
        try:
            with _quiet_datasets():
                _json_to_arrow(path).save_to_disk(str(tmp))
            try:
                tmp.rename(cached)
            except OSError:  # another rank won the race; its copy is identical
                if not cached.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = datasets.load_from_disk(str(cached))
    return rows, _form_of(rows.column_names, str(path))


def load_source(spec: str, image_root: str | None = None, cache_dir: Path | None = None) -> Source:
    """Open `spec` (a builtin name, a file or a `save_to_disk` folder).

    Args:
        spec: data.train or data.eval.
        image_root: data.image_root; defaults to the source's own folder.
        cache_dir: where Arrow copies of JSON sources and `datasets`' parquet cache go; None: no caching.

    Raises:
        DataError: unknown builtin, missing path, unsupported format or columns.
    """
    if spec.startswith("builtin:"):
        from vittle_cli.data.shapes import resolve_builtin_data

        shapes = resolve_builtin_data(spec)
        rows, form = _from_json(shapes.train_json, cache_dir)
        return Source(spec, rows.with_format("arrow"), form, shapes.image_root)

    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(
            f"data source {spec}: no such file or folder; check data.train / data.eval (a hub data set must be "
            "downloaded first, e.g. with datasets' load_dataset(...).save_to_disk(folder))"
        )
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
        form, default_root = _form_of(rows.column_names, spec), path
    elif path.suffix in (".json", ".jsonl"):
        rows, form = _from_json(path, cache_dir)
        default_root = path.parent
    elif path.suffix == ".parquet":
        import datasets

        kwargs = {"cache_dir": str(cache_dir)} if cache_dir else {}
        with _quiet_datasets():
            rows = datasets.load_dataset("parquet", data_files=str(path), split="train", **kwargs)
        form, default_root = _form_of(rows.column_names, spec), path.parent
    else:
        raise DataError(
            f"data source {spec}: unsupported file type {path.suffix!r}; use .json, .jsonl, .parquet, "
            "a `datasets` save_to_disk folder, or builtin:shapes"
        )
    root = Path(image_root).expanduser() if image_root else default_root
    return Source(spec, rows.with_format("arrow"), form, root)
