"""The numerical engine: a batched, bounded Newton-Levenberg-Marquardt on the exact Hessian.

Everything is vectorized over a leading batch axis K (starts of one fit, or bootstrap resamples), and
only numpy is used, so that a fit starts in a fraction of a second (scipy.optimize alone takes 0.4 s to
import). `Problem` is what is minimized (a form, its inputs and response, an objective, fixed values
and bounds); `BatchSolver` minimizes a batch of problems that share everything but their weights or
responses, summing over blocks of rows so that memory stays bounded; `levenberg_marquardt` is the
one-problem-many-starts entry point.

Around it: `linear` solves the linear parameters exactly (bounded linear least squares), `search`
finds the basin (the variable-projection grid over the exponents, coarse to fine on big tables) and
polishes the best points (`global_minimize`), and `robust` takes over from starts far from the
optimum (MINPACK-style trust regions, variable projection).

Convergence is judged relative to the objective itself (predicted and actual relative decrease), so a
Huber objective of 1e-3 is converged as tightly as a sum of squares of 1e2.
"""

from __future__ import annotations

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
# Blocks of at least this many rows take the power-sum kernel (`_power_sum_derivatives`); in shorter
# blocks (a small table solved for a thousand resamples at once) its batched products of tiny matrices
# cost more than the Jacobian path. Both give the same numbers to rounding.
KERNEL_MIN_ROWS = 256
# The fixed cost of a row block (its numpy calls) in rows' worth of work per problem: what decides
# between plain blocks and blocks cut at the pieces of a group bootstrap (`_weighted_blocks`).
BLOCK_COST_ROWS = 6000
# Those blocks are whole pieces up to this many entries (problems x rows x parameters): cut smaller, a
# block of a group resample's pieces has few problems and too many blocks (measured on GPT-3's
# curves: 8 whole runs 16 ms a step for 96 resamples, the same cut in 21 blocks 22 ms).
PIECE_BLOCK_FLOATS = 4 * ROW_BLOCK_FLOATS
# A solve that stopped converged only if the undamped Newton step would lower the objective by less than
# this fraction of it.
STATIONARY_RTOL = 1e-9
MIN_SCALE = 1e-10  # least scale of a parameter, relative to the largest, in the solver's step
CENTERING_STEP = 1e-5  # central-difference step for the centering gradient


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

    def __init__(self, problem: Problem, theta_hat: np.ndarray, center: bool = True,
                 pieces: np.ndarray | None = None) -> None:
        """`theta_hat`: the centre of the change of variables, one vector for every row of a solve, or
        one per row (K, P) for solves of exactly K rows (see `Centering`). `pieces`: the first row of
        each run of consecutive rows over which every weights array given to `solve` is constant per
        problem (the groups of a group bootstrap, run by run), or None; see `_piece_blocks`."""
        self.problem = problem
        self.centering = Centering(problem, theta_hat) if center else None
        self._blocks: dict[int, list] = {}
        self._pieces: dict[int, tuple] = {}
        self.pieces = None if pieces is None else np.asarray(pieces, dtype=np.intp)
        self._piece_rows = None if pieces is None else np.diff(np.append(self.pieces, problem.n))
        self._ty = problem.objective.transform(problem.y)  # the response in the objective's space

    def _to_original(self, centered: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        return centered if self.centering is None else self.centering.to_original(centered, rows)

    def _objective(self, centered: np.ndarray, y: np.ndarray | None, w: np.ndarray | None,
                   idx: np.ndarray | None = None) -> np.ndarray:
        """The objective (k,) at `centered` (k, P), with responses `y` and weights `w` (k, n) of those
        problems (y None: the problem's response, w None: weights 1), summed over row blocks; `idx`
        says which rows of the batch they are (None: all of them; see `Centering`)."""
        pr = self.problem
        theta = self._to_original(centered, idx)
        spec = pr.form.power_sum()
        S = np.zeros(len(centered))
        with np.errstate(all="ignore"):
            for rows, X, part, scale, wb in self._weighted_blocks(len(centered), y, w):
                th = theta[part]
                f = (pr.form.predict(th, X) if spec is None
                     else _power_sum_columns(spec, th, X, derivatives=False)[0])
                value = pr.objective.value(pr.objective.residuals_from(_rows(y, rows, self._ty), f), wb)
                S[part] += value if scale is None else scale * value
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
        # the pieces' promise, checked once per solve where they may be used (with fewer problems
        # left, later in the solve, they pay less, never more)
        if w_all is not None and y is None and self._pieces_may_pay(K):
            if not np.array_equal(w_all, np.repeat(w_all[:, self.pieces], self._piece_rows, axis=1)):
                raise ValueError("the weights vary within a piece of rows given to the solver")
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
        # the derivatives at each problem's current point: a rejected step leaves the point where it
        # was, and its next step (more damped) reuses them (38% of the steps on GPT-3's curves)
        known = np.zeros(K, dtype=bool)
        g_all, H_all, A_all = np.empty((K, P)), np.empty((K, P, P)), np.empty((K, P))
        # non-finite values are handled explicitly (rows marked bad, steps rejected): no warnings
        with np.errstate(all="ignore"):
            idx = None
            for _ in range(max_iter):
                active = np.flatnonzero(~done)
                if active.size == 0:
                    break
                if idx is None or active.size != idx.size:  # problems only ever leave the active set
                    # their responses and weights, gathered once per change rather than at every step
                    idx = active
                    y_act = None if y is None else y if idx.size == K else y[idx]
                    w_act = None if w_all is None else w_all if idx.size == K else w_all[idx]
                xi = x[idx]
                stale = np.flatnonzero(~known[idx])
                if stale.size:
                    rows = idx[stale]
                    part = slice(None) if stale.size == idx.size else stale
                    y_part = None if y_act is None else y_act[part]
                    w_part = None if w_act is None else w_act[part]
                    g_all[rows], H_all[rows], A_all[rows] = self._derivatives(x[rows], y_part, w_part, rows)
                    known[rows] = True
                g, H, A_diag = g_all[idx], H_all[idx], A_all[idx]
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
                S_new = self._objective(new, y_act, w_act, idx)
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
                known[moved] = False
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
        (k, P), with the responses `y` and weights `w` of those problems (as in `_objective`).

        Residual Jacobians are never formed: for log residuals J_r = -J_f / f, so every J_r' C J_r is
        J_f' (C / f^2) J_f, one weighted product of the form's Jacobian. The sums over rows are taken a
        block of rows at a time (`_weighted_blocks`), so no array spans every row of every problem."""
        theta = self._to_original(x, idx)
        K, P = x.shape
        g, H, scaling = np.zeros((K, P)), np.zeros((K, P, P)), np.zeros((K, P, P))
        for rows, X, part, scale, wb in self._weighted_blocks(K, y, w):
            gb, Hb, sb = self._block_derivatives(theta[part], _rows(y, rows, self._ty), wb, X)
            if scale is not None:
                gb, Hb, sb = scale[:, None] * gb, scale[:, None, None] * Hb, scale[:, None, None] * sb
            g[part] += gb
            H[part] += Hb
            scaling[part] += sb
        with np.errstate(all="ignore"):
            if self.centering is not None and self.centering.active:
                g, (H, scaling) = self.centering.transform(x, theta, g, [H, scaling], idx)
        return g, H, np.einsum("kii->ki", scaling)

    def _row_blocks(self, K: int) -> list[tuple[slice, Mapping[str, np.ndarray]]]:
        """Row blocks of at most ROW_BLOCK_FLOATS Jacobian entries for K problems, with their inputs.
        Small blocks keep the temporaries of each step in the processor's cache (and out of the
        operating system's page allocator), which made the solver 2-3x faster on big tables. A form
        with the power-sum kernel forms no Jacobian (its temporaries are a few (K, rows) arrays), and
        its blocks keep the KERNEL_MIN_ROWS the kernel needs: for 256 resamples the budget alone gives
        146 rows, and the Jacobian path there took twice the kernel's time. (A smaller table never
        reaches the kernel and keeps small blocks: the paper's 203 rows, 1,055 resamples at once.)"""
        n = self.problem.n
        size = min(n, max(self._least_rows(), ROW_BLOCK_FLOATS // max(1, K * len(self.problem.form.params))))
        cached = self._blocks.get(size)
        if cached is None:
            cached = self._blocks[size] = [(slice(a, a + size), self._block_inputs(a, a + size))
                                           for a in range(0, n, size)]
        return cached

    def _block_inputs(self, start: int, stop: int) -> Inputs:
        """The inputs of rows start .. stop - 1, as a block's own `Inputs`."""
        return Inputs({k: np.asarray(v)[start:stop] for k, v in self.problem.X.items()})

    def _least_rows(self) -> int:
        """The fewest rows a block is cut to (see `_row_blocks`)."""
        kernel = self.problem.form.power_sum() is not None and self.problem.n >= KERNEL_MIN_ROWS
        return KERNEL_MIN_ROWS if kernel else MIN_BLOCK_ROWS

    def _weighted_blocks(self, K: int, y: np.ndarray | None, w: np.ndarray | None):
        """The row blocks of a step for K problems with responses `y` and weights `w`, as (rows, inputs,
        part, scale, weights): the block is worked out for the problems `part` (an index or every one)
        with its `weights` (or None), and its sums multiplied by `scale` (or not). Plain blocks
        (`_row_blocks`) take every problem and the block's own weights. With `pieces` and weights (and
        the problem's response), blocks end where pieces do, and each is worked out only for the
        problems that weigh it, without weights, its sums then multiplied by each problem's weight
        there: a group resample of 8 runs leaves about a third of them out, and those rows cost
        nothing. Whichever costs less, counting BLOCK_COST_ROWS rows for each block's fixed cost."""
        plain = [(rows, X, slice(None), None, _rows(w, rows)) for rows, X in self._row_blocks(K)]
        if w is None or y is not None or not self._pieces_may_pay(K):
            return plain
        blocks, first, length = self._piece_blocks(K)
        c = w[:, first]  # (K, blocks): each problem's weight in each block
        weighs = c != 0
        counts = weighs.sum(axis=0)
        cost = int(counts.astype(bool).sum()) * BLOCK_COST_ROWS + int(counts @ length)
        if cost >= len(plain) * BLOCK_COST_ROWS + K * self.problem.n:
            return plain
        out = []
        for b in np.flatnonzero(counts):
            rows, X = blocks[b]
            part = slice(None) if counts[b] == K else np.flatnonzero(weighs[:, b])
            out.append((rows, X, part, c[part, b], None))
        return out

    def _pieces_may_pay(self, K: int) -> bool:
        """Whether blocks cut at the pieces can cost less than the plain blocks for K problems: not when
        the pieces' fixed costs alone are more than the plain blocks' whole cost (many short runs, or
        few problems left)."""
        if self.pieces is None:
            return False
        return (len(self.pieces) - len(self._row_blocks(K))) * BLOCK_COST_ROWS < K * self.problem.n

    def _piece_blocks(self, K: int) -> tuple[list[tuple[slice, Mapping[str, np.ndarray]]], np.ndarray,
                                            np.ndarray]:
        """The blocks of `_weighted_blocks` for K problems: every piece, split evenly into blocks of at
        most PIECE_BLOCK_FLOATS entries where it is longer; with the first row and the length of each."""
        n = self.problem.n
        size = max(self._least_rows(), PIECE_BLOCK_FLOATS // max(1, K * len(self.problem.form.params)))
        size = min(size, int(self._piece_rows.max()))  # one key for all the sizes that split nothing
        cached = self._pieces.get(size)
        if cached is None:
            cuts = np.concatenate([np.linspace(a, a + m, -(-m // size) + 1).round().astype(np.intp)[:-1]
                                   for a, m in zip(self.pieces, self._piece_rows, strict=True)]
                                  + [np.array([n])])
            blocks = [(slice(a, b), self._block_inputs(a, b))
                      for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
            cached = self._pieces[size] = (blocks, cuts[:-1], np.diff(cuts))
        return cached

    def _block_derivatives(self, theta, y, w, X):
        """Gradient, Hessian and Gauss-Newton matrix (for scaling) of the rows of one block, in the
        original parameters; `y` and `w` are the block's responses and weights."""
        pr = self.problem
        obj, form = pr.objective, pr.form
        spec = form.power_sum()
        if spec is not None and len(X[spec[1][0][2]]) >= KERNEL_MIN_ROWS:
            with np.errstate(all="ignore"):  # non-finite rows are the caller's to handle
                return _power_sum_derivatives(obj, spec, theta, y, w, X, len(pr.form.params))
        parts = {}

        def second_order_weights(f):
            parts["weights"] = _row_weights(obj, obj.residuals_from(y, f), f, w)
            return parts["weights"][0]

        with np.errstate(all="ignore"):
            _, Jf, second = form.predict_derivatives(theta, X, second_order_weights)
            a, w_hess, w_scale = parts["weights"]
            g = np.einsum("knp,kn->kp", Jf, a)
            gn = _weighted_gram(Jf, w_hess)
            H = gn + second
            scaling = gn if w_scale is None else _weighted_gram(Jf, w_scale)
        return g, H, scaling


def _row_weights(obj: Objective, r: np.ndarray, f: np.ndarray, w: np.ndarray | None):
    """The per-row weights of one block's derivatives, from its residuals `r`, predictions `f` and
    weights `w`: `a`, with gradient g = sum a J_f (and the weight of the second derivatives of f); the
    Gauss-Newton weight of the Hessian; and that of the scaling matrix (None: the same). Exact for
    Huber too: rho'' is 1 inside delta and 0 outside, rho' = psi. For log residuals J_r = -J_f / f and
    d2 r = -d2 f / f + J_r J_r', whose outer product joins the Gauss-Newton term."""
    if obj.least_squares:
        curv = 1.0 if w is None else w
        v = r if w is None else r * w
    else:
        curv = (np.abs(r) <= obj.delta).astype(float)
        v = np.clip(r, -obj.delta, obj.delta)
        if w is not None:
            curv, v = curv * w, v * w
    if not obj.log_space:
        return -v, np.broadcast_to(curv, r.shape), None
    # in place where the arrays are this function's own: these are the solver's widest temporaries
    inv = np.reciprocal(f)
    a = np.multiply(v, inv)
    np.negative(a, out=a)
    w_hess = np.add(curv, v, out=None if v is r else v)
    w_hess *= inv
    w_hess *= inv
    w_scale = None
    if not obj.least_squares:  # IRLS weights: positive, unlike the exact Huber curvature
        w_scale = obj.irls_weights(r) if w is None else obj.irls_weights(r) * w
        w_scale *= inv
        w_scale *= inv
    return a, w_hess, w_scale


def _power_sum_derivatives(obj: Objective, spec, theta: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                           X: Mapping[str, np.ndarray], P: int):
    """`BatchSolver._block_derivatives` for a form f = L + sum_t c_t x_t^-a_t (`Form.power_sum`), with
    no Jacobian formed. Every column of the Jacobian is a multiple of one of the basis rows
    b = (p_1, q_1, ..., p_T, q_T, 1), with p_t = x_t^-a_t and q_t = p_t log x_t (df/dc_t = p_t,
    df/da_t = -c_t q_t, df/dL = 1), so each weighted Gram matrix is a batched product of the basis
    with itself, scaled by (1, -c_t) afterwards, and the second derivatives (d2f/dc_t da_t = -q_t,
    d2f/da_t^2 = c_t q_t log x_t) reuse the same rows.

    A term whose input is constant over runs of consecutive rows (`Inputs.segments`: a width, a depth
    or a parameter count in a checkpoint table, run by run) has basis rows constant over each run, as
    has the constant: those are kept per run, and their products with anything are products with the
    per-run sums of the weighted per-row quantities (`np.add.reduceat`). Only the other terms (the
    tokens) are worked out row by row. It gives what the general path gives, to rounding, at a
    fraction of the memory traffic."""
    i_const, terms = spec
    K = theta.shape[0]
    f, Q, R, starts, per_run, per_row = _power_sum_columns(spec, theta, X, derivatives=True)
    # the parameter each basis row belongs to, and its factor: per-run rows, the constant, per-row rows
    ones = np.ones(K)
    columns = [c for ic, ia, _ in per_run for c in ((ic, ones), (ia, -theta[:, ic]))]
    columns += [] if i_const is None else [(i_const, ones)]
    columns += [c for ic, ia, _ in per_row for c in ((ic, ones), (ia, -theta[:, ic]))]
    index = [i for i, _ in columns]
    factor = np.stack([v for _, v in columns], axis=1)
    run_logs = [input_log(X, var)[starts] for _, _, var in per_run]
    row_logs = [input_log(X, var) for _, _, var in per_row]
    a, w_hess, w_scale = _row_weights(obj, obj.residuals_from(y, f), f, w)
    E = Q.shape[1]
    R_t = np.swapaxes(R, 1, 2)

    def run_sums(v: np.ndarray) -> np.ndarray:
        return np.add.reduceat(v, starts, axis=-1)

    def gram(weight: np.ndarray) -> np.ndarray:
        weighted = R * weight[:, None, :]
        G = np.empty((K, E + R.shape[1], E + R.shape[1]))
        G[:, :E, :E] = (Q * run_sums(weight)[:, None, :]) @ np.swapaxes(Q, 1, 2)
        G[:, :E, E:] = Q @ np.swapaxes(run_sums(weighted), 1, 2)
        G[:, E:, :E] = np.swapaxes(G[:, :E, E:], 1, 2)
        G[:, E:, E:] = weighted @ R_t
        return G

    a_run = run_sums(a)
    g_basis = np.concatenate([(Q @ a_run[:, :, None])[:, :, 0], (R @ a[:, :, None])[:, :, 0]], axis=1)
    sel = np.ix_(np.arange(K), index, index)
    outer = factor[:, :, None] * factor[:, None, :]
    g = np.zeros((K, P))
    g[:, index] = factor * g_basis
    scaling = np.zeros((K, P, P))
    gram_hess = gram(w_hess)
    scaling[sel] = outer * (gram_hess if w_scale is None else gram(w_scale))
    H = scaling.copy() if w_scale is None else np.zeros((K, P, P))
    if w_scale is not None:
        H[sel] = outer * gram_hess
    # second derivatives: the q column of each term is at 2j + 1 of its part of the basis
    for j, (ic, ia, _) in enumerate(per_run):
        cross = -g_basis[:, 2 * j + 1]
        H[:, ic, ia] += cross
        H[:, ia, ic] += cross
        H[:, ia, ia] += theta[:, ic] * np.einsum("ks,ks->k", a_run, Q[:, 2 * j + 1] * run_logs[j])
    for j, (ic, ia, _) in enumerate(per_row):
        cross = -g_basis[:, E + 2 * j + 1]
        H[:, ic, ia] += cross
        H[:, ia, ic] += cross
        H[:, ia, ia] += theta[:, ic] * np.einsum("kn,kn->k", a, R[:, 2 * j + 1] * row_logs[j])
    return g, H, scaling


def _power_sum_columns(spec, theta: np.ndarray, X: Mapping[str, np.ndarray], derivatives: bool):
    """f = L + sum_t c_t x_t^-a_t (`Form.power_sum`) at `theta` (K, P), and the basis rows of
    `_power_sum_derivatives`: per run of `Inputs.segments` (K, E, runs) for the terms whose input is
    constant over each run, then the constant; per row (K, F, n) for the other terms. Each term
    contributes p_t and, with `derivatives`, q_t = p_t log x_t. Also returns the first row of each run
    and the terms of each kind."""
    i_const, terms = spec
    K = theta.shape[0]
    n = len(X[terms[0][2]])
    segments = getattr(X, "segments", None)
    starts, slow = segments if segments is not None else (np.zeros(1, dtype=np.intp), ())
    per_run = [t for t in terms if t[2] in slow]
    per_row = [t for t in terms if t[2] not in slow]
    width = 2 if derivatives else 1
    Q = np.empty((K, width * len(per_run) + (i_const is not None), len(starts)))
    R = np.empty((K, width * len(per_row), n))
    f_run = (np.zeros((K, len(starts))) if i_const is None
             else np.repeat(theta[:, i_const, None], len(starts), axis=1))
    for j, (ic, ia, var) in enumerate(per_run):
        logx = input_log(X, var)[starts]
        p = np.exp(np.multiply(-theta[:, ia, None], logx[None, :], out=Q[:, width * j]), out=Q[:, width * j])
        if derivatives:
            np.multiply(p, logx, out=Q[:, width * j + 1])
        f_run += theta[:, ic, None] * p
    if i_const is not None:
        Q[:, -1] = 1.0
    f = np.repeat(f_run, np.diff(np.append(starts, n)), axis=1)
    for j, (ic, ia, var) in enumerate(per_row):
        p = _negative_power(X, var, theta[:, ia], out=R[:, width * j])
        if derivatives:
            np.multiply(p, input_log(X, var), out=R[:, width * j + 1])
        f += theta[:, ic, None] * p
    return f, Q, R, starts, per_run, per_row


def _rows(a: np.ndarray | None, rows: slice, default: np.ndarray | None = None):
    """The block `rows` of a (k, n) array; for None, `default`'s block as one row (broadcast over the
    problems), or None."""
    if a is None:
        return None if default is None else default[None, rows]
    return a[:, rows]


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
