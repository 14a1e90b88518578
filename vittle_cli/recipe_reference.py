"""The recipe reference (docs/recipes.md): one Markdown table per section, generated from the schema."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from vittle_cli.recipe import SECTIONS, Recipe
from vittle_cli.recipe_load import section_class


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " / ".join(str(a) for a in args)
    if origin is list:
        return f"list of ({_type_name(args[0])})" if args else "list"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(field: Any) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def recipe_reference_markdown() -> str:
    """The recipe reference as Markdown tables (one per section), generated from the schema."""
    out: list[str] = []

    def table(prefix: str, cls: type[BaseModel]) -> None:
        out.append(f"### `{prefix}`\n\n{cls.__doc__}\n")
        out.append("| key | type | default | description |")
        out.append("|---|---|---|---|")
        nested = []
        for name, field in cls.model_fields.items():
            sub = section_class(field.annotation)
            if sub is not None:
                nested.append((f"{prefix}.{name}", sub))
                if sub is field.annotation:
                    continue  # an always-present subsection: only its own table
            type_text = f"section ({sub.__name__}) or null" if sub else _type_name(field.annotation)
            cells = [f"`{prefix}.{name}`", type_text, f"`{_default_text(field)}`", field.description or ""]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
        for sub_prefix, sub in nested:
            table(sub_prefix, sub)

    for section in SECTIONS:
        table(section, section_class(Recipe.model_fields[section].annotation))
    return "\n".join(out).rstrip() + "\n"
