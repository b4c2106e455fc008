"""Held-out errors for `compare`: which rows are held out (cross-validation folds that keep a run's
rows together, the largest runs for extrapolation), the fits on the rows that remain, and how well those
fits predict the rows they did not see.

A held-out fit starts from the minima of the form's fit on all rows (`warm_fit`) and falls back to the
full global search when its best point cannot be verified as a minimum.

Deriving the holdout key when a column is absent (documented, and said in the result's notes):
flops = 6 · params · tokens (the Chinchilla convention), and params = 12 · depth · width² (the
non-embedding parameter count of a transformer, Kaplan et al. 2020). Only the ordering of the runs depends
on it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .errors import DataError, ScalefitError, ScalefitWarning, SpecError, column_option, option
from .fitting import prediction_errors
from .forms import Form
from .io import Runs
from .objectives import Objective

if TYPE_CHECKING:
    from .fitting import FitResult

HOLDOUT_BY = ("flops", "params", "tokens")
FLOPS_NOTE = "the table has no flops: runs are ordered for the holdout by 6 * params * tokens"
PARAMS_NOTE = ("the table has no params: runs are ordered for the holdout by 12 * depth * width^2 "
               "(non-embedding parameters, Kaplan et al. 2020)")
FLOPS_FROM_SHAPE_NOTE = ("the table has no flops or params: runs are ordered for the holdout by "
                         "6 * (12 * depth * width^2) * tokens (non-embedding parameters, Kaplan et al. 2020)")
TOKENS_NOTE = "the table has no tokens: runs are ordered for the holdout by flops / (6 * params)"
# A held-out fit (a cross-validation fold, the extrapolation's training rows) starts from the distinct
# local minima the search on all rows converged to, at most WARM_STARTS of them: its rows are most of
# those rows, so its minima lie next to theirs. A start that the Newton-LM has not brought to a strict
# minimum within WARM_MAX_ITER steps goes on by a trust-region Gauss-Newton search (what the robust
# strategy starts with: it does not crawl along curved valleys as the Newton-LM can, Kaplan's law's),
# polished by the Newton-LM; when the fit on all rows needed the robust strategy, every start goes
# there at once. When the best point is still not a verified minimum, the held-out fit runs the full
# global search instead. Least-squares objectives only: a Huber objective's kinks leave minima close to
# each other (Kaplan's law on Epoch's table: a fold's warm start ends 1e-4 above the global search's),
# so its held-out fits keep the full search.
WARM_STARTS = 8
WARM_MAX_ITER = 50
SAME_MINIMUM_RTOL = 1e-6  # two end points closer than this (relative, every parameter) are one minimum


# ---------------------------------------------------------------- rows: subsets, folds, holdout


def subset(runs: Runs, mask: np.ndarray) -> Runs:
    """The rows of `runs` where `mask` (boolean, or integer indices) selects; the rest count as excluded."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        index = mask
        mask = np.zeros(len(runs), dtype=bool)
        mask[index] = True
    if mask.shape != (len(runs),):
        raise ValueError(f"mask has shape {mask.shape}, the runs have {len(runs)} rows")
    kept = runs.kept_rows[mask] if len(runs.kept_rows) == len(runs) else runs.kept_rows
    return replace(runs, data={name: values[mask] for name, values in runs.data.items()},
                   n_excluded=runs.n_excluded + int((~mask).sum()), kept_rows=kept)


def group_labels(runs: Runs) -> np.ndarray | None:
    """The `group` role's values (rows of one run share them), or None when the table has no group."""
    if "group" not in runs.roles:
        return None
    return np.asarray(runs.column("group")).astype(str)


def fold_labels(n: int, folds: int, groups: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """A fold number in 0..folds-1 for each of `n` rows. Rows of one group share a fold; folds are
    balanced in rows (groups shuffled with `seed`, then the largest first into the smallest fold)."""
    if groups is None:
        inverse = np.arange(n)
    else:
        _, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if n else 0
    if n_groups < folds:
        what = f"{n_groups} groups (runs)" if groups is not None else f"{n} rows"
        raise DataError(f"{what} cannot be split into {folds} folds: pass "
                        f"{option('folds', max(n_groups, 2))} or fewer")
    sizes = np.bincount(inverse, minlength=n_groups)
    order = np.random.default_rng(seed).permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(folds, dtype=int)
    assign = np.empty(n_groups, dtype=int)
    for g in order:
        f = int(np.argmin(load))
        assign[g] = f
        load[f] += sizes[g]
    return assign[inverse]


def holdout_key(runs: Runs, by: str) -> tuple[np.ndarray, str | None]:
    """The per-row value that orders runs for the holdout, and a note when it had to be derived."""
    if by not in HOLDOUT_BY:
        raise SpecError(f"{option('by')} must be one of {', '.join(HOLDOUT_BY)}, not {by!r}")

    def column(role: str) -> np.ndarray:
        name = runs.roles.get(role, role)
        values = runs.data[name]
        if values.dtype.kind != "f" or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise DataError(f"{runs.path}: column '{name}' ({role}, used to order runs for "
                            f"{option('by', by)}) must hold positive numbers in every row")
        return values

    def params() -> tuple[np.ndarray, str | None]:
        if "params" in runs.roles:
            return column("params"), None
        if "width" in runs.roles and "depth" in runs.roles:
            return 12.0 * column("depth") * column("width") ** 2, PARAMS_NOTE
        raise DataError(f"{runs.path}: {option('by', by)} needs a params column (or width and depth, for "
                        f"12 * depth * width^2); name it with {column_option('params')}")

    def tokens() -> tuple[np.ndarray, str | None]:
        if "tokens" in runs.roles:
            return column("tokens"), None
        if "flops" in runs.roles and "params" in runs.roles:
            return column("flops") / (6.0 * column("params")), TOKENS_NOTE
        raise DataError(f"{runs.path}: {option('by', by)} needs a tokens column (or flops and params); "
                        f"name it with {column_option('tokens')}")

    if by == "params":
        return params()
    if by == "tokens":
        return tokens()
    if "flops" in runs.roles:
        return column("flops"), None
    try:
        n_params, _ = params()
        n_tokens, _ = tokens()
    except DataError:
        raise DataError(f"{runs.path}: {option('by', 'flops')} needs a flops column, or params (or width and "
                        f"depth) and tokens to compute 6 * params * tokens; name it with "
                        f"{column_option('flops')}"
                        ) from None
    return 6.0 * n_params * n_tokens, FLOPS_NOTE if "params" in runs.roles else FLOPS_FROM_SHAPE_NOTE


def holdout_mask(key: np.ndarray, top: float) -> np.ndarray:
    """True for the held-out rows: the top `top` fraction by `key` (at least one row). Rows tied with the
    smallest held-out value are held out too, so that no training run is as large as a held-out one."""
    key = np.asarray(key, dtype=float)
    n_top = max(1, math.ceil(top * len(key) - 1e-9))
    threshold = np.sort(key)[::-1][n_top - 1]
    mask = key >= threshold
    if mask.all():
        raise DataError(f"every row ties at the holdout threshold {threshold:.6g}: nothing is left to fit "
                        f"on; choose another {option('by')}")
    return mask


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class HeldOutError:
    """How well fits predicted rows they did not see: relative errors |y - f| / |y| and log residuals."""

    n_train: int
    n_test: int
    mean_abs_rel_error: float
    max_abs_rel_error: float
    rmse_log: float
    observed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failed: str | None = None  # why a fit on the training rows did not succeed

    def to_dict(self) -> dict:
        return {"n_train": self.n_train, "n_test": self.n_test,
                "mean_abs_rel_error": self.mean_abs_rel_error,
                "max_abs_rel_error": self.max_abs_rel_error, "rmse_log": self.rmse_log,
                "failed": self.failed}



def held_out_error(form: Form, fit: FitResult, test: Runs, n_train: int) -> HeldOutError:
    """Errors of `fit` on the rows of `test`."""
    return _predicted_errors(form, fit.values, test, n_train)


def _predicted_errors(form: Form, values: np.ndarray, test: Runs, n_train: int) -> HeldOutError:
    observed = form.observed(test)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        predicted = form.predict(values[None, :], form.inputs(test))[0]
    return _errors(observed, predicted, n_train)


def _errors(observed: np.ndarray, predicted: np.ndarray, n_train: int, failed: str | None = None
            ) -> HeldOutError:
    rel, rmse_log = prediction_errors(observed, predicted)
    finite = bool(len(rel)) and bool(np.all(np.isfinite(rel)))
    return HeldOutError(
        n_train=n_train, n_test=len(observed),
        mean_abs_rel_error=float(rel.mean()) if finite else math.nan,
        max_abs_rel_error=float(rel.max()) if finite else math.nan,
        rmse_log=rmse_log, observed=observed, predicted=predicted, failed=failed)


def _quiet_fit(runs: Runs, form: Form, objective: Objective, strategy: str = "auto") -> FitResult:
    from .fitting import fit

    with warnings.catch_warnings():
        # the fit's soft problems are kept on its result; repeating them per fold would only be noise
        warnings.simplefilter("ignore", ScalefitWarning)
        return fit(runs, form, objective, strategy=strategy)


def distinct_minima(minima: np.ndarray, rtol: float = SAME_MINIMUM_RTOL) -> np.ndarray:
    """The rows of `minima` (best first) that are not the same point as an earlier row: every parameter
    within `rtol` of it, relative to the larger of the two."""
    kept: list[np.ndarray] = []
    for theta in np.asarray(minima, dtype=float):
        if not np.all(np.isfinite(theta)):
            continue
        if not any(np.all(np.abs(theta - k) <= rtol * np.maximum(np.abs(theta), np.abs(k)) + 1e-300)
                   for k in kept):
            kept.append(theta)
    return np.array(kept).reshape(len(kept), np.shape(minima)[-1] if np.ndim(minima) == 2 else 0)


def warm_fit(runs: Runs, form: Form, objective: Objective, minima: np.ndarray,
             robust: bool = False) -> np.ndarray | None:
    """The parameters of `form` fitted to `runs` from the starts `minima` (the local minima that a
    search on a larger table converged to, best first), or None when the best point found is not a
    verified minimum (converged, not at a saddle) and the full global search should decide.

    The Newton-LM polishes every start; a start it does not bring to a strict minimum within
    WARM_MAX_ITER steps (every start, with `robust`) goes by `robust.trust_region_least_squares` from
    where it began, polished by the Newton-LM, and the lower of the two ends is kept. Of points whose
    objectives tie (to rounding) the earliest start's is kept."""
    from .robust import trust_region_least_squares
    from .search import ESCALATE_AFTER, stopped_short, tie_tolerance
    from .solve import Problem, Solution, levenberg_marquardt

    starts = distinct_minima(minima)[:WARM_STARTS]
    if not len(starts) or starts.shape[1] != len(form.params):
        return None
    y = form.observed(runs)
    if objective.log_space and np.any(y <= 0):
        return None  # the global search raises the error that says so
    problem = Problem.build(form, form.inputs(runs), y, objective)
    if problem.n <= int(problem.free.sum()):
        return None
    try:
        if robust:
            none = np.zeros(len(starts), dtype=bool)
            sol = Solution(starts, np.full(len(starts), np.inf), none, np.zeros(len(starts), dtype=int))
            short = ~none
        else:
            max_iter = min(WARM_MAX_ITER, ESCALATE_AFTER) if objective.least_squares else None
            sol = levenberg_marquardt(problem, starts, max_iter=max_iter)
            short = stopped_short(problem, sol)
        if short.any():
            searched = trust_region_least_squares(problem, starts[short])
            ends = np.where(np.all(np.isfinite(searched.theta), axis=1)[:, None], searched.theta,
                            starts[short])
            rescued = levenberg_marquardt(problem, ends)
            old = np.where(np.isfinite(sol.value[short]), sol.value[short], np.inf)
            better = np.isfinite(rescued.value) & (rescued.value < old)
            rows = np.flatnonzero(short)[better]
            sol = Solution(sol.theta.copy(), sol.value.copy(), sol.converged.copy(), sol.iterations)
            sol.theta[rows], sol.value[rows] = rescued.theta[better], rescued.value[better]
            sol.converged[rows] = rescued.converged[better]
        value = np.where(np.isfinite(sol.value), sol.value, np.inf)
        best = float(value.min())
        if not np.isfinite(best):
            return None
        pick = int(np.flatnonzero(value <= best + tie_tolerance(problem, best))[0])
        chosen = Solution(sol.theta[pick:pick + 1], sol.value[pick:pick + 1], sol.converged[pick:pick + 1],
                          sol.iterations[pick:pick + 1])
        return None if stopped_short(problem, chosen)[0] else chosen.theta[0]
    except np.linalg.LinAlgError:
        return None


def _held_out_fit(runs: Runs, form: Form, objective: Objective, full: FitResult | None) -> np.ndarray:
    """Parameters fitted to held-out training rows: warm-started from the fit on all rows (`full`) when
    that converged under a least-squares objective, else (or when the warm start cannot be verified)
    by the full global search."""
    if full is not None and full.converged and objective.least_squares and len(full.minima):
        theta = warm_fit(runs, form, objective, full.minima, robust=full.n_escalated > 0)
        if theta is not None:
            return theta
    return _quiet_fit(runs, form, objective).values


def cross_validate(runs: Runs, form: Form, objective: Objective, labels: np.ndarray,
                   full: FitResult | None = None) -> HeldOutError:
    """Fit on all folds but one and predict that one, for every fold; errors over all rows. With
    `full` (the fit on all rows) the fold fits start from its minima (`warm_fit`); without it each runs
    the full global search."""
    observed = form.observed(runs)
    predicted = np.full(len(runs), np.nan)
    n_folds = int(labels.max()) + 1
    n_train = len(runs) - int(np.bincount(labels, minlength=n_folds).max())  # the smallest training set
    for fold in range(n_folds):
        test = labels == fold
        try:
            values = _held_out_fit(subset(runs, ~test), form, objective, full)
        except ScalefitError as exc:
            return _errors(observed, np.full(len(runs), np.nan), n_train, failed=f"fold {fold + 1}: {exc}")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            predicted[test] = form.predict(values[None, :], form.inputs(subset(runs, test)))[0]
    return _errors(observed, predicted, n_train)


def extrapolate(runs: Runs, form: Form, objective: Objective, held_out: np.ndarray,
                full: FitResult | None = None) -> HeldOutError:
    """Fit on the rows not `held_out` and predict the held-out ones (from `full`'s minima when given,
    as in `cross_validate`)."""
    n_train = int((~held_out).sum())
    test = subset(runs, held_out)
    try:
        values = _held_out_fit(subset(runs, ~held_out), form, objective, full)
    except ScalefitError as exc:
        return _errors(form.observed(test), np.full(len(test), np.nan), n_train, failed=str(exc))
    return _predicted_errors(form, values, test, n_train)


