"""The CLI frame and core commands: help texts, exit codes, recipes ls/cp, env, inspect recipe, lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
import yaml
from cli_runner import run_cli as run_main
from typer.testing import CliRunner

from vittle_cli import __version__
from vittle_cli.cli import app, main
from vittle_cli.recipe import recipes_dir

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
HEAVY = ("torch", "transformers", "deepspeed", "peft", "bitsandbytes", "datasets", "accelerate")


def leaf_commands(group, path=()):
    """Every runnable command path in the click tree, e.g. ('inspect', 'recipe')."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


COMMANDS = sorted(leaf_commands(typer.main.get_command(app)))


def test_core_commands_are_registered():
    assert {("env",), ("recipes", "ls"), ("recipes", "cp"), ("inspect", "recipe")} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_help_has_examples(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output and "vittle " in result.output.split("Examples", 1)[1]


def test_top_level_help_lists_groups():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "inspect" in result.output and "recipes" in result.output


def test_version(capsys):
    assert run_main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"vittle {__version__}"


def test_recipes_ls_lists_shipped_recipes_with_descriptions():
    result = runner.invoke(app, ["recipes", "ls"], terminal_width=200)
    assert result.exit_code == 0
    line = next(ln for ln in result.output.splitlines() if ln.startswith("tiny "))
    assert "builtin" in line or "CPU" in line  # the leading comment of recipes/tiny.yaml


def test_recipes_cp_copies_and_refuses_to_overwrite(tmp_path, capsys):
    dest = tmp_path / "mine.yaml"
    assert runner.invoke(app, ["recipes", "cp", "tiny", str(dest)]).exit_code == 0
    assert dest.read_text() == (recipes_dir() / "tiny.yaml").read_text()
    dest.write_text("# edited\n")
    assert run_main(["recipes", "cp", "tiny", str(dest)]) == 2
    assert "--overwrite" in capsys.readouterr().err and dest.read_text() == "# edited\n"
    assert run_main(["recipes", "cp", "tiny", str(dest), "--overwrite"]) == 0
    assert dest.read_text() == (recipes_dir() / "tiny.yaml").read_text()


def test_inspect_recipe_prints_resolved_yaml_with_overrides():
    result = runner.invoke(
        app, ["inspect", "recipe", "recipes/tiny.yaml", "train.lr=1e-4", "bottleneck.prior=L"]
    )
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout)
    assert resolved["train"]["lr"] == pytest.approx(1e-4) and resolved["bottleneck"]["prior"] == "L"
    assert resolved["train"]["lora"]["r"] == 128  # defaults are filled in


def test_inspect_recipe_bad_value_exits_2_naming_the_key():
    # A real process: exit code, stderr and the absence of a traceback as a user sees them.
    env = {k: v for k, v in os.environ.items() if k != "VITTLE_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "vittle_cli", "inspect", "recipe", "recipes/tiny.yaml", "train.lr=oops"],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "train.lr" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_all_problems_reported_in_one_error(capsys):
    assert run_main(["inspect", "recipe", "tiny", "trian.lr=1e-4", "train.lr=oops", "data.max_length"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "3 problems" in err
    assert "did you mean 'train'" in err and "train.lr" in err and "'data.max_length'" in err


def test_usage_error_exits_2(capsys):
    assert run_main(["no-such-command"]) == 2
    assert run_main(["inspect", "recipe"]) == 2  # missing argument


def test_debug_shows_the_exception(monkeypatch):
    from vittle_cli.errors import RecipeError

    # --debug exports VITTLE_DEBUG=1 for child processes; setenv makes monkeypatch restore it afterwards
    # (delenv of an unset variable records nothing to undo)
    monkeypatch.setenv("VITTLE_DEBUG", "0")
    with pytest.raises(RecipeError):
        main(["--debug", "inspect", "recipe", "tiny", "train.lr=oops"])
    monkeypatch.setenv("VITTLE_DEBUG", "0")
    with pytest.raises(RecipeError):  # accepted after the subcommand too
        main(["inspect", "recipe", "tiny", "train.lr=oops", "--debug"])
    monkeypatch.setenv("VITTLE_DEBUG", "0")
    with pytest.raises(RecipeError):
        main(["inspect", "--debug", "recipe", "tiny", "train.lr=oops"])


def test_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("vittle_cli.recipe.load_recipe", interrupted)
    assert run_main(["inspect", "recipe", "tiny"]) == 130


def test_unexpected_exception_is_one_line_without_debug(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.delenv("VITTLE_DEBUG", raising=False)
    monkeypatch.setattr("vittle_cli.recipe.load_recipe", broken)
    assert run_main(["inspect", "recipe", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err and "--debug" in err and "Traceback" not in err


def test_env_reports_versions():
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0
    rows = dict(line.split(None, 1) for line in result.output.splitlines() if line.strip())
    assert rows["vittle"] == __version__ and rows["python"] == sys.version.split()[0]
    assert {
        "torch",
        "transformers",
        "peft",
        "deepspeed",
        "bitsandbytes",
        "datasets",
        "tokenizers",
        "cuda",
    } <= set(rows)


@pytest.mark.parametrize(
    "args", [["--help"], ["recipes", "ls"], ["inspect", "recipe", "recipes/tiny.yaml"]], ids=" ".join
)
def test_startup_imports_no_heavy_modules(args):
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vittle_cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "vittle_cli.cli" in imported  # the check can see our own modules, so it can see torch too
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert not heavy, f"`vittle {' '.join(args)}` imported {heavy[:10]}"
    print(f"vittle {' '.join(args)}: {elapsed:.2f} s")  # informational only; never asserted
