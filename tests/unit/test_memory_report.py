"""The memory plan of the shipped recipes, its suggestions, `--dry-run`, the recipe's optimizer options and the
peak-memory bookkeeping (CPU side; tests/gpu/test_peak_memory.py measures on CUDA)."""

from __future__ import annotations

import pytest
from cli_runner import run_cli

from vittle_cli.errors import RecipeError, VittleError
from vittle_cli.recipe import load_recipe
from vittle_cli.train.deepspeed import resolve_deepspeed_config
from vittle_cli.train.memory import GIB, PlanSettings, plan_memory, usable_bytes
from vittle_cli.train.memory_report import deepspeed_estimate, memory_plan_for_recipe, shapes_for_recipe

LORA = ["train.lora.enabled=true"]
QLORA = [*LORA, "train.qlora.enabled=true", "train.deepspeed=null"]
# The 7B and 13B recipes in each mode (full ZeRO-3, ZeRO-3 + offload, LoRA ZeRO-2, LoRA ZeRO-3, QLoRA).
CASES = [
    ("llava15_7b_vittle_f_zero3", []),
    ("llava15_7b_vittle_f_zero3", ["train.deepspeed=zero3_offload"]),
    ("llava15_7b_vittle_f_lora", []),
    ("llava15_7b_vittle_f_lora", ["train.deepspeed=zero3"]),
    ("llava15_7b_vittle_f_qlora", []),
    ("llava15_13b_vittle_f_zero3", []),
    ("llava15_13b_vittle_f_zero3", ["train.deepspeed=zero3_offload"]),
    ("llava15_13b_vittle_f_zero3", [*LORA, "train.deepspeed=zero2"]),
    ("llava15_13b_vittle_f_zero3", QLORA),
]


def plan_of(name: str, overrides: list[str], world_size: int = 8, capacity: int | None = 80 * 10**9):
    recipe = load_recipe(name, overrides)
    ds = resolve_deepspeed_config(recipe.train.deepspeed) if recipe.train.deepspeed else None
    return recipe, memory_plan_for_recipe(recipe, world_size=world_size, ds_config=ds, capacity=capacity)


@pytest.mark.parametrize("name, overrides", CASES)
def test_shipped_recipes_agree_with_deepspeeds_estimator(name, overrides):
    recipe, plan = plan_of(name, overrides)
    states = sum(plan.rows[k] for k in ("weights", "gradients", "optimizer states") if k in plan.rows)
    if plan.settings.zero_stage:
        assert plan.deepspeed_estimate == pytest.approx(states, rel=1e-9)
    else:  # QLoRA trains without DeepSpeed: its estimators do not apply
        assert plan.settings.mode == "qlora" and plan.deepspeed_estimate is None
    assert plan.shapes_source.startswith("vittle's table of known shapes")
    if not overrides:  # as shipped, on the hardware their header names (8 x 80 GB; QLoRA: one card)
        assert plan.fits, f"{name}: {plan.total / GIB:.1f} GiB per device on 8 x 80 GB"


def test_the_16gb_qlora_recipe_fits_16gb_and_the_24gb_one_does_not():
    _, plan = plan_of("llava15_7b_vittle_f_qlora_16gb", [], world_size=1, capacity=16 * 10**9)
    assert plan.fits and plan.settings.optimizer == "paged_adamw_8bit" and plan.settings.batch == 1
    _, bigger = plan_of("llava15_7b_vittle_f_qlora", [], world_size=1, capacity=16 * 10**9)
    assert not bigger.fits
    # what it suggests for a 16 GB card is what the 16 GB recipe changes
    assert bigger.suggestions[0].startswith(
        "train.per_device_batch_size=1 train.gradient_accumulation_steps=128 train.optimizer=paged_adamw_8bit "
        "train.lora.r=64 train.lora.alpha=128 ("
    )


def test_what_would_fit_instead_really_fits():
    recipe, plan = plan_of("llava15_13b_vittle_f_zero3", [], world_size=1)
    assert not plan.fits and plan.suggestions
    for line in plan.suggestions:  # "key=value key=value (12.3 GiB)"
        overrides = line.rsplit(" (", 1)[0].split()
        _, again = plan_of("llava15_13b_vittle_f_zero3", overrides, world_size=1)
        assert again.fits, line
    assert any("zero3_offload" in line for line in plan.suggestions)


def test_eight_gpus_need_less_per_device_than_one():
    _, one = plan_of("llava15_7b_vittle_f_zero3", [], world_size=1)
    _, eight = plan_of("llava15_7b_vittle_f_zero3", [], world_size=8)
    assert eight.rows["optimizer states"] * 8 == pytest.approx(one.rows["optimizer states"])


def test_shapes_come_from_the_builtin_config_or_fail_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing is found, nothing downloaded
    assert shapes_for_recipe(load_recipe("tiny", [])).source == "the config of builtin:tiny-llava-demo"
    assert (
        shapes_for_recipe(load_recipe("tiny", ["model.name=builtin:tiny-llava"])).source
        == "the config of builtin:tiny-llava"
    )
    with pytest.raises(ValueError, match="hf download"):
        shapes_for_recipe(load_recipe("tiny", ["model.name=some-org/unknown-vlm"]))


def test_dry_run_prints_the_memory_plan(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    # the recipe's LLaVA data is not here (a missing data file fails the dry run): plan on the built-in data
    assert run_cli(["train", "llava15_7b_vittle_f_qlora_16gb", "data.train=builtin:shapes", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "memory per device (estimate): qlora" in out and "paged_adamw_8bit" in out
    assert "vittle's table of known shapes (llava-hf/llava-1.5-7b-hf)" in out
    import torch

    if torch.cuda.is_available():  # compared with the GPU at hand
        assert "usable by tensors" in out
    else:
        assert "no GPU here; fits on cards of: 16 GB, 24 GB" in out


def test_deepspeed_estimate_does_not_apply_to_eight_bit_states():
    shapes = shapes_for_recipe(load_recipe("llava15_7b_vittle_f_zero3", []))
    s = PlanSettings(zero_stage=3, world_size=8, optimizer="adamw_8bit")
    assert deepspeed_estimate(shapes, s) is None
    assert plan_memory(shapes, s).total < plan_memory(shapes, PlanSettings(zero_stage=3, world_size=8)).total


def test_usable_memory_sets_context_and_fragmentation_aside():
    assert usable_bytes(16 * 10**9) == pytest.approx(16e9 * 0.9 - 0.75 * GIB)


# ---- recipe options -----------------------------------------------------------------------------------------


def test_unknown_optimizer_lists_the_allowed_ones():
    with pytest.raises(RecipeError) as err:
        load_recipe("tiny", ["train.optimizer=adamw8bit"])
    line = err.value.problems[0]
    assert "train.optimizer" in line and "did you mean 'adamw_8bit'" in line and "paged_adamw_8bit" in line


def test_missing_packages_fail_with_the_fix(monkeypatch):
    import importlib.util

    from vittle_cli.train.optim import economy_training_args

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("liger_kernel", "bitsandbytes") else real(name, *a))  # fmt: skip
    with pytest.raises(VittleError, match="pip install liger-kernel"):
        economy_training_args(load_recipe("tiny", ["train.liger_kernels=true"]).train)
    with pytest.raises(VittleError, match="pip install bitsandbytes"):
        economy_training_args(load_recipe("tiny", ["train.optimizer=paged_adamw_8bit"]).train)
    args = economy_training_args(
        load_recipe("tiny", ["train.optimizer=adafactor", "train.torch_compile=true"]).train
    )
    assert args == {"optim": "adafactor", "torch_compile": True, "use_liger_kernel": False}


def test_the_options_reach_the_training_arguments(tmp_path):
    from vittle_cli.train.plan import WorldInfo
    from vittle_cli.train.run import build_training_arguments

    recipe = load_recipe("tiny", ["train.optimizer=adamw_8bit", "train.torch_compile=true"])
    args = build_training_arguments(recipe, tmp_path, None, WorldInfo())
    assert args.optim == "adamw_bnb_8bit" and args.torch_compile is True and args.use_liger_kernel is False


# ---- peak memory bookkeeping --------------------------------------------------------------------------------


def test_peak_memory_rows_and_inspect_run(tmp_path):
    import json
    from types import SimpleNamespace

    from vittle_cli.inspect.run_view import run_inspect_run
    from vittle_cli.train.callbacks import metrics_row
    from vittle_cli.train.memory_callbacks import PeakMemoryCallback

    logs = {"loss": 1.0}
    PeakMemoryCallback().on_log(None, None, None, logs=logs)  # CPU: nothing measured, nothing added
    assert logs == {"loss": 1.0}
    state = SimpleNamespace(global_step=3, epoch=0.1)
    assert "max_mem_allocated_gib" not in metrics_row(logs, state)
    row = metrics_row({"loss": 1.0, "max_mem_allocated_gib": 2.5, "max_mem_reserved_gib": 3.0}, state)
    assert row["max_mem_allocated_gib"] == 2.5 and row["max_mem_reserved_gib"] == 3.0
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {name: builtin:tiny-llava}\n")
    rows = [{**row, "step": 1, "max_mem_allocated_gib": 4.0}, {**row, "step": 2}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_inspect_run(str(run)).peak_memory_gib == {
        "max_mem_allocated_gib": 4.0,
        "max_mem_reserved_gib": 3.0,
    }
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    assert run_inspect_run(str(run)).peak_memory_gib is None


def test_a_bottleneck_missing_from_the_optimizer_stops_the_run():
    from types import SimpleNamespace

    import torch

    from vittle_cli.train.memory_callbacks import BottleneckInOptimizerCallback

    model = torch.nn.Module()
    model.vittle_bottleneck = torch.nn.Linear(2, 2)
    model.other = torch.nn.Linear(2, 2)
    args = SimpleNamespace(deepspeed=None)
    complete = torch.optim.SGD(model.parameters(), lr=0.1)
    BottleneckInOptimizerCallback().on_train_begin(args, None, None, model=model, optimizer=complete)
    partial = torch.optim.SGD(model.other.parameters(), lr=0.1)
    with pytest.raises(VittleError, match="vittle_bottleneck.weight"):
        BottleneckInOptimizerCallback().on_train_begin(args, None, None, model=model, optimizer=partial)


@pytest.mark.parametrize("overrides", [[], ["bottleneck.prior=L"], [*LORA, "train.lora.r=4"],
                                       [*LORA, "train.qlora.enabled=true", "train.lora.targets=[language_model,projector]"]])  # fmt: skip
def test_the_plan_counts_what_the_loaded_model_has(overrides):
    from vittle_cli.model.components import parameter_summary
    from vittle_cli.model.load import load_model_for_recipe
    from vittle_cli.train.memory_report import counted_params

    recipe = load_recipe("tiny", overrides)
    model, _ = load_model_for_recipe(recipe)
    real = sum(total for _, _, total in parameter_summary(model))
    assert counted_params(shapes_for_recipe(recipe), PlanSettings.from_recipe(recipe)) == real
    plan = memory_plan_for_recipe(recipe, parameters=parameter_summary(model))
    assert not [n for n in plan.notes if "parameters" in n]


def test_a_model_the_planner_does_not_describe_is_flagged():
    plan = memory_plan_for_recipe(load_recipe("tiny", []), parameters=[("language_model", 10, 10)])
    assert any("take the plan as a rough guide" in n for n in plan.notes)
