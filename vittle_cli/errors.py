"""Errors vittle raises on purpose. The CLI prints them as one line (no traceback) and exits with
`exit_code`; anything else is a bug and shows a traceback under --debug / VITTLE_DEBUG=1."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VittleError(Exception):
    """A runtime failure with a message that names the problem and the fix (exit 1)."""

    exit_code = 1


class UsageError(VittleError):
    """Bad command-line usage or input the user can fix before running anything (exit 2)."""

    exit_code = 2


class RecipeError(UsageError):
    """A recipe that does not validate. `problems` holds one line per problem, each naming its key."""

    def __init__(self, problems: list[str] | str, source: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        head = f"invalid recipe {source}" if source else "invalid recipe"
        if len(self.problems) == 1:
            msg = f"{head}: {self.problems[0]}"
        else:
            msg = f"{head} ({len(self.problems)} problems):\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(msg)


class DataError(VittleError):
    """Training or evaluation data that cannot be used as given (missing files, bad samples): the user
    fixes the input, so exit 2 like a usage error."""

    exit_code = 2


class ModelError(VittleError):
    """A model that cannot be loaded or cannot host the bottleneck (unknown family, bad layer index)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or "" when none is close: for fix-it messages."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
