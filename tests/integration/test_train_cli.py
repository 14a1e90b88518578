"""`vittle train` end to end on builtin:tiny-llava + builtin:shapes, through the CLI entry point.

One uninterrupted 6-step run is shared by the tests of this module; an interrupted + resumed run must
reproduce its logged numbers and its final weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_runner import run_cli

RECIPE = "recipes/tiny.yaml"
STEPS = 6
FAST = [
    f"train.max_steps={STEPS}",
    "output.save_steps=3",
    "train.logging_steps=1",
    "train.per_device_batch_size=4",
    "data.limit=48",
]
LOGGED = ("loss", "ce", "kl_v", "kl_t", "alpha", "lr", "grad_norm")


def vittle(*args: str) -> int:
    return run_cli(args)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def safetensor_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    code = vittle(
        "train", RECIPE, *FAST, f"output.dir={out}", "output.run_name=full", "output.save_total_limit=1"
    )
    assert code == 0
    return out / "full"


@pytest.mark.slow
def test_run_directory_holds_everything(full_run):
    from vittle_cli.recipe import load_recipe

    # the resolved recipe reloads to the recipe that was trained
    expected = load_recipe(
        RECIPE, [*FAST, f"output.dir={full_run.parent}", "output.run_name=full", "output.save_total_limit=1"]
    )
    assert load_recipe(full_run / "config.yaml").model_dump() == expected.model_dump()
    info = json.loads((full_run / "run_info.json").read_text())
    assert info["world_size"] == 1 and info["seed"] == 42
    assert info["torch"] and info["transformers"] and "train" in info["command"]
    # save_total_limit=1: only the newest checkpoint is kept; nothing half-written is left behind
    assert sorted(p.name for p in full_run.glob("checkpoint-*")) == ["checkpoint-6"]
    assert not (full_run / ".staging").exists()
    ckpt = full_run / "checkpoint-6"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS and state["max_steps"] == STEPS
    for d in (ckpt, full_run / "final"):
        assert (d / "vittle_config.json").is_file()
        bn_keys = safetensor_keys(d / "vittle_bottleneck.safetensors")
        assert any("visual" in k for k in bn_keys) and any("text" in k for k in bn_keys)
        base_keys = safetensor_keys(d / "model.safetensors")
        assert base_keys and not [k for k in base_keys if "vittle_bottleneck" in k]
    assert (ckpt / "optimizer.pt").is_file() and (ckpt / "rng_state.pth").is_file()
    assert (full_run / "final" / "tokenizer_config.json").is_file()
    assert (full_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((full_run / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_metrics_log_every_step_with_the_real_alpha_schedule(full_run):
    from vittle_cli.model.bottleneck import VittleConfig, alpha_at
    from vittle_cli.recipe import load_recipe

    logged = rows(full_run)
    assert [r["step"] for r in logged] == list(range(1, STEPS + 1))
    cfg = VittleConfig.from_section(load_recipe(full_run / "config.yaml").bottleneck)
    for r in logged:
        assert set(r) == {"step", "epoch", *LOGGED, "tokens_per_s"}
        # the alpha that step used: alpha_at(completed steps before it, total optimizer steps)
        assert r["alpha"] == pytest.approx(alpha_at(r["step"] - 1, STEPS, cfg), abs=1e-12)
        assert r["loss"] == pytest.approx(r["ce"] + cfg.beta_v * r["kl_v"] + cfg.beta_t * r["kl_t"], rel=1e-5)
        assert r["tokens_per_s"] > 0 and math.isfinite(r["grad_norm"])
    assert logged[-1]["alpha"] > 10 * logged[0]["alpha"]  # the schedule really moves


@pytest.mark.slow
def test_existing_run_directory_is_refused(full_run, capsys):
    code = vittle("train", RECIPE, *FAST, f"output.dir={full_run.parent}", "output.run_name=full")
    assert code == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "--resume" in err
    assert (full_run / "checkpoint-6").is_dir()  # untouched


@pytest.mark.slow
def test_interrupt_then_resume_matches_uninterrupted_run(full_run, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from vittle_cli.train.trainer import VittleTrainer

    args = [RECIPE, *FAST, f"output.dir={tmp_path}", "output.run_name=resumed"]
    original = VittleTrainer.training_step

    def ctrl_c_in_step_5(self, *a, **k):
        if self.state.global_step == 4:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(VittleTrainer, "training_step", ctrl_c_in_step_5)
    assert vittle("train", *args) == 130
    run = tmp_path / "resumed"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-3"]
    assert not (run / "final").exists() and not (run / ".staging").exists()
    assert [r["step"] for r in rows(run)] == [1, 2, 3, 4]

    monkeypatch.setattr(VittleTrainer, "training_step", original)
    assert vittle("train", *args, "--resume") == 0
    resumed, full = rows(run), rows(full_run)
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))  # step 4 is logged once, not twice
    for a, b in zip(resumed, full, strict=True):
        for key in LOGGED:
            assert a[key] == pytest.approx(b[key], abs=1e-5), (a["step"], key)
    state = json.loads((run / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    for name in ("model.safetensors", "vittle_bottleneck.safetensors"):
        got, want = load_file(run / "final" / name), load_file(full_run / "final" / name)
        assert got.keys() == want.keys()
        for key in want:
            assert (got[key] - want[key]).abs().max().item() < 1e-5, key
    info = json.loads((run / "run_info.json").read_text())
    assert info["resumed_from"].endswith("checkpoint-3") and len(info["history"]) == 1


@pytest.mark.slow
def test_interrupt_while_saving_leaves_no_checkpoint(tmp_path, monkeypatch, capsys):
    from vittle_cli.train.trainer import VittleTrainer

    def ctrl_c_mid_save(self, output_dir):
        raise KeyboardInterrupt  # the model files are written, the optimizer state is not

    monkeypatch.setattr(VittleTrainer, "_save_optimizer_and_scheduler", ctrl_c_mid_save)
    args = [RECIPE, *FAST, "train.max_steps=3", f"output.dir={tmp_path}", "output.run_name=cut"]
    assert vittle("train", *args) == 130
    run = tmp_path / "cut"
    assert not list(run.glob("checkpoint-*")) and not (run / ".staging").exists()
    capsys.readouterr()
    assert vittle("train", *args, "--resume") == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    code = vittle("train", RECIPE, "--dry-run", f"output.dir={tmp_path}", "data.limit=100",
                  "train.max_steps=null", "train.epochs=2", "train.per_device_batch_size=16")  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "name: builtin:tiny-llava-demo" in out  # the resolved recipe
    # tiny-llava-demo's 2-layer LM: the default layer round(0.75 * 2) = 2 is capped to the last one
    assert "decoder layers: 2" in out and "bottleneck layers: visual 1, text 1" in out
    assert "bottleneck" in out and "language_model" in out  # parameter table rows
    assert "total optimizer steps: 14" in out  # 2 epochs x ceil(100 / 16)
    from vittle_cli.model.bottleneck import VittleConfig, alpha_at

    cfg = VittleConfig()  # tiny.yaml keeps the default schedule
    alphas = [alpha_at(s, 14, cfg) for s in (0, 7, 13)]
    assert "alpha: start {:.4f}, middle {:.4f}, end {:.4f}".format(*alphas) in out
    assert not any(tmp_path.iterdir())


def test_dry_run_with_two_processes_shows_the_launch_command(tmp_path, capsys):
    code = vittle("train", RECIPE, "--dry-run", "--nproc-per-node", "2", f"output.dir={tmp_path}",
                  "data.limit=100", "train.max_steps=null", "train.epochs=1", "train.per_device_batch_size=16",
                  "train.deepspeed=zero3", "output.run_name=null")  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "total optimizer steps: 4" in out  # ceil(100 / (16 x 2))
    # the children get the run directory the parent resolved (output.run_name=null -> the recipe's stem)
    assert "torch.distributed.run --nproc-per-node 2" in out and "output.run_name=tiny" in out
    assert '"stage": 3' in out


def test_dry_run_with_missing_data_is_exit_2(tmp_path, capsys):
    code = vittle("train", RECIPE, "--dry-run", f"output.dir={tmp_path}", f"data.train={tmp_path}/none.json")
    assert code == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_dry_run_always_shows_global_batch_steps_alpha_and_run_dir(tmp_path, capsys, monkeypatch):
    # A model that cannot be read (not cached, offline): the steps still come from the data alone.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = vittle("train", RECIPE, "--dry-run", f"output.dir={tmp_path}", "model.name=nobody/not-cached",
                  "data.limit=100", "train.max_steps=null", "train.epochs=1", "train.per_device_batch_size=8",
                  "train.gradient_accumulation_steps=2", "--nproc-per-node", "2")  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "model not inspected" in out
    assert "global batch: 32" in out  # 8 x 2 x 2
    assert "total optimizer steps: 4" in out  # ceil(ceil(100 / 16) / 2)
    assert "alpha: start " in out and ", middle " in out and ", end " in out
    assert f"run dir: {tmp_path}/tiny" in out


def test_shipped_recipe_names_resolve_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no recipes/ folder here
    code = vittle("train", "tiny", "--dry-run", "output.dir=runs", "data.limit=8")
    assert code == 0
    out = capsys.readouterr().out
    assert "name: builtin:tiny-llava" in out and "run dir: runs/tiny" in out
