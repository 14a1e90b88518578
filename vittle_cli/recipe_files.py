"""Shipped recipes (recipes/*.yaml): list them with their descriptions, resolve a name, copy one out."""

from __future__ import annotations

import os
import re
from pathlib import Path

from vittle_cli.errors import RecipeError, UsageError, did_you_mean
from vittle_cli.fileio import write_text_atomic


def recipes_dir() -> Path:
    """The repository's shipped recipes/ folder."""
    return Path(__file__).resolve().parent.parent / "recipes"


def _is_recipe_file(path: Path, root: Path) -> bool:
    # Eval suite definitions live in recipes/suites/ and are not training recipes.
    return path.suffix == ".yaml" and path.relative_to(root).parts[0] != "suites"


def _leading_comment(path: Path) -> str:
    """The recipe's leading comment as one line, without the `# vittle ...` command line: what the recipe
    does first, its `Hardware: ...` sentence last (so a shortened listing still says what it is)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text and not text.startswith("vittle "):
            lines.append(text)
    sentences = re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?<=\.)\s+(?=[A-Z])", " ".join(lines))
    sentences.sort(key=lambda text: text.startswith("Hardware:"))  # stable: keeps the order otherwise
    return " ".join(sentences)


def shipped_recipes() -> list[tuple[str, Path, str]]:
    """Shipped recipes as (name, path, description); name is the path under recipes/ without `.yaml`."""
    root = recipes_dir()
    if not root.is_dir():
        return []
    found = sorted(p for p in root.rglob("*.yaml") if _is_recipe_file(p, root))
    return [(p.relative_to(root).with_suffix("").as_posix(), p, _leading_comment(p)) for p in found]


def resolve_recipe_path(recipe: str | os.PathLike) -> Path:
    """Turn a path or a shipped name (`tiny`) into the recipe file's path.

    Raises:
        RecipeError: neither a file nor a shipped name (with a did-you-mean among shipped names).
    """
    path = Path(recipe)
    if path.is_file():
        return path
    if path.is_dir():
        raise RecipeError(
            f"{recipe} is a directory; pass a recipe YAML file in it (or a shipped recipe name)"
        )
    shipped = {name: p for name, p, _ in shipped_recipes()}
    if str(recipe) in shipped:
        return shipped[str(recipe)]
    hint = did_you_mean(str(recipe), list(shipped)) or (
        f"; shipped recipes: {', '.join(shipped)}" if shipped else ""
    )
    raise RecipeError(
        f"recipe file not found: {recipe}{hint} (pass a YAML path or a name from `vittle recipes ls`)"
    )


def copy_recipe(name: str, dest: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy the shipped recipe `name` to `dest` (a file, or a folder that gets `<name>.yaml`).

    Raises:
        UsageError: unknown name, or `dest` exists and `overwrite` is false.
    """
    shipped = {n: p for n, p, _ in shipped_recipes()}
    if name not in shipped:
        raise UsageError(
            f"no shipped recipe named {name!r}{did_you_mean(name, list(shipped))}; see `vittle recipes ls`"
        )
    target = Path(dest)
    if target.is_dir():
        target = target / Path(name).with_suffix(".yaml").name
    if target.exists() and not overwrite:
        raise UsageError(f"{target} already exists; pass --overwrite to replace it or choose another path")
    write_text_atomic(target, shipped[name].read_text(encoding="utf-8"))
    return target
