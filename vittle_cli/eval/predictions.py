"""The predictions cache: predictions.jsonl in the eval folder, one record per (variant, question_id).

Records are appended and flushed as answers arrive, so an interrupted eval resumes where it stopped.
A line cut short by a crash is dropped when the cache is reopened. `eval_info.json` holds a fingerprint
of what the answers depend on (model, suite contents, prompt, decoding, dtype); a cache with another
fingerprint is never mixed in.

In a sharded eval each process appends to its own part, `predictions.part-<rank>.jsonl`; every part is
read back as cache (whatever the number of processes that wrote it), and `finalize` merges everything
into predictions.jsonl in a canonical order (suite variant order, then question order), so the file is
the same whether one process or several wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.fileio import write_atomic, write_json

PREDICTIONS = "predictions.jsonl"
PART_GLOB = "predictions.part-*.jsonl"
INFO = "eval_info.json"


def check_fingerprint(out_dir: Path, fingerprint: dict, *, discard_other: bool) -> list[str]:
    """The fingerprint keys that differ when the folder's answers belong to another eval (and may be
    discarded); [] when they are this eval's or there are none.

    Raises:
        UsageError: they do, and not `discard_other`.
    """
    out_dir = Path(out_dir)
    info_path = out_dir / INFO
    old = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
    has_answers = (out_dir / PREDICTIONS).exists() or any(out_dir.glob(PART_GLOB))
    if old is None or old == fingerprint or not has_answers:
        return []
    changed = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
    if not discard_other:
        raise UsageError(
            f"{out_dir} holds predictions of a different eval ({', '.join(changed)} differ); "
            "choose another --out, or pass --overwrite to discard them"
        )
    return changed


class PredictionCache:
    """Append-only store of answer records keyed by (variant, question_id)."""

    def __init__(
        self, out_dir: Path, fingerprint: dict, *, discard_other: bool = False, part: int | None = None,
        owner: bool = True,
    ):  # fmt: skip
        """Open (or start) the cache in `out_dir`.

        Args:
            part: append to `predictions.part-<part>.jsonl` instead of predictions.jsonl (sharded eval).
            owner: this process may discard another eval's answers and write eval_info.json (one
                process of a sharded eval; the others open the cache after it).
        Raises:
            UsageError: the folder holds predictions made with another fingerprint and not `discard_other`.
        """
        self.dir = Path(out_dir)
        self.main = self.dir / PREDICTIONS
        self.path = self.main if part is None else self.dir / f"predictions.part-{part}.jsonl"
        stale = check_fingerprint(self.dir, fingerprint, discard_other=discard_other)
        self.discarded: list[str] = stale if owner else []  # the keys that differed when answers were dropped
        if owner:
            if stale:
                for f in [self.main, *self.dir.glob(PART_GLOB)]:
                    f.unlink(missing_ok=True)
            write_json(self.dir / INFO, fingerprint)
        self.records: dict[tuple[str, str], dict] = {}
        self.reload()

    def reload(self) -> None:
        """Read predictions.jsonl and every part again (after other processes wrote theirs)."""
        self.records = {}
        for f in [self.main, *sorted(self.dir.glob(PART_GLOB))]:
            if f.exists():
                self._load(f)

    def _load(self, path: Path) -> None:
        raw = path.read_text(encoding="utf-8")
        good = []
        for line in raw.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
            self.records[(rec["variant"], str(rec["question_id"]))] = rec
            good.append(line)
        if path == self.path and raw and (not raw.endswith("\n") or len(good) != len(raw.splitlines())):
            text = "".join(g + "\n" for g in good)  # rewrite without the broken line before appending
            write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def has(self, variant: str, question_id: str) -> bool:
        return (variant, str(question_id)) in self.records

    def get(self, variant: str, question_id: str) -> dict | None:
        return self.records.get((variant, str(question_id)))

    def add(self, records: list[dict]) -> None:
        """Append records and flush them to disk."""
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
                self.records[(rec["variant"], str(rec["question_id"]))] = rec
            f.flush()

    def finalize(self, order: Iterable[tuple[str, str]]) -> None:
        """Merge every part into predictions.jsonl: records of `order` first, in that order, then any
        others (answers beyond the current --limit) in a stable order; remove the parts."""
        self.reload()
        first = [k for k in order if k in self.records]
        seen = set(first)
        rest = sorted(k for k in self.records if k not in seen)
        text = "".join(json.dumps(self.records[k]) + "\n" for k in first + rest)
        write_atomic(self.main, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        for f in self.dir.glob(PART_GLOB):
            f.unlink()
