"""Robust minimization from far starts: Gauss-Newton trust-region searches in the manner of MINPACK,
over all free parameters and by variable projection, each polished by the Newton-LM of `solve`."""

from __future__ import annotations

import numpy as np

from .linear import solve_linear
from .solve import Problem, Solution, levenberg_marquardt

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
