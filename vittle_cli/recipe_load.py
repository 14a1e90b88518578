"""Recipe YAML + `a.b=c` overrides -> a validated Recipe, with every problem reported at once; and back to YAML.

Each problem is one fix-it line naming its dotted key (and the override that set it, if any).
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from vittle_cli.errors import RecipeError, did_you_mean
from vittle_cli.recipe import SECTIONS, Recipe
from vittle_cli.recipe_files import resolve_recipe_path


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe (path or shipped name), apply `a.b=c` overrides and validate.

    Override values are parsed as YAML (`1e-4`, `true`, `[a,b]`, `null`); string fields keep the text as given.

    Raises:
        RecipeError: every problem found (missing file, YAML syntax, bad override, unknown key, wrong type,
            inconsistent values), one line each naming its dotted key.
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    source = str(path)
    try:
        file = resolve_recipe_path(path)
    except RecipeError as e:
        problems.extend(e.problems)
        file = None
    if file is not None:
        data = _read_yaml(file, problems)
    from_override: dict[str, str] = {}
    for item in overrides or []:
        key = _apply_override(data, item, problems)
        if key is not None:
            from_override[key] = item
    recipe = None
    if file is not None or data:
        try:
            recipe = Recipe.model_validate(data)
        except ValidationError as e:
            problems.extend(line for err in e.errors() for line in _describe(err, from_override))
    if problems or recipe is None:
        raise RecipeError(problems, source=source)
    return recipe


def _read_yaml(file: Path, problems: list[str]) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        reason = getattr(e, "problem", None) or str(e).splitlines()[0]
        problems.append(f"YAML syntax error at {where}: {reason}; fix the YAML in {file}")
        return {}
    except OSError as e:
        problems.append(f"cannot read {file}: {e.strerror}")
        return {}
    except UnicodeDecodeError as e:
        problems.append(f"{file} is not UTF-8 text (byte {e.start}); save the recipe as UTF-8")
        return {}
    if loaded is None:
        return {}
    if isinstance(loaded, dict):
        # An empty section (`train:` with nothing under it) means its defaults.
        return {key: value for key, value in loaded.items() if not (key in SECTIONS and value is None)}
    problems.append(
        f"the recipe must be a mapping with sections {', '.join(SECTIONS)}, got {type(loaded).__name__}"
    )
    return {}


def _apply_override(data: dict[str, Any], item: str, problems: list[str]) -> str | None:
    """Set `a.b=c` in `data`; return the dotted key, or None after recording a problem."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or any(not p for p in parts):
        problems.append(f"bad override {item!r}: expected key=value, e.g. train.lr=1e-4")
        return None
    node = data
    for depth, part in enumerate(parts[:-1]):
        where = tuple(parts[: depth + 1])
        annotation = _annotation_at(where)
        child = node.get(part)
        child = {} if child is None else child
        if not isinstance(child, dict) or (annotation is not None and section_class(annotation) is None):
            problems.append(f"bad override {item!r}: {'.'.join(where)} is a value, not a section")
            return None
        node[part] = child
        node = child
    node[parts[-1]] = _parse_value(raw, _annotation_at(tuple(parts)))
    return key


def _parse_value(raw: str, annotation: Any) -> Any:
    """Parse an override value as YAML, guided by the field's type where it is known."""
    allowed = _plain_types(annotation)
    if raw.strip() in ("null", "~", ""):
        return None
    if allowed and allowed <= {str, type(None)}:
        return raw  # `run_name=yes` or `revision=1234abc` is text, not a bool or a number
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # validation reports it against the field's type
    # YAML 1.1 reads 1e-4 as the string '1e-4'; pydantic's lax mode turns it into a float for float fields
    # (from files and overrides alike), and still rejects 'oops'.
    if list in allowed and str not in allowed and value is not None and not isinstance(value, list):
        return [value]  # `output.report_to=none` means [none]
    if list in allowed and str in allowed and not isinstance(value, list):
        return raw  # `data.train=a.json` stays the text given; `data.train=[a.json,b.json]` is a list
    return value


def _plain_types(annotation: Any) -> set[type]:
    """The concrete types an annotation admits (Literal values' types; list as list); empty if unknown."""
    if annotation is None:
        return set()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_plain_types(a) for a in typing.get_args(annotation)))
    if origin is Literal:
        return {type(a) for a in typing.get_args(annotation)}
    if origin is not None:
        return {origin}
    return {annotation} if isinstance(annotation, type) else set()


def section_class(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The section class found by walking `loc` from Recipe, or None if loc leaves the schema."""
    cls: type[BaseModel] | None = Recipe
    for part in loc:
        if cls is None or part not in cls.model_fields:
            return None
        cls = section_class(cls.model_fields[part].annotation)
    return cls


def _annotation_at(loc: tuple) -> Any:
    parent = _model_at(loc[:-1])
    if parent is None or loc[-1] not in parent.model_fields:
        return None
    return parent.model_fields[loc[-1]].annotation


_EXPECTED = {
    "float_parsing": "a number", "float_type": "a number", "finite_number": "a finite number",
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "a string", "list_type": "a list", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "dict_type": "a mapping",
}  # fmt: skip
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _describe(err: dict[str, Any], from_override: dict[str, str]) -> list[str]:
    """Fix-it lines for one pydantic error, each naming its dotted key."""
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "recipe"
    kind, given, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = list(parent.model_fields) if parent else []
        hint = did_you_mean(loc[-1], known) or (f"; known keys here: {', '.join(known)}" if known else "")
        line = f"{key}: unknown key{hint}"
    elif kind == "missing":
        line = f"{key}: required, but not given; add it to the recipe"
    elif kind == "literal_error":
        line = f"{key}: expected one of {ctx.get('expected', '')}, got {given!r}"
    elif kind in _BOUNDS:
        limit = next(iter(ctx.values()), "?")
        line = f"{key}: must be {_BOUNDS[kind]} {limit}, got {given!r}"
    elif kind == "value_error" and _model_at(loc) is not None:
        # A section validator: its lines already name their keys.
        return str(ctx.get("error", err["msg"])).splitlines()
    elif kind == "value_error":
        line = f"{key}: {ctx.get('error', err['msg'])}"
    elif kind in _EXPECTED:
        line = f"{key}: expected {_EXPECTED[kind]}, got {given!r}"
    else:
        line = f"{key}: {err['msg'][0].lower()}{err['msg'][1:]}, got {given!r}"
    # Name the override behind a problem, where exactly one override set this key (or lies under it).
    origin = [item for k, item in from_override.items() if k == key or k.startswith(key + ".")]
    return [f"{line} (from override {origin[0]!r})" if len(origin) == 1 else line]


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML, sections and keys in schema order (loads back to an equal Recipe)."""
    return yaml.safe_dump(
        recipe.model_dump(mode="json"), sort_keys=False, default_flow_style=False, width=110
    )
