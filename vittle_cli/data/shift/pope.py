"""POPE data: load the LLaVA-form question file and the coco_pope_<split>.json label files, validate them
up front, and join labels to questions by question_id, never by position.

POPE's own label files number their questions 1..N per split, while question files may number them
globally. So each split is joined by question_id when the ids agree with the label rows' image and text,
and otherwise by (image, question text), which is unique within a POPE split. Either way a question is
only ever paired with its own label; questions left without one are reported and not scored.
"""

from __future__ import annotations

import json
from pathlib import Path

from vittle_cli.data.shift.items import DataReport, EvalItem, FolderImages, ItemSet
from vittle_cli.errors import DataError

MAX_LISTED = 5  # how many offending entries an error message names


def _read_rows(path: Path, what: str) -> list[dict]:
    """JSON lines (or one JSON array), each row a mapping; errors name the file and line."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{what} {path} is not valid JSON: {e}") from None
        lines = list(enumerate(rows, 1))
    else:
        lines = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    lines.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DataError(f"{what} {path} line {n} is not valid JSON: {e.msg}") from None
    for n, row in lines:
        if not isinstance(row, dict):
            raise DataError(f"{what} {path} line {n} is not a JSON object")
    return [row for _, row in lines]


def _require(row: dict, keys: tuple[str, ...], path: Path, n: int, what: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(f"{what} {path} row {n} lacks {', '.join(missing)} (has {', '.join(row)})")


def _norm(s: str) -> str:
    return " ".join(str(s).split()).lower()


def _content_key(image: str, text: str) -> tuple[str, str]:
    return Path(str(image)).name, _norm(text)


def _listed(xs: list) -> str:
    more = f" (and {len(xs) - MAX_LISTED} more)" if len(xs) > MAX_LISTED else ""
    return ", ".join(str(x) for x in xs[:MAX_LISTED]) + more


def read_questions(path: Path, splits: list[str]) -> tuple[list[dict], list[str]]:
    """Question rows of the chosen splits (file order) and warnings. Duplicate ids are an error."""
    if not path.is_file():
        raise DataError(f"POPE question file not found: {path} (pass --questions FILE or --pope-root DIR)")
    rows, seen, dupes, other = [], set(), [], {}
    for n, row in enumerate(_read_rows(path, "POPE question file"), 1):
        _require(row, ("question_id", "image", "text", "category"), path, n, "POPE question file")
        qid = str(row["question_id"])
        if qid in seen:
            dupes.append(qid)
        seen.add(qid)
        if row["category"] in splits:
            rows.append(row)
        else:
            other[row["category"]] = other.get(row["category"], 0) + 1
    if dupes:
        raise DataError(f"POPE question file {path} repeats question_id {_listed(dupes)}; ids must be unique")
    warnings = [
        f"{n} questions of category {c!r} skipped (not one of the suite's splits {splits})"
        for c, n in sorted(other.items())
    ]
    return rows, warnings


def read_labels(path: Path) -> list[dict]:
    """Label rows of one coco_pope_<split>.json, labels normalised to "yes" / "no"."""
    rows = _read_rows(path, "POPE label file")
    for n, row in enumerate(rows, 1):
        _require(row, ("question_id", "label"), path, n, "POPE label file")
        label = str(row["label"]).strip().lower()
        if label not in ("yes", "no"):
            raise DataError(f"POPE label file {path} row {n} has label {row['label']!r}; expected yes or no")
        row["label"] = label
    return rows


def join_labels(questions: list[dict], labels: list[dict]) -> tuple[dict[str, str], str]:
    """Map question_id -> label for one split, by id when ids agree with content, else by (image, text).

    Returns:
        (labels by question_id, the join used: "question_id" or "image+text").
    """
    by_id: dict[str, dict] = {}
    for row in labels:
        by_id.setdefault(str(row["question_id"]), row)

    def agrees(q: dict, row: dict) -> bool:
        if "image" in row and "text" in row:
            return _content_key(q["image"], q["text"]) == _content_key(row["image"], row["text"])
        return True  # a label row without content can only be joined by id

    id_join = {
        str(q["question_id"]): by_id[str(q["question_id"])]["label"]
        for q in questions
        if str(q["question_id"]) in by_id and agrees(q, by_id[str(q["question_id"])])
    }
    if len(id_join) == len(questions) or not all("image" in r and "text" in r for r in labels):
        return id_join, "question_id"
    by_content: dict[tuple[str, str], list[str]] = {}
    for row in labels:
        by_content.setdefault(_content_key(row["image"], row["text"]), []).append(row["label"])
    content_join = {}
    for q in questions:
        found = by_content.get(_content_key(q["image"], q["text"]), [])
        if len(set(found)) == 1:  # a key with conflicting labels is never guessed
            content_join[str(q["question_id"])] = found[0]
    if len(content_join) > len(id_join):
        return content_join, "image+text"
    return id_join, "question_id"


def load_pope(
    questions: Path, labels_dir: Path, image_root: Path, splits: list[str], *, check_images: bool = True
) -> ItemSet:
    """Load and validate POPE; every problem that would spoil a score is raised before any model work.

    Raises:
        DataError: missing files or folders, malformed rows, duplicate ids, a split with no labelled
            question, or missing images (the first few are named).
    """
    questions, labels_dir, image_root = Path(questions), Path(labels_dir), Path(image_root)
    if not labels_dir.is_dir():
        raise DataError(
            f"POPE labels folder not found: {labels_dir} (pass --labels-dir DIR or --pope-root DIR)"
        )
    if not image_root.is_dir():
        raise DataError(
            f"POPE image folder not found: {image_root} (pass --image-root DIR or --pope-root DIR)"
        )
    rows, warnings = read_questions(questions, splits)
    report = DataReport(layout="llava", warnings=warnings)
    items: list[EvalItem] = []
    for split in splits:
        label_path = labels_dir / f"coco_pope_{split}.json"
        if not label_path.is_file():
            raise DataError(
                f"POPE label file not found: {label_path} (expected coco_pope_<split>.json "
                f"for splits {', '.join(splits)} in --labels-dir)"
            )
        split_rows = [r for r in rows if r["category"] == split]
        labels = read_labels(label_path)
        joined, how = join_labels(split_rows, labels)
        if split_rows and not joined:
            raise DataError(
                f"no question of split {split!r} in {questions} matches a label in {label_path} "
                "(neither by question_id nor by image and text)"
            )
        unlabelled = [str(r["question_id"]) for r in split_rows if str(r["question_id"]) not in joined]
        report.splits[split] = {
            "questions": len(split_rows),
            "label_rows": len(labels),
            "labelled": len(joined),
            "unlabelled": len(unlabelled),
            "joined_by": how,
        }
        if unlabelled:
            report.warnings.append(
                f"split {split}: {len(unlabelled)} of {len(split_rows)} questions have no label in "
                f"{label_path.name} ({len(labels)} rows; e.g. question_id {_listed(unlabelled)}); "
                "they are not scored"
            )
        items += [
            EvalItem(
                str(r["question_id"]),
                split,
                (str(r["image"]),),
                str(r["text"]),
                joined.get(str(r["question_id"])),
            )
            for r in split_rows
        ]
    if check_images:
        missing = sorted({it.image for it in items if not (image_root / it.image).is_file()})
        if missing:
            raise DataError(
                f"{len(missing)} POPE images missing under {image_root}: {_listed(missing)} "
                "(check --image-root)"
            )
    return ItemSet(items=items, images=FolderImages(image_root), report=report)
