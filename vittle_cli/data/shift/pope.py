"""POPE in the LLaVA layout and the POPE repository's layout: read, validate, join labels to questions.

LLaVA layout: `llava_pope_test.jsonl` ({question_id, image, text, category}; every text ends with the
instruction "\\nAnswer the question using a single word or phrase.") + `coco/coco_pope_<split>.json`
({question_id, image, text, label}, ids 1..N per split) + `val2014/`. POPE repository layout: only the
`coco_pope_<split>.json` files, which then are the questions too.

Joining one split (the rule used is recorded per split in the report):
1. "question_id": every question's id names a label row about the same image and (normalised) text;
2. "image+text": every question's (image, normalised text) names exactly one label;
3. "position": both files have the same number of rows and the image names agree row for row (how
   LLaVA's eval_pope.py pairs them).
Normalised text forgives case, spacing, the instruction suffix and POPE's old "imange" typo (the LLaVA
file keeps it in 102 questions; the current label files fix it). Questions left without a label are an
error that names them: a score over a silently smaller set would not be POPE.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from vittle_cli.data.shift.items import DataReport, EvalItem, FolderImages, ItemSet
from vittle_cli.errors import DataError

MAX_LISTED = 5  # how many offending entries an error message names
TYPO_FIXES = {"imange": "image"}  # POPE's own corrections since the LLaVA question file was made
LABELS_GLOB = "coco_pope_*.json"


def _listed(xs: list) -> str:
    more = f" (and {len(xs) - MAX_LISTED} more)" if len(xs) > MAX_LISTED else ""
    return ", ".join(str(x) for x in xs[:MAX_LISTED]) + more


def read_rows(path: Path, what: str) -> list[dict]:
    """JSON lines (or one JSON array), each row a mapping; errors name the file and line.

    Raises:
        DataError: unreadable, binary (e.g. a parquet file given where JSON is expected), malformed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(
            f"{what} {path} is a binary file, not JSON lines (a parquet file? pass it with --pope-root)"
        ) from None
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


def normalise_text(text: str, instruction: str = "") -> str:
    """Question text as the joins compare it: instruction suffix removed, case and spacing folded,
    known typo fixes applied."""
    s = str(text)
    if instruction and s.endswith(instruction):
        s = s[: -len(instruction)]
    s = " ".join(s.split()).lower()
    for wrong, right in TYPO_FIXES.items():
        s = re.sub(rf"\b{wrong}\b", right, s)
    return s


def _image_name(image: str) -> str:
    return Path(str(image)).name


def split_instruction(texts: list[str], suite_instruction: str) -> str:
    """The instruction every text ends with: the suite's own when all texts end with it, else a common
    last line ("\\n...") shared by all texts, else ""."""
    if not texts:
        return ""
    if suite_instruction and all(t.endswith(suite_instruction) for t in texts):
        return suite_instruction
    tails = {"\n" + t.rsplit("\n", 1)[1] if "\n" in t else None for t in texts}
    tail = tails.pop() if len(tails) == 1 else None
    return tail if tail and tail.strip() else ""


def read_questions(path: Path, splits: list[str]) -> tuple[list[dict], list[str]]:
    """Question rows of the chosen splits (file order) and warnings. Duplicate ids are an error."""
    if not path.is_file():
        raise DataError(f"POPE question file not found: {path} (pass --questions FILE or --pope-root DIR)")
    rows, seen, dupes, other = [], set(), [], {}
    for n, row in enumerate(read_rows(path, "POPE question file"), 1):
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


def read_labels(path: Path, *, need_content: bool = False) -> list[dict]:
    """Label rows of one coco_pope_<split>.json, labels normalised to "yes" / "no"."""
    rows = read_rows(path, "POPE label file")
    keys = ("question_id", "image", "text", "label") if need_content else ("question_id", "label")
    for n, row in enumerate(rows, 1):
        _require(row, keys, path, n, "POPE label file")
        label = str(row["label"]).strip().lower()
        if label not in ("yes", "no"):
            raise DataError(f"POPE label file {path} row {n} has label {row['label']!r}; expected yes or no")
        row["label"] = label
    return rows


def _content(row: dict, instruction: str) -> tuple[str, str] | None:
    if "image" not in row or "text" not in row:
        return None
    return _image_name(row["image"]), normalise_text(row["text"], instruction)


def join_labels(
    questions: list[dict], labels: list[dict], instruction: str = ""
) -> tuple[dict[str, str], str]:
    """Map question_id -> label for one split by the first rule that labels every question.

    Returns:
        (labels by question_id, the rule: "question_id", "image+text" or "position"); when no rule
        labels everything, the rule that labels the most questions.
    """
    qid = [str(q["question_id"]) for q in questions]
    keys = [_content(q, instruction) for q in questions]
    by_id: dict[str, dict] = {}
    for row in labels:
        by_id.setdefault(str(row["question_id"]), row)
    id_join = {}
    for i, q in zip(qid, keys, strict=True):
        row = by_id.get(i)
        other = _content(row, "") if row is not None else None
        if row is not None and (other is None or other == q):  # a row without content joins by id alone
            id_join[i] = row["label"]
    candidates = [(id_join, "question_id")]
    if all(_content(r, "") is not None for r in labels):
        by_content: dict[tuple[str, str], set[str]] = {}
        for row in labels:
            by_content.setdefault(_content(row, ""), set()).add(row["label"])
        content_join = {
            i: next(iter(by_content[k]))
            for i, k in zip(qid, keys, strict=True)
            if len(by_content.get(k, ())) == 1
        }  # a key with conflicting labels is never guessed
        candidates.append((content_join, "image+text"))
        same_images = len(labels) == len(questions) and all(
            _image_name(r["image"]) == k[0] for r, k in zip(labels, keys, strict=True)
        )
        if same_images:
            candidates.append(({i: r["label"] for i, r in zip(qid, labels, strict=True)}, "position"))
    for joined, rule in candidates:
        if len(joined) == len(questions):
            return joined, rule
    return max(candidates, key=lambda c: len(c[0]))


def load_llava_layout(
    questions: Path, labels_dir: Path, image_root: Path, splits: list[str], *, instruction: str = "",
    check_images: bool = True,
) -> ItemSet:  # fmt: skip
    """Load the LLaVA layout: a question file plus label files. Every problem that would spoil a score
    is raised before any model work.

    Args:
        instruction: the suite's instruction; a suffix all questions carry is recognised and removed
            (the prompt adds the suite's instruction exactly once).
    Raises:
        DataError: missing files or folders, malformed rows, duplicate ids, questions no rule labels,
            missing images (the first few are named).
    """
    questions, labels_dir = Path(questions), Path(labels_dir)
    if not labels_dir.is_dir():
        raise DataError(
            f"POPE labels folder not found: {labels_dir} (pass --labels-dir DIR or --pope-root DIR)"
        )
    rows, warnings = read_questions(questions, splits)
    _check_confined([str(r["image"]) for r in rows], Path(image_root))  # before any join looks at them
    found = split_instruction([str(r["text"]) for r in rows], instruction)
    report = DataReport(layout="llava", warnings=warnings, extra={"instruction_in_file": found or None})
    if found and found != instruction:
        report.warnings.append(
            f"the question file ends every question with {found!r}; it is replaced by the suite's "
            f"instruction {instruction!r}"
        )
    items: list[EvalItem] = []
    for split in splits:
        label_path = _label_file(labels_dir, split, splits)
        split_rows = [r for r in rows if r["category"] == split]
        labels = read_labels(label_path)
        joined, rule = join_labels(split_rows, labels, found)
        unlabelled = [str(r["question_id"]) for r in split_rows if str(r["question_id"]) not in joined]
        if unlabelled:
            raise DataError(
                f"{len(unlabelled)} of {len(split_rows)} questions of split {split!r} in {questions.name} have "
                f"no label in {label_path} ({len(labels)} rows) by question_id, by image and text, or by "
                f"position: question_id {_listed(unlabelled)}; use the label files that belong to the questions"
            )
        report.splits[split] = {"questions": len(split_rows), "label_rows": len(labels), "joined_by": rule}
        items += [
            EvalItem(
                str(r["question_id"]),
                split,
                (str(r["image"]),),
                _strip(str(r["text"]), found),
                joined[str(r["question_id"])],
            )
            for r in split_rows
        ]
    return _with_images(items, image_root, report, check_images)


def load_pope_repo_layout(
    labels_dir: Path, image_root: Path, splits: list[str], *, instruction: str = "", check_images: bool = True
) -> ItemSet:
    """Load the POPE repository's layout: the label files are the questions (ids as in the files)."""
    labels_dir = Path(labels_dir)
    report = DataReport(layout="pope", extra={"instruction_in_file": None})
    items: list[EvalItem] = []
    for split in splits:
        label_path = _label_file(labels_dir, split, splits)
        rows = read_labels(label_path, need_content=True)
        ids = [str(r["question_id"]) for r in rows]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise DataError(f"POPE label file {label_path} repeats question_id {_listed(dupes)}")
        report.splits[split] = {"questions": len(rows), "label_rows": len(rows), "joined_by": "same file"}
        items += [
            EvalItem(i, split, (str(r["image"]),), str(r["text"]), r["label"])
            for i, r in zip(ids, rows, strict=True)
        ]
    return _with_images(items, image_root, report, check_images)


def _strip(text: str, instruction: str) -> str:
    return text[: -len(instruction)] if instruction and text.endswith(instruction) else text


def _label_file(labels_dir: Path, split: str, splits: list[str]) -> Path:
    path = labels_dir / f"coco_pope_{split}.json"
    if not path.is_file():
        raise DataError(
            f"POPE label file not found: {path} (expected coco_pope_<split>.json for splits "
            f"{', '.join(splits)} in --labels-dir)"
        )
    return path


def images_outside_root(paths: list[str], image_root: Path) -> list[str]:
    """The image paths (as written in the data) that leave `image_root` by '..' or by being absolute.

    The check is lexical, as for training data: a symlink inside the root (e.g. `val2014 -> /datasets/...`)
    is the user's own file system and stays allowed; only what the data file writes is confined.
    """
    root = os.path.normpath(os.path.abspath(image_root))
    outside = []
    for p in paths:
        full = os.path.normpath(os.path.join(root, p))
        if not (full == root or full.startswith(root + os.sep)):
            outside.append(p)
    return sorted(set(outside))


def _check_confined(paths: list[str], image_root: Path) -> None:
    outside = images_outside_root(paths, image_root)
    if outside:
        raise DataError(
            f"{len(outside)} POPE image paths leave --image-root {image_root}: {_listed(outside)}; "
            "image paths must be relative to the image root (without '..')"
        )


def _with_images(items: list[EvalItem], image_root: Path, report: DataReport, check: bool) -> ItemSet:
    image_root = Path(image_root)
    _check_confined([it.image for it in items], image_root)
    if not image_root.is_dir():
        raise DataError(
            f"POPE image folder not found: {image_root} (pass --image-root DIR, e.g. COCO val2014/)"
        )
    images = FolderImages(image_root)
    if check:
        missing = images.missing(it.image for it in items)
        if missing:
            raise DataError(
                f"{len(missing)} POPE images missing under {image_root}: {_listed(missing)} (check --image-root)"
            )
    return ItemSet(items=items, images=images, report=report)
