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

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .forms import Form, Inputs, _negative_power, input_log
from .objectives import Objective

FTOL = 1e-13  # relative decrease of the objective below which a step no longer counts
XTOL = 1e-12  # relative size of a (scaled) step below which the parameters no longer move
LAMBDA_START = 1e-3
LAMBDA_MAX = 1e14
MAX_ITER_LS = 400
MAX_ITER_HUBER = 3000
# The solver sums its derivatives over blocks of rows of at most this many Jacobian entries (problems
# x rows x parameters), so that memory stays bounded however many rows the table has.
ROW_BLOCK_FLOATS = 262_144
MIN_BLOCK_ROWS = 16
GRID_CHUNK_FLOATS = 4_000_000  # grid points evaluated per chunk, as n * L floats
# Tables with more rows search the grid on a stratified subsample of this many rows, then polish the
# distinct minima found there (at most SUBSAMPLE_MINIMA of them) on every row.
GRID_ROWS = 512
SUBSAMPLE_MINIMA = 4
SAME_BASIN_RTOL = 1e-3  # polished subsample points closer than this (relative, every parameter) are one
N_POLISH = 24  # best grid points polished by Levenberg-Marquardt
# A solve that stopped converged only if the undamped Newton step would lower the objective by less than
# this fraction of it.
STATIONARY_RTOL = 1e-9
MIN_SCALE = 1e-10  # least scale of a parameter, relative to the largest, in the solver's step
CENTERING_STEP = 1e-5  # central-difference step for the centering gradient
# A converged point whose scaled Hessian has an eigenvalue below this is a saddle or a degenerate point
# (two decays of a Lanczos sum merged: lowest eigenvalue -3e-17), not a strict minimum. The smallest at
# a NIST certified optimum is 9e-10 (Bennett5); at the paper's decomposed fit 3e-5.
FLAT_CURVATURE = 1e-12
# With escalation, least-squares starts not converged after this many Newton-LM steps go to
# `robust_minimize`, and so do the best ESCALATE_GRID grid points that stopped short (all user starts).
ESCALATE_AFTER = 200
ESCALATE_GRID = 4


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
              fixed: Mapping[str, float] | None = None,
              bounds: Mapping[str, tuple[float, float]] | None = None) -> Problem:
        """`fixed` {name: value} holds parameters; `bounds` {name: (lo, hi)} replaces a parameter's
        bounds (NaN keeps that side of the form's)."""
        fixed = dict(form.fixed) | dict(fixed or {})
        free = np.array([p not in fixed for p in form.params])
        values = np.array([fixed.get(p, np.nan) for p in form.params], dtype=float)
        lo, hi = form.bounds()
        for name, (b_lo, b_hi) in (bounds or {}).items():
            i = form.index(name)
            lo[i] = lo[i] if np.isnan(b_lo) else b_lo
            hi[i] = hi[i] if np.isnan(b_hi) else b_hi
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
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            f = self.form.predict(theta, self.X)
            r = self.objective.residuals(self.y[None, :], f)
            J = self.objective.residual_jacobian(f, self.form.jacobian(theta, self.X))
        return r, J


@dataclass(frozen=True)
class Solution:
    """Parameters found for each of K problems (starts or resamples), with objective and status."""

    theta: np.ndarray  # (K, P)
    value: np.ndarray  # (K,)
    converged: np.ndarray  # (K,) bool
    iterations: np.ndarray  # (K,) int
    escalated: np.ndarray | None = None  # (K,) bool: solved again by `robust_minimize` (global_minimize)


def levenberg_marquardt(problem: Problem, theta0: np.ndarray, weights: np.ndarray | None = None,
                        max_iter: int | None = None, ftol: float = FTOL, xtol: float = XTOL,
                        center: bool = True) -> Solution:
    """Minimize the objective from each row of `theta0` (K, P), rows in parallel.

    `weights` (K, n) multiply each point's loss (bootstrap counts); None means 1. A thin front to
    `BatchSolver`, each row centered on its own start, so that a start ends where it would alone,
    whatever else is in its batch. Centering is what makes scaling-law fits fast (the Epoch Huber
    fit: 0.1 s centered, 10 s not); from a poor start on a hard problem it can lead the plain
    Newton-LM astray (NIST Hahn1, Thurber), which is what `robust_minimize` is for."""
    theta0 = np.atleast_2d(np.asarray(theta0, dtype=float))
    centres = np.clip(problem.with_fixed(theta0), problem.lower, problem.upper)
    solver = BatchSolver(problem, centres, center=center)
    return solver.solve(theta0, None, weights, max_iter=max_iter, ftol=ftol, xtol=xtol)


class Centering:
    """The change of variables c = c' exp(-G (a - a_hat)) for linear coefficients c of terms whose
    design column depends on nonlinear parameters a (see the module docstring).

    G is the derivative of the mean log |design column| with respect to a, by central differences at
    a_hat (exact for power laws, whose log column is linear in the exponent). Only coefficients whose
    bounds the change leaves alone (lower 0 or none, no upper) are centered.

    `theta_hat` is one vector (every row of a batch is centered on it: bootstrap resamples around the
    full-data optimum) or one per row (each start centered on itself, so that a start's path does not
    depend on the other starts of its batch). Per row, a coefficient whose column has a zero or a
    non-finite derivative there is left uncentered (its row of G is 0). Methods take `rows`, the rows
    of the batch their arguments hold (None: all of them)."""

    def __init__(self, problem: Problem, theta_hat: np.ndarray) -> None:
        form = problem.form
        self.nonlinear = np.array([form.index(p) for p in form.nonlinear], dtype=int)
        theta = np.atleast_2d(np.asarray(theta_hat, dtype=float))
        K = theta.shape[0]
        # a row whose centre is not finite gets G = 0 there (below): a_hat 0 keeps its factor at 1
        self.a_hat_rows = np.where(np.isfinite(theta[:, self.nonlinear]), theta[:, self.nonlinear], 0.0)
        linear, rows = [], []
        if len(self.nonlinear) and form.linear:
            with np.errstate(all="ignore"):
                column = self._log_columns(problem, theta)  # (K, L)
                grads = np.zeros(column.shape + (len(self.nonlinear),))
                for k, q in enumerate(self.nonlinear):
                    h = CENTERING_STEP * np.maximum(1.0, np.abs(theta[:, q]))
                    up, down = theta.copy(), theta.copy()
                    up[:, q] += h
                    down[:, q] -= h
                    grads[:, :, k] = (self._log_columns(problem, up)
                                      - self._log_columns(problem, down)) / (2 * h[:, None])
            for j, name in enumerate(form.linear):
                p = form.index(name)
                bounds_kept = problem.lower[p] in (0.0, -np.inf) and problem.upper[p] == np.inf
                valid = np.all(np.isfinite(grads[:, j]), axis=1) & np.any(grads[:, j] != 0, axis=1)
                if problem.free[p] and bounds_kept and valid.any():
                    linear.append(p)
                    rows.append(np.where(valid[:, None], grads[:, j], 0.0))
        self.linear = np.array(linear, dtype=int)
        self.G_rows = (np.stack(rows, axis=1) if rows
                       else np.zeros((K, 0, len(self.nonlinear))))  # (K, C, N)

    @property
    def G(self) -> np.ndarray:
        """G of the first (or only) row, (C, N)."""
        return self.G_rows[0]

    def _select(self, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """a_hat (k, N) and G (k, C, N) for the given rows (one shared centre broadcasts)."""
        if rows is None or len(self.a_hat_rows) == 1:
            return self.a_hat_rows, self.G_rows
        return self.a_hat_rows[rows], self.G_rows[rows]

    @staticmethod
    def _log_columns(problem: Problem, theta: np.ndarray) -> np.ndarray:
        """Mean log |design column| per row and linear parameter (K, L); NaN where a column has a zero."""
        B, _ = problem.form.design(theta, problem.X)
        B = np.abs(B)
        return np.where(np.all((B > 0) & np.isfinite(B), axis=1),
                        np.mean(np.log(np.where(B > 0, B, 1.0)), axis=1), np.nan)

    @property
    def active(self) -> bool:
        return len(self.linear) > 0

    def factor(self, theta: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """exp(-G (a - a_hat)) per centered coefficient, (K, C); inf or 0 far from a_hat, which the
        solver treats as a non-finite step (rejected)."""
        a_hat, G = self._select(rows)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return np.exp(-np.einsum("kn,kcn->kc", theta[:, self.nonlinear] - a_hat,
                                     np.broadcast_to(G, (len(theta),) + G.shape[1:])))

    def to_original(self, centered: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        theta = centered.copy()
        if self.active:
            with np.errstate(over="ignore", invalid="ignore"):
                theta[:, self.linear] = centered[:, self.linear] * self.factor(centered, rows)
        return theta

    def to_centered(self, theta: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        centered = theta.copy()
        if self.active:
            centered[:, self.linear] = theta[:, self.linear] / self.factor(theta, rows)
        return centered

    def transform(self, centered: np.ndarray, theta: np.ndarray, g: np.ndarray,
                  matrices: Sequence[np.ndarray], rows: np.ndarray | None = None
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Gradient and Hessians of the objective in the original parameters -> in the centered ones.
        The first matrix gets the second-order term of the change of variables (it is the Hessian);
        the others (the Gauss-Newton matrix, used for scaling only) just the chain rule."""
        K, P = theta.shape
        E = self.factor(centered, rows)
        G = np.broadcast_to(self._select(rows)[1], (K,) + self.G_rows.shape[1:])
        D = np.broadcast_to(np.eye(P), (K, P, P)).copy()
        nl = self.nonlinear
        for r, j in enumerate(self.linear):
            D[:, j, j] = E[:, r]
            D[:, j, nl] = -theta[:, j, None] * G[:, r]
        Dt = np.swapaxes(D, 1, 2)
        g_new = np.einsum("kip,ki->kp", D, g)
        out = [Dt @ M @ D for M in matrices]
        H = out[0]
        for r, j in enumerate(self.linear):
            cross = -(g[:, j] * E[:, r])[:, None] * G[:, r]
            H[:, j, nl] += cross
            H[:, nl, j] += cross
            H[:, nl[:, None], nl[None, :]] += (g[:, j] * theta[:, j])[:, None, None] * (
                G[:, r, :, None] * G[:, r, None, :])
        return g_new, out


class BatchSolver:
    """Newton-Levenberg-Marquardt over a batch of problems that share a form, inputs and objective but
    each have their own weights (case and group resamples) or response (residual resamples).

    The step uses the exact Hessian of the objective (for Huber: the indicator of |r| <= delta in the
    Gauss-Newton part, with psi(r) in the second-order part), scaled by the Gauss-Newton diagonal and
    shifted where it is indefinite; bounds are kept by projection with an active set. Convergence
    is judged relative to the objective's own value."""

    def __init__(self, problem: Problem, theta_hat: np.ndarray, center: bool = True) -> None:
        """`theta_hat`: the centre of the change of variables, one vector for every row of a solve, or
        one per row (K, P) for solves of exactly K rows (see `Centering`)."""
        self.problem = problem
        self.centering = Centering(problem, theta_hat) if center else None
        self._blocks: dict[int, list] = {}
        self._ty = problem.objective.transform(problem.y)  # the response in the objective's space

    def _to_original(self, centered: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        return centered if self.centering is None else self.centering.to_original(centered, rows)

    def _objective(self, centered: np.ndarray, y: np.ndarray | None, w: np.ndarray | None,
                   idx: np.ndarray | None = None) -> np.ndarray:
        """The objective (k,) at `centered` (k, P), for the rows `idx` of the responses `y` and weights
        `w` (K, n) (all rows of them when None; y None: the problem's response, w None: weights 1),
        summed over row blocks."""
        pr = self.problem
        theta = self._to_original(centered, idx)
        S = 0.0
        with np.errstate(all="ignore"):
            for rows, X in self._row_blocks(len(centered)):
                f = pr.form.predict(theta, X)
                r = pr.objective.residuals_from(_rows(y, idx, rows, self._ty), f)
                S = S + pr.objective.value(r, _rows(w, idx, rows))
        return S

    def solve(self, theta0: np.ndarray, y: np.ndarray | None = None, weights: np.ndarray | None = None,
              max_iter: int | None = None, ftol: float = FTOL, xtol: float = XTOL) -> Solution:
        """Minimize from each row of `theta0` (K, P); `y` (K, n) replaces the response per row and
        `weights` (K, n) multiply each point's loss; None means the problem's response and 1."""
        pr = self.problem
        obj = pr.objective
        theta0 = np.clip(pr.with_fixed(np.atleast_2d(np.asarray(theta0, dtype=float))), pr.lower, pr.upper)
        K, P = theta0.shape
        # the responses in the objective's space, once per solve (not at every step)
        y = None if y is None else np.broadcast_to(obj.transform(np.asarray(y, dtype=float)), (K, pr.n))
        w_all = None if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), (K, pr.n))
        if max_iter is None:
            max_iter = MAX_ITER_LS if obj.least_squares else MAX_ITER_HUBER
        with np.errstate(all="ignore"):
            x = theta0 if self.centering is None else self.centering.to_centered(theta0)
        S = self._objective(x, y, w_all)
        lam = np.full(K, LAMBDA_START)
        # what a sum of squared residuals can resolve at all: residuals carry rounding of about eps
        # times the response (log residuals: eps), so an exact fit (NIST's Lanczos1, RSS 1e-25) is
        # stationary once the objective's decrease is below that, not below a fraction of ~0
        y_scale = 1.0 if obj.log_space else float(np.max(np.abs(pr.y)))
        resolution = pr.n * (8 * np.finfo(float).eps * y_scale) ** 2
        done = ~np.isfinite(S)
        converged = np.zeros(K, dtype=bool)
        iterations = np.zeros(K, dtype=int)
        lo, hi, free = pr.lower, pr.upper, pr.free
        scale = 1.0 if obj.least_squares else 0.5
        eye = np.eye(P)
        # non-finite values are handled explicitly (rows marked bad, steps rejected): no warnings
        with np.errstate(all="ignore"):
            for _ in range(max_iter):
                idx = np.flatnonzero(~done)
                if idx.size == 0:
                    break
                xi = x[idx]
                g, H, A_diag = self._derivatives(xi, y, w_all, idx)
                # A parameter pushed against a bound is held there. "Against" includes so close that
                # reaching the bound would change the objective by less than ftol of it: otherwise an
                # optimum on a bound in a flat valley (L0 = 0 with alpha_l -> 0) is approached forever.
                S_tol = ftol * np.maximum(np.abs(S[idx]), 1e-300)[:, None]
                tiny = 1e-12 * (1.0 + np.abs(xi))
                at_lo = (g > 0) & ((xi <= lo + tiny) | ((xi - lo) * g <= S_tol))
                at_hi = (g < 0) & ((xi >= hi - tiny) | ((hi - xi) * -g <= S_tol))
                blocked = (~free[None, :]) | at_lo | at_hi
                d = np.sqrt(np.clip(A_diag, 0.0, None))
                d = np.where(np.isfinite(d), d, 0.0)
                # a parameter that does nothing here (an exponent whose coefficient is 0) must not get a
                # scale that swamps the others: floor the scales relative to the largest
                d = np.maximum(d, MIN_SCALE * d.max(axis=1, keepdims=True))
                d = np.where(d > 0, d, 1.0)
                Hs = H / d[:, :, None] / d[:, None, :]
                Hs = np.where(blocked[:, :, None] | blocked[:, None, :], 0.0, Hs) + eye * blocked[:, None, :]
                gs = np.where(blocked, 0.0, g / d)
                bad = ~(np.all(np.isfinite(Hs), axis=(1, 2)) & np.all(np.isfinite(gs), axis=1))
                Hs[bad] = eye
                gs[bad] = 0.0
                # where the Hessian is indefinite (far from a minimum), shift it until it is positive definite
                shift = _indefinite_shift(Hs)
                newton, damped, decrement, free_gs = _projected_steps(Hs, gs, shift, lam[idx], xi, d, lo, hi,
                                                                      blocked)
                # Near a minimum with a positive definite Hessian, Newton converges quadratically: once
                # the model says less than ftol * S is left, one undamped step lands on the minimum far
                # more precisely than the objective can resolve (log y - log f loses digits to
                # cancellation, so S is only good to ~1e-14), so that step is taken unless it raises S by
                # more than ftol * S, and the solve ends. Elsewhere the usual
                # tests on the relative decrease and the step size apply.
                quadratic = (shift == 0) & ~bad & (decrement >= 0) & (decrement <= S_tol[:, 0])
                step_s = np.where(quadratic[:, None], newton, damped)
                new = np.where(blocked, xi, np.clip(xi + step_s / d, lo, hi))
                S_new = self._objective(new, y, w_all, idx)
                S_old = S[idx]
                denom = np.maximum(np.abs(S_old), 1e-300)
                actual = S_old - S_new
                delta = new - xi
                predicted = -scale * (2 * np.einsum("kp,kp->k", g, delta)
                                      + np.einsum("kp,kpq,kq->k", delta, H, delta))
                improved = np.isfinite(S_new) & (S_new < S_old)
                accept = improved | (quadratic & np.isfinite(S_new) & (S_new <= S_old + ftol * denom))
                moved = idx[accept]
                x[moved], S[moved] = new[accept], S_new[accept]
                lam[idx] = np.where(improved, np.maximum(lam[idx] / 5.0, 1e-12), lam[idx] * 8.0)
                iterations[idx] += 1
                small_f = (np.abs(actual) <= ftol * denom) & (np.abs(predicted) <= ftol * denom)
                xnorm = np.linalg.norm(np.where(blocked, 0.0, xi * d), axis=1)
                small_x = np.linalg.norm(np.where(blocked, 0.0, step_s), axis=1) <= xtol * (xnorm + xtol)
                finished = (quadratic | ((shift > 0) & improved & (small_f | small_x))
                            | (~improved & small_f & (lam[idx] > 1.0)))
                gave_up = (lam[idx] > LAMBDA_MAX) & ~finished & ~bad
                ended = finished | gave_up | bad
                # Stopping is not converging: a solve that ends with damped steps that no longer move (at a
                # wall of non-finite predictions, say) converged only if the undamped Newton step would
                # gain almost nothing, relative to the objective; where the Hessian had to be shifted the
                # decrement understates what is left, so the scaled gradient must be small too.
                # (a negative decrement means the model is no guide: not stationary)
                left = np.where(decrement >= 0,
                                np.maximum(decrement, np.einsum("kp,kp->k", free_gs, free_gs)), np.inf)
                stationary = left <= STATIONARY_RTOL * denom + resolution
                converged[idx[ended & ~bad & (quadratic | stationary)]] = True
                done[idx[ended]] = True
        return Solution(self._to_original(x), S, converged, iterations)

    def _derivatives(self, x: np.ndarray, y: np.ndarray | None, w: np.ndarray | None,
                     idx: np.ndarray | None = None):
        """Gradient g and Hessian H of half the objective (of the objective for Huber), and the diagonal
        of the Gauss-Newton matrix for scaling, all in the solver's (centered) parameters, at `x`
        (k, P) for the rows `idx` of `y` and `w` (as in `_objective`).

        Residual Jacobians are never formed: for log residuals J_r = -J_f / f, so every J_r' C J_r is
        J_f' (C / f^2) J_f, one weighted product of the form's Jacobian. The sums over rows are taken a
        block of rows at a time (`_row_blocks`), so no array spans every row of every problem."""
        theta = self._to_original(x, idx)
        g, H, scaling = 0.0, 0.0, 0.0
        for rows, X in self._row_blocks(len(x)):
            gb, Hb, sb = self._block_derivatives(theta, _rows(y, idx, rows, self._ty), _rows(w, idx, rows), X)
            g, H, scaling = g + gb, H + Hb, scaling + sb
        with np.errstate(all="ignore"):
            if self.centering is not None and self.centering.active:
                g, (H, scaling) = self.centering.transform(x, theta, g, [H, scaling], idx)
        return g, H, np.einsum("kii->ki", scaling)

    def _row_blocks(self, K: int) -> list[tuple[slice, Mapping[str, np.ndarray]]]:
        """Row blocks of at most ROW_BLOCK_FLOATS Jacobian entries for K problems, with their inputs.
        Small blocks keep the temporaries of each step in the processor's cache (and out of the
        operating system's page allocator), which made the solver 2-3x faster on big tables."""
        n = self.problem.n
        size = min(n, max(MIN_BLOCK_ROWS, ROW_BLOCK_FLOATS // max(1, K * len(self.problem.form.params))))
        cached = self._blocks.get(size)
        if cached is None:
            cached = self._blocks[size] = [
                (slice(start, start + size), Inputs({k: np.asarray(v)[start:start + size]
                                                     for k, v in self.problem.X.items()}))
                for start in range(0, n, size)]
        return cached

    def _block_derivatives(self, theta, y, w, X):
        """Gradient, Hessian and Gauss-Newton matrix (for scaling) of the rows of one block, in the
        original parameters; `y` and `w` are the block's responses and weights."""
        pr = self.problem
        obj, form = pr.objective, pr.form
        spec = form.power_sum()
        if spec is not None:
            return _power_sum_derivatives(obj, spec, theta, y, w, X, len(pr.form.params))
        parts = {}

        def second_order_weights(f):
            r = obj.residuals_from(y, f)
            if obj.least_squares:
                curv = np.ones_like(r) if w is None else w
                v = r if w is None else r * w
            else:  # exact Huber Hessian: rho'' is 1 inside delta and 0 outside; rho' = psi = omega r
                inside = np.abs(r) <= obj.delta
                curv = inside.astype(float)
                v = np.clip(r, -obj.delta, obj.delta)
                if w is not None:
                    curv, v = curv * w, v * w
            parts.update(r=r, curv=curv, v=v)
            if obj.log_space:
                parts["inv"] = 1.0 / f
                return -v * parts["inv"]
            return -v

        with np.errstate(all="ignore"):
            _, Jf, second = form.predict_derivatives(theta, X, second_order_weights)
            r, curv, v = parts["r"], parts["curv"], parts["v"]
            if obj.log_space:
                inv = parts["inv"]
                g = -np.einsum("knp,kn->kp", Jf, v * inv)
                # d2 r = -d2 f / f + J_r J_r': the outer-product part joins the Gauss-Newton term
                gn = _weighted_gram(Jf, (curv + v) * inv * inv)
                H = gn + second
                if obj.least_squares:
                    scaling = gn
                else:  # IRLS weights: positive, unlike the exact Huber curvature
                    omega = obj.irls_weights(r) if w is None else obj.irls_weights(r) * w
                    scaling = _weighted_gram(Jf, omega * inv * inv)
            else:
                g = -np.einsum("knp,kn->kp", Jf, v)
                scaling = _weighted_gram(Jf, curv)
                H = scaling + second
        return g, H, scaling


def _power_sum_derivatives(obj: Objective, spec, theta: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                           X: Mapping[str, np.ndarray], P: int):
    """`BatchSolver._block_derivatives` for a form f = L + sum_t c_t x_t^-a_t (`Form.power_sum`), with
    no Jacobian formed. Every column of the Jacobian is a multiple of one of the basis rows
    b = (p_1, q_1, ..., p_T, q_T, 1), with p_t = x_t^-a_t and q_t = p_t log x_t (df/dc_t = p_t,
    df/da_t = -c_t q_t, df/dL = 1), so each weighted Gram matrix is one batched product of the
    contiguous (K, 2T + 1, n) basis with itself, scaled by (1, -c_t) afterwards, and the second
    derivatives (d2f/dc_t da_t = -q_t, d2f/da_t^2 = c_t q_t log x_t) reuse the same rows. It gives
    what the general path gives, to rounding, at a fraction of the memory traffic."""
    i_const, terms = spec
    K = theta.shape[0]
    n = len(X[terms[0][2]])
    T = len(terms)
    nb = 2 * T + (i_const is not None)
    basis = np.empty((K, nb, n))
    f = np.zeros((K, n)) if i_const is None else np.repeat(theta[:, i_const, None], n, axis=1)
    logs = []
    for t, (ic, ia, var) in enumerate(terms):
        p = _negative_power(X, var, theta[:, ia], out=basis[:, 2 * t])
        logx = input_log(X, var)
        np.multiply(p, logx, out=basis[:, 2 * t + 1])
        f += theta[:, ic, None] * p
        logs.append(logx)
    if i_const is not None:
        basis[:, 2 * T] = 1.0
    r = obj.residuals_from(y, f)
    if obj.least_squares:
        curv = np.ones_like(r) if w is None else np.broadcast_to(w, r.shape)
        v = r if w is None else r * w
    else:  # exact Huber Hessian: rho'' is 1 inside delta and 0 outside; rho' = psi = omega r
        curv = (np.abs(r) <= obj.delta).astype(float)
        v = np.clip(r, -obj.delta, obj.delta)
        if w is not None:
            curv, v = curv * w, v * w
    if obj.log_space:
        inv = 1.0 / f
        a = -v * inv  # g = sum a J, and the weight of the second derivatives
        inv2 = inv * inv
        w_hess = (curv + v) * inv2  # d2 r = -d2 f / f + J_r J_r': the outer product joins Gauss-Newton
        if obj.least_squares:
            w_scale = None
        else:  # IRLS weights: positive, unlike the exact Huber curvature
            w_scale = obj.irls_weights(r) * inv2 if w is None else obj.irls_weights(r) * w * inv2
    else:
        a, w_hess, w_scale = -v, curv, None
    g_basis = (basis @ a[:, :, None])[:, :, 0]
    basis_t = np.swapaxes(basis, 1, 2)
    gram = (basis * w_hess[:, None, :]) @ basis_t
    gram_scale = gram if w_scale is None else (basis * w_scale[:, None, :]) @ basis_t
    index = [i for ic, ia, _ in terms for i in (ic, ia)] + ([] if i_const is None else [i_const])
    factor = np.ones((K, nb))
    for t, (ic, _, _) in enumerate(terms):
        factor[:, 2 * t + 1] = -theta[:, ic]
    sel = np.ix_(np.arange(K), index, index)
    outer = factor[:, :, None] * factor[:, None, :]
    g = np.zeros((K, P))
    g[:, index] = factor * g_basis
    scaling = np.zeros((K, P, P))
    scaling[sel] = outer * gram_scale
    H = scaling.copy() if w_scale is None else np.zeros((K, P, P))
    if w_scale is not None:
        H[sel] = outer * gram
    for t, (ic, ia, _) in enumerate(terms):
        cross = -g_basis[:, 2 * t + 1]
        H[:, ic, ia] += cross
        H[:, ia, ic] += cross
        H[:, ia, ia] += theta[:, ic] * np.einsum("kn,kn->k", a, basis[:, 2 * t + 1] * logs[t])
    return g, H, scaling


def _rows(a: np.ndarray | None, idx: np.ndarray | None, rows: slice, default: np.ndarray | None = None):
    """The block `rows` of the problems `idx` (all when None) of a (K, n) array; for None, `default`'s
    block as one row (broadcast over the problems), or None."""
    if a is None:
        return None if default is None else default[None, rows]
    return a[:, rows] if idx is None else a[idx, rows]


def _weighted_gram(J: np.ndarray, c: np.ndarray) -> np.ndarray:
    """J' diag(c) J for every row of a batch: J (K, n, P), c (K, n) -> (K, P, P)."""
    return np.swapaxes(J * c[:, :, None], 1, 2) @ J


def _projected_steps(Hs: np.ndarray, gs: np.ndarray, shift: np.ndarray, lam: np.ndarray, x: np.ndarray,
                     d: np.ndarray, lower: np.ndarray, upper: np.ndarray, blocked: np.ndarray):
    """The undamped (Newton) and damped steps in scaled variables, the Newton decrement (twice what the
    quadratic model gains by the Newton step), and the gradient of the parameters left free.

    Where the Hessian is positive definite (near a minimum), a parameter whose Newton step would cross
    its bound is moved onto it and the others take the Newton step given that move, a two-metric
    projection (Bertsekas 1982): an optimum on a bound is then reached in a step rather than
    approached geometrically, and the decrement measures only what is feasible."""
    eye = np.eye(gs.shape[1])
    newton = _solve(Hs + shift[:, None, None] * eye, -gs)
    # damping relative to the shift: where the shift is huge (a parameter that does nothing here makes
    # the scaled Hessian wildly indefinite) an additive lambda could never shorten the step
    damped = _solve(Hs + (shift + lam * np.maximum(1.0, shift))[:, None, None] * eye, -gs)
    target = x + newton / d
    cross = (~blocked & (shift == 0)[:, None]
             & (((target < lower) & (gs > 0)) | ((target > upper) & (gs < 0))))
    hold = blocked | cross
    rows = np.flatnonzero(cross.any(axis=1))
    if rows.size:
        H, h = Hs[rows], hold[rows]
        move = np.where(cross[rows], (np.where(target[rows] < lower, lower, upper) - x[rows]) * d[rows], 0.0)
        reduced = np.where(h[:, :, None] | h[:, None, :], 0.0, H) + eye * h[:, None, :]
        rhs = np.where(h, 0.0, -(gs[rows] + np.einsum("kpq,kq->kp", H, move)))
        newton[rows] = _solve(reduced, rhs) + move
    decrement = -2 * np.einsum("kp,kp->k", gs, newton) - np.einsum("kp,kpq,kq->k", newton, Hs, newton)
    return newton, damped, decrement, np.where(hold, 0.0, gs)


def _indefinite_shift(Hs: np.ndarray) -> np.ndarray:
    """How much to add to the diagonal of each matrix to make it positive definite (0 where it is).
    A Cholesky factorization answers for the whole batch at a fraction of the cost of eigenvalues,
    which are needed only when some matrix is indefinite (far from a minimum)."""
    try:
        np.linalg.cholesky(Hs)
        return np.zeros(len(Hs))
    except np.linalg.LinAlgError:
        lowest = np.linalg.eigvalsh(Hs)[:, 0]
        shift = np.where(lowest < 1e-10, 1e-10 - 1.5 * lowest, 0.0)
        # a row that Cholesky accepts takes no shift, as in a batch of its own (batch independence)
        for k in np.flatnonzero((shift > 0) & (lowest > 0)):
            try:
                np.linalg.cholesky(Hs[k])
                shift[k] = 0.0
            except np.linalg.LinAlgError:
                pass
        return shift


def _solve(M: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(M, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        if M.ndim < 3:
            return np.linalg.pinv(M) @ rhs
        # row by row, so that a singular row does not change how the others are solved
        return np.stack([_solve(M[k], rhs[k]) for k in range(len(M))]) if len(M) else rhs.copy()


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
    return usable[np.unique(np.concatenate(picked))]


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
    size = max(1, ROW_BLOCK_FLOATS // max(1, len(theta)))
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
    `from_design` takes the predictions from the design matrix rather than the form (a third less
    work, values equal up to rounding: the subsample search uses it)."""
    theta = grid_points(problem)
    G = len(theta)
    per_chunk = max(1, GRID_CHUNK_FLOATS // max(1, problem.n * max(1, len(problem.form.linear))))
    values = np.empty(G)
    for start in range(0, G, per_chunk):
        if from_design:
            chunk, f = solve_linear(problem, theta[start:start + per_chunk], weights, predict=True)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                value = problem.objective.value(problem.objective.residuals(problem.y[None, :], f), weights)
        else:
            chunk = solve_linear(problem, theta[start:start + per_chunk], weights)
            value = problem.value(chunk, weights)
        theta[start:start + per_chunk] = chunk
        values[start:start + per_chunk] = value
    values = np.where(np.isfinite(values), values, np.inf)
    order = np.argsort(values, kind="stable")[:keep]
    return theta[order], values[order], G


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


# ---------------------------------------------------------------- robust minimization from far starts
#
# The Newton-LM above uses the full Hessian, which is what makes it fast on scaling laws (residuals are
# not small next to the curvature there). From a start far from the optimum, though, it can be drawn to
# a saddle (two decays of a Lanczos sum merging) or crawl along a curved valley. `robust_minimize` runs
# two Gauss-Newton trust-region searches in the manner of MINPACK's lmder (Moré 1978) from each start:
# one over all free parameters, and one over the nonlinear parameters only, the linear ones solved
# exactly at every step (variable projection: Golub & Pereyra 1973, with Kaufman's 1975 Jacobian).
# Their results and the start itself are polished by the Newton-LM, and the best of the three is kept.

TR_FACTOR = 100.0  # initial trust radius, in units of the scaled norm of the start (MINPACK's factor)
TR_MAX_ITER = 1000
TR_FTOL = 1e-14  # relative actual reduction of the sum of squares that counts as rounding noise
TR_PTOL = 1e-22  # relative predicted reduction below which a step is negligible
TR_XTOL = 1e-13  # trust radius relative to the scaled norm of the parameters
TR_GTOL = 1e-15  # cosine between the residuals and any Jacobian column
TR_ACCEPT = 1e-4  # least ratio of actual to predicted reduction for a step to be taken
SECULAR_ITER = 40  # Newton steps on the secular equation |p(lambda)| = radius
REFINE_STEPS = 6  # Gauss-Newton steps after convergence, for the last digits
REFINE_RISE = 1e-10  # relative change of the sum of squares that counts as rounding near an optimum
REFINE_XTOL = 1e-15
TIE = 1e-11  # relative difference of objectives below which the earlier strategy is preferred


def _trust_region_step(Js: np.ndarray, r: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Levenberg-Marquardt step p minimizing |r + Js p| subject to |p| <= radius, for each row of a
    batch (Js (k, n, C), r (k, n), radius (k,)); returns p (k, C) and the multiplier lambda (k,).
    Solved on the singular value decomposition of Js by Hebden's Newton iteration on 1/|p(lambda)|;
    where |p| <= radius already at lambda = 0, the minimum-norm Gauss-Newton step."""
    U, sv, Vt = np.linalg.svd(Js, full_matrices=False)
    b = np.einsum("knj,kn->kj", U, r)  # p(lambda) = -V diag(s / (s^2 + lambda)) b
    s_max = np.maximum(sv[:, :1], 1e-300)
    determined = sv > np.finfo(float).eps * Js.shape[1] * s_max
    e = sv * sv
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        coef0 = np.where(determined, b / np.where(determined, sv, 1.0), 0.0)
        norm0 = np.linalg.norm(coef0, axis=1)
        lam = np.where(norm0 > radius, 1e-300, 0.0)
        active = lam > 0
        for _ in range(SECULAR_ITER):
            if not active.any():
                break
            denom = e + lam[:, None]
            norm = np.sqrt(np.sum(e * b**2 / denom**2, axis=1))
            q = np.sum(e * b**2 / denom**3, axis=1)
            step = (norm / radius - 1.0) * norm**2 / np.maximum(q, 1e-300)
            step = np.where(active & np.isfinite(step), step, 0.0)
            lam = lam + np.maximum(step, 0.0)
            active = active & (np.abs(norm - radius) > 0.1 * radius)
        coef = np.where(lam[:, None] > 0, sv * b / (e + lam[:, None]), coef0)
    p = -np.einsum("kjc,kj->kc", Vt, coef)
    return p, lam


def _trust_region_gauss_newton(evaluate, jacobian, theta: np.ndarray, coords: np.ndarray, lower: np.ndarray,
                               upper: np.ndarray, max_iter: int = TR_MAX_ITER) -> Solution:
    """Minimize |r|^2 over theta[:, coords] for each row of `theta`, by Gauss-Newton steps in a trust
    region with MINPACK's scaling and radius updates. `evaluate(theta, rows)` returns the theta to keep
    (it may fill in other parameters) and the residuals r (k, n); `jacobian(theta, rows)` returns
    d r / d theta[:, coords] (k, n, C). Bounds are kept by projection, holding a parameter on a bound
    whose gradient points outward. Returns the sums of squares as `value`."""
    K = len(theta)
    theta, r = evaluate(theta, np.arange(K))
    S = np.sum(r * r, axis=1)
    S = np.where(np.isfinite(S) & np.all(np.isfinite(theta), axis=1), S, np.inf)
    converged = np.zeros(K, dtype=bool)
    iterations = np.zeros(K, dtype=int)
    done = ~np.isfinite(S) | (S == 0)
    converged |= S == 0
    C = coords.size
    if C == 0:
        return Solution(theta, S, np.isfinite(S), iterations)
    lo, hi = lower[coords], upper[coords]
    J_all = np.zeros((K, r.shape[1], C))
    fresh = np.ones(K, dtype=bool)
    d_max = np.zeros((K, C))
    radius = np.full(K, np.nan)
    for _ in range(max_iter):
        idx = np.flatnonzero(~done)
        if idx.size == 0:
            break
        need = idx[fresh[idx]]
        if need.size:
            with np.errstate(all="ignore"):
                J_all[need] = jacobian(theta[need], need)
            fresh[need] = False
        J, res, x = J_all[idx], r[idx], theta[idx][:, coords]
        broken = ~np.all(np.isfinite(J), axis=(1, 2))
        if broken.any():
            done[idx[broken]] = True
            keep = ~broken
            idx, J, res, x = idx[keep], J[keep], res[keep], x[keep]
            if idx.size == 0:
                break
        g = np.einsum("knc,kn->kc", J, res)
        tiny = 1e-12 * (1.0 + np.abs(x))
        blocked = ((x <= lo + tiny) & (g > 0)) | ((x >= hi - tiny) & (g < 0))
        J = np.where(blocked[:, None, :], 0.0, J)
        d_max[idx] = np.maximum(d_max[idx], np.sum(J * J, axis=1))
        D = np.sqrt(np.where(d_max[idx] > 0, d_max[idx], 1.0))
        Js = J / D[:, None, :]
        first = np.isnan(radius[idx])
        xnorm = np.linalg.norm(D * x, axis=1)
        radius[idx] = np.where(first, np.where(xnorm > 0, TR_FACTOR * xnorm, TR_FACTOR), radius[idx])
        p, lam = _trust_region_step(Js, res, radius[idx])
        x_new = np.clip(x + p / D, lo, hi)
        p_eff = (x_new - x) * D
        trial = theta[idx].copy()
        trial[:, coords] = x_new
        with np.errstate(all="ignore"):
            trial, r_new = evaluate(trial, idx)
            S_new = np.sum(r_new * r_new, axis=1)
        S_new = np.where(np.isfinite(S_new) & np.all(np.isfinite(trial), axis=1), S_new, np.inf)
        S_old = S[idx]
        Jp = np.einsum("knc,kc->kn", Js, p_eff)
        predicted = -(2 * np.einsum("kn,kn->k", res, Jp) + np.einsum("kn,kn->k", Jp, Jp))
        actual = S_old - S_new
        pnorm = np.linalg.norm(p_eff, axis=1)
        # MINPACK's radius update (lmder), in sums of squares: a failed step shrinks the radius by a
        # factor from 0.1 to 0.5 that the directional derivative and the actual change suggest
        scale_S = np.maximum(S_old, 1e-300)
        worse = ~np.isfinite(S_new) | (S_new >= 100 * S_old)
        act_rel = np.where(worse, -1.0, actual / scale_S)
        pred_rel = predicted / scale_S
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            rho = np.where(pred_rel != 0, act_rel / np.where(pred_rel != 0, pred_rel, 1.0), 0.0)
            dirder = -(np.einsum("kn,kn->k", Jp, Jp) + lam * pnorm**2) / scale_S
            temp = np.where(act_rel >= 0, 0.5, 0.5 * dirder / (dirder + 0.5 * act_rel))
        temp = np.where(worse | ~(temp >= 0.1), 0.1, temp)
        rad = np.where(first, np.minimum(radius[idx], pnorm), radius[idx])
        rad = np.where(rho <= 0.25, temp * np.minimum(rad, pnorm / 0.1),
                       np.where((rho >= 0.75) | (lam == 0), 2 * pnorm, rad))
        radius[idx] = rad
        accept = (rho >= TR_ACCEPT) & np.isfinite(S_new)
        theta[idx[accept]] = trial[accept]
        r[idx[accept]] = r_new[accept]
        S[idx[accept]] = S_new[accept]
        fresh[idx[accept]] = True
        iterations[idx] += 1
        # The predicted reduction is computed without cancellation, the actual one is not: a step
        # counts as negligible when the model promises almost nothing and the change is at rounding level.
        small_f = (np.abs(actual) <= TR_FTOL * scale_S) & (predicted <= TR_PTOL * scale_S) & (rho <= 2)
        small_x = rad <= TR_XTOL * np.maximum(np.linalg.norm(D * theta[idx][:, coords], axis=1), 1e-300)
        col = np.linalg.norm(J, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cosine = np.max(np.where(col > 0, np.abs(g) / (col * np.sqrt(scale_S)[:, None]), 0.0), axis=1)
        small_g = cosine <= TR_GTOL
        zero = S[idx] == 0
        stop = small_f | small_x | small_g | zero
        converged[idx[stop]] = True
        done[idx[stop]] = True
    theta, r, S = _gauss_newton_refine(evaluate, jacobian, theta, r, S, coords, lo, hi, converged)
    return Solution(theta, S, converged, iterations)


def _gauss_newton_refine(evaluate, jacobian, theta, r, S, coords, lo, hi, rows_mask):
    """Full Gauss-Newton steps from converged points, taken while they are small (the model predicts
    a change of the sum of squares at rounding level) and it does not rise beyond that. Near an optimum
    the sum of squares is flat to rounding long before the parameters are exact, but the Gauss-Newton
    step, computed from the gradient, is not: these steps bring weakly determined parameters to full
    precision."""
    active = rows_mask & np.isfinite(S)
    for _ in range(REFINE_STEPS):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        with np.errstate(all="ignore"):
            J = jacobian(theta[idx], idx)
        ok = np.all(np.isfinite(J), axis=(1, 2))
        D = np.sqrt(np.sum(J * J, axis=1))
        D = np.where(D > 0, D, 1.0)
        p, _ = _trust_region_step(np.where(ok[:, None, None], J, 0.0) / D[:, None, :], r[idx],
                                  np.full(idx.size, np.inf))
        x = theta[idx][:, coords]
        x_new = np.clip(x + p / D, lo, hi)
        trial = theta[idx].copy()
        trial[:, coords] = x_new
        with np.errstate(all="ignore"):
            trial, r_new = evaluate(trial, idx)
            S_new = np.sum(r_new * r_new, axis=1)
        Jp = np.einsum("knc,kc->kn", J, (x_new - x))
        near = np.einsum("kn,kn->k", Jp, Jp) <= REFINE_RISE * S[idx]
        accept = ok & near & np.isfinite(S_new) & (S_new <= S[idx] * (1 + REFINE_RISE)) & \
            np.all(np.isfinite(trial), axis=1)
        theta[idx[accept]] = trial[accept]
        r[idx[accept]] = r_new[accept]
        S[idx[accept]] = S_new[accept]
        tiny = np.linalg.norm(p, axis=1) <= REFINE_XTOL * np.maximum(np.linalg.norm(D * x, axis=1), 1e-300)
        active[idx[~accept | tiny]] = False
    return theta, r, S


def trust_region_least_squares(problem: Problem, theta0: np.ndarray, weights: np.ndarray | None = None,
                               max_iter: int = TR_MAX_ITER) -> Solution:
    """Gauss-Newton trust-region search over all free parameters on the objective's residuals (log
    residuals for `huber`, whose exact optimum the Newton-LM polish then finds). `value` is the true
    objective."""
    theta0 = np.clip(problem.with_fixed(np.atleast_2d(np.asarray(theta0, dtype=float))),
                     problem.lower, problem.upper)
    K = len(theta0)
    root_w = None if weights is None else np.sqrt(np.broadcast_to(np.asarray(weights, float), (K, problem.n)))
    coords = np.flatnonzero(problem.free)

    def evaluate(theta, rows):
        r = problem.residuals(theta)
        return theta, (r if root_w is None else r * root_w[rows])

    def jacobian(theta, rows):
        _, J = problem.residuals_and_jacobian(theta)
        J = J[:, :, coords]
        return J if root_w is None else J * root_w[rows][:, :, None]

    sol = _trust_region_gauss_newton(evaluate, jacobian, theta0, coords, problem.lower, problem.upper,
                                     max_iter)
    w_all = None if weights is None else np.broadcast_to(np.asarray(weights, float), (K, problem.n))
    return Solution(sol.theta, problem.value(sol.theta, w_all), sol.converged, sol.iterations)


def varpro_least_squares(problem: Problem, theta0: np.ndarray, weights: np.ndarray | None = None,
                         max_iter: int = TR_MAX_ITER) -> Solution:
    """Gauss-Newton trust-region search over the free nonlinear parameters only, the linear ones solved
    exactly at every step by `solve_linear` (variable projection, Kaufman's Jacobian); the start's values
    of the linear parameters are not used. The reduced sum of squares is in `solve_linear`'s metric:
    y - f for `ls`, the relative error (y - f) / y for the log objectives. `value` is the true
    objective."""
    form = problem.form
    theta0 = np.clip(problem.with_fixed(np.atleast_2d(np.asarray(theta0, dtype=float))),
                     problem.lower, problem.upper)
    K = len(theta0)
    w_all = None if weights is None else np.broadcast_to(np.asarray(weights, float), (K, problem.n))
    row_w = np.broadcast_to(1.0 / problem.y if problem.objective.log_space else np.ones(problem.n),
                            (K, problem.n))
    if w_all is not None:
        row_w = row_w * np.sqrt(w_all)
    lin = np.array([form.index(p) for p in form.linear], dtype=int)
    free_lin = problem.free[lin] if lin.size else np.zeros(0, dtype=bool)
    coords = np.array([i for i, p in enumerate(form.params) if problem.free[i] and p not in form.linear],
                      dtype=int)

    def evaluate(theta, rows):
        with np.errstate(all="ignore"):
            theta = solve_linear(problem, theta, None if w_all is None else w_all[rows])
            r = row_w[rows] * (problem.y[None, :] - form.predict(theta, problem.X))
        return theta, r

    def jacobian(theta, rows):
        w = row_w[rows][:, :, None]
        J = -form.jacobian(theta, problem.X)[:, :, coords] * w
        if free_lin.any():
            B, _ = form.design(theta, problem.X)
            cols = lin[free_lin]
            inside = (theta[:, cols] > problem.lower[cols]) | ~np.isfinite(problem.lower[cols])
            Bw = B[:, :, free_lin] * w * inside[:, None, :]
            ok = np.all(np.isfinite(Bw), axis=(1, 2))
            Bw = np.where(ok[:, None, None], Bw, 0.0)
            # Kaufman: only the part of d f / d alpha that the linear columns cannot absorb
            J = J - Bw @ (np.linalg.pinv(Bw) @ J)
        return J

    sol = _trust_region_gauss_newton(evaluate, jacobian, theta0, coords, problem.lower, problem.upper,
                                     max_iter)
    return Solution(sol.theta, problem.value(sol.theta, w_all), sol.converged, sol.iterations)


def robust_minimize(problem: Problem, theta0: np.ndarray, weights: np.ndarray | None = None,
                    polish_start: bool = True) -> Solution:
    """From each row of `theta0` (K, P): a full-space trust-region search and a variable-projection one,
    each taken as it ends and polished by `levenberg_marquardt`, and the start itself polished (unless
    `polish_start` is False: the caller has done that); the lowest objective is kept (the earliest of
    these on a tie, so an exact optimum is not traded for rounding noise)."""
    theta0 = problem.with_fixed(np.atleast_2d(np.asarray(theta0, dtype=float)))
    K = len(theta0)
    w = None if weights is None else np.broadcast_to(np.asarray(weights, float), (K, problem.n))
    searched = [trust_region_least_squares(problem, theta0, w)]
    if problem.form.linear:
        searched.append(varpro_least_squares(problem, theta0, w))
    starts = [np.where(np.all(np.isfinite(s.theta), axis=1)[:, None], s.theta, theta0) for s in searched]
    if polish_start:
        starts.append(theta0)
    polished = _polish(problem, np.concatenate(starts),
                       None if w is None else np.concatenate([w] * len(starts)))
    theta = np.concatenate([s.theta for s in searched] + [polished.theta])
    value = np.concatenate([s.value for s in searched] + [polished.value])
    converged = np.concatenate([s.converged for s in searched] + [polished.converged])
    n_options = len(theta) // K
    values = np.where(np.isfinite(value), value, np.inf).reshape(n_options, K)
    best = np.min(values, axis=0)
    chosen = np.argmax(values <= best + TIE * np.abs(best), axis=0)
    pick = chosen * K + np.arange(K)
    iterations = sum(s.iterations for s in searched) + polished.iterations.reshape(len(starts), K).sum(axis=0)
    return Solution(theta[pick], value[pick], converged[pick], iterations)


def _polish(problem: Problem, theta0: np.ndarray, weights: np.ndarray | None) -> Solution:
    """`levenberg_marquardt` from each row; where it fails on a row (a Hessian that is not finite far
    out in parameter space makes numpy's eigensolver raise), that row is kept as it was, not converged."""
    try:
        return levenberg_marquardt(problem, theta0, weights)
    except np.linalg.LinAlgError:
        pass
    rows = []
    for k in range(len(theta0)):
        w = None if weights is None else weights[k:k + 1]
        try:
            rows.append(levenberg_marquardt(problem, theta0[k:k + 1], w))
        except np.linalg.LinAlgError:
            theta = problem.with_fixed(theta0[k:k + 1])
            rows.append(Solution(theta, problem.value(theta, w), np.zeros(1, dtype=bool),
                                 np.zeros(1, dtype=int)))
    return Solution(*(np.concatenate([getattr(r, f) for r in rows])
                      for f in ("theta", "value", "converged", "iterations")))
