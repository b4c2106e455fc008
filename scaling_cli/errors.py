"""One error hierarchy for scalefit.

The library raises these; only the CLI turns them into ``Error: ...`` lines and exit codes.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator

EXIT_BAD_INPUT = 2
EXIT_FIT_FAILED = 1
# The fit ran and its report and JSON were written, but the optimizer did not converge (the JSON says
# `converged: false` and why): scripts must not take its numbers as an optimum.
EXIT_NOT_CONVERGED = 3


class ScalefitError(Exception):
    """Base class of every error scalefit raises on purpose.

    >>> from scaling_cli import load_runs
    >>> try:
    ...     load_runs("data/no_such_table.csv")
    ... except ScalefitError as error:
    ...     print(type(error).__name__, error.exit_code)
    DataError 2
    """

    exit_code = EXIT_BAD_INPUT


class DataError(ScalefitError):
    """A table could not be read or does not hold what the chosen form needs."""


class SpecError(ScalefitError):
    """A form or compare file (YAML) is malformed or means something impossible."""


class FitError(ScalefitError):
    """The optimizer could not produce a usable fit. Carries what was found so far."""

    exit_code = EXIT_FIT_FAILED

    def __init__(self, message: str, partial: object | None = None) -> None:
        super().__init__(message)
        self.partial = partial


class ScalefitWarning(UserWarning):
    """Soft problems (a parameter at a bound, a singular covariance). Also stored on results."""


class ResultError(DataError):
    """A saved result (the JSON of `fit --json` / `bootstrap --json`) cannot be loaded: not a scalefit
    result, written by a newer scalefit (a newer schema_version), or damaged."""
# ---------------------------------------------------------------- naming options in messages

# Library arguments whose command-line flag is not simply `--` + the name with dashes.
CLI_FLAGS = {"configs": "--join", "columns": "--column", "min_values": "--min", "max_values": "--max"}
_FROM_CLI = contextvars.ContextVar("scalefit_from_cli", default=False)


@contextmanager
def cli_messages() -> Iterator[None]:
    """Within this block messages name command-line flags (`--exclude-top-loss 5`); outside it, the
    library's arguments (`exclude_top_loss=5`). The CLI runs every command inside it."""
    token = _FROM_CLI.set(True)
    try:
        yield
    finally:
        _FROM_CLI.reset(token)


def from_cli() -> bool:
    """Whether the command line is running (messages then name flags rather than arguments)."""
    return _FROM_CLI.get()


def option(name: str, value: object = None) -> str:
    """An option as a message should name it: `option("exclude_top_loss", 5)` is
    `--exclude-top-loss 5` from the command line and `exclude_top_loss=5` from the library.

    >>> option("exclude_top_loss", 5), option("drop_missing")
    ('exclude_top_loss=5', 'drop_missing')
    """
    if _FROM_CLI.get():
        flag = CLI_FLAGS.get(name, "--" + name.replace("_", "-"))
        return flag if value is None else f"{flag} {value}"
    return name if value is None else f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"


def column_option(role: str) -> str:
    """How to name the column of a role: `--column width=NAME`, or `columns={'width': NAME}`."""
    return f"--column {role}=NAME" if _FROM_CLI.get() else f"columns={{'{role}': NAME}}"
