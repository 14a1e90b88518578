"""Closed-form QA benchmarks as the lmms-eval task data lays them out: ScienceQA-IMG, MMMU, MME, MMStar.

Each builder reads the published columns (names and types from the dataset cards and lmms-eval's task
code; see tests/fixtures/closedqa/README.md) and turns every row into a ClosedQAItem: the question stem
(the only text a text shift may touch), the options, the gold answer, the scoring group and the columns
that hold the row's images. Prompts are not built here: their templates live in the suite YAML.

    data = load_closedqa("mmmu", "MMMU/MMMU", split="validation")
    data.items[0].question, data.items[0].options, data.image(data.items[0], "image_1")
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from PIL import Image

from vittle_cli.data.benchmarks.tables import (
    BenchmarkSchemaError,
    BenchmarkTable,
    decode_image,
    open_table,
    require_columns,
)
from vittle_cli.data.shift.text import IMAGE_REFERENCE as IMAGE_TAG
from vittle_cli.errors import DataError

BENCHMARKS = ("scienceqa", "mmmu", "mme", "mmstar")
MME_INSTRUCTION = "Please answer yes or no."  # part of every MME question; split off, the suite adds its own
MMSTAR_OPTIONS = "\nOptions:"  # MMStar writes the options into the question after this marker
# MMMU/MMMU on the hub has one config per subject (lmms-eval's DOMAIN_CAT2SUB_CAT lists the same 30).
MMMU_SUBJECTS = (
    "Accounting Agriculture Architecture_and_Engineering Art Art_Theory Basic_Medical_Science Biology "
    "Chemistry Clinical_Medicine Computer_Science Design Diagnostics_and_Laboratory_Medicine Economics "
    "Electronics Energy_and_Power Finance Geography History Literature Manage Marketing Materials Math "
    "Mechanical_Engineering Music Pharmacy Physics Psychology Public_Health Sociology"
).split()
WHERE = {
    "scienceqa": "use lmms-lab/ScienceQA config ScienceQA-IMG (ScienceQA-IMG/test-*.parquet)",
    "mmmu": "use MMMU/MMMU (<Subject>/validation-*.parquet) or lmms-lab/MMMU",
    "mme": "use lmms-lab/MME (data/test-*.parquet)",
    "mmstar": "use Lin-Chen/MMStar (mmstar.parquet)",
}


@dataclass(frozen=True)
class ClosedQAItem:
    """One benchmark question.

    question_id: unique per row (MME's own question_id names an image shared by two questions, so a
    "#0"/"#1" suffix is added). group: what accuracy is broken down by (ScienceQA subject, MMMU subject,
    MME category, MMStar category). kind: "choice", "open" (MMMU) or "yesno" (MME). answer: the option
    letter, "yes"/"no", or MMMU's open answer string. image_columns: the columns holding the row's images,
    in prompt order. fields: extra template fields (ScienceQA's hint, MMStar's options text).
    meta: what scoring needs besides the answer (MME pair id, MMStar l2 category).
    """

    question_id: str
    split: str  # = group; named like PopeItem.split so the shared limit/grouping helpers apply
    row: int
    kind: str
    question: str
    options: tuple[str, ...]
    answer: str
    image_columns: tuple[str, ...]
    fields: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.answer

    @property
    def image_key(self) -> str:
        """Key of the picture (seeds its perturbation; questions on one picture share a prompt prefix)."""
        return self.meta.get("image_key", f"row{self.row}")


@dataclass
class ClosedQASet:
    benchmark: str
    table: BenchmarkTable
    items: list[ClosedQAItem]

    def image(self, item: ClosedQAItem, column: str) -> Image.Image:
        """Decode one of the item's images (raises BenchmarkSchemaError naming the column if empty)."""
        return decode_image(
            self.table.cell(item.row, column),
            root=self.table.root,
            what=f"{self.benchmark} row {item.row} ({item.question_id}) column {column!r}",
        )


def _letter(i: int) -> str:
    return chr(ord("A") + i)


def _scienceqa(t: BenchmarkTable) -> list[ClosedQAItem]:
    cols = ["question", "choices", "answer", "hint", "image", "subject"]
    require_columns(t, cols, "ScienceQA", WHERE["scienceqa"])
    items = []
    for i, r in enumerate(t.rows([c for c in cols if c != "image"])):
        choices = list(r["choices"] or [])
        if not isinstance(r["answer"], int) or not 0 <= r["answer"] < len(choices):
            raise DataError(f"ScienceQA row {i}: answer {r['answer']!r} is not an index into {choices}")
        items.append(
            ClosedQAItem(
                question_id=str(i),
                split=r["subject"] or "",
                row=i,
                kind="choice",
                question=r["question"],
                options=tuple(choices),
                answer=_letter(r["answer"]),
                image_columns=("image",),
                fields={"hint": r["hint"] or ""},
            )
        )
    return items


def mmmu_subject(item_id: str) -> str:
    """'validation_Art_Theory_12' -> 'Art_Theory' (lmms-eval's extract_subset_name)."""
    m = re.match(rf"^{re.escape(item_id.split('_')[0])}_(.+?)_\d+$", item_id)
    if not m:
        raise DataError(f"MMMU id {item_id!r} is not <split>_<Subject>_<n>")
    return m.group(1)


def _mmmu(t: BenchmarkTable) -> list[ClosedQAItem]:
    cols = ["id", "question", "options", "answer", "question_type"]
    require_columns(t, cols + ["image_1"], "MMMU", WHERE["mmmu"])
    items = []
    for i, r in enumerate(t.rows(cols)):
        try:
            options = ast.literal_eval(r["options"]) if r["options"] else []
        except (ValueError, SyntaxError):
            options = None
        if not isinstance(options, list):
            raise DataError(f"MMMU {r['id']}: options {r['options']!r} is not a Python list literal")
        # the images the text mentions, in order of first mention (question, then options): the order
        # they are shown in (lmms-eval's doc_to_visual takes the same set, sorted by number)
        tags = []
        for n in IMAGE_TAG.findall(r["question"] + "\n" + "\n".join(str(o) for o in options)):
            tags += [f"image_{n}"] if f"image_{n}" not in tags else []
        missing = [c for c in tags if c not in t.columns]
        if missing:
            raise BenchmarkSchemaError(
                f"MMMU {r['id']} refers to {', '.join(missing)}, a column the data lacks"
            )
        choice = r["question_type"] == "multiple-choice"
        items.append(
            ClosedQAItem(
                question_id=r["id"],
                split=mmmu_subject(r["id"]),
                row=i,
                kind="choice" if choice else "open",
                question=r["question"],
                options=tuple(str(o) for o in options) if choice else (),
                answer=r["answer"],
                image_columns=tuple(tags),
                meta={"image_key": r["id"]},
            )
        )
    return items


def _mme(t: BenchmarkTable) -> list[ClosedQAItem]:
    cols = ["question_id", "question", "answer", "category"]
    require_columns(t, cols + ["image"], "MME", WHERE["mme"])
    items, seen = [], {}
    for i, r in enumerate(t.rows(cols)):
        answer = str(r["answer"]).lower().strip().replace(".", "")
        if answer not in ("yes", "no"):
            raise DataError(f"MME row {i} ({r['question_id']}): answer {r['answer']!r} is not Yes/No")
        stem = r["question"].strip()
        stem = stem[: -len(MME_INSTRUCTION)].rstrip() if stem.endswith(MME_INSTRUCTION) else stem
        n = seen[r["question_id"]] = seen.get(r["question_id"], -1) + 1
        items.append(
            ClosedQAItem(
                question_id=f"{r['question_id']}#{n}",
                split=r["category"],
                row=i,
                kind="yesno",
                question=stem,
                options=(),
                answer=answer,
                image_columns=("image",),
                meta={"pair": r["question_id"], "image_key": r["question_id"]},
            )
        )
    return items


def _mmstar(t: BenchmarkTable) -> list[ClosedQAItem]:
    cols = ["index", "question", "answer", "category", "l2_category"]
    require_columns(t, cols + ["image"], "MMStar", WHERE["mmstar"])
    items = []
    for i, r in enumerate(t.rows(cols)):
        full = r["question"].strip()
        cut = full.find(MMSTAR_OPTIONS)
        stem, options_text = (full[:cut], full[cut:]) if cut >= 0 else (full, "")
        items.append(
            ClosedQAItem(
                question_id=str(r["index"]),
                split=r["category"],
                row=i,
                kind="choice",
                question=stem,
                options=(),
                answer=str(r["answer"]).strip(),
                image_columns=("image",),
                fields={"options_text": options_text},
                meta={"l2_category": r["l2_category"]},
            )
        )
    return items


_BUILDERS = {"scienceqa": _scienceqa, "mmmu": _mmmu, "mme": _mme, "mmstar": _mmstar}


def load_closedqa(benchmark: str, source: str, *, split: str, config: str | None = None) -> ClosedQASet:
    """Load and validate a benchmark (every column checked before any model work).

    Raises:
        BenchmarkSchemaError: a missing column (named, with where the right files come from).
        DataError: unreadable source, malformed values (bad option lists, answers out of range).
    """
    if benchmark not in _BUILDERS:
        raise DataError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
    # MMMU/MMMU has one hub config per subject (lmms-lab/MMMU, its merge, has none)
    hub_configs = MMMU_SUBJECTS if source.lower() == "mmmu/mmmu" else None
    table = open_table(source, split=split, config=config, hub_configs=hub_configs)
    if len(table) == 0:
        raise DataError(f"{benchmark} data {source} (split {split}) has no rows")
    return ClosedQASet(benchmark, table, _BUILDERS[benchmark](table))
