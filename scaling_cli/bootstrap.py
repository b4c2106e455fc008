"""Bootstrap: thousands of resampled refits, solved together, for intervals you can trust.

The Jacobian errors of a nonlinear fit are a linear approximation; on scaling data the exponents trade
against their coefficients, so the real sampling distribution is skewed. A bootstrap refits the law on
resampled data many times; the spread of the refits is the uncertainty.

How it is fast: all resamples of a chunk are one batched problem (numpy over a resample axis), solved by
a Newton-Levenberg-Marquardt on the exact Hessian, warm-started at the full-data optimum. Every
coefficient c of a term c * g(x; alpha) is *centered* while solving: the solver works with
c' = c * exp(G (alpha - alpha_hat)), where G is the derivative of the mean log g over the rows
(for a power law c x^-alpha this is c' = c x_ref^-(alpha - alpha_hat) with x_ref the geometric mean of
x). This is an exact change of variables, so the optimum is the same, but it removes most of the
curvature that the c / alpha trade-off puts into the problem, and Newton needs about 7 iterations
instead of about 40 (on the paper's table). In a group bootstrap each step skips the groups a
resample leaves out (about a third of them with 8 groups). Chunks of resamples go to worker processes
with `jobs`, in at least 4 equal tasks.

How it is right:
- each resample starts from the full-data optimum and from every other distinct local minimum the
  full-data global search found, and keeps the best (`check_global` re-solves resamples with an
  independent grid search, which the tests do);
- convergence is judged relative to the objective (a Huber objective of 1e-3 as tightly as a sum of
  squares), and the Huber objective is solved with its exact Hessian, not IRLS, so it converges rather
  than crawls; a resample that stopped without reaching a stationary point is a failure;
- failed resamples are counted per reason and kept in the draws with their status, never dropped
  silently; more than 1% failed is a warning;
- resample k of chunk c is drawn from `SeedSequence(seed, spawn_key=(c,))`, so the same seed gives the
  same draws whatever `jobs` is, bit for bit (and a larger run begins with the resamples of a smaller
  one);
- a solve ends when the exact Newton model says less than 1e-13 of the objective is left, after one
  more undamped Newton step (projected on the bounds, so an optimum on a bound is reached, not
  approached forever): parameters then agree with a fully polished solution to about 1e-10.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from .bootstrap_result import (  # noqa: F401  (BootstrapEstimate and the statuses are part of this module's API)
    NO_FINITE_FIT,
    NOT_CONVERGED,
    OK,
    PARQUET_NEEDS_PYARROW,
    STATUS,
    TOO_FEW_ROWS,
    BootstrapEstimate,
    BootstrapResult,
    _with_derived,
)
from .design import GROUPS_PER_PARAMETER, Groups, groups_of
from .errors import DataError, FitError, ScalefitWarning, SpecError, option
from .fitting import FitResult, cluster_residuals, fit, interval_for, t_quantile
from .forms import Form, get_form
from .intervals import (  # noqa: F401  (re-exported: the interval functions were defined here)
    basic_interval,
    bca_interval,
    cluster_covariances,
    expanded_interval,
    percentile_interval,
    studentized_interval,
)
from .io import Runs
from .objectives import Objective
from .resample import MIN_TASKS, TASK_FLOATS, WEBB_BELOW_GROUPS, WEBB_POINTS, Resampler, _counts  # noqa: F401
from .search import global_minimize, grid_rows, grid_search
from .solve import BatchSolver, Problem, Solution

METHODS = ("case", "group", "wild", "residual")
INTERVALS = ("percentile", "bca", "basic", "studentized", "expanded")
DEFAULT_N = 2000
DEFAULT_LEVEL = 0.95
FAILED_WARNING_FRACTION = 0.01
# One chunk of draws holds about this many floats in (resamples, rows, parameters); the chunk size
# depends on the table and the form only, never on `jobs` or n, so that the draws do not either.
CHUNK_FLOATS = 1_500_000
MIN_CHUNK, MAX_CHUNK = 8, 2048
# With jobs=0 the resamples are solved in one process per CPU when there is at least this much work
# (rows x resamples); below it starting the workers costs more than they save.
PARALLEL_WORK = 2_000_000
# Starts of every resample: the full-data optimum and up to MAX_STARTS - 1 other distinct local minima
# of the full-data search.
MAX_STARTS = 6
SEARCH_KEEP = 48  # grid points the full-data search polishes when looking for other minima
# Two minima are the same when every parameter differs by less than this many Jacobian standard errors
# plus this relative difference.
SAME_MINIMUM, SAME_MINIMUM_RTOL = 0.05, 1e-4
TIE_RTOL = 1e-12  # objectives of two starts' solutions closer than this are the same minimum
AT_BOUND_NOTE_FRACTION = 0.01

FAILED_MESSAGE = ("{failed} of {n} resamples ({pct:.1f}%) failed ({why}); intervals use the {ok} that "
                  "succeeded and may be biased")


@dataclass(frozen=True)
class _Engine:
    """Everything a worker needs to solve a chunk: the solver, the starts, the resampler."""

    solver: BatchSolver
    starts: np.ndarray  # (S, P): the full-data optimum first
    resampler: Resampler
    jackknife_units: int  # rows, or groups for the group bootstrap
    # for studentized intervals: the parameters with an error and the clusters; each resample's CR2
    # covariance is then computed where it was solved (in the worker, with its weights at hand)
    studentize: tuple[np.ndarray, Groups] | None = None

    def run(self, task: tuple[str, int, int]) -> tuple[str, int, int, tuple[np.ndarray, ...]]:
        kind, start, count = task
        if kind == "boot":
            weights, y = self.resampler.draw_span(start, count)
        else:
            weights, y = self._leave_out(start, count), None
        first, repeats = self._distinct(weights) if kind == "boot" else (None, None)
        if first is not None:  # every distinct resample is solved once
            weights = weights[first]
        solved = self.solve(weights, y, len(weights) if weights is not None else count)
        if kind == "boot" and self.studentize is not None:
            use, groups = self.studentize
            theta, code = solved[0], solved[2]
            P = theta.shape[1]
            cov = np.full((len(theta), P, P), np.nan)
            rows = np.flatnonzero(code == OK)
            if rows.size:
                cov[rows] = cluster_covariances(self.solver.problem, theta[rows], use, groups,
                                                None if weights is None else weights[rows],
                                                None if y is None else y[rows])
            solved = (*solved, cov)
        if first is not None:
            solved = tuple(a[repeats] for a in solved)
        return kind, start, count, solved

    def _distinct(self, weights: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """For group resamples: the first of each distinct resample and which of them each one repeats,
        or (None, None) when all are distinct. With few groups many resamples repeat another (of 8
        groups, about 16 in 100: the same counts of the same groups), and identical problems from the
        same starts have the same solution."""
        r = self.resampler
        if weights is None or r.method != "group":
            return None, None
        first_row = np.unique(r.groups, return_index=True)[1]  # every row of a group has its count
        _, first, repeats = np.unique(weights[:, first_row], axis=0, return_index=True, return_inverse=True)
        if len(first) == len(weights):
            return None, None
        return first, repeats.ravel()

    def _leave_out(self, start: int, count: int) -> np.ndarray:
        n = self.resampler.n_rows
        units = np.arange(start, start + count)
        if self.resampler.method in ("group", "wild"):
            return (self.resampler.groups[None, :] != units[:, None]).astype(float)
        weights = np.ones((count, n))
        weights[np.arange(count), units] = 0.0
        return weights

    def solve(self, weights: np.ndarray | None, y: np.ndarray | None, count: int):
        """Best of all starts per problem: theta (m, P), value, status code, iterations, start used."""
        pr = self.solver.problem
        P = self.starts.shape[1]
        best = np.full((count, P), np.nan)
        value = np.full(count, np.inf)
        conv = np.zeros(count, dtype=bool)
        iterations = np.zeros(count, dtype=int)
        which = np.full(count, -1)
        for s, start in enumerate(self.starts):
            sol = self.solver.solve(np.repeat(start[None, :], count, axis=0), y, weights)
            finite = np.isfinite(sol.value)
            # a converged solution beats one that is not; then the lower objective wins (the earlier
            # start on a tie to rounding: both found the same minimum)
            lower = sol.value < value - TIE_RTOL * np.abs(np.where(np.isfinite(value), value, 0.0))
            better = finite & ((sol.converged & ~conv) | ((sol.converged == conv) & lower))
            best[better], value[better], conv[better], which[better] = \
                sol.theta[better], sol.value[better], sol.converged[better], s
            iterations += sol.iterations
        status = np.where(conv, OK, NOT_CONVERGED)
        status = np.where(np.isfinite(value), status, NO_FINITE_FIT)
        n_free = int(pr.free.sum())
        if weights is not None:
            status = np.where((weights > 0).sum(axis=1) <= n_free, TOO_FEW_ROWS, status)
        return best, value, status.astype(np.int8), iterations, which


_WORKER_ENGINE: _Engine | None = None


def _init_worker(engine: _Engine) -> None:
    global _WORKER_ENGINE
    _WORKER_ENGINE = engine


def _run_in_worker(task):
    return _WORKER_ENGINE.run(task)


# ---------------------------------------------------------------- the bootstrap


def bootstrap(runs: Runs, form: Form | str = "decomposed", objective: Objective | str | None = None,
              delta: float | None = None, *, n: int = DEFAULT_N, seed: int = 0, method: str | None = None,
              ci: str | None = None, level: float = DEFAULT_LEVEL, group: str | None = None,
              jobs: int = 1, progress: Callable[[int, int], None] | None = None,
              fit_result: FitResult | None = None, chunk_size: int | None = None,
              fixed: Mapping[str, float] | None = None,
              bounds: Mapping[str, tuple[float, float]] | None = None) -> BootstrapResult:
    """Fit `form` to `runs`, refit it on `n` resamples and return a `BootstrapResult`.

    `method`: `group` (whole groups: `group` names the column, else the table's group role; the
    default when the table has groups with several rows), `case` (rows; the default otherwise), `wild`
    (the wild cluster bootstrap, for few groups) or `residual` (residuals onto the fitted values).
    Parameters that the full-data fit cannot determine, or that sit on a bound, get no interval.
    `ci`: `studentized` (symmetric bootstrap-t on each resample's cluster-robust CR2 error; the
    default for `group` on a least-squares fit with cluster-robust errors), `expanded` (the percentile
    interval widened to t with the fit's Bell-McCaffrey degrees of freedom; the default for `wild`
    there), `percentile` (the default otherwise), `bca` (adds a jackknife for the acceleration) or
    `basic`, at `level`. `jobs`
    worker processes solve chunks (0: one per CPU); the draws do not depend on it.
    `progress(done, total)` is called after every chunk. Pass `fit_result` to reuse a full-data fit
    of the same runs, form and objective.
    `chunk_size` (resamples solved together) defaults to what keeps a chunk's arrays near
    CHUNK_FLOATS; the draws depend on it (and on the seed), never on `jobs`. `fixed` and `bounds`
    hold or narrow parameters as in `fitting.fit`, for the full-data fit and every resample.

    >>> from scaling_cli import load_runs
    >>> boot = bootstrap(load_runs("data/example_runs.csv"), "decomposed", n=200, seed=0)
    >>> lo, hi = boot["alpha_l"].ci
    >>> bool(lo < 1.2 < hi), boot.n_failed
    (True, 0)
    """
    t0 = time.perf_counter()
    if group is not None:
        if not runs.has(group):
            names = ", ".join(repr(c) for c in runs.data)
            raise DataError(f"{runs.path}: no column '{group}' for {option('group')}; the table has {names}")
        runs = replace(runs, roles={**runs.roles, "group": runs.roles.get(group, group)})
    found = groups_of(runs)
    if method is None:
        method = "group" if found is not None and not found.trivial else "case"
    _check_options(n, method, ci, level, jobs)
    form = get_form(form) if isinstance(form, str) else form
    if not isinstance(objective, Objective):
        objective = Objective(objective or form.objective, delta if delta is not None else form.delta)
    if fit_result is not None and (fit_result.form.params != form.params or fit_result.objective != objective
                                   or fit_result.n_points != len(runs)):
        raise SpecError("fit_result is not a fit of these runs with this form and objective")
    result = fit_result if fit_result is not None else fit(runs, form, objective, fixed=fixed, bounds=bounds)
    if ci is None:  # see README, "Checkpoint tables": what reached the coverage targets, and why
        cr2 = result.covariance_type == "cluster-robust CR2"
        ci = ("studentized" if cr2 and method == "group" else "expanded" if cr2 and method == "wild"
              else "percentile")
    if ci == "studentized" and not objective.least_squares:
        raise SpecError(f"studentized intervals need a least-squares objective (they divide by the CR2 "
                        f"error); with {objective.name} use {option('ci', 'percentile')} or bca")
    X, y = form.inputs(runs), form.observed(runs)
    problem = Problem.build(form, X, y, objective, dict(result.fixed_by_user),
                            {name: (lo, hi) for name, lo, hi in result.bounds_by_user})
    theta_hat = result.values
    n_rows, P = problem.n, len(form.params)
    if chunk_size is None:
        chunk_size = int(np.clip(CHUNK_FLOATS // max(1, n_rows * P), MIN_CHUNK, MAX_CHUNK))
    elif chunk_size < 1:
        raise SpecError(f"chunk_size must be at least 1, not {chunk_size}")
    group_column = None
    groups, n_groups, fitted, residuals = None, 0, None, None
    if method in ("group", "wild"):
        found = _checked_groups(runs, found, method)
        group_column, groups, n_groups = found.column, found.index, found.count
        if method == "wild":
            fitted = result.predicted
            residuals = cluster_residuals(result, found)
    elif method == "residual":
        fitted = result.predicted
        with np.errstate(all="ignore"):
            raw = objective.residuals(y, fitted)
        k = int(problem.free.sum())
        residuals = (raw - raw.mean()) * math.sqrt(n_rows / max(1, n_rows - k))
    resampler = Resampler(method, seed, chunk_size, n_rows, groups, n_groups, fitted, residuals,
                          objective.log_space)
    # group weights are constant over every run of rows of one group: steps skip the groups a
    # resample leaves out
    pieces = None if method != "group" else np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    solver = BatchSolver(problem, theta_hat, pieces=pieces)
    starts = _starts(problem, result, solver)
    stud_groups = None
    if ci == "studentized":
        stud_groups = found if method in ("group", "wild") else Groups("row", np.arange(n_rows), n_rows)
    engine = _Engine(solver, starts, resampler, n_groups if method in ("group", "wild") else n_rows,
                     None if stud_groups is None else (np.isfinite(result.stderr), stud_groups))
    covariances = np.full((n, P, P), np.nan) if stud_groups is not None else None

    tasks = [("boot", start, count) for start, count in resampler.tasks(n)]
    if ci == "bca":
        units = engine.jackknife_units
        tasks += [("jack", start, min(chunk_size, units - start))
                  for start in range(0, units, chunk_size)]
    total = sum(t[2] for t in tasks)
    draws = np.full((n, P), np.nan)
    values = np.full(n, np.inf)
    status = np.zeros(n, dtype=np.int8)
    iterations = np.zeros(n, dtype=int)
    start_used = np.full(n, -1)
    jack = np.full((engine.jackknife_units, P), np.nan) if ci == "bca" else None
    jack_ok = np.zeros(engine.jackknife_units, dtype=bool)
    notes: list[str] = []
    done = 0

    def collect(outcome) -> None:
        nonlocal done
        kind, start, count, (theta, value, code, iters, which, *cov) = outcome
        rows = slice(start, start + count)
        if kind == "boot":
            draws[rows], values[rows], status[rows], iterations[rows], start_used[rows] = \
                theta, value, code, iters, which
            if cov:
                covariances[rows] = cov[0]
        else:
            jack[rows], jack_ok[rows] = theta, code == OK
        done += count
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    workers = 1 if jobs == 0 and n_rows * n < PARALLEL_WORK else _workers(jobs, len(tasks))
    if workers > 1:
        workers = _run_pool(engine, tasks, workers, collect, notes)
    if workers <= 1:
        for task in tasks:
            collect(engine.run(task))

    ok = status == OK
    n_failed = int((~ok).sum())
    if not ok.any():
        raise FitError(f"every one of the {n} resamples failed ({_why(status)})", partial=draws)
    # derived quantities (a YAML form's `derived:`) are columns computed from every draw
    good = _with_derived(form, draws[ok])
    hat = _with_derived(form, theta_hat[None, :])[0]
    se = good.std(axis=0, ddof=1) if len(good) > 1 else np.full(good.shape[1], np.nan)
    bias = accel = None
    if ci == "percentile":
        intervals = percentile_interval(good, level)
    elif ci == "basic":
        intervals = basic_interval(good, hat, level)
    elif ci == "expanded":
        fallback = float(result.ci_dof or result.stats.dof)
        dof = result.param_dof if len(result.param_dof) else np.full(P, fallback)
        intervals = expanded_interval(good, level, np.where(np.isfinite(dof), dof, fallback))
        notes.append("expanded percentile intervals (Hesterberg 2015): tails at Phi(t_dof) with each "
                     "parameter's " + ("Bell-McCaffrey " if len(result.param_dof) else "")
                     + "degrees of freedom")
    elif ci == "studentized":
        se_draws, se_hat, unpinned = _studentized_errors(problem, result, covariances, draws, ok, stud_groups)
        intervals = studentized_interval(good, hat, se_draws, se_hat, level)
        bounds_lo = np.array(list(problem.lower) + [-np.inf] * (len(hat) - P))
        bounds_hi = np.array(list(problem.upper) + [np.inf] * (len(hat) - P))
        intervals = np.clip(intervals, bounds_lo[:, None], bounds_hi[:, None])
        units = "groups" if stud_groups.column != "row" else "rows"
        notes.append(f"studentized (bootstrap-t) intervals: each resample's deviation divided by its own "
                     f"CR2 error over {stud_groups.count} {units}"
                     + (f"; {unpinned} resamples could not pin some parameter (t = +-inf there)"
                        if unpinned else ""))
    else:
        if not jack_ok.all():
            notes.append(f"BCa acceleration from {int(jack_ok.sum())} of {len(jack_ok)} jackknife fits "
                         f"({int((~jack_ok).sum())} failed)")
        intervals, bias, accel = bca_interval(good, hat, _with_derived(form, jack[jack_ok]), level)
        bias, accel = bias[:P], accel[:P]
    # parameters the full-data fit cannot determine, or finds on a bound, get no interval: their
    # resampled values are cut at the bound or wander along a flat direction, and any spread of them
    # would claim a confidence the data do not give
    withheld = [i for i, p in enumerate(form.params) if p in result.undetermined or p in result.at_bound]
    if withheld:
        se[withheld] = np.nan
        intervals[withheld] = np.nan
        notes.append(f"no bootstrap interval for {', '.join(form.params[i] for i in withheld)}: the "
                     f"full-data fit finds {'it' if len(withheld) == 1 else 'them'} undetermined or on a "
                     f"bound")
    tq = t_quantile((1 + level) / 2, result.ci_dof or result.stats.dof)
    # the fit's own t quantiles: per parameter with Bell-McCaffrey's degrees of freedom (CR2)
    tqs = [t_quantile((1 + level) / 2, v) if np.isfinite(v) else tq for v in result.param_dof[:P]]
    tqs += [tq] * (len(hat) - len(tqs))
    jacobian = (list(zip(form.params, result.stderr, strict=True))
                + [(d.name, d.stderr) for d in result.derived])
    lower = list(problem.lower) + [-math.inf] * len(result.derived)
    rows = tuple(BootstrapEstimate(
        name, float(hat[i]), float(se[i]), (float(intervals[i, 0]), float(intervals[i, 1])),
        float(jse), interval_for(float(hat[i]), float(jse), tqs[i], float(lower[i]))[0])
        for i, (name, jse) in enumerate(jacobian))
    estimates, derived = rows[:P], rows[P:]
    intervals = intervals[:P]
    warnings_: list[str] = []
    if n_failed > FAILED_WARNING_FRACTION * n:
        warnings_.append(FAILED_MESSAGE.format(failed=n_failed, n=n, pct=100 * n_failed / n,
                                               why=_why(status), ok=int(ok.sum())))
    notes += _notes(problem, good, start_used[ok], starts, method, group_column, n_groups)
    better = problem.value(starts)
    if np.any(better < result.objective_value * (1 - 1e-9)):
        warnings_.append(f"the full-data fit is not at its global optimum: another start reaches objective "
                         f"{float(np.min(better)):.6g} < {result.objective_value:.6g}; resamples are solved "
                         f"from both, but the estimates and intervals are centred on the fit")
    if ci == "bca" and np.isnan(intervals[problem.free]).any():
        names = [p for p, bad in zip(form.params, np.isnan(intervals[:, 0]), strict=True) if bad]
        warnings_.append(f"no BCa interval for {', '.join(names)}: every draw falls on one side of the "
                         f"estimate (use {option('ci', 'percentile')})")
    for message in warnings_:
        warnings.warn(message, ScalefitWarning, stacklevel=2)
    return BootstrapResult(
        fit=result, method=method, ci=ci, level=level, n=n, seed=seed, names=tuple(form.params),
        estimates=estimates, derived=derived, draws=draws, values=values, status=status,
        iterations=iterations,
        start_used=start_used, starts=starts, n_failed=n_failed, seconds=time.perf_counter() - t0,
        jobs=max(1, workers), resampler=resampler, warnings=tuple(warnings_), notes=tuple(notes),
        group=group_column, jackknife=jack, bias=bias, acceleration=accel)


def _studentized_errors(problem: Problem, result: FitResult, covariances: np.ndarray, draws: np.ndarray,
                        ok: np.ndarray, groups: Groups) -> tuple[np.ndarray, np.ndarray, int]:
    """For the studentized interval: the CR2 errors (K, P + D) of the K successful resamples (the
    parameters, then the form's derived quantities by the delta method) from their `covariances`
    (computed where each was solved), the full-data ones (P + D,) and how many resamples could not
    pin some parameter that the full-data fit pins."""
    form = problem.form
    P = len(form.params)
    use = np.isfinite(result.stderr)
    cov = covariances[ok]
    full = cluster_covariances(problem, result.values[None, :], use, groups)
    good = draws[ok]

    def errors(c: np.ndarray, theta: np.ndarray) -> np.ndarray:
        se = np.sqrt(np.clip(np.diagonal(c, axis1=1, axis2=2), 0.0, None))
        extra = []
        for d in form.derived:
            g = d.gradient(theta)
            loads_unused = np.any(g[:, ~use] != 0, axis=1)
            gu = g[:, use]
            cu = c[:, use][:, :, use]
            var = np.einsum("kp,kpq,kq->k", gu, cu, gu)
            extra.append(np.where(loads_unused, np.nan, np.sqrt(np.clip(var, 0.0, None))))
        return np.column_stack([se] + extra) if extra else se

    se_draws, se_hat = errors(cov, good), errors(full, result.values[None, :])[0]
    unpinned = int(np.any(se_draws[:, :P][:, use] <= 0, axis=1).sum())
    return se_draws, se_hat, unpinned


def _check_options(n: int, method: str, ci: str, level: float, jobs: int) -> None:
    if method not in METHODS:
        raise SpecError(f"unknown bootstrap method '{method}': use one of {', '.join(METHODS)}")
    if ci is not None and ci not in INTERVALS:
        raise SpecError(f"unknown interval '{ci}': use one of {', '.join(INTERVALS)}")
    if not 0 < level < 1:
        raise SpecError(f"{option('level')} must be between 0 and 1 (e.g. 0.95), not {level}")
    if n < 2:
        raise SpecError(f"{option('n')} must be at least 2 resamples, not {n}")
    if jobs < 0:
        raise SpecError(f"{option('jobs')} must be 0 (one per CPU) or more, not {jobs}")


def _checked_groups(runs: Runs, found: Groups | None, method: str) -> Groups:
    """The table's groups (`design.groups_of`), checked to be at least 2 for a `method` that needs them."""
    if found is None:
        raise DataError(f"{runs.path}: the {method} bootstrap needs {option('group', 'COLUMN')} (no column "
                        f"is named group, run, run_name, run_id, model or model_name)")
    if found.count < 2:
        raise DataError(f"{runs.path}: column '{found.column}' has {found.count} distinct value(s); the "
                        f"{method} bootstrap needs at least 2 groups")
    return found


def _starts(problem: Problem, result: FitResult, solver: BatchSolver) -> np.ndarray:
    """The full-data optimum, then the other distinct local minima of a full-data global search (the
    best points of the variable-projection grid, polished).

    On a table big enough to be searched on a subsample of rows (`grid_rows`), the fit's own search
    already polished the subsample's distinct minima on every row: those (`result.minima`) are the
    minima, rather than a second search of the same grid (about a second on GPT-3's curves)."""
    theta_hat = result.values
    se = np.where(np.isfinite(result.stderr), result.stderr, 0.0)
    starts = [theta_hat]
    reuse = grid_rows(problem) is not None and len(result.minima) > 0
    with np.errstate(all="ignore"):
        if reuse:
            top = np.asarray(result.minima, dtype=float)
            values = problem.value(top)
            solutions = Solution(top, values, np.isfinite(values), np.zeros(len(top), dtype=int))
        else:
            top, _, _ = grid_search(problem, keep=SEARCH_KEEP)
            top = top[np.all(np.isfinite(top), axis=1)]
            solutions = solver.solve(top) if len(top) else Solution(top, np.zeros(0), np.zeros(0, bool),
                                                                          np.zeros(0, int))
    order = np.argsort(solutions.value, kind="stable")
    solutions = Solution(*(a[order] for a in (solutions.theta, solutions.value, solutions.converged,
                                                    solutions.iterations)))
    for theta, value, converged in zip(solutions.theta, solutions.value, solutions.converged, strict=True):
        if len(starts) >= MAX_STARTS:
            break
        if converged and np.isfinite(value) and not any(
                np.all(np.abs(theta - s) <= SAME_MINIMUM * se + SAME_MINIMUM_RTOL * np.abs(s) + 1e-12)
                for s in starts):
            starts.append(theta)
    return np.array(starts)


def _workers(jobs: int, n_tasks: int) -> int:
    jobs = jobs or os.cpu_count() or 1
    return max(1, min(jobs, n_tasks))


def _run_pool(engine: _Engine, tasks, workers: int, collect, notes: list[str]) -> int:
    """Solve the tasks in `workers` processes; returns the number used (1 if the engine cannot be sent
    to other processes, and then nothing was solved)."""
    import pickle
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = _process_context()
    if context.get_start_method() != "fork":
        try:
            pickle.dumps(engine)
        except Exception as exc:  # a form that cannot be pickled: solve here instead
            notes.append(f"ran in one process: the form cannot be sent to worker processes ({exc})")
            return 1
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(engine,)) as pool:
        futures = [pool.submit(_run_in_worker, task) for task in tasks]
        try:
            for future in as_completed(futures):
                collect(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return workers


def _process_context():
    """fork where it is safe and quick (POSIX before Python 3.12: nothing to pickle or re-import);
    elsewhere forkserver or spawn, which re-import the caller's main module (scripts that use
    `jobs > 1` then need the `if __name__ == "__main__":` guard)."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and sys.version_info < (3, 12):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _why(status: np.ndarray) -> str:
    counts = np.bincount(status.astype(int), minlength=len(STATUS))
    return ", ".join(f"{int(c)} {STATUS[i]}" for i, c in enumerate(counts) if i != OK and c)


def _notes(problem: Problem, good: np.ndarray, start_used: np.ndarray, starts: np.ndarray, method: str,
           group_column: str | None, n_groups: int) -> list[str]:
    notes = []
    if method == "group":
        notes.append(f"group bootstrap: {n_groups} groups of column '{group_column}' resampled whole")
        if n_groups < GROUPS_PER_PARAMETER * int(problem.free.sum()):
            notes.append(f"with only {n_groups} groups many resamples lose whole widths or depths and the "
                         f"intervals of what varies between runs widen or break down; the wild cluster "
                         f"bootstrap ({option('method', 'wild')}) keeps every run")
    elif method == "wild":
        weights = "Webb's six-point" if n_groups < WEBB_BELOW_GROUPS else "Rademacher"
        notes.append(f"wild cluster bootstrap: the CR2 residuals of each of {n_groups} groups of column "
                     f"'{group_column}' multiplied by one {weights} weight per resample")
    elif method == "residual":
        notes.append("residual bootstrap: residuals (in the objective's space) resampled onto the fitted "
                     "values; assumes the errors are exchangeable across runs")
    if len(starts) > 1:
        other = int((start_used > 0).sum())
        notes.append(f"every resample was solved from the full-data optimum and {len(starts) - 1} other "
                     f"local minima of the full-data search; {other} ended in another minimum")
    form = problem.form
    for i, name in enumerate(form.params):
        if not problem.free[i] or not len(good):
            continue
        for bound, side in ((problem.lower[i], "lower"), (problem.upper[i], "upper")):
            if not np.isfinite(bound):
                continue
            frac = float(np.mean(np.abs(good[:, i] - bound) <= 1e-9 * (1 + abs(bound))))
            if frac > AT_BOUND_NOTE_FRACTION:
                notes.append(f"{name} is at its {side} bound {bound:g} in {100 * frac:.1f}% of resamples: "
                             f"its distribution is cut there")
    return notes


# ---------------------------------------------------------------- checking


def check_global(result: BootstrapResult, resamples: Sequence[int]) -> np.ndarray:
    """Solve the given resamples again, each by an independent full global search
    (`search.global_minimize`: the whole variable-projection grid with that resample's weights or
    response, then polished), and return for each the relative excess of the bootstrap's objective
    over the search's: about 0 (or below) when the bootstrap reached that resample's global optimum."""
    fit_result = result.fit
    excess = np.full(len(resamples), np.nan)
    for i, k in enumerate(resamples):
        weights, y = result.resample(int(k))
        problem = Problem.build(fit_result.form, fit_result.inputs,
                                fit_result.observed if y is None else y, fit_result.objective)
        with np.errstate(all="ignore"):
            solution, _, _ = global_minimize(problem, weights)
        best = float(solution.value[0])
        excess[i] = (result.values[k] - best) / abs(best)
    return excess


# ---------------------------------------------------------------- report


def bootstrap_table(result: BootstrapResult):
    """A rich table: per parameter the full-data estimate with its bootstrap error, the bootstrap
    interval, the Jacobian interval beside it, and how their widths compare."""
    from rich import box
    from rich.table import Table

    from .report import format_interval, format_value_error

    pct = f"{100 * result.level:g}%"
    table = Table(box=box.HEAVY_HEAD)  # the formula and the method are printed above it
    table.add_column("parameter", style="bold", overflow="fold")  # a long name folds; numbers never do
    table.add_column("estimate ± s.e.", justify="right", no_wrap=True)
    table.add_column(f"bootstrap {pct}", justify="right", no_wrap=True)
    clustered = result.fit.covariance_type.startswith("cluster")
    table.add_column(f"{'cluster' if clustered else 'Jacobian'} {pct}", justify="right", no_wrap=True)
    table.add_column("width\nratio", justify="right", no_wrap=True)
    for e in result.estimates + result.derived:
        boot_width = e.ci[1] - e.ci[0]
        jac_width = e.jacobian_ci[1] - e.jacobian_ci[0]
        ratio = boot_width / jac_width if math.isfinite(jac_width) and jac_width > 0 else math.nan
        table.add_row(e.name, format_value_error(e.value, e.se), format_interval(*e.ci, e.se, value=e.value),
                      format_interval(*e.jacobian_ci, e.jacobian_se, value=e.value),
                      f"{ratio:.2f}" if math.isfinite(ratio) else "n/a")
    return table


def summary_line(result: BootstrapResult) -> str:
    """One sentence: how many resamples of what kind, how fast, how many failed."""
    column = f"column '{result.group}', " if result.group else ""
    starts = len(result.starts)
    return (f"{result.n} {result.method} resamples ({column}seed {result.seed}) in {result.seconds:.2f} s, "
            f"{result.fits_per_second:.0f} fits/s on {result.jobs} process{'es' if result.jobs > 1 else ''}; "
            f"{result.n_failed} failed; each solved from {starts} start{'s' if starts > 1 else ''}; "
            f"full-data fit on {result.fit.n_points} rows ({result.fit.n_excluded} dropped), "
            f"objective {result.fit.objective_value:.6g}")


def render_bootstrap(result: BootstrapResult, console) -> None:
    """Print a bootstrap: the table, the summary line, then notes and warnings (the fit's too)."""
    from .fitting import HUBER_BOOTSTRAP_HINT
    from .report import depth_regime, print_formula

    print_formula(console, result.fit.form, f"bootstrap: {result.method} resampling, {result.ci} intervals")
    console.print(bootstrap_table(result))
    console.print(summary_line(result), markup=False)
    if "alpha_l" in result.names:
        boot = result["alpha_l"]
        sentence = depth_regime(result.fit, boot.ci, boot.se, f"{100 * result.level:g}% bootstrap interval")
        console.print(sentence, markup=False)
    for note in result.fit.notes + result.notes:
        console.print(f"note: {note}", style="dim", markup=False)
    for name, value in result.fit.fixed_by_user:
        console.print(f"note: {name} held at {value:g} (--fix)", style="dim", markup=False)
    for name, lo, hi in result.fit.bounds_by_user:
        console.print(f"note: {name} bounded to [{lo:g}, {hi:g}] (--bound)", style="dim", markup=False)
    for warning in result.fit.warnings + result.warnings:
        if warning != HUBER_BOOTSTRAP_HINT:  # this is the bootstrap it recommends
            console.print(f"warning: {warning}", style="yellow", markup=False)


@contextmanager
def progress_bar(console) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar (fits per second, time left) driven by the `progress(done, total)` callback
    it yields; yields None (no bar) without a console or when stdout is not a terminal."""
    if console is None or not console.is_terminal or not sys.stdout.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("bootstrap"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:>7.0f} fits/s"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("bootstrap", total=None, rate=0.0)
        t0 = time.perf_counter()

        def update(done: int, total: int) -> None:
            elapsed = time.perf_counter() - t0
            bar.update(task, completed=done, total=total, rate=done / elapsed if elapsed > 0 else 0.0)

        yield update
