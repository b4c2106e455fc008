"""Profile-likelihood intervals: for each parameter, the values at which the objective, minimized over
all the other parameters, rises to the threshold of an F test (Venzon & Moolgavkar 1988; Bates &
Watts 1988, §6.1; what lmfit's `conf_interval` and MINUIT's MINOS compute).

For least squares with the noise level estimated from the fit, a value v of parameter j is inside the
interval when

    S_j(v) <= S_hat * (1 + F(1, n - p; level) / (n - p)),      F(1, n - p; level) = t(n - p)^2,

S_j(v) being the objective with theta_j = v and the others re-optimized. Unlike the Jacobian interval
theta_hat +- t se, it follows the objective where it is not quadratic: coefficients that trade against
their exponents (c_m, c_l) get intervals that reach further up than down.

All profile points of a parameter are solved at once by the batched Newton-LM (`solve.BatchSolver`),
each row with its own value of the profiled parameter, both ends at once: first at the Jacobian
interval's ends, then secant steps on the signed root sqrt(S_j(v) - S_hat), which is close to linear in
v (extrapolated outward until the threshold is bracketed), each solve warm-started from the last.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import FitError
from .fitting import problem_of
from .linear import solve_linear
from .solve import BatchSolver, Problem

if TYPE_CHECKING:
    from .fitting import FitResult

LEVEL = 0.95
# Batched solves per parameter: the first at the Jacobian interval's ends, then secant or
# extrapolation steps on each side until the objective is at the threshold.
MAX_ROUNDS = 12
# an end is settled (after one secant step) when the objective there is this close to the threshold,
# relative to S* - S_hat
ROOT_RTOL = 1e-2
# profile points are solved to this relative decrease of the objective (a fit: solve.FTOL)
PROFILE_FTOL = 1e-8
# searched in log v, a lower bound 0 is reached at this fraction of the estimate
LOG_FLOOR = 1e-8


@dataclass(frozen=True)
class ProfileInterval:
    """One parameter's profile-likelihood interval. An end that the profile never reaches is the
    parameter's bound (`note` says so) or, with no bound there, infinite."""

    name: str
    value: float
    lower: float
    upper: float
    note: str = ""

    @property
    def interval(self) -> tuple[float, float]:
        return (self.lower, self.upper)


@dataclass(frozen=True)
class ProfileResult:
    """Profile intervals of a fit's free parameters at `level`; `threshold` is S* above.

    >>> from scaling_cli import fit, load_runs
    >>> profile = profile_intervals(fit(load_runs("data/example_runs.csv")), names=["alpha_D"])
    >>> interval = profile["alpha_D"]
    >>> round(interval.lower, 3), round(interval.upper, 3), profile.level
    (0.293, 0.31, 0.95)
    """

    intervals: tuple[ProfileInterval, ...]
    level: float
    threshold: float
    objective_value: float
    seconds: float

    def __getitem__(self, name: str) -> ProfileInterval:
        for interval in self.intervals:
            if interval.name == name:
                return interval
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"level": self.level, "threshold": self.threshold, "seconds": self.seconds,
                "params": {i.name: {"value": i.value, "ci": [i.lower, i.upper], "note": i.note}
                           for i in self.intervals}}


@dataclass(frozen=True)
class _Profiled(Problem):
    """A problem with one more parameter held, at a value of each row's own (the column of theta the
    solver is given): `with_fixed` leaves that column alone."""

    held: int = -1

    def with_fixed(self, theta: np.ndarray) -> np.ndarray:
        theta = np.array(theta, dtype=float, copy=True)
        others = ~self.free
        others[self.held] = False
        theta[..., others] = self.fixed_values[others]
        return theta


def threshold(value: float, n: int, k: int, level: float = LEVEL) -> float:
    """S* = S_hat (1 + F(1, n - k; level) / (n - k)), F(1, dof) being the square of t(dof).

    >>> round(threshold(1.0, n=12, k=2), 4)  # 1 + 2.2281**2 / 10
    1.4965
    """
    from .fitting import t_quantile

    dof = n - k
    if dof < 1:
        raise FitError(f"profile intervals need more rows than free parameters ({n} rows, {k} free)")
    t = t_quantile(0.5 + level / 2, dof)
    return value * (1 + t * t / dof)


def profile_intervals(result: FitResult, level: float = LEVEL, names: Sequence[str] | None = None
                      ) -> ProfileResult:
    """Profile-likelihood intervals at `level` for the free parameters of `result` (or `names`).

    >>> from scaling_cli import fit, load_runs
    >>> profile = profile_intervals(fit(load_runs("data/example_runs.csv")), level=0.68, names=["L0"])
    >>> interval = profile["L0"]
    >>> interval.lower < interval.value < interval.upper
    True
    """
    t0 = time.perf_counter()
    if not 0 < level < 1:
        raise FitError(f"the level of an interval must be between 0 and 1, not {level}")
    problem = problem_of(result)
    theta_hat = np.asarray(result.values, dtype=float)
    S_hat = float(result.objective_value)
    k = int(problem.free.sum())
    S_star = threshold(S_hat, problem.n, k, level)
    wanted = names or [p for i, p in enumerate(result.names) if problem.free[i]]
    intervals = []
    for name in wanted:
        j = result.names.index(name)
        if not problem.free[j]:
            intervals.append(ProfileInterval(name, float(theta_hat[j]), math.nan, math.nan, "fixed"))
            continue
        intervals.append(_profile_one(problem, result, j, theta_hat, S_hat, S_star))
    return ProfileResult(tuple(intervals), level, S_star, S_hat, time.perf_counter() - t0)


def _profile_one(problem: Problem, result: FitResult, j: int, theta_hat: np.ndarray, S_hat: float,
                 S_star: float) -> ProfileInterval:
    """Both ends of parameter j's interval, searched at once (one batched solve per round)."""
    name = result.names[j]
    free = problem.free.copy()
    free[j] = False
    held = _Profiled(problem.form, problem.X, problem.y, problem.objective, free, problem.fixed_values,
                     problem.lower, problem.upper, j)
    lo_j, hi_j, est = float(problem.lower[j]), float(problem.upper[j]), float(theta_hat[j])
    se = float(result.stderr[j])
    # how the others move with theta_j to first order: the regression of theta on theta_j
    cov = result.covariance
    if np.isfinite(se) and se > 0 and np.all(np.isfinite(cov[problem.free][:, j])):
        slope = np.where(problem.free, np.nan_to_num(cov[:, j] / cov[j, j]), 0.0)
    else:
        se = 0.1 * max(abs(est), 1e-3)
        slope = np.zeros(len(theta_hat))
    slope[j] = 1.0
    target = math.sqrt(max(S_star - S_hat, 0.0))
    dof = max(problem.n - int(problem.free.sum()), 1)
    t = target / math.sqrt(S_hat / dof) if S_hat > 0 else 2.0
    # A positive parameter bounded below by 0 (coefficients, exponents, offsets) is searched in log v,
    # where its profile is closer to quadratic (a coefficient's reaches further up than down).
    logged = lo_j >= 0 and est > 0
    to_u = math.log if logged else float
    from_u = math.exp if logged else float
    u_hat = to_u(est)
    bound_u = {-1.0: (to_u(max(lo_j, est * LOG_FLOOR)) if logged else lo_j), 1.0: to_u(hi_j)}
    width_u = t * se / est if logged else t * se

    est_row = theta_hat

    def solve(values: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Profile objective and optimum at each value of theta_j, from the given starts."""
        starts = np.clip(starts, problem.lower, problem.upper)
        starts[:, j] = values
        if problem.form.linear:  # the linear parameters solved exactly for the others (variable projection)
            if name in problem.form.linear:  # solve_linear takes a held linear parameter from the problem
                exact = np.concatenate([solve_linear(dataclasses.replace(
                    held, fixed_values=np.where(np.arange(len(est_row)) == j, v, held.fixed_values)),
                    row[None]) for v, row in zip(values, starts, strict=True)])
            else:
                exact = solve_linear(held, starts)
            starts = np.where(np.all(np.isfinite(exact), axis=1)[:, None], exact, starts)
        sol = BatchSolver(held, starts).solve(starts, ftol=PROFILE_FTOL)
        return np.where(np.isfinite(sol.value), sol.value, np.inf), sol.theta

    state = {}  # side -> in: (u, root, theta) below the threshold; out: above it; end: (value, note)
    guess = {}
    for side in (-1.0, 1.0):
        state[side] = {"in": (u_hat, 0.0, theta_hat.copy()), "out": None, "end": None}
        if est == (lo_j if side < 0 else hi_j):
            state[side]["end"] = (est, "at its bound")
        guess[side] = u_hat + side * width_u  # first: the Jacobian (or delta-method log) interval's ends
    for _ in range(MAX_ROUNDS):
        active = [s for s in (-1.0, 1.0) if state[s]["end"] is None]
        if not active:
            break
        us, values, starts = [], [], []
        for s in active:
            u = guess[s]
            if (u - bound_u[s]) * s >= 0:
                u = bound_u[s]
            u0, _, th0 = state[s]["in"]
            v, v0 = from_u(u), from_u(u0)
            if state[s]["out"] is not None:
                u1, _, th1 = state[s]["out"]
                w = (u - u0) / (u1 - u0) if u1 != u0 else 0.5
                starts.append(th0 + w * (th1 - th0))
            else:
                # the others move with theta_j along the covariance, linearly in u (log v when searched so)
                starts.append(th0 + ((u - u0) * est if logged else v - v0) * slope)
            us.append(u)
            values.append(v)
        S, thetas = solve(np.array(values), np.array(starts))
        roots = np.sqrt(np.clip(S - S_hat, 0.0, None))
        for i, s in enumerate(active):
            st = state[s]
            point = (us[i], float(roots[i]), thetas[i])
            if abs(S[i] - S_star) <= ROOT_RTOL * (S_star - S_hat):
                # close enough for one secant step on the (nearly linear) root to land on the crossing
                other = st["in"] if roots[i] >= target else (st["out"] or st["in"])
                u_o, r_o = (other[0], other[1]) if other[0] != us[i] else (u_hat, 0.0)
                u_end = us[i] + (target - roots[i]) * (us[i] - u_o) / (roots[i] - r_o) \
                    if roots[i] != r_o else us[i]
                st["end"] = (from_u(u_end), "")
                continue
            kept = "in" if roots[i] >= target else "out"
            st["stale"] = st.get("stale", 0) + 1 if st.get("kept") == kept else 0
            st["kept"] = kept
            if roots[i] >= target:
                st["out"] = point
            else:
                st["in"] = point
                if us[i] == bound_u[s]:
                    st["end"] = ((lo_j if s < 0 else hi_j), "reaches its bound")
                    continue
            (u0, r0, _), out = st["in"], st["out"]
            if out is not None:  # regula falsi on the root (Illinois: an end kept twice weighs less)
                u1, r1, _ = out
                d0, d1 = target - r0, r1 - target
                if st["stale"] and kept == "out":
                    d1 /= 2.0 ** st["stale"]
                elif st["stale"] and kept == "in":
                    d0 /= 2.0 ** st["stale"]
                w = d0 / (d0 + d1) if d0 + d1 > 0 else 0.5
                guess[s] = u0 + min(max(w, 0.01), 0.99) * (u1 - u0)
            else:  # the root grows about linearly: aim past the crossing, at most 4 times as far
                reach = target / r0 if r0 > 0 else 4.0
                guess[s] = u_hat + (u0 - u_hat) * min(max(1.05 * reach, 1.2), 4.0)
    ends = {}
    for s in (-1.0, 1.0):
        st = state[s]
        if st["end"] is not None:
            ends[s] = st["end"]
        elif st["out"] is not None:
            (u0, r0, _), (u1, r1, _) = st["in"], st["out"]
            w = (target - r0) / (r1 - r0) if r1 > r0 else 0.5
            ends[s] = (from_u(u0 + min(max(w, 0.0), 1.0) * (u1 - u0)), "")
        else:
            ends[s] = (s * math.inf, "the profile stays below the threshold")
    notes = [f"{'lower' if s < 0 else 'upper'} end {ends[s][1]}" for s in (-1.0, 1.0) if ends[s][1]]
    return ProfileInterval(name, est, float(ends[-1.0][0]), float(ends[1.0][0]), "; ".join(notes))
