"""Core commands: `vittle recipes ls|cp`, `vittle env`, `vittle inspect recipe`."""

from __future__ import annotations

import platform
import sys

import typer

# Distributions whose versions matter in a bug report (read from metadata: importing deepspeed is slow).
ENV_PACKAGES = (
    "vittle", "torch", "transformers", "peft", "accelerate", "deepspeed", "bitsandbytes", "datasets",
    "tokenizers", "safetensors", "pydantic", "typer",
)  # fmt: skip

recipes_app = typer.Typer(
    help="List and copy the shipped recipes.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@recipes_app.command("ls")
def recipes_ls() -> None:
    """List the shipped recipes, one line each: name and description.

    Examples:

      vittle recipes ls

      vittle recipes cp tiny my-recipe.yaml
    """
    from rich.console import Console
    from rich.table import Table

    from vittle_cli.recipe import shipped_recipes

    shipped = shipped_recipes()
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(
        "name", style="bold cyan", no_wrap=True, min_width=max((len(n) for n, _, _ in shipped), default=4)
    )
    table.add_column("description", no_wrap=True, overflow="ellipsis")
    for name, _, description in shipped:
        table.add_row(name, description)
    Console().print(table)


@recipes_app.command("cp")
def recipes_cp(
    name: str = typer.Argument(..., help="Shipped recipe name, as listed by `vittle recipes ls`."),
    dest: str = typer.Argument(..., help="Destination file, or a folder to copy <name>.yaml into."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DEST if it exists."),
) -> None:
    """Copy a shipped recipe to edit it; never overwrites without --overwrite.

    Examples:

      vittle recipes cp tiny my-tiny.yaml

      vittle recipes cp tiny configs/ --overwrite
    """
    from vittle_cli.recipe import copy_recipe

    target = copy_recipe(name, dest, overwrite=overwrite)
    typer.echo(f"wrote {target}")


def environment_report() -> list[tuple[str, str]]:
    """(name, value) rows for a bug report: Python, platform, package versions and accelerators."""
    from importlib import metadata

    rows = [("python", sys.version.split()[0]), ("platform", platform.platform())]
    for package in ENV_PACKAGES:
        try:
            rows.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            rows.append((package, "not installed"))
    rows.extend(_accelerator_rows())
    return rows


def _accelerator_rows() -> list[tuple[str, str]]:
    try:
        import torch
    except ImportError:
        return [("cuda", "unknown (torch not installed)")]
    if not torch.cuda.is_available():
        return [("cuda", "not available (CPU only)"), ("cpu threads", str(torch.get_num_threads()))]
    rows = [("cuda", f"{torch.version.cuda} ({torch.cuda.device_count()} device(s))")]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        rows.append((f"cuda:{i}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB"))
    return rows


def env() -> None:
    """Print versions and accelerators, to paste into a bug report.

    Examples:

      vittle env

      vittle env > env.txt
    """
    rows = environment_report()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        typer.echo(f"{name:<{width}}  {value}")
    from vittle_cli.model.families import support_rows  # no torch: a plain list

    typer.echo("\nsupported model families (each tested end to end with its published files):")
    for name, value in support_rows():
        typer.echo(f"  {name}: {value}")


def inspect_recipe(
    recipe: str = typer.Argument(..., help="Recipe YAML path or shipped name (see `vittle recipes ls`)."),
    overrides: list[str] | None = typer.Argument(
        None, help="Dotted overrides key=value, e.g. train.lr=1e-4."
    ),
) -> None:
    """Validate a recipe and print it fully resolved (every default filled in) as YAML.

    All problems are reported at once, each naming its key; exit code 2 if there are any.

    Examples:

      vittle inspect recipe recipes/tiny.yaml

      vittle inspect recipe tiny train.lr=1e-4 bottleneck.prior=L

      vittle inspect recipe recipes/tiny.yaml > resolved.yaml
    """
    from vittle_cli.recipe import dump_recipe, load_recipe

    typer.echo(dump_recipe(load_recipe(recipe, overrides or [])), nl=False)


def register(app: typer.Typer, inspect_app: typer.Typer) -> None:
    """Add the core commands to `vittle` and `vittle inspect`."""
    app.add_typer(recipes_app, name="recipes")
    app.command("env")(env)
    inspect_app.command("recipe")(inspect_recipe)
