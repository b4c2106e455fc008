"""Global search: the variable-projection grid over the exponents (the linear parameters solved
exactly by bounded linear least squares at every grid point), coarse to fine on big tables, and
`global_minimize`, which polishes the best grid points and the user's starts with the Newton-LM of
`solve` and, with escalation, solves again by `robust.robust_minimize` the starts that stopped short
(not converged, not finite, or at a saddle)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Sequence

import numpy as np

from . import solve
from .linear import _bounded_linear_ls, solve_linear
from .robust import TIE, robust_minimize
from .solve import BatchSolver, Problem, Solution, levenberg_marquardt

GRID_CHUNK_FLOATS = 4_000_000  # grid points evaluated per chunk, as n * L floats
# Tables with more rows search the grid on a stratified subsample of this many rows, then polish the
# distinct minima found there (at most SUBSAMPLE_MINIMA of them) on every row.
GRID_ROWS = 512
SUBSAMPLE_MINIMA = 4
SAME_BASIN_RTOL = 1e-3  # polished subsample points closer than this (relative, every parameter) are one
N_POLISH = 24  # best grid points polished by Levenberg-Marquardt
# A converged point whose scaled Hessian has an eigenvalue below this is a saddle or a degenerate point
# (two decays of a Lanczos sum merged: lowest eigenvalue -3e-17), not a strict minimum. The smallest at
# a NIST certified optimum is 9e-10 (Bennett5); at the paper's decomposed fit 3e-5.
FLAT_CURVATURE = 1e-12
# With escalation, least-squares starts not converged after this many Newton-LM steps go to
# `robust_minimize`, and so do the best ESCALATE_GRID grid points that stopped short (all user starts).
ESCALATE_AFTER = 200
ESCALATE_GRID = 4


# ---------------------------------------------------------------- global search


def grid_points(problem: Problem) -> np.ndarray:
    """Every combination of the form's grid values for the free nonlinear parameters, as (G, P)."""
    form = problem.form
    axes, cols = [], []
    for p in form.nonlinear:
        i = form.index(p)
        if not problem.free[i]:
            continue
        values = np.asarray(form.grid.get(p, []), dtype=float)
        values = values[(values >= problem.lower[i]) & (values <= problem.upper[i])]
        if values.size == 0:
            start = form.init.get(p)
            values = np.array([start if start is not None else 1.0])
        axes.append(values)
        cols.append(i)
    mesh = np.array(list(itertools.product(*axes))) if axes else np.zeros((1, 0))
    theta = np.zeros((len(mesh), len(form.params)))
    theta[:, cols] = mesh
    for p, v in form.init.items():
        i = form.index(p)
        if p in form.linear:
            theta[:, i] = v
    return problem.with_fixed(theta)


def grid_rows(problem: Problem, weights: np.ndarray | None = None,
              size: int | None = None) -> np.ndarray | None:
    """The rows a big table's grid is searched on: `size` (default GRID_ROWS) rows spread evenly over
    the table sorted by its inputs and response (so every part of the design is represented in
    proportion), plus the rows holding the least and greatest value of each input and of the response
    (the ends of every lever arm). None when the table has no more rows than that: then all are used.
    Deterministic: the same table gives the same rows."""
    size = GRID_ROWS if size is None else size
    usable = np.arange(problem.n) if weights is None else np.flatnonzero(np.asarray(weights) > 0)
    if len(usable) <= size:
        return None
    columns = [np.asarray(v, dtype=float)[usable] for v in problem.X.values()] + [problem.y[usable]]
    order = np.lexsort(columns[::-1])  # by the first input, then the next, ..., then the response
    picked = [order[np.round(np.linspace(0, len(order) - 1, size)).astype(int)]]
    picked += [np.array([np.argmin(c), np.argmax(c)]) for c in columns]
    chosen = np.zeros(len(usable), dtype=bool)  # (np.unique would import numpy.ma: 20 ms of a fit)
    chosen[np.concatenate(picked)] = True
    return usable[chosen]


def subproblem(problem: Problem, rows: np.ndarray) -> Problem:
    """The same problem on a subset of its rows."""
    X = {k: np.asarray(v)[rows] for k, v in problem.X.items()}
    return dataclasses.replace(problem, X=X, y=problem.y[rows])


def grid_search(problem: Problem, weights: np.ndarray | None = None,
                keep: int = N_POLISH) -> tuple[np.ndarray, np.ndarray, int]:
    """Evaluate the variable-projection grid; return the `keep` best points (theta, values) and the
    number of grid points tried.

    A table of more than GRID_ROWS rows is searched coarse to fine (`subsample_search`): the grid on a
    subsample of its rows, the best points polished there, and the distinct minima found (at most
    SUBSAMPLE_MINIMA) returned with their objective on all rows, for the caller to polish on all rows.
    The grid only has to find the basins; the tests check that the optimum found is the exhaustive
    grid's."""
    rows = grid_rows(problem, weights)
    if rows is not None:
        return subsample_search(problem, rows, weights, keep)
    return exhaustive_grid(problem, weights, keep)


def subsample_search(problem: Problem, rows: np.ndarray, weights: np.ndarray | None = None,
                     keep: int = N_POLISH) -> tuple[np.ndarray, np.ndarray, int]:
    """The grid on `rows` of `problem`, its `keep` best points polished on those rows by
    `levenberg_marquardt`, and the distinct minima (at most SUBSAMPLE_MINIMA, best first by their
    objective on all rows) as (theta, values on all rows, number of grid points)."""
    sub = subproblem(problem, rows)
    sub_weights = None if weights is None else np.asarray(weights, dtype=float)[rows]
    top, _, n_grid = exhaustive_grid(sub, sub_weights, keep, from_design=True)
    top = top[np.all(np.isfinite(top), axis=1)]
    if len(top) == 0:
        return top, np.zeros(0), n_grid
    with np.errstate(all="ignore"):
        try:
            polished = levenberg_marquardt(sub, top, None if sub_weights is None else sub_weights[None, :])
            theta = np.where(np.all(np.isfinite(polished.theta), axis=1)[:, None], polished.theta, top)
            sub_values = np.where(np.isfinite(polished.value), polished.value, np.inf)
        except np.linalg.LinAlgError:  # keep the grid points themselves
            theta, sub_values = top, sub.value(top, sub_weights)
    minima: list[np.ndarray] = []
    for k in np.argsort(sub_values, kind="stable"):
        if len(minima) >= SUBSAMPLE_MINIMA:
            break
        if not any(np.all(np.abs(theta[k] - m) <= SAME_BASIN_RTOL * np.abs(m) + 1e-12) for m in minima):
            minima.append(theta[k])
    theta = np.array(minima)
    values = _value_in_blocks(problem, theta, weights)
    values = np.where(np.isfinite(values), values, np.inf)
    order = np.argsort(values, kind="stable")
    return theta[order], values[order], n_grid


def _value_in_blocks(problem: Problem, theta: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """`problem.value(theta, weights)` summed over blocks of rows (bounded memory)."""
    size = max(1, solve.ROW_BLOCK_FLOATS // max(1, len(theta)))
    if size >= problem.n:
        return problem.value(theta, weights)
    total = np.zeros(len(theta))
    for start in range(0, problem.n, size):
        rows = np.arange(start, min(start + size, problem.n))
        total += subproblem(problem, rows).value(theta, None if weights is None else weights[rows])
    return total


def exhaustive_grid(problem: Problem, weights: np.ndarray | None = None, keep: int = N_POLISH,
                    from_design: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Every grid point on every row: the `keep` best points (theta, values) and the number tried.
    Power-sum forms take `_power_sum_grid`; for the others, `from_design` takes the predictions from
    the design matrix rather than the form (a third less work, values equal up to rounding: the
    subsample search uses it)."""
    theta = grid_points(problem)
    G = len(theta)
    per_chunk = max(1, GRID_CHUNK_FLOATS // max(1, problem.n * max(1, len(problem.form.linear))))
    values = np.empty(G)
    if not _power_sum_grid(problem, theta, values, weights, per_chunk):
        for start in range(0, G, per_chunk):
            if from_design:
                chunk, f = solve_linear(problem, theta[start:start + per_chunk], weights, predict=True)
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    r = problem.objective.residuals(problem.y[None, :], f)
                    value = problem.objective.value(r, weights)
            else:
                chunk = solve_linear(problem, theta[start:start + per_chunk], weights)
                value = problem.value(chunk, weights)
            theta[start:start + per_chunk] = chunk
            values[start:start + per_chunk] = value
    values = np.where(np.isfinite(values), values, np.inf)
    order = np.argsort(values, kind="stable")[:keep]
    return theta[order], values[order], G


def _power_sum_grid(problem: Problem, theta: np.ndarray, values: np.ndarray, weights: np.ndarray | None,
                    per_chunk: int) -> bool:
    """`exhaustive_grid` for a form f = L + sum_t c_t x_t^-a_t (`Form.power_sum`) whose coefficients
    are all free and bounded below by 0 (or not at all): fills in the coefficients of the grid points
    `theta` and their objectives `values`, and returns True (False: not such a form; nothing done).

    The grid is a product of each exponent's values, and every entry of the normal equations depends
    on at most two exponents: sum w p_i p_j on a pair, sum w p_i y on one. So they are computed once
    per pair of exponent values (a few hundred products of rows, not one per grid point and pair) and
    gathered; the coefficients are then solved exactly as `solve_linear` does, and the objective is
    evaluated on the predictions from the powers. Same numbers as the general path, to rounding."""
    form = problem.form
    spec = form.power_sum()
    if spec is None or not form.linear:
        return False
    i_const, terms = spec
    lin = [form.index(p) for p in form.linear]
    kinds = {ic: t for t, (ic, _, _) in enumerate(terms)}
    if i_const is not None:
        kinds[i_const] = None
    plain = all(problem.free[p] and problem.lower[p] in (0.0, -np.inf) and problem.upper[p] == np.inf
                for p in lin)
    if sorted(kinds) != sorted(lin) or not plain:
        return False
    y = problem.y
    w2 = (1.0 / (y * y) if problem.objective.log_space else np.ones(problem.n))
    if weights is not None:
        w2 = w2 * weights
    with np.errstate(all="ignore"):
        # per term: its exponent's values on the grid, where each point's is among them, the powers
        axes = [np.unique(theta[:, ia], return_inverse=True) for _, ia, _ in terms]
        powers = [np.exp(-values_[:, None] * np.log(np.asarray(problem.X[var], dtype=float))[None, :])
                  for (values_, _), (_, _, var) in zip(axes, terms, strict=True)]
        where = [inverse.ravel() for _, inverse in axes]
        weighted = [p * w2 for p in powers]
        G, L = len(theta), len(lin)
        A = np.empty((G, L, L))
        b = np.empty((G, L))
        for i, pi in enumerate(lin):
            ti = kinds[pi]
            b[:, i] = (w2 @ y) if ti is None else (weighted[ti] @ y)[where[ti]]
            for j, pj in enumerate(lin[i:], start=i):
                tj = kinds[pj]
                if ti is None and tj is None:
                    entry = np.full(G, w2.sum())
                elif ti is None or tj is None:
                    t = tj if ti is None else ti
                    entry = weighted[t].sum(axis=1)[where[t]]
                elif ti == tj:
                    entry = np.einsum("an,an->a", weighted[ti], powers[ti])[where[ti]]
                else:
                    entry = (weighted[ti] @ powers[tj].T)[where[ti], where[tj]]
                A[:, i, j] = A[:, j, i] = entry
        ok = np.all(np.isfinite(A), axis=(1, 2)) & np.all(np.isfinite(b), axis=1)
        A = np.where(ok[:, None, None], A, np.eye(L))
        b = np.where(ok[:, None], b, 0.0)
        c = _bounded_linear_ls(A, b, np.isfinite(problem.lower[lin]))
        theta[:, lin] = np.clip(c, problem.lower[lin], problem.upper[lin])
        theta[~ok] = np.nan
        ty = problem.objective.transform(y)
        for start in range(0, G, per_chunk):
            rows = slice(start, start + per_chunk)
            f = np.zeros((len(theta[rows]), problem.n)) if i_const is None else \
                np.repeat(theta[rows, i_const, None], problem.n, axis=1)
            for t, (ic, _, _) in enumerate(terms):
                f += theta[rows, ic, None] * powers[t][where[t][rows]]
            values[rows] = problem.objective.value(problem.objective.residuals_from(ty[None, :], f), weights)
    return True


def global_minimize(problem: Problem, weights: np.ndarray | None = None,
                    starts: Sequence[np.ndarray] | None = None, use_grid: bool = True,
                    keep: int = N_POLISH, minimizer=None, escalate: bool | str = False
                    ) -> tuple[Solution, int, int]:
    """Grid search plus user starts, each minimized by `minimizer` (default: the Newton-LM, every
    start on its own; `robust_minimize` for starts far from the optimum); returns the solutions of
    every start (best first), the number of grid points and the number of minimized starts.

    With `escalate`, a start that stops short under the Newton-LM (not converged, not finite, or at a
    saddle) is solved again by `robust_minimize`, and the better of the two kept (`escalated(...)`
    counts them). On a tie of objectives (within `TIE`) the user's starts come first, so that of two
    mirror-image optima (ENSO's swapped periods) the one the user started at is reported.
    `escalate="best"` solves again only the start that ended lowest, and only when it stopped short:
    cheaper, for fits that are checked against `escalate=True` elsewhere (compare's)."""
    candidates = []
    n_grid = 0
    for s in starts or []:
        candidates.append(problem.with_fixed(np.atleast_2d(np.asarray(s, dtype=float))))
    if use_grid:
        top, _, n_grid = grid_search(problem, weights, keep)
        candidates.append(top[np.all(np.isfinite(top), axis=1)])
    theta0 = np.concatenate(candidates) if candidates else np.zeros((0, len(problem.form.params)))
    if len(theta0) == 0:
        theta0 = problem.with_fixed(np.ones((1, len(problem.form.params))))
    w = None if weights is None else weights[None, :]
    if minimizer is None or minimizer is levenberg_marquardt:
        # escalation takes over where the Newton-LM crawls: no need to let it crawl long
        max_iter = ESCALATE_AFTER if escalate and problem.objective.least_squares else None
        sol = levenberg_marquardt(problem, theta0, w, max_iter=max_iter)
    else:
        sol = minimizer(problem, theta0, w)
    if escalate:
        short = stopped_short(problem, sol, w)
        if escalate == "best":  # only the start that ended lowest, and only when it stopped short
            lowest = int(np.argmin(np.where(np.isfinite(sol.value), sol.value, np.inf)))
            short = short & (np.arange(len(short)) == lowest)
        n_user = len(theta0) - (len(candidates[-1]) if use_grid else 0)
        user = np.flatnonzero(short[:n_user])
        grid = n_user + np.flatnonzero(short[n_user:])
        grid = grid[np.argsort(np.where(np.isfinite(sol.value[grid]), sol.value[grid], np.inf),
                               kind="stable")[:ESCALATE_GRID]]
        rows = np.concatenate([user, grid])
        if rows.size:
            # from where the start began (as it would go alone) and from where the Newton-LM stopped
            stopped = np.where(np.all(np.isfinite(sol.theta[rows]), axis=1)[:, None], sol.theta[rows],
                               theta0[rows])
            began = theta0[rows]
            rescued = robust_minimize(problem, np.concatenate([began, stopped]), w, polish_start=False)
            finite = sol.value[np.isfinite(sol.value)]
            tol = tie_tolerance(problem, float(finite.min())) if finite.size else 0.0
            sol = _keep_better(sol, rows, rescued, len(rows), tol)
    values = np.where(np.isfinite(sol.value), sol.value, np.inf)
    best = np.min(values)
    tied = (values <= best + tie_tolerance(problem, best) if np.isfinite(best)
            else np.zeros(len(values), dtype=bool))
    order = np.argsort(np.where(tied, best, values), kind="stable")
    escalated = np.zeros(len(theta0), dtype=bool) if sol.escalated is None else sol.escalated
    ordered = Solution(sol.theta[order], sol.value[order], sol.converged[order], sol.iterations[order],
                       escalated[order])
    return ordered, n_grid, len(theta0)


def tie_tolerance(problem: Problem, value: float) -> float:
    """How far apart two objectives near `value` can be from rounding alone: TIE relative, or what
    residuals computed to about eps times the response can change a sum of squares by (an exact fit
    such as NIST's Lanczos1, RSS 1e-25, is all rounding)."""
    eps = np.finfo(float).eps
    y_scale = 1.0 if problem.objective.log_space else float(np.max(np.abs(problem.y)))
    return TIE * abs(value) + 16 * eps * y_scale * np.sqrt(problem.n * abs(value)) + \
        problem.n * (8 * eps * y_scale) ** 2


def stopped_short(problem: Problem, sol: Solution, weights: np.ndarray | None = None) -> np.ndarray:
    """Rows of `sol` that did not end at a strict minimum: not converged, not finite, or converged at
    a point where the Hessian (over the free parameters off their bounds) is not positive definite: a
    saddle, or a degenerate point such as two decays of a Lanczos sum merged."""
    short = ~sol.converged | ~np.isfinite(sol.value) | ~np.all(np.isfinite(sol.theta), axis=1)
    rows = np.flatnonzero(~short)
    if rows.size:
        short[rows] = saddle(problem, sol.theta[rows], None if weights is None else
                             np.broadcast_to(weights, (len(sol.value), problem.n))[rows])
    return short


def saddle(problem: Problem, theta: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """For each row of `theta` (K, P): True where the exact Hessian of the objective, scaled by the
    Gauss-Newton diagonal and restricted to the free parameters off their bounds, has an eigenvalue
    below FLAT_CURVATURE (in those units the Gauss-Newton part has a unit diagonal)."""
    theta = np.atleast_2d(theta)
    solver = BatchSolver(problem, theta, center=False)
    with np.errstate(all="ignore"):
        g, H, A_diag = solver._derivatives(theta, None, weights)
        tiny = 1e-9 * (1 + np.abs(theta))
        inside = problem.free & (theta > problem.lower + tiny) & (theta < problem.upper - tiny)
        d = np.sqrt(np.clip(A_diag, 0.0, None))
        ok = inside & (d > 0) & np.isfinite(d)
        Hs = H / np.where(ok, d, 1.0)[:, :, None] / np.where(ok, d, 1.0)[:, None, :]
        Hs = np.where(ok[:, :, None] & ok[:, None, :], Hs, 0.0) + np.eye(theta.shape[1]) * ~ok[:, None, :]
    finite = np.all(np.isfinite(Hs), axis=(1, 2))
    lowest = np.full(len(theta), np.inf)
    if finite.any():
        lowest[finite] = np.linalg.eigvalsh(0.5 * (Hs[finite] + np.swapaxes(Hs[finite], 1, 2)))[:, 0]
    return lowest < FLAT_CURVATURE


def _keep_better(sol: Solution, rows: np.ndarray, rescued: Solution, k: int, tol: float) -> Solution:
    """`sol` with each of `rows` replaced by the best of its `rescued` rows (row i and k + i) where
    that is lower by more than `tol` (rounding), or where the original did not converge and the
    rescue did converge without doing worse: a converged point is kept on a tie (a flat direction,
    such as a depth term when every run has the same depth, stays where the Newton-LM left it)."""
    theta, value = sol.theta.copy(), sol.value.copy()
    converged, iterations = sol.converged.copy(), sol.iterations.copy()
    escalated = np.zeros(len(value), dtype=bool) if sol.escalated is None else sol.escalated.copy()
    rv = np.where(np.isfinite(rescued.value), rescued.value, np.inf).reshape(-1, k)
    pick = np.argmin(rv, axis=0) * k + np.arange(k)
    new_value = rescued.value[pick]
    old = np.where(np.isfinite(value[rows]), value[rows], np.inf)
    finite = np.isfinite(new_value)
    lower = finite & (new_value < old - tol)
    rescue = finite & ~converged[rows] & rescued.converged[pick] & (new_value <= old + tol)
    take = lower | rescue | (finite & ~np.isfinite(old))
    theta[rows[take]] = rescued.theta[pick][take]
    value[rows[take]] = new_value[take]
    converged[rows[take]] = rescued.converged[pick][take]
    iterations[rows] += rescued.iterations.reshape(-1, k).sum(axis=0)
    escalated[rows] = True
    return Solution(theta, value, converged, iterations, escalated)


