"""Closed-form QA loaders and prompts on parquet fixtures that copy the published schemas
(tests/fixtures/closedqa/README.md says where each schema comes from)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vittle_cli.data.benchmarks import tables
from vittle_cli.data.benchmarks.closedqa import load_closedqa, mmmu_subject
from vittle_cli.data.benchmarks.prompt import place_images, render_text
from vittle_cli.data.benchmarks.spec import ClosedQAPrompt
from vittle_cli.data.benchmarks.tables import BenchmarkSchemaError
from vittle_cli.data.shift.text import perturb_question, perturb_text
from vittle_cli.errors import DataError

FIX = Path(__file__).parents[1] / "fixtures" / "closedqa"
SQA_PROMPT = ClosedQAPrompt(
    template="{context}{question}\n{options}\nAnswer with the option's letter from the given choices directly."
)
MMMU_PROMPT = ClosedQAPrompt(
    template="{question}\n{options}\n\nAnswer with the option's letter from the given choices directly.",
    open_template="{question}\n\nAnswer the question using a single word or phrase.",
)


def test_fixture_schemas_match_the_dataset_cards():
    sqa = pq.read_schema(FIX / "scienceqa/ScienceQA-IMG/test-00000-of-00001.parquet")
    assert sqa.names[:5] == ["image", "question", "choices", "answer", "hint"]
    assert str(sqa.field("answer").type) == "int8"
    assert str(sqa.field("image").type) == "struct<bytes: binary, path: string>"
    mmmu = pq.read_schema(FIX / "mmmu/Accounting/validation-00000-of-00001.parquet")
    assert [n for n in mmmu.names if n.startswith("image_")] == [f"image_{i}" for i in range(1, 8)]
    assert str(mmmu.field("options").type) == "string"  # a Python list literal, not a list
    mme = pq.read_schema(FIX / "mme/data/test-00000-of-00001.parquet")
    assert mme.names == ["question_id", "image", "question", "answer", "category"]
    star = pq.read_schema(FIX / "mmstar/mmstar.parquet")
    assert star.names == ["index", "question", "image", "answer", "category", "l2_category", "meta_info"]


def test_scienceqa_items_and_prompt():
    data = load_closedqa("scienceqa", str(FIX / "scienceqa"), split="test", config="ScienceQA-IMG")
    first, third = data.items[0], data.items[2]
    assert (first.answer, first.split, first.options[0]) == ("A", "social science", "West Virginia")
    assert render_text(first, SQA_PROMPT) == (
        "Which of these states is farthest north?\nA. West Virginia\nB. Louisiana\nC. Arizona\n"
        "D. Oklahoma\nAnswer with the option's letter from the given choices directly."
    )
    assert render_text(third, SQA_PROMPT).startswith(
        "Context: Tree frogs live in tropical rain forests.\nFigure: tree frog.\nWhich animal's"
    )
    assert data.image(first, "image").size == (48, 40)


def test_mmmu_reads_every_subject_folder_of_the_split_only():
    data = load_closedqa("mmmu", str(FIX / "mmmu"), split="validation")
    ids = [it.question_id for it in data.items]
    assert ids == ["validation_Accounting_1", "validation_Accounting_2", "validation_Art_Theory_3"]
    open_q, multi = data.items[1], data.items[2]
    assert (open_q.kind, open_q.options, open_q.answer) == ("open", (), "3.5")
    assert render_text(open_q, MMMU_PROMPT).endswith("\n\nAnswer the question using a single word or phrase.")
    assert multi.split == "Art_Theory" and multi.image_columns == ("image_1", "image_2")
    assert multi.options == ("<image 1>", "<image 2>", "Both at once")


def test_mmmu_subject_from_id():
    assert mmmu_subject("validation_Art_Theory_12") == "Art_Theory"
    assert mmmu_subject("dev_Accounting_1") == "Accounting"
    with pytest.raises(DataError):
        mmmu_subject("Accounting")


def test_mmmu_images_are_placed_where_the_text_names_them():
    data = load_closedqa("mmmu", str(FIX / "mmmu"), split="validation")
    multi = data.items[2]
    text = place_images(render_text(multi, MMMU_PROMPT), multi.image_columns, "<SLOT>")
    # a slot before the first mention of each image; every mention stays as text
    assert text.startswith(
        "Compare <SLOT><image 1> and <SLOT><image 2>. Which was painted first? <image 1> uses oil.\nA. <image 1>"
    )
    assert text.count("<SLOT>") == 2
    assert place_images("<image 2> then <image 1>", ("image_1", "image_2"), "<SLOT>") == (
        "<image 2> then <image 1>"  # order differs from the images' order: shown first instead
    )


def test_mme_pairs_share_an_image_and_the_instruction_is_split_off():
    data = load_closedqa("mme", str(FIX / "mme"), split="test")
    a, b = data.items[:2]
    assert (a.question_id, b.question_id) == ("000000006040.jpg#0", "000000006040.jpg#1")
    assert a.image_key == b.image_key == "000000006040.jpg"
    assert a.question == "Is there a train in this image?"
    assert (a.answer, b.answer, a.split) == ("yes", "no", "existence")
    prompt = ClosedQAPrompt(template="{question} Please answer yes or no.")
    assert render_text(a, prompt) == "Is there a train in this image? Please answer yes or no."


def test_mmstar_options_stay_out_of_the_stem():
    data = load_closedqa("mmstar", str(FIX / "mmstar" / "mmstar.parquet"), split="val")
    it = data.items[1]
    assert it.question == "What is the main feature in the background of the image?"
    assert it.fields["options_text"].startswith("\nOptions: A: A house, B: A tree")
    assert (it.answer, it.split, it.meta["l2_category"]) == ("C", "coarse perception", "image emotion")
    prompt = ClosedQAPrompt(template="{question}{options_text}\nAnswer with the option's letter")
    assert (
        render_text(it, prompt, "WHAT?")
        == "WHAT?" + it.fields["options_text"] + "\nAnswer with the option's letter"
    )


def test_text_shift_keeps_image_tags_and_matches_perturb_text_without_them():
    stem = "Compare <image 1> and <image 2>. Which painting was made first by the artist?"
    shifted = perturb_question(stem, "char_swap", 5, seed=7)
    assert shifted != stem and "<image 1>" in shifted and "<image 2>" in shifted
    assert perturb_question("Which of these states is north?", "keyboard", 3, 5) == perturb_text(
        "Which of these states is north?", "keyboard", 3, 5
    )


def test_save_to_disk_folder(tmp_path):
    from datasets import Dataset

    ds = Dataset.from_parquet(
        str(FIX / "mme/data/test-00000-of-00001.parquet"), cache_dir=str(tmp_path / "c")
    )
    ds.save_to_disk(str(tmp_path / "mme"))
    data = load_closedqa("mme", str(tmp_path / "mme"), split="test")
    assert len(data.items) == 6 and data.image(data.items[0], "image").size == (48, 40)


def test_hub_ids_go_through_load_dataset_and_mmmu_loads_every_subject(monkeypatch):
    calls = []

    def fake(repo, config, split):
        calls.append((repo, config, split))
        name = "mme" if repo == "lmms-lab/MME" else "mmmu"
        return load_closedqa(name, str(FIX / name), split=split).table.table

    monkeypatch.setattr(tables, "_from_hub", fake)
    load_closedqa("mme", "lmms-lab/MME", split="test")
    assert calls == [("lmms-lab/MME", None, "test")]
    calls.clear()
    load_closedqa("mmmu", "MMMU/MMMU", split="validation")
    assert len(calls) == 30 and calls[0] == ("MMMU/MMMU", "Accounting", "validation")
    calls.clear()
    load_closedqa("mmmu", "lmms-lab/MMMU", split="validation")  # the merged copy: no subject configs
    assert calls == [("lmms-lab/MMMU", None, "validation")]


def test_missing_column_names_the_column_and_the_fix(tmp_path):
    table = pq.read_table(FIX / "mmstar/mmstar.parquet").drop_columns(["l2_category"])
    pq.write_table(table, tmp_path / "mmstar.parquet")
    with pytest.raises(BenchmarkSchemaError, match=r"lacks column\(s\) l2_category .*Lin-Chen/MMStar") as e:
        load_closedqa("mmstar", str(tmp_path / "mmstar.parquet"), split="val")
    assert e.value.exit_code == 2


def test_missing_image_names_the_row_and_column(tmp_path):
    import pyarrow as pa

    table = pq.read_table(FIX / "mme/data/test-00000-of-00001.parquet")
    empty = pa.array([{"bytes": None, "path": None}] * table.num_rows, type=table.schema.field("image").type)
    pq.write_table(table.set_column(1, "image", empty), tmp_path / "test-00000-of-00001.parquet")
    data = load_closedqa("mme", str(tmp_path), split="test")
    with pytest.raises(
        BenchmarkSchemaError, match=r"mme row 0 \(000000006040.jpg#0\) column 'image' has no image"
    ):
        data.image(data.items[0], "image")


def test_missing_source_is_a_data_error():
    with pytest.raises(DataError, match="not found"):
        load_closedqa("mme", "no/such/dir/at/all", split="test")
