"""LLaVA-Bench-Wilder and WildVision-Bench from their Hugging Face parquet files (a file, or a folder of
shards read in name order). Images come from the `image` column ({bytes, path} structs, as `datasets`
writes them), keyed by question_id.

    lmms-lab/LLaVA-Bench-Wilder               question_id, Question, Answer (the reference), image
    WildVision/wildvision-bench, vision_bench_0617   question_id, instruction, image; references from a
                                               model-answers jsonl joined by question_id
"""

from __future__ import annotations

from pathlib import Path

from vittle_cli.data.shift.openended import (
    OpenItem,
    OpenSet,
    check_rules,
    join_references,
    need_file,
    read_rules,
)
from vittle_cli.data.shift.pope import _listed
from vittle_cli.errors import DataError

RULE = "wildvision_bench"  # the Vittle authors' rule for both sets (vittle/eval/table/rule.json)
WILDER_REFERENCE = ("Answer", "gpt4v_answer", "gt_answer")
QUESTION_COLUMNS = {"lbwilder": ("Question",), "wvbench": ("instruction",)}


def parquet_files(path: Path) -> list[Path]:
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"no .parquet files under {path}")
    return files


def read_parquet_rows(path: Path, layout: str) -> list[dict]:
    """All rows of the parquet file(s) as dicts (image structs kept as they are)."""
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for f in parquet_files(path):
        try:
            rows += pq.read_table(f).to_pylist()
        except Exception as e:  # pyarrow raises several types for a file that is not parquet
            raise DataError(f"{layout}: cannot read {f} as parquet: {str(e).splitlines()[0]}") from None
    return rows


def _column(rows: list[dict], names: tuple[str, ...], path: Path, layout: str) -> str:
    have = list(rows[0]) if rows else []
    for name in names:
        if name in have:
            return name
    raise DataError(f"{layout}: {path} has no column {' or '.join(names)} (it has {', '.join(have)})")


def _image_bytes(value, qid: str, layout: str) -> bytes:
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, bytes | bytearray) or not data:
        raise DataError(f"{layout}: question {qid} has no embedded image bytes")
    return bytes(data)


def load_hf_bench(layout: str, questions: str, rules: str, answers: str | None = None) -> OpenSet:
    """LB-Wilder (`lbwilder`) or WV-Bench (`wvbench`) from parquet; WV-Bench takes references from `answers`.

    Raises:
        DataError: missing files (named, with where they are published), missing columns, a question
            without a reference answer or an image, a rule.json without the wildvision_bench rule.
    """
    q_path = need_file(questions, layout, "questions")
    r_path = need_file(rules, layout, "rules")
    rows = read_parquet_rows(q_path, layout)
    if not rows:
        raise DataError(f"{layout}: {q_path} holds no rows")
    text_col = _column(rows, QUESTION_COLUMNS[layout], q_path, layout)
    _column(rows, ("question_id",), q_path, layout)
    _column(rows, ("image",), q_path, layout)
    if layout == "wvbench":
        a_path = need_file(answers, layout, "answers")
        refs = join_references(rows, a_path, layout)
        ref_source = str(a_path)
    else:
        ref_col = _column(rows, WILDER_REFERENCE, q_path, layout)
        refs = {
            str(r["question_id"]): r[ref_col] for r in rows if isinstance(r.get(ref_col), str) and r[ref_col]
        }
        lacking = [str(r["question_id"]) for r in rows if str(r["question_id"]) not in refs]
        if lacking:
            raise DataError(
                f"{layout}: {len(lacking)} question(s) in {q_path} have no {ref_col} (the reference)"
                f": question_id {_listed(lacking)}"
            )
        ref_source = f"column {ref_col}"
    items, images = [], {}
    for row in rows:
        qid = str(row["question_id"])
        if qid in images:
            raise DataError(f"{layout}: {q_path} repeats question_id {qid}")
        images[qid] = _image_bytes(row["image"], qid, layout)
        items.append(OpenItem(qid, "all", qid, str(row[text_col]).strip(), refs[qid], RULE, None))
    rule_dict = read_rules(r_path, layout)
    check_rules(items, rule_dict, r_path, layout)
    report = {
        "layout": layout,
        "files": {"questions": str(q_path)},
        "reference": ref_source,
        "categories": {"all": len(items)},
        "questions": len(items),
    }
    return OpenSet(layout, items, rule_dict, image_bytes=images, report=report)
