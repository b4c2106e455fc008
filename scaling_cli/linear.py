"""Bounded linear least squares: the coefficients and offsets of a form (its `linear` parameters) for
given exponents, solved exactly in the objective's metric. The grid search (`search`) and variable
projection (`robust`) both stand on it."""

from __future__ import annotations

import itertools

import numpy as np

from .solve import Problem, _solve

# ---------------------------------------------------------------- bounded linear least squares


def _bounded_linear_ls(A: np.ndarray, b: np.ndarray, constrained: np.ndarray) -> np.ndarray:
    """Solve min ||Bc - t||^2 from normal equations A = B'B (G, L, L), b = B't (G, L), with c_j >= 0
    for the `constrained` columns, exactly, by trying every active set (L is small: at most a few
    coefficients) and keeping the best feasible one."""
    G, L = b.shape
    d = np.sqrt(np.clip(np.einsum("gii->gi", A), 0.0, None))
    d = np.where(d > 0, d, 1.0)
    As = A / d[:, :, None] / d[:, None, :] + 1e-11 * np.eye(L)
    bs = b / d
    best_c = np.zeros((G, L))
    best_gain = np.zeros(G)  # RSS = t't - gain; the empty set gains 0
    cons = np.flatnonzero(constrained)
    free = [j for j in range(L) if not constrained[j]]
    for k in range(len(cons) + 1):
        for subset in itertools.combinations(cons, k):
            cols = sorted(free + list(subset))
            if not cols:
                continue
            sub = As[:, cols][:, :, cols]
            c = _solve(sub, bs[:, cols])
            gain = np.einsum("gi,gi->g", c, bs[:, cols])
            feasible = np.all(c[:, [cols.index(j) for j in subset]] >= 0, axis=1) if subset else \
                np.ones(G, dtype=bool)
            better = feasible & (gain > best_gain) & np.isfinite(gain)
            if better.any():
                full = np.zeros((G, L))
                full[:, cols] = c
                best_c[better] = full[better]
                best_gain[better] = gain[better]
    return best_c / d


def solve_linear(problem: Problem, theta: np.ndarray, weights: np.ndarray | None = None,
                 predict: bool = False):
    """Fill in the linear parameters of `theta` (G, P) by bounded linear least squares, the nonlinear
    ones held at their values. Log objectives use relative errors (y - f) / y, which agree with
    log y - log f to first order. With `predict`, also return the predictions (G, n), computed from
    the design matrix already at hand (equal to `form.predict` up to rounding)."""
    form = problem.form
    theta = problem.with_fixed(np.atleast_2d(theta))
    lin = [form.index(p) for p in form.linear]
    if not lin:
        return (theta, form.predict(theta, problem.X)) if predict else theta
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        B, offset = form.design(theta, problem.X)  # (G, n, L), (G, n)
    design = B
    target = problem.y[None, :] - offset
    solve_cols = []
    for j, p in enumerate(lin):
        if not problem.free[p]:
            target = target - problem.fixed_values[p] * B[:, :, j]
        elif np.isfinite(problem.lower[p]) and problem.lower[p] != 0:
            target = target - problem.lower[p] * B[:, :, j]  # shift c >= lo to c' >= 0
            solve_cols.append(j)
        else:
            solve_cols.append(j)
    if not solve_cols:
        return (theta, form.predict(theta, problem.X)) if predict else theta
    B = B[:, :, solve_cols]
    row_w = np.ones(problem.n) if not problem.objective.log_space else 1.0 / problem.y
    if weights is not None:
        row_w = row_w * np.sqrt(weights)
    with np.errstate(all="ignore"):  # columns that overflow (exp(1000 x)) are caught just below
        Bw = B * np.broadcast_to(row_w, target.shape)[:, :, None]
        tw = target * row_w
        A = np.swapaxes(Bw, 1, 2) @ Bw
        b = (np.swapaxes(Bw, 1, 2) @ tw[:, :, None])[:, :, 0]
    ok = np.all(np.isfinite(A), axis=(1, 2)) & np.all(np.isfinite(b), axis=1)
    A = np.where(ok[:, None, None], A, np.eye(len(solve_cols)))
    b = np.where(ok[:, None], b, 0.0)
    constrained = np.array([np.isfinite(problem.lower[lin[j]]) for j in solve_cols])
    c = _bounded_linear_ls(A, b, constrained)
    for k, j in enumerate(solve_cols):
        p = lin[j]
        shift = problem.lower[p] if np.isfinite(problem.lower[p]) else 0.0
        theta[:, p] = np.clip(c[:, k] + shift, problem.lower[p], problem.upper[p])
    theta[~ok] = np.nan
    if not predict:
        return theta
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        f = offset + (design @ theta[:, lin, None])[:, :, 0]
    return theta, f
