"""Build small data folders in each open-ended layout from tests/fixtures/openended (real rows of the
published files; see the README there). Images and parquet files are made here, in code."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from PIL import Image

FIXTURES = Path(__file__).parent / "fixtures" / "openended"


def _jpeg(colour: tuple[int, int, int], size=(48, 40)) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, colour)
    for x in range(size[0] // 3, size[0] // 2):  # a square, so shifts have something to change
        for y in range(size[1] // 3, size[1] // 2):
            img.putpixel((x, y), (255 - colour[0], 255 - colour[1], 255 - colour[2]))
    img.save(buf, format="JPEG")
    return buf.getvalue()


def make_lbcoco(root: Path) -> Path:
    """LLaVA's LB-COCO files + val2014/ with one image under the official COCO name, one renamed."""
    d = root / "lbcoco"
    d.mkdir(parents=True)
    for name in ("qa90_questions.jsonl", "qa90_gpt4_answer.jsonl", "caps_boxes_coco2014_val_80.jsonl"):
        shutil.copy(FIXTURES / "lbcoco" / name, d / name)
    shutil.copy(FIXTURES / "rule.json", d / "rule.json")
    (d / "val2014").mkdir()
    (d / "val2014" / "COCO_val2014_000000056013.jpg").write_bytes(_jpeg((200, 60, 40)))
    (d / "val2014" / "000000034096.jpg").write_bytes(_jpeg((40, 90, 200)))
    return d


def make_lbwild(root: Path) -> Path:
    d = root / "lbwild"
    d.mkdir(parents=True)
    for name in ("questions.jsonl", "answers_gpt4.jsonl", "context.jsonl"):
        shutil.copy(FIXTURES / "lbwild" / name, d / name)
    shutil.copy(FIXTURES / "rule.json", d / "rule.json")
    (d / "images").mkdir()
    (d / "images" / "001.jpg").write_bytes(_jpeg((30, 160, 60)))
    (d / "images" / "002.jpg").write_bytes(_jpeg((120, 30, 140)))
    return d


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


WILDER_ROWS = [
    ("0", "What is written on the sign in this picture?", 'The sign says "Open 24 hours".'),
    ("1", "Which dish could I cook with the vegetables shown?", "You could make a ratatouille."),
]
WV_ROWS = [
    ("a1b2c3", "Describe the chart and its main trend.", "The chart shows sales rising steadily."),
    ("d4e5f6", "What breed is this dog?", "It appears to be a golden retriever."),
]


def make_lbwilder(root: Path) -> Path:
    """lmms-lab/LLaVA-Bench-Wilder's columns (question_id, Question, Answer, image) in small/test-*.parquet."""
    d = root / "lbwilder"
    rows = [
        {
            "question_id": q,
            "Question": text,
            "Answer": ref,
            "image": {"bytes": _jpeg((20 * i + 50, 80, 90)), "path": None},
        }
        for i, (q, text, ref) in enumerate(WILDER_ROWS)
    ]
    _write_parquet(d / "small" / "test-00000-of-00001.parquet", rows)
    shutil.copy(FIXTURES / "rule.json", d / "rule.json")
    return d


def make_wvbench(root: Path) -> Path:
    """WildVision/wildvision-bench vision_bench_0617 columns + a model-answers jsonl of reference answers."""
    d = root / "wvbench"
    rows = [
        {
            "question_id": q,
            "instruction": text,
            "image": {"bytes": _jpeg((90, 20 * i + 40, 60)), "path": None},
        }
        for i, (q, text, _) in enumerate(WV_ROWS)
    ]
    _write_parquet(d / "vision_bench_0617" / "test-00000-of-00001.parquet", rows)
    refs = [
        {
            "question_id": q,
            "instruction": text,
            "output": ref,
            "model": "claude-3-sonnet-20240229",
            "token_len": 9,
        }
        for q, text, ref in WV_ROWS
    ]
    (d / "claude-3-sonnet-20240229.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    shutil.copy(FIXTURES / "rule.json", d / "rule.json")
    return d
