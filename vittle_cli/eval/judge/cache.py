"""judgments.jsonl: every judge reply, keyed by (judge, system + prompt, run index).

The prompt holds the question, the reference and the model's answer, so a changed answer is a new key by
itself. Replies are appended and flushed as they arrive: an interrupted or failed judging pass keeps what
it got, and a rerun asks only for what is missing (zero requests when nothing is).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vittle_cli.eval.judge.prompt import SYSTEM_PROMPT, parse_scores
from vittle_cli.fileio import write_text_atomic

JUDGMENTS = "judgments.jsonl"


def judgment_key(judge_id: str, prompt: str, run: int, system: str = SYSTEM_PROMPT) -> str:
    return hashlib.sha256(f"{judge_id}\x1f{system}\x1f{prompt}\x1f{run}".encode()).hexdigest()


@dataclass(frozen=True)
class JudgeJob:
    """One review to get: which answer it scores (variant, question id, category) and the prompt."""

    variant: str
    question_id: str
    category: str
    prompt: str


class JudgmentCache:
    """Append-only store of judge replies; a line cut short by a crash is dropped on reopening."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if self.path.is_file():
            raw = self.path.read_text(encoding="utf-8")
            good = []
            for line in raw.splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.records[rec["key"]] = rec
                good.append(line)
            if len(good) != len(raw.splitlines()) or (raw and not raw.endswith("\n")):
                write_text_atomic(self.path, "".join(g + "\n" for g in good))

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
        self.records[record["key"]] = record


def judge_jobs(
    judge, jobs: Sequence[JudgeJob], runs: int, cache: JudgmentCache, on_progress: Callable[[int], None]
) -> int:
    """Get `runs` judgments of every job that the cache lacks. Returns the number of requests made.

    Raises:
        JudgeError: from the backend; every reply received before it is already in the cache.
    """
    todo: list[tuple[JudgeJob, int, str]] = []
    for run in range(runs):
        for job in jobs:
            key = judgment_key(judge.id, job.prompt, run)
            if cache.get(key) is None:
                todo.append((job, run, key))

    def store(index: int, reply: str) -> None:
        job, run, key = todo[index]
        scores = parse_scores(reply)
        cache.add(
            {
                "key": key,
                "judge": judge.id,
                "run": run,
                "variant": job.variant,
                "question_id": job.question_id,
                "category": job.category,
                "scores": list(scores) if scores else None,
                "reply": reply,
            }
        )
        on_progress(1)

    judge.complete([job.prompt for job, _, _ in todo], store)
    return len(todo)


def collect_scores(
    judge_id: str, jobs: Sequence[JudgeJob], runs: int, cache: JudgmentCache
) -> dict[tuple[str, str], list[tuple[float, float] | None]]:
    """(variant, question id) -> the parsed (reference, model) scores of each run (None: unparseable)."""
    out: dict[tuple[str, str], list] = {}
    for job in jobs:
        row = []
        for run in range(runs):
            rec = cache.get(judgment_key(judge_id, job.prompt, run))
            row.append(tuple(rec["scores"]) if rec and rec["scores"] else None)
        out[(job.variant, job.question_id)] = row
    return out
