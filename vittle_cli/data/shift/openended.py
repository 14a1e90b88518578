"""Open-ended benchmarks judged by an LLM: LLaVA-Bench-COCO, LLaVA-Bench-in-the-Wild, LLaVA-Bench-Wilder and
WildVision-Bench, loaded from the files people have (see docs/evaluation.md for where each is published).

    lbcoco    qa90_questions.jsonl + qa90_gpt4_answer.jsonl (haotian-liu/LLaVA playground/data/
              coco2014_val_qa_eval/), caps_boxes_coco2014_val_80.jsonl + rule.json (llava/eval/table/),
              COCO val2014 images. Rule = the question's category (conv, detail, complex).
    lbwild    questions.jsonl + answers_gpt4.jsonl + context.jsonl + images/ (liuhaotian/llava-bench-in-the-wild)
              and LLaVA's rule.json. Rule = "llava_bench_" + category; context = the image caption.
    lbwilder  the parquet files of lmms-lab/LLaVA-Bench-Wilder (question_id, Question, Answer, image bytes);
              rule "wildvision_bench" of the Vittle authors' rule.json; no context.
    wvbench   the parquet files of WildVision/wildvision-bench, config vision_bench_0617 (question_id,
              instruction, image bytes), with reference answers from a model-answers jsonl (question_id +
              output/text/gt_answer); rule "wildvision_bench"; no context.

Every item carries its reference answer and its rule key; a question without a reference, or a category
that rule.json lacks, is an error before any model work.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vittle_cli.data.shift.pope import _listed, _require
from vittle_cli.data.shift.pope import read_rows as _read_rows
from vittle_cli.errors import DataError

LAYOUTS = ("lbcoco", "lbwild", "lbwilder", "wvbench")
COCO_PREFIX = "COCO_val2014_"  # the official val2014 file names; qa90_questions.jsonl names images without it
PUBLISHED = {
    "lbcoco": {
        "questions": "qa90_questions.jsonl from github.com/haotian-liu/LLaVA playground/data/coco2014_val_qa_eval/",
        "answers": "qa90_gpt4_answer.jsonl from github.com/haotian-liu/LLaVA playground/data/coco2014_val_qa_eval/",
        "context": "caps_boxes_coco2014_val_80.jsonl from github.com/haotian-liu/LLaVA llava/eval/table/",
        "rules": "rule.json from github.com/haotian-liu/LLaVA llava/eval/table/",
        "image_root": "the COCO val2014 images (images.cocodataset.org/zips/val2014.zip)",
    },
    "lbwild": {
        "questions": "questions.jsonl from huggingface.co/datasets/liuhaotian/llava-bench-in-the-wild",
        "answers": "answers_gpt4.jsonl from huggingface.co/datasets/liuhaotian/llava-bench-in-the-wild",
        "context": "context.jsonl from huggingface.co/datasets/liuhaotian/llava-bench-in-the-wild",
        "rules": "rule.json from github.com/haotian-liu/LLaVA llava/eval/table/",
        "image_root": "images/ from huggingface.co/datasets/liuhaotian/llava-bench-in-the-wild",
    },
    "lbwilder": {
        "questions": "the parquet files of huggingface.co/datasets/lmms-lab/LLaVA-Bench-Wilder",
        "rules": "rule.json from github.com/deeplearning-wisc/vittle vittle/eval/table/ (has wildvision_bench)",
    },
    "wvbench": {
        "questions": "the parquet files of huggingface.co/datasets/WildVision/wildvision-bench, config vision_bench_0617",
        "answers": "a reference answer file, e.g. claude-3-sonnet-20240229.jsonl from github.com/WildVision-AI/"
        "WildVision-Bench data/vision_bench_0617/model_answers/",
        "rules": "rule.json from github.com/deeplearning-wisc/vittle vittle/eval/table/ (has wildvision_bench)",
    },
}
REFERENCE_FIELDS = ("gt_answer", "output", "text", "answer", "Answer")


@dataclass(frozen=True)
class OpenItem:
    """One open-ended question. `image` is a key of the set's images; `category` groups scores;
    `rule` names the rule.json entry the judge gets; `context` is the judge's text stand-in for the image."""

    question_id: str
    category: str
    image: str
    text: str
    reference: str
    rule: str
    context: str | None = None

    @property
    def split(self) -> str:
        """The category, under the name `limit_items` and the POPE code use."""
        return self.category


@dataclass
class OpenSet:
    """A loaded benchmark: items in file order, their images (a folder or embedded bytes), the rules."""

    layout: str
    items: list[OpenItem]
    rules: dict[str, dict]
    image_root: Path | None = None
    image_bytes: dict[str, bytes] = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    def open_image(self, key: str) -> Image.Image:
        """The item image as RGB."""
        source = io.BytesIO(self.image_bytes[key]) if key in self.image_bytes else self._image_path(key)
        try:
            with Image.open(source) as im:
                return im.convert("RGB")
        except OSError as e:
            raise DataError(f"cannot read image {key}: {e}") from None

    def _image_path(self, key: str) -> Path:
        root = self.image_root or Path(".")
        plain = root / key
        return plain if plain.is_file() else root / f"{COCO_PREFIX}{key}"

    def missing_images(self) -> list[str]:
        keys = {it.image for it in self.items}
        if self.image_root is None:
            return sorted(k for k in keys if k not in self.image_bytes)
        return sorted(k for k in keys if not self._image_path(k).is_file())


def need_file(path: str | Path | None, layout: str, what: str, *, folder: bool = False) -> Path:
    """`path` as a Path if it exists; else a DataError naming the file and where it is published."""
    where = PUBLISHED[layout].get(what, what)
    if path is None:
        raise DataError(f"{layout}: no {what} given; it is {where}")
    p = Path(path)
    if not (p.is_dir() if folder else p.exists()):
        raise DataError(f"{layout}: {what} not found: {p} (it is {where})")
    return p


def read_rules(path: Path, layout: str) -> dict[str, dict]:
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{layout}: rule file {path} is not valid JSON: {e}") from None
    if not isinstance(rules, dict):
        raise DataError(f"{layout}: rule file {path} must map rule names to {{role, prompt}}")
    bad = [k for k, v in rules.items() if not (isinstance(v, dict) and "role" in v and "prompt" in v)]
    if bad:
        raise DataError(f"{layout}: rule file {path}: entries {_listed(bad)} lack role and prompt")
    return rules


def check_rules(items: list[OpenItem], rules: dict[str, dict], path: Path, layout: str) -> None:
    missing = sorted({it.rule for it in items} - set(rules))
    if missing:
        raise DataError(
            f"{layout}: rule file {path} has no rule for {_listed(missing)} (it has {', '.join(rules)}); "
            f"use {PUBLISHED[layout]['rules']}"
        )


def _by_id(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for row in rows:
        out.setdefault(str(row.get("question_id")), row)
    return out


def reference_text(row: dict) -> str | None:
    """The reference answer of an answer-file row (LLaVA answer files use `text`; others differ)."""
    for key in REFERENCE_FIELDS:
        if isinstance(row.get(key), str) and row[key].strip():
            return row[key]
    return None


def join_references(questions: list[dict], answers_path: Path, layout: str) -> dict[str, str]:
    """question_id -> reference answer; a question without one is an error naming it."""
    rows = _read_rows(answers_path, f"{layout} answer file")
    refs = {qid: reference_text(r) for qid, r in _by_id(rows).items()}
    lacking = [str(q["question_id"]) for q in questions if not refs.get(str(q["question_id"]))]
    if lacking:
        raise DataError(
            f"{layout}: {len(lacking)} question(s) have no reference answer in {answers_path} "
            f"(question_id {_listed(lacking)}); use the complete {PUBLISHED[layout]['answers']}"
        )
    return {k: v for k, v in refs.items() if v}


def load_llava_bench(
    layout: str, questions: str, answers: str, context: str, rules: str, image_root: str
) -> OpenSet:
    """LB-COCO (`lbcoco`) or LB-in-the-Wild (`lbwild`) from LLaVA's jsonl files and an image folder.

    Raises:
        DataError: a missing file (named, with where it is published), malformed rows, a question without
            a reference answer or context, a category rule.json lacks, missing images.
    """
    q_path = need_file(questions, layout, "questions")
    a_path = need_file(answers, layout, "answers")
    c_path = need_file(context, layout, "context")
    r_path = need_file(rules, layout, "rules")
    root = need_file(image_root, layout, "image_root", folder=True)
    rows = _read_rows(q_path, f"{layout} question file")
    for n, row in enumerate(rows, 1):
        _require(row, ("question_id", "image", "text", "category"), q_path, n, f"{layout} question file")
    refs = join_references(rows, a_path, layout)
    contexts = {str(r.get("image")): r for r in _read_rows(c_path, f"{layout} context file")}
    no_context = sorted({str(r["image"]) for r in rows if str(r["image"]) not in contexts})
    if no_context:
        raise DataError(f"{layout}: context file {c_path} has no entry for image(s) {_listed(no_context)}")
    items = []
    for row in rows:
        ctx = contexts[str(row["image"])]
        if layout == "lbcoco":
            text_ctx = _coco_context(ctx, c_path)
            rule = str(row["category"])
        else:
            text_ctx = str(ctx.get("caption", ""))
            rule = f"llava_bench_{row['category']}"
        qid = str(row["question_id"])
        items.append(
            OpenItem(
                qid, str(row["category"]), str(row["image"]), str(row["text"]), refs[qid], rule, text_ctx
            )
        )
    rule_dict = read_rules(r_path, layout)
    check_rules(items, rule_dict, r_path, layout)
    data = OpenSet(layout, items, rule_dict, image_root=root)
    missing = data.missing_images()
    if missing:
        raise DataError(f"{layout}: {len(missing)} image(s) missing under {root}: {_listed(missing)}")
    data.report = _report(data, {"questions": str(q_path), "answers": str(a_path), "context": str(c_path)})
    return data


def _coco_context(ctx: dict, path: Path) -> str:
    """Captions, a blank line, then "category: [x1, y1, x2, y2]" per box, as the reference formats them."""
    if "captions" not in ctx or "instances" not in ctx:
        raise DataError(f"lbcoco: context file {path} row for {ctx.get('image')} lacks captions or instances")
    caps = "\n".join(ctx["captions"])
    boxes = "\n".join(f"{inst['category']}: {inst['bbox']}" for inst in ctx["instances"])
    return f"{caps}\n\n{boxes}"


def _report(data: OpenSet, files: dict) -> dict:
    cats: dict[str, int] = {}
    for it in data.items:
        cats[it.category] = cats.get(it.category, 0) + 1
    return {"layout": data.layout, "files": files, "categories": cats, "questions": len(data.items)}


def load_openended_suite(suite) -> OpenSet:
    """Load the data of an open-ended suite (`suite.is_openended`), after its `${var}`s are filled.

    Raises:
        UsageError: paths that still hold ${placeholders} (names the CLI option that fills them).
        DataError: see load_llava_bench / openended_hf.load_hf_bench.
    """
    from vittle_cli.errors import UsageError

    todo = suite.placeholders()
    f = suite.data.openended
    if todo:
        opts = " ".join(f"--{v.replace('_', '-')} DIR" for v in todo)
        files = ", ".join(PUBLISHED[f.layout].values())
        raise UsageError(f"suite {suite.name!r} needs its files: pass {opts} (a folder holding {files})")
    if f.layout in ("lbcoco", "lbwild"):
        return load_llava_bench(f.layout, f.questions, f.answers, f.context, f.rules, f.image_root)
    from vittle_cli.data.shift.openended_hf import load_hf_bench

    return load_hf_bench(f.layout, f.questions, f.rules, f.answers)


def variant_questions(suite, variant, data: OpenSet, items: list[OpenItem], cache_dir: Path | None = None):
    """Yield (item, image, question text) of one variant, one image at a time (first appearance order).

    Seeded as the POPE suites are: visual shifts by (suite seed, spec, image key), text shifts by
    (suite seed, spec, question id); each image is loaded and perturbed once for all its questions.
    """
    from vittle_cli.data.shift.registry import derive_seed
    from vittle_cli.data.shift.text import perturb_text

    by_image: dict[str, list[OpenItem]] = {}
    for it in items:
        by_image.setdefault(it.image, []).append(it)
    for key, group in by_image.items():
        image = variant_image(suite, variant, data, key, cache_dir)
        for it in group:
            text = it.text
            if variant.text is not None:
                ts = variant.text
                text = perturb_text(text, ts.name, ts.rate, derive_seed(suite.seed, ts.spec, it.question_id))
            yield it, image, text + suite.prompt_suffix


def variant_image(suite, variant, data: OpenSet, key: str, cache_dir: Path | None = None) -> Image.Image:
    """The image `key` as a variant shows it: perturbed (seeded by suite seed, spec, key; cached) or not."""
    from functools import partial

    from vittle_cli.data.shift.cache import cached_perturbed_image, default_cache_dir
    from vittle_cli.data.shift.registry import derive_seed
    from vittle_cli.data.shift.visual import perturb_image

    image = data.open_image(key)
    if variant.visual is None:
        return image
    vs = variant.visual
    seed = derive_seed(suite.seed, vs.spec, key)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cached_perturbed_image(
        image, vs.spec, seed, cache, partial(perturb_image, image, vs.name, vs.severity, seed)
    )
