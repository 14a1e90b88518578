"""The typed recipe: defaults, YAML + overrides with coercion, every problem reported at once, dump, docs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vittle_cli.errors import RecipeError, UsageError
from vittle_cli.recipe import (
    Recipe,
    copy_recipe,
    dump_recipe,
    load_recipe,
    recipe_reference_markdown,
    recipes_dir,
    resolve_recipe_path,
    shipped_recipes,
)

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path, overrides=()) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, list(overrides))
    return info.value.problems


def test_defaults_match_the_paper_setup():
    r = Recipe()
    assert r.model.name == "builtin:tiny-llava" and r.model.attn_implementation == "sdpa"
    assert (r.bottleneck.beta_v, r.bottleneck.beta_t, r.bottleneck.alpha_end) == (0.1, 0.1, 0.5)
    assert (r.bottleneck.prior, r.bottleneck.schedule, r.bottleneck.logvar_clamp) == ("F", "sigmoid", 2.3025)
    assert (r.train.lr, r.train.warmup_ratio, r.train.scheduler) == (2e-5, 0.03, "cosine")
    assert r.train.lora.targets == ["language_model"] and not r.train.qlora.enabled
    assert r.output.report_to == ["tensorboard"] and r.data.max_length == 2048


def test_empty_file_and_empty_sections_give_defaults(tmp_path):
    assert load_recipe(write(tmp_path, "")) == Recipe()
    assert load_recipe(write(tmp_path, "model:\ntrain:\n")) == Recipe()


def test_file_values_and_overrides_with_coercion(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1e-3\n  epochs: 2\nbottleneck:\n  prior: L\n")
    r = load_recipe(
        path,
        [
            "train.lr=1e-4",  # YAML 1.1 reads this as a string: must become a float
            "train.gradient_checkpointing=true",
            "train.lora.targets=[language_model,projector]",
            "train.max_steps=50",
            "bottleneck.layer_v=-3",
            "output.run_name=2024",  # a name field keeps the text
            "output.save_total_limit=null",
            "model.revision=yes",
            "output.report_to=none",  # a single value for a list field
        ],
    )
    assert r.train.lr == pytest.approx(1e-4) and isinstance(r.train.lr, float)
    assert r.train.epochs == 2.0 and r.bottleneck.prior == "L"
    assert r.train.gradient_checkpointing is True
    assert r.train.lora.targets == ["language_model", "projector"]
    assert r.train.max_steps == 50 and r.bottleneck.layer_v == -3
    assert r.output.run_name == "2024" and r.output.save_total_limit is None
    assert r.model.revision == "yes" and r.output.report_to == ["none"]


def test_yaml_file_float_without_dot_is_a_number(tmp_path):
    assert load_recipe(write(tmp_path, "train:\n  lr: 5e-5\n")).train.lr == pytest.approx(5e-5)


def test_override_can_fill_an_optional_section(tmp_path):
    r = load_recipe(
        write(tmp_path, "model:\n  compose: null\n"),
        ["model.compose.language_model=lmsys/vicuna-7b-v1.5", "model.compose.vision_tower=openai/clip"],
    )
    assert (
        r.model.compose.language_model == "lmsys/vicuna-7b-v1.5" and r.model.compose.projector_weights is None
    )


def test_unknown_override_section_suggests_the_right_one(tmp_path):
    (problem,) = problems_of(write(tmp_path, ""), ["trian.lr=1e-4"])
    assert problem.startswith("trian:") and "did you mean 'train'" in problem


def test_unknown_nested_key_in_file_suggests_and_names_path(tmp_path):
    (problem,) = problems_of(write(tmp_path, "train:\n  lora:\n    rank: 8\n"))
    assert problem.startswith("train.lora.rank:") and "unknown key" in problem


def test_unknown_key_without_close_match_lists_known_keys(tmp_path):
    (problem,) = problems_of(write(tmp_path, "output:\n  zzzzzz: 1\n"))
    assert "output.zzzzzz" in problem and "save_steps" in problem


def test_wrong_type_names_key_expected_type_and_value(tmp_path):
    (problem,) = problems_of(write(tmp_path, ""), ["train.lr=oops"])
    assert problem.startswith("train.lr:") and "number" in problem and "'oops'" in problem


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("bottleneck.beta_v=-0.1", "bottleneck.beta_v", ">= 0"),
        ("bottleneck.alpha_end=1.5", "bottleneck.alpha_end", "<= 1"),
        ("bottleneck.prior=X", "bottleneck.prior", "'F'"),
        ("train.per_device_batch_size=2.5", "train.per_device_batch_size", "integer"),
        ("train.lora.targets=[language_model,lm_head]", "train.lora.targets.1", "projector"),
        ("train.scheduler=cosin", "train.scheduler", "did you mean 'cosine'"),
        ("train.deepspeed=zero4", "train.deepspeed", "zero3"),
        ("data.on_bad_sample=ignore", "data.on_bad_sample", "'skip'"),
        ("model.compose.language_model=x", "model.compose.vision_tower", "required"),
    ],
)
def test_field_rules_name_their_key(tmp_path, override, key, words):
    problems = problems_of(write(tmp_path, ""), [override])
    assert len(problems) == 1 and problems[0].startswith(f"{key}:") and words in problems[0], problems


def test_qlora_needs_lora(tmp_path):
    (problem,) = problems_of(write(tmp_path, ""), ["train.qlora.enabled=true"])
    assert problem.startswith("train.qlora.enabled:") and "train.lora.enabled=true" in problem
    assert load_recipe(
        write(tmp_path, ""), ["train.qlora.enabled=true", "train.lora.enabled=true"]
    ).train.qlora.enabled


def test_nothing_to_train(tmp_path):
    (problem,) = problems_of(write(tmp_path, "train:\n  epochs: 0\n"))
    assert problem.startswith("train.epochs:")
    assert load_recipe(write(tmp_path, "train:\n  epochs: 0\n  max_steps: 5\n")).train.max_steps == 5


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train..lr=1", "train.lr.x=1"])
def test_bad_override_syntax(tmp_path, bad):
    (problem,) = problems_of(write(tmp_path, ""), [bad])
    assert repr(bad) in problem and ("key=value" in problem or "not a section" in problem)


def test_missing_file_suggests_a_shipped_name():
    (problem,) = problems_of("tinyy")
    assert "not found" in problem and "did you mean 'tiny'" in problem


def test_yaml_syntax_error_has_line(tmp_path):
    (problem,) = problems_of(write(tmp_path, "model:\n  name: x\ntrain:\n  lr: [1e-4\n  epochs: 1\n"))
    assert "YAML syntax error at line 5" in problem


def test_non_mapping_recipe(tmp_path):
    (problem,) = problems_of(write(tmp_path, "- just\n- a list\n"))
    assert "mapping" in problem


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "trian:\n  lr: 1\nbottleneck:\n  beta_t: -1\ndata:\n  max_length: zero\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["train.lr=oops", "train.epochs", "model.nmae=x"])
    keys = {p.split(":")[0] for p in info.value.problems}
    assert {"trian", "bottleneck.beta_t", "data.max_length", "train.lr", "model.nmae"} <= keys
    assert any("'train.epochs'" in p for p in info.value.problems)
    assert len(info.value.problems) == 6
    assert str(path) in str(info.value) and "6 problems" in str(info.value)


def test_dump_round_trips_with_stable_order(tmp_path):
    r = load_recipe(recipes_dir() / "tiny.yaml", ["train.lr=3e-4", "train.lora.enabled=true"])
    text = dump_recipe(r)
    assert list(yaml.safe_load(text)) == ["model", "data", "bottleneck", "train", "output"]
    assert load_recipe(write(tmp_path, text)) == r
    assert dump_recipe(load_recipe(write(tmp_path, text))) == text


def test_shipped_names_and_descriptions():
    shipped = {name: (path, desc) for name, path, desc in shipped_recipes()}
    assert "tiny" in shipped and shipped["tiny"][0] == recipes_dir() / "tiny.yaml"
    assert shipped["tiny"][1] and not shipped["tiny"][1].startswith("vittle ")
    assert not any(name.startswith("suites/") for name in shipped)
    assert resolve_recipe_path("tiny") == recipes_dir() / "tiny.yaml"
    assert load_recipe("tiny") == load_recipe(recipes_dir() / "tiny.yaml")


def test_description_puts_purpose_before_hardware(tmp_path, monkeypatch):
    root = tmp_path / "recipes"
    (root / "suites").mkdir(parents=True)
    (root / "suites" / "s.yaml").write_text("# not a recipe\n")
    (root / "big").mkdir()
    (root / "big" / "r.yaml").write_text(
        "# vittle train recipes/big/r.yaml\n# Hardware: 8 GPUs, e.g. A100s; a day. Trains\n# the big one.\n# Slowly.\nmodel: {}\n# no\n"
    )
    monkeypatch.setattr("vittle_cli.recipe_files.recipes_dir", lambda: root)
    assert shipped_recipes() == [
        ("big/r", root / "big" / "r.yaml", "Trains the big one. Slowly. Hardware: 8 GPUs, e.g. A100s; a day.")
    ]
    assert resolve_recipe_path("big/r") == root / "big" / "r.yaml"


def test_copy_recipe_refuses_to_overwrite(tmp_path):
    target = copy_recipe("tiny", tmp_path)
    assert (
        target == tmp_path / "tiny.yaml" and target.read_text() == (recipes_dir() / "tiny.yaml").read_text()
    )
    target.write_text("edited")
    with pytest.raises(UsageError, match="--overwrite"):
        copy_recipe("tiny", target)
    assert target.read_text() == "edited"
    copy_recipe("tiny", target, overwrite=True)
    assert target.read_text() != "edited"
    with pytest.raises(UsageError, match="did you mean 'tiny'"):
        copy_recipe("tnyi", tmp_path / "x.yaml")


def test_every_field_is_described():
    def walk(cls):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"
            sub = getattr(field.annotation, "model_fields", None)
            if sub is not None:
                walk(field.annotation)

    walk(Recipe)


def test_docs_hold_the_current_reference_table():
    docs = (REPO / "docs" / "recipes.md").read_text()
    assert recipe_reference_markdown() in docs, "docs/recipes.md is stale: run `make docs`"
