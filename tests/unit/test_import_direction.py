"""Imports point one way (docs/architecture.md), read from the source with ast: a change that breaks the
direction fails here, naming the file and the import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "vittle_cli"
# Lower ranks never import higher ones; packages of the same rank never import each other.
RANKS = {
    **dict.fromkeys(("__init__", "errors", "layout", "fileio", "plots", "launch"), 0),
    **dict.fromkeys(("recipe", "recipe_files", "recipe_load", "recipe_reference"), 0),
    "model": 1,
    "data": 2,
    **dict.fromkeys(("train", "eval", "inspect", "merge"), 3),
    **dict.fromkeys(("commands", "cli", "__main__"), 4),
}
FLAT = {
    0,
    4,
}  # the foundation's small modules, and the entry point (__main__ -> cli -> commands), use each other


def _unit(dotted: str) -> str:
    """The top-level part of vittle_cli a module belongs to (`vittle_cli.model.attach` -> model)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every vittle_cli import in `path`, inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "vittle_cli":  # `from vittle_cli import layout` (a module) or `__version__`
                found += [(node.lineno, f"vittle_cli.{a.name}" if _is_module(a.name) else "vittle_cli")
                          for a in node.names]  # fmt: skip
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] == "vittle_cli"]


def test_every_module_has_a_rank():
    units = {
        _unit(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")
    }
    assert units <= set(RANKS), f"add {sorted(units - set(RANKS))} to RANKS (and to docs/architecture.md)"


def test_imports_point_one_way():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _unit(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for line, name in _imports(path):
            there = _unit(name)
            if there == here or (RANKS[there] == RANKS[here] and RANKS[here] in FLAT):
                continue
            if RANKS[there] >= RANKS[here]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_the_foundation_imports_no_torch():
    """Recipe validation, errors and file names load in well under a second: no torch, transformers."""
    code = (
        "import sys, vittle_cli.recipe_load, vittle_cli.recipe_reference, vittle_cli.recipe_files, "
        "vittle_cli.layout, vittle_cli.errors, vittle_cli.commands.options; "
        "print(sorted(m for m in ('torch', 'transformers', 'deepspeed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
