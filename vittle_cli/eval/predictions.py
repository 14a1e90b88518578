"""The predictions cache: predictions.jsonl in the eval folder, one record per (variant, question_id).

Records are appended and flushed as answers arrive, so an interrupted eval resumes where it stopped.
A line cut short by a crash is dropped when the cache is reopened. `eval_info.json` holds a fingerprint
of what the answers depend on (model, suite contents, prompt, decoding); a cache with another fingerprint
is never mixed in.
"""

from __future__ import annotations

import json
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.fileio import write_atomic, write_json

PREDICTIONS = "predictions.jsonl"
INFO = "eval_info.json"


class PredictionCache:
    """Append-only store of answer records keyed by (variant, question_id)."""

    def __init__(self, out_dir: Path, fingerprint: dict, *, discard_other: bool = False):
        """Open (or start) the cache in `out_dir`.

        Raises:
            UsageError: the folder holds predictions made with another fingerprint and not `discard_other`.
        """
        self.path = Path(out_dir) / PREDICTIONS
        info_path = Path(out_dir) / INFO
        old = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else None
        self.discarded: list[str] = []  # the fingerprint keys that differed when old answers were dropped
        if old is not None and old != fingerprint and self.path.exists():
            changed = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            if not discard_other:
                raise UsageError(
                    f"{out_dir} holds predictions of a different eval ({', '.join(changed)} differ); "
                    "choose another --out, or pass --overwrite to discard them"
                )
            self.path.unlink()
            self.discarded = changed
        write_json(info_path, fingerprint)
        self.records: dict[tuple[str, str], dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_text(encoding="utf-8")
        good = []
        for line in raw.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
            self.records[(rec["variant"], str(rec["question_id"]))] = rec
            good.append(line)
        if raw and (not raw.endswith("\n") or len(good) != len(raw.splitlines())):
            text = "".join(g + "\n" for g in good)  # rewrite without the broken line before appending
            write_atomic(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

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
