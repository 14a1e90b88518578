"""What a model reference (a recipe's model.name, a --model option) points at."""

from __future__ import annotations

from pathlib import Path

from vittle_cli.errors import ModelError
from vittle_cli.model.builtin import resolve_model_source


def checked_model_source(name: str) -> str:
    """The from_pretrained source for model.name; a name that looks like a path must exist."""
    source = resolve_model_source(name)
    # Hub names are "org/name"; anything else with a slash (or starting like a path) is a local path.
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"model folder {source} has no config.json; point model.name at a folder written by "
                "save_pretrained (or a vittle run's final/ folder)"
            )
        return str(path)
    if looks_local:
        raise ModelError(
            f"model path {source} does not exist; fix model.name (a hub name like llava-hf/llava-1.5-7b-hf, "
            "a local model folder, or builtin:tiny-llava)"
        )
    return source
