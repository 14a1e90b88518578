"""Every shipped recipe validates (recipes/**/*.yaml; eval suites under recipes/suites/ are checked elsewhere)."""

from __future__ import annotations

import pytest

from vittle_cli.recipe import load_recipe, recipes_dir, shipped_recipes

ROOT = recipes_dir()
RECIPES = sorted(p for p in ROOT.rglob("*.yaml") if p.relative_to(ROOT).parts[0] != "suites")


def test_recipes_are_found():
    assert any(p.name == "tiny.yaml" for p in RECIPES)
    # shipped_recipes() (what `vittle recipes ls` shows) sees the same files.
    assert sorted(path for _, path, _ in shipped_recipes()) == RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_recipe_validates(path):
    load_recipe(path)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_recipe_starts_with_its_command_and_a_description(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# vittle "), f"{path.name}: first line should be the command that runs it"
    assert len(lines) > 1 and lines[1].startswith("# ") and len(lines[1]) > 3, (
        f"{path.name}: describe it on line 2"
    )
