"""The numerical engine: a variable-projection grid search and a batched, bounded Levenberg-Marquardt.

Everything is vectorized over a leading batch axis K (starts of one fit, or bootstrap resamples), and
only numpy is used, so that a fit starts in a fraction of a second (scipy.optimize alone takes 0.4 s to
import).

Global search: for every point of a grid over the nonlinear parameters (the exponents), the linear
parameters (coefficients and offsets) are solved exactly by bounded linear least squares in the
objective's metric (relative errors for log objectives), the true objective is evaluated, and the best
points are polished together by Levenberg-Marquardt on the analytic Jacobian. For Huber objectives the
polish uses iteratively reweighted steps (Huber's IRLS), each accepted only if the true objective falls.

Convergence is judged relative to the objective itself (predicted and actual relative decrease), so a
Huber objective of 1e-3 is converged as tightly as a sum of squares of 1e2.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .forms import Form
from .objectives import Objective

FTOL = 1e-13  # relative decrease of the objective below which a step no longer counts
XTOL = 1e-12  # relative size of a (scaled) step below which the parameters no longer move
LAMBDA_START = 1e-3
LAMBDA_MAX = 1e14
MAX_ITER_LS = 400
MAX_ITER_HUBER = 3000
GRID_CHUNK_FLOATS = 4_000_000  # grid points evaluated per chunk, as n * L floats
N_POLISH = 24  # best grid points polished by Levenberg-Marquardt


@dataclass(frozen=True)
class Problem:
    """A form, its inputs and response, the objective, and which parameters are free."""

    form: Form
    X: Mapping[str, np.ndarray]
    y: np.ndarray
    objective: Objective
    free: np.ndarray  # bool (P,)
    fixed_values: np.ndarray  # (P,), used where not free
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def build(cls, form: Form, X: Mapping[str, np.ndarray], y: np.ndarray, objective: Objective,
              fixed: Mapping[str, float] | None = None) -> Problem:
        fixed = dict(form.fixed) | dict(fixed or {})
        free = np.array([p not in fixed for p in form.params])
        values = np.array([fixed.get(p, np.nan) for p in form.params], dtype=float)
        lo, hi = form.bounds()
        return cls(form, X, np.asarray(y, dtype=float), objective, free, values, lo, hi)

    @property
    def n(self) -> int:
        return len(self.y)

    def with_fixed(self, theta: np.ndarray) -> np.ndarray:
        theta = np.array(theta, dtype=float, copy=True)
        theta[..., ~self.free] = self.fixed_values[~self.free]
        return theta

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self.objective.residuals(self.y[None, :], self.form.predict(theta, self.X))

    def value(self, theta: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return self.objective.value(self.residuals(theta), weights)

    def residuals_and_jacobian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residuals (K, n) and their Jacobian (K, n, P) in the objective's space."""
        r, J, _ = self.residuals_jacobian_prediction(theta)
        return r, J

    def residuals_jacobian_prediction(self, theta: np.ndarray):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            f = self.form.predict(theta, self.X)
            r = self.objective.residuals(self.y[None, :], f)
            J = self.objective.residual_jacobian(f, self.form.jacobian(theta, self.X))
        return r, J, f

    def second_order(self, theta: np.ndarray, v: np.ndarray, f: np.ndarray, J: np.ndarray) -> np.ndarray:
        """sum_i v_i d^2 r_i / d theta^2 for residuals r in the objective's space (K, P, P).

        Log residuals r = log y - log f have d^2 r = -d^2 f / f + J_r J_r'; linear ones d^2 r = -d^2 f."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if self.objective.log_space:
                curv = self.form.second_order(theta, self.X, -v / f)
                return curv + np.swapaxes(J, 1, 2) @ (J * v[:, :, None])
            return self.form.second_order(theta, self.X, -v)


@dataclass(frozen=True)
class Solution:
    """Parameters found for each of K problems (starts or resamples), with objective and status."""

    theta: np.ndarray  # (K, P)
    value: np.ndarray  # (K,)
    converged: np.ndarray  # (K,) bool
    iterations: np.ndarray  # (K,) int


def levenberg_marquardt(problem: Problem, theta0: np.ndarray, weights: np.ndarray | None = None,
                        max_iter: int | None = None, ftol: float = FTOL,
                        xtol: float = XTOL) -> Solution:
    """Minimize the objective from each row of `theta0` (K, P), rows in parallel.

    `weights` (K, n) multiply each point's loss (bootstrap counts); None means 1.
    Bounds are kept by projection with an active set: a parameter on a bound whose gradient points
    outward is held there for that step.
    """
    theta = problem.with_fixed(np.atleast_2d(np.asarray(theta0, dtype=float)))
    theta = np.clip(theta, problem.lower, problem.upper)
    K, P = theta.shape
    if max_iter is None:
        max_iter = MAX_ITER_LS if problem.objective.least_squares else MAX_ITER_HUBER
    w_all = None if weights is None else np.broadcast_to(np.asarray(weights, float), (K, problem.n))
    S = problem.objective.value(problem.residuals(theta), w_all)
    lam = np.full(K, LAMBDA_START)
    done = ~np.isfinite(S)
    converged = np.zeros(K, dtype=bool)
    iterations = np.zeros(K, dtype=int)
    lo, hi, free = problem.lower, problem.upper, problem.free
    scale = 1.0 if problem.objective.least_squares else 0.5
    eye = np.eye(P)
    for _ in range(max_iter):
        idx = np.flatnonzero(~done)
        if idx.size == 0:
            break
        th = theta[idx]
        w = None if w_all is None else w_all[idx]
        r, J, f = problem.residuals_jacobian_prediction(th)
        omega = problem.objective.irls_weights(r)
        if w is not None:
            omega = omega * w
        Jt_w = np.swapaxes(J, 1, 2) * omega[:, None, :]
        A = Jt_w @ J  # (k, P, P): the Gauss-Newton matrix
        g = np.einsum("kpn,kn->kp", Jt_w, r)
        # The second-order term sum omega r d^2 r: on scaling data the exponents are weakly determined
        # and residuals are not small next to the curvature, so Gauss-Newton alone crawls.
        H = A + problem.second_order(th, omega * r, f, J)
        tiny = 1e-12 * (1.0 + np.abs(th))
        blocked = (~free[None, :]) | ((th <= lo + tiny) & (g > 0)) | ((th >= hi - tiny) & (g < 0))
        d = np.sqrt(np.clip(np.einsum("kii->ki", A), 0.0, None))
        d = np.where(d > 0, d, 1.0)
        Hs = H / d[:, :, None] / d[:, None, :]
        gs = g / d
        Hs = np.where(blocked[:, :, None] | blocked[:, None, :], 0.0, Hs)
        Hs = Hs + eye * np.where(blocked, 1.0, 0.0)[:, None, :]
        gs = np.where(blocked, 0.0, gs)
        # where the Hessian is indefinite (far from a minimum), shift it until it is positive definite
        lowest = np.linalg.eigvalsh(Hs)[:, 0]
        shift = np.where(lowest < 1e-10, 1e-10 - 1.5 * lowest, 0.0)
        M = Hs + (lam[idx] + shift)[:, None, None] * eye
        step_s = _solve(M, -gs)
        step = step_s / d
        new = np.clip(th + step, lo, hi)
        new = np.where(blocked, th, new)
        S_new = problem.objective.value(problem.residuals(new), w)
        S_old = S[idx]
        actual = S_old - S_new
        # reduction the (reweighted) quadratic model predicts for the step
        delta = new - th
        predicted = -scale * (2 * np.einsum("kp,kp->k", g, delta)
                              + np.einsum("kp,kpq,kq->k", delta, H, delta))
        improved = np.isfinite(S_new) & (S_new < S_old)
        theta[idx[improved]] = new[improved]
        S[idx[improved]] = S_new[improved]
        lam[idx] = np.where(improved, np.maximum(lam[idx] / 5.0, 1e-12), lam[idx] * 8.0)
        iterations[idx] += 1
        denom = np.maximum(np.abs(S_old), 1e-300)
        small_f = (np.abs(actual) <= ftol * denom) & (np.abs(predicted) <= ftol * denom)
        xnorm = np.linalg.norm(np.where(blocked, 0.0, th * d), axis=1)
        small_x = np.linalg.norm(np.where(blocked, 0.0, step_s), axis=1) <= xtol * (xnorm + xtol)
        stalled = lam[idx] > LAMBDA_MAX
        stop = (improved & (small_f | small_x)) | (~improved & small_f & (lam[idx] > 1.0)) | stalled
        converged[idx[stop]] = True
        done[idx[stop]] = True
    return Solution(theta, S, converged, iterations)


def _solve(M: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(M, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.einsum("kij,kj->ki", np.linalg.pinv(M), rhs)


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


def solve_linear(problem: Problem, theta: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Fill in the linear parameters of `theta` (G, P) by bounded linear least squares, the nonlinear
    ones held at their values. Log objectives use relative errors (y - f) / y, which agree with
    log y - log f to first order."""
    form = problem.form
    theta = problem.with_fixed(np.atleast_2d(theta))
    lin = [form.index(p) for p in form.linear]
    if not lin:
        return theta
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        B, offset = form.design(theta, problem.X)  # (G, n, L), (G, n)
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
        return theta
    B = B[:, :, solve_cols]
    row_w = np.ones(problem.n) if not problem.objective.log_space else 1.0 / problem.y
    if weights is not None:
        row_w = row_w * np.sqrt(weights)
    Bw = B * np.broadcast_to(row_w, target.shape)[:, :, None]
    tw = target * row_w
    A = np.swapaxes(Bw, 1, 2) @ Bw
    b = np.einsum("gnl,gn->gl", Bw, tw)
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
    return theta


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


def grid_search(problem: Problem, weights: np.ndarray | None = None,
                keep: int = N_POLISH) -> tuple[np.ndarray, np.ndarray, int]:
    """Evaluate the variable-projection grid; return the `keep` best points (theta, values) and the
    number of grid points tried."""
    theta = grid_points(problem)
    G = len(theta)
    per_chunk = max(1, GRID_CHUNK_FLOATS // max(1, problem.n * max(1, len(problem.form.linear))))
    values = np.empty(G)
    for start in range(0, G, per_chunk):
        chunk = solve_linear(problem, theta[start:start + per_chunk], weights)
        theta[start:start + per_chunk] = chunk
        values[start:start + per_chunk] = problem.value(chunk, weights)
    values = np.where(np.isfinite(values), values, np.inf)
    order = np.argsort(values, kind="stable")[:keep]
    return theta[order], values[order], G


def global_minimize(problem: Problem, weights: np.ndarray | None = None,
                    starts: Sequence[np.ndarray] | None = None, use_grid: bool = True,
                    keep: int = N_POLISH) -> tuple[Solution, int, int]:
    """Grid search plus user starts, all polished together; returns the solutions of every start
    (best first), the number of grid points and the number of polished starts."""
    candidates = []
    n_grid = 0
    if use_grid:
        top, _, n_grid = grid_search(problem, weights, keep)
        candidates.append(top[np.all(np.isfinite(top), axis=1)])
    for s in starts or []:
        candidates.append(problem.with_fixed(np.atleast_2d(np.asarray(s, dtype=float))))
    theta0 = np.concatenate(candidates) if candidates else np.zeros((0, len(problem.form.params)))
    if len(theta0) == 0:
        theta0 = problem.with_fixed(np.ones((1, len(problem.form.params))))
    sol = levenberg_marquardt(problem, theta0, None if weights is None else weights[None, :])
    order = np.argsort(np.where(np.isfinite(sol.value), sol.value, np.inf), kind="stable")
    ordered = Solution(sol.theta[order], sol.value[order], sol.converged[order], sol.iterations[order])
    return ordered, n_grid, len(theta0)
