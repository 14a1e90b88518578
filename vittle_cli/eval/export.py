"""`vittle eval export`: an eval's answers in the formats other tools score, to cross-check numbers.

* llava: LLaVA's answer file (what `llava/eval/model_vqa_loader.py` writes and `llava/eval/eval_pope.py`
  reads): one JSON line per question, {question_id, prompt, text, answer_id, model_id, metadata}, in
  question-file order. Numeric ids are written as numbers, as in llava_pope_test.jsonl, so eval_pope.py's
  id lookup finds them. answer_id is derived from the record (not random), so exports are reproducible.
* lmms-eval: the per-sample log of `lmms_eval --log_samples` for the POPE task: {doc_id, doc {question_id,
  question, answer, image_source, category}, target, resps [[answer]], filtered_resps [answer]}.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vittle_cli.errors import UsageError
from vittle_cli.fileio import write_text_atomic

FORMATS = ("llava", "lmms-eval")


def _records(eval_dir: Path, variant: str) -> list[dict]:
    path = eval_dir / "predictions.jsonl"
    if not path.is_file():
        raise UsageError(f"no predictions at {path}: pass an eval folder written by `vittle eval`")
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    mine = [r for r in recs if r["variant"] == variant]
    if not mine:
        have = ", ".join(dict.fromkeys(r["variant"] for r in recs))
        raise UsageError(f"{path} has no answers of variant {variant!r}; it has: {have}")
    return mine


def _question_id(qid: str) -> int | str:
    return int(qid) if qid.isdigit() else qid


def _question(rec: dict, suffix: str) -> str:
    text = rec["text"]
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def llava_rows(records: list[dict], model_id: str) -> list[dict]:
    return [
        {
            "question_id": _question_id(str(r["question_id"])),
            "prompt": r["text"],
            "text": r["answer"],
            "answer_id": hashlib.sha256(f"{r['variant']}\0{r['question_id']}".encode()).hexdigest()[:22],
            "model_id": model_id,
            "metadata": {"variant": r["variant"], "split": r["split"], "image": r["image"]},
        }
        for r in records
    ]


def lmms_eval_rows(records: list[dict], suffix: str) -> list[dict]:
    return [
        {
            "doc_id": n,
            "doc": {
                "question_id": str(r["question_id"]),
                "question": _question(r, suffix),
                "answer": r["label"],
                "image_source": Path(str(r["image"])).stem,
                "category": r["split"],
            },
            "target": r["label"],
            "resps": [[r["answer"]]],
            "filtered_resps": [r["answer"]],
        }
        for n, r in enumerate(records)
    ]


def run_export(eval_dir: Path, out: Path, *, fmt: str = "llava", variant: str = "clean") -> int:
    """Write `variant`'s answers of `eval_dir` to `out` in format `fmt`; return the number of rows.

    Raises:
        UsageError: unknown format, no predictions, unknown variant.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
    eval_dir = Path(eval_dir)
    records = _records(eval_dir, variant)
    results = eval_dir / "results.json"
    doc = json.loads(results.read_text(encoding="utf-8")) if results.is_file() else {}
    model_id = Path(str(doc.get("model", "model")).rstrip("/")).name
    rows = (
        llava_rows(records, model_id)
        if fmt == "llava"
        else lmms_eval_rows(records, doc.get("prompt_suffix", ""))
    )
    write_text_atomic(Path(out), "".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)
