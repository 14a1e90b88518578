"""Run vittle's console entry point in-process (it maps VittleError to exit codes and always exits, like the
installed command) and return the exit code."""

import pytest

from vittle_cli.cli import main


def run_cli(args) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)
