"""Loading LB-COCO, LB-Wild, LB-Wilder and WV-Bench from their published layouts, and the error texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openended_data import make_lbcoco, make_lbwild, make_lbwilder, make_wvbench

from vittle_cli.data.shift import load_suite
from vittle_cli.data.shift.openended import load_openended_suite
from vittle_cli.errors import DataError, UsageError


def _suite(name, root):
    return load_suite(name).with_data({"data_root": str(root)})


def test_lbcoco_loads_with_references_context_and_both_coco_file_names(tmp_path):
    data = load_openended_suite(_suite("lbcoco", make_lbcoco(tmp_path)))
    assert [it.question_id for it in data.items] == ["12", "13", "14", "21", "22", "23"]
    assert data.report["categories"] == {"conv": 2, "detail": 2, "complex": 2}
    first = data.items[0]
    assert first.rule == "conv" and first.reference == "The cart with luggage bags is located in a lobby."
    assert first.context.splitlines()[0] == "a number of luggage bags on a cart in a lobby"
    assert "handbag: [0.316, 0.181, 0.431, 0.426]" in first.context
    # 000000056013.jpg is stored as COCO_val2014_000000056013.jpg, 000000034096.jpg under its own name
    assert data.open_image("000000056013.jpg").getpixel((0, 0))[0] > 150
    assert data.open_image("000000034096.jpg").getpixel((0, 0))[2] > 150


def test_lbwild_rules_are_llava_bench_and_context_is_the_caption(tmp_path):
    data = load_openended_suite(_suite("lbwild", make_lbwild(tmp_path)))
    assert [it.question_id for it in data.items] == ["0", "1", "2", "4"]
    assert {it.rule for it in data.items} == {"llava_bench_conv", "llava_bench_detail", "llava_bench_complex"}
    assert data.items[3].context.startswith("A photo of four mangosteens")
    assert data.items[3].reference == "This is a mangosteen fruit."


def test_lbwilder_from_parquet(tmp_path):
    data = load_openended_suite(_suite("lbwilder", make_lbwilder(tmp_path)))
    assert [(it.question_id, it.rule, it.context) for it in data.items] == [
        ("0", "wildvision_bench", None),
        ("1", "wildvision_bench", None),
    ]
    assert data.items[1].reference == "You could make a ratatouille."
    assert data.open_image("0").size == (48, 40)
    assert data.report["reference"] == "column Answer"


def test_wvbench_references_join_by_question_id(tmp_path):
    data = load_openended_suite(_suite("wvbench", make_wvbench(tmp_path)))
    assert [it.question_id for it in data.items] == ["a1b2c3", "d4e5f6"]
    assert data.items[1].reference == "It appears to be a golden retriever."
    assert data.items[0].text == "Describe the chart and its main trend."


def test_unfilled_data_root_names_the_option():
    with pytest.raises(UsageError, match="pass --data-root DIR"):
        load_openended_suite(load_suite("lbcoco"))


def test_missing_file_says_where_it_is_published(tmp_path):
    root = make_lbcoco(tmp_path)
    (root / "caps_boxes_coco2014_val_80.jsonl").unlink()
    with pytest.raises(DataError) as info:
        load_openended_suite(_suite("lbcoco", root))
    msg = str(info.value)
    assert "caps_boxes_coco2014_val_80.jsonl" in msg and "haotian-liu/LLaVA llava/eval/table/" in msg
    root = make_wvbench(tmp_path / "wv")
    (root / "claude-3-sonnet-20240229.jsonl").unlink()
    with pytest.raises(DataError, match="WildVision-Bench data/vision_bench_0617/model_answers"):
        load_openended_suite(_suite("wvbench", root))


def test_missing_rule_category_is_one_line(tmp_path):
    root = make_lbcoco(tmp_path)
    rules = json.loads((root / "rule.json").read_text())
    del rules["complex"]
    (root / "rule.json").write_text(json.dumps(rules))
    with pytest.raises(DataError) as info:
        load_openended_suite(_suite("lbcoco", root))
    assert "has no rule for complex" in str(info.value) and "\n" not in str(info.value)


def test_question_without_reference_is_named(tmp_path):
    root = make_lbwild(tmp_path)
    lines = (root / "answers_gpt4.jsonl").read_text().splitlines()
    (root / "answers_gpt4.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # drop question 4's answer
    with pytest.raises(DataError, match=r"1 question\(s\) have no reference answer .* \(question_id 4\)"):
        load_openended_suite(_suite("lbwild", root))


def test_missing_image_is_named(tmp_path):
    root = make_lbwild(tmp_path)
    (root / "images" / "002.jpg").unlink()
    with pytest.raises(DataError, match="1 image\\(s\\) missing .*002.jpg"):
        load_openended_suite(_suite("lbwild", root))


def test_lbcoco_shift_has_27_shifts_with_three_translations():
    s, pope = load_suite("lbcoco-shift"), load_suite("pope-shift")
    groups = [v.group for v in s.variants]
    assert [groups.count(g) for g in ("clean", "visual", "text", "joint")] == [1, 9, 9, 9]
    visual = [v.visual for v in s.variants if v.group == "visual"]
    assert visual == [v.visual for v in pope.variants if v.group == "visual"]
    text = [v.text.name for v in s.variants if v.group == "text"]
    assert text[-3:] == ["translate_de", "translate_zh", "translate_ko"]
    assert set(text[:6]) < {v.text.name for v in pope.variants if v.group == "text"}
    assert s.max_new_tokens == 1024 and s.prompt_suffix == ""


def test_translation_shift_reads_the_store_and_fails_clearly_without_it(tmp_path, monkeypatch):
    from vittle_cli.data.shift.text import perturb_text
    from vittle_cli.data.shift.translate import TranslationStore

    monkeypatch.setenv("VITTLE_CACHE", str(tmp_path))
    with pytest.raises(DataError, match="pass --judge"):
        perturb_text("How many pizzas are there in the image?", "translate_zh", 3, 0)
    TranslationStore().add("zh", "How many pizzas are there in the image?", "图片里有几个披萨？", "t")
    assert (
        perturb_text("How many pizzas are there in the image?", "translate_zh", 3, 0) == "图片里有几个披萨？"
    )


def test_a_rule_file_of_the_wrong_shape_is_one_line(tmp_path):
    root = make_lbcoco(tmp_path)
    (root / "rule.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="must map rule names"):
        load_openended_suite(_suite("lbcoco", root))


def test_the_judged_family_is_registered_and_checks_its_suites(tmp_path):
    import yaml

    from vittle_cli.eval.tasks import get_task, list_tasks

    assert "openended" in list_tasks()
    task = get_task("openended")
    assert task.primary_metric == "relative_score"
    assert task.check_suite(load_suite("lbcoco")) == []
    assert task.check_suite(load_suite("pope")) and not load_suite("pope").is_openended
    spec = yaml.safe_load((Path(__file__).parents[2] / "recipes" / "suites" / "lbcoco.yaml").read_text())
    del spec["task"]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(UsageError, match="add `task: openended`"):
        load_suite(tmp_path / "s.yaml")
