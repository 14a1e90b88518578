"""Small POPE folders in the three real layouts, built in code (sources: tests/POPE_FIXTURES.md).

Every name, column, id scheme and quirk follows the published files: the LLaVA question file carries the
instruction suffix and one "imange" typo that the current label files fix; LLaVA ids are 1.. for
adversarial, 10000001.. for random, 20000001.. for popular, while POPE's label files number 1..N per split;
lmms-lab/POPE has string ids, image_source without ".jpg" and images as {bytes, path} structs.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

SUFFIX = "\nAnswer the question using a single word or phrase."
SPLITS = ("adversarial", "popular", "random")
LLAVA_ID_BASE = {"adversarial": 0, "random": 10000000, "popular": 20000000}  # llava_pope_test.jsonl
IMAGES = ("COCO_val2014_000000310196.jpg", "COCO_val2014_000000210789.jpg", "COCO_val2014_000000429913.jpg")
# (object, label) per image: POPE asks about present (yes) and absent (no) objects of each image
OBJECTS = {
    "adversarial": [("snowboard", "yes"), ("umbrella", "no"), ("dog", "yes"), ("car", "no"), ("cup", "yes"), ("tie", "no")],
    "popular": [("person", "yes"), ("chair", "no"), ("bus", "yes"), ("cat", "no"), ("bowl", "yes"), ("bench", "no")],
    "random": [("kite", "yes"), ("oven", "no"), ("sink", "yes"), ("horse", "no"), ("clock", "yes"), ("vase", "no")],
}  # fmt: skip
TYPO = ("adversarial", 1)  # the question (split, index) that keeps the old typo in the LLaVA file


def _article(obj: str) -> str:
    return "an" if obj[0] in "aeiou" else "a"


def question_text(split: str, k: int) -> str:
    """The label files' (corrected) text of question k of a split."""
    obj = OBJECTS[split][k][0]
    return f"Is there {_article(obj)} {obj} in the image?"


def label_rows(split: str) -> list[dict]:
    """coco_pope_<split>.json rows (POPE repository, output/coco/): ids 1..N per split."""
    return [
        {"question_id": k + 1, "image": IMAGES[k // 2], "text": question_text(split, k), "label": lab}
        for k, (_, lab) in enumerate(OBJECTS[split])
    ]


def llava_rows() -> list[dict]:
    """llava_pope_test.jsonl rows (file order: adversarial, random, popular, as the ids run)."""
    rows = []
    for split in ("adversarial", "random", "popular"):
        for k in range(len(OBJECTS[split])):
            text = question_text(split, k)
            if (split, k) == TYPO:
                text = text.replace("in the image?", "in the imange?")
            rows.append(
                {
                    "question_id": LLAVA_ID_BASE[split] + k + 1,
                    "image": IMAGES[k // 2],
                    "text": text + SUFFIX,
                    "category": split,
                }
            )
    return rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(IMAGES):
        Image.new("RGB", (48, 40), (60 * i, 120, 200 - 50 * i)).save(folder / name)
    return folder


def make_llava_layout(root: Path) -> Path:
    """LLaVA's playground/data/eval/pope: llava_pope_test.jsonl, coco/coco_pope_<split>.json, val2014/."""
    _jsonl(root / "llava_pope_test.jsonl", llava_rows())
    for split in SPLITS:
        _jsonl(root / "coco" / f"coco_pope_{split}.json", label_rows(split))
    write_images(root / "val2014")
    return root


def make_pope_repo_layout(root: Path) -> tuple[Path, Path]:
    """A POPE repository checkout (output/coco/coco_pope_<split>.json) and a separate COCO val2014 folder."""
    for split in SPLITS:
        _jsonl(root / "POPE" / "output" / "coco" / f"coco_pope_{split}.json", label_rows(split))
    return root / "POPE", write_images(root / "coco" / "val2014")


def hf_rows() -> list[dict]:
    """lmms-lab/POPE rows: question_id (str), question, answer, image_source, image {bytes, path}, category."""
    blobs = {}
    for i, name in enumerate(IMAGES):
        buf = io.BytesIO()
        Image.new("RGB", (48, 40), (60 * i, 120, 200 - 50 * i)).save(buf, format="JPEG")
        blobs[name] = buf.getvalue()
    rows, n = [], 0
    for split in SPLITS:
        for k, (_, lab) in enumerate(OBJECTS[split]):
            n += 1
            name = IMAGES[k // 2]
            rows.append(
                {
                    "question_id": str(n),
                    "question": question_text(split, k),
                    "answer": lab,
                    "image_source": name.removesuffix(".jpg"),
                    "image": {"bytes": blobs[name], "path": None},
                    "category": split,
                }
            )
    return rows


def make_hf_layout(root: Path, shards: int = 3) -> Path:
    """The hub repository's data/test-0000N-of-0000M.parquet shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = hf_rows()
    (root / "data").mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // shards)
    for s in range(shards):
        table = pa.Table.from_pylist(rows[s * size : (s + 1) * size])
        pq.write_table(table, root / "data" / f"test-{s:05d}-of-{shards:05d}.parquet")
    return root
