"""One error hierarchy for scalefit.

The library raises these; only the CLI turns them into ``Error: ...`` lines and exit codes.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2
EXIT_FIT_FAILED = 1
# The fit ran and its report and JSON were written, but the optimizer did not converge (the JSON says
# `converged: false` and why): scripts must not take its numbers as an optimum.
EXIT_NOT_CONVERGED = 3


class ScalefitError(Exception):
    """Base class of every error scalefit raises on purpose."""

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
