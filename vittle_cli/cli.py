"""The `vittle` command: a Typer app whose commands are registered by the modules in vittle_cli/commands/.

Each module there defines `register(app, inspect_app)`. Start-up imports no torch: commands import their
heavy modules inside the function body. `main()` turns VittleError into "error: <message>" and its exit
code; tracebacks only with --debug or VITTLE_DEBUG=1.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import sys

import typer

from vittle_cli import __version__
from vittle_cli.errors import VittleError

app = typer.Typer(
    name="vittle",
    help="Visual Instruction Bottleneck Tuning (Vittle): train, evaluate, merge and inspect "
    "vision-language models with an information bottleneck.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
inspect_app = typer.Typer(
    help="Look inside recipes, models, runs and representations.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(inspect_app, name="inspect")


def _debug_enabled() -> bool:
    return os.environ.get("VITTLE_DEBUG", "").lower() not in ("", "0", "false", "no")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vittle {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks (same as VITTLE_DEBUG=1).", envvar="VITTLE_DEBUG"
    ),
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    """Visual Instruction Bottleneck Tuning (Vittle) from the command line."""
    if debug:
        # An env var, so launched child processes (torchrun, deepspeed) show tracebacks too.
        os.environ["VITTLE_DEBUG"] = "1"


def _register_commands() -> None:
    """Import every module of vittle_cli.commands and let it add its commands."""
    from vittle_cli import commands

    for info in pkgutil.iter_modules(commands.__path__):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app, inspect_app)


_register_commands()


def _click_exception_types() -> tuple[type[Exception], ...]:
    """ClickException classes: typer >= 0.2x vendors click as typer._click, older typer uses click itself."""
    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name).ClickException)
        except ImportError:
            pass
    return tuple(found)


def _error(message: str) -> None:
    import re

    from rich.console import Console
    from rich.markup import escape

    message = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", message)  # colour codes from library messages
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")


def _known_failure(e: Exception) -> str | None:
    """One line for failures of the machine or of a file rather than of vittle (disk full, a pickle that
    torch refused to load), or None."""
    import errno
    import pickle

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        from vittle_cli.fileio import DiskFullError

        return str(DiskFullError(e.filename))
    if isinstance(e, pickle.UnpicklingError):
        first = next((line for line in str(e).splitlines() if "GLOBAL" in line), str(e).splitlines()[0])
        return (
            f"refused to unpickle a checkpoint file: it holds more than weights ({first.strip()[:200]}); "
            "use a checkpoint from a trusted source"
        )
    if type(e).__name__ == "SafetensorError":  # a loader vittle does not pre-check met a cut file
        return f"a .safetensors file is truncated or corrupt ({e}); copy it again (--debug shows which file)"
    return None


def _take_debug_flag(args: list[str]) -> tuple[list[str], bool]:
    """`args` without `--debug` (anywhere before a `--`), and whether it was there."""
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != "--debug"] + args[end:]
    return kept, len(kept) != len(args)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and exit with vittle's exit codes (0, 1, 2, 130)."""
    args = sys.argv[1:] if argv is None else list(argv)
    args, debug_flag = _take_debug_flag(args)
    if debug_flag:  # accepted anywhere: before or after the subcommand
        os.environ["VITTLE_DEBUG"] = "1"
    debug = debug_flag or _debug_enabled()
    if not debug:
        # bitsandbytes warns on every import on AVX512-BF16 CPUs that an optional kernels package is missing;
        # its pure-torch fallback is what the CPU path uses anyway.
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        code = app(args=args, prog_name="vittle", standalone_mode=False)
    except VittleError as e:
        if debug:
            raise
        _error(str(e))
        sys.exit(e.exit_code)
    except _click_exception_types() as e:  # bad options or arguments: exit 2
        from typer import rich_utils

        rich_utils.rich_format_error(e)
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        _error("interrupted")
        sys.exit(130)
    except Exception as e:
        if debug:
            raise
        known = _known_failure(e)
        if known is not None:
            _error(known)
            sys.exit(1)
        first = (str(e).strip().splitlines() or [""])[0]  # one line, whatever the library wrote
        _error(
            f"internal error: {type(e).__name__}: {first} (rerun with --debug for the traceback and report it)"
        )
        sys.exit(1)
    # Non-standalone click returns the Exit code (e.g. 130 after Ctrl-C, 0 after --help); commands return None.
    sys.exit(code if isinstance(code, int) else 0)
