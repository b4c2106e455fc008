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
instead of about 40 (on the paper's table). Chunks of resamples go to worker processes with `jobs`.

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
from pathlib import Path
from statistics import NormalDist
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from .design import GROUPS_PER_PARAMETER, Groups, groups_of
from .errors import DataError, FitError, ScalefitWarning, SpecError, option
from .fitting import FitResult, cluster_residuals, fit, interval_for, problem_of, t_quantile
from .forms import Form, get_form
from .io import Runs
from .objectives import Objective
from .search import global_minimize, grid_rows, grid_search
from .solve import BatchSolver, Centering, Problem, Solution

METHODS = ("case", "group", "wild", "residual")
# Wild cluster bootstrap weights: Webb's six-point distribution below this many groups (Rademacher's two
# points give only 2^G distinct resamples), Rademacher from there on.
WEBB_BELOW_GROUPS = 12
WEBB_POINTS = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])
INTERVALS = ("percentile", "bca", "basic", "studentized", "expanded")
DEFAULT_N = 2000
DEFAULT_LEVEL = 0.95
FAILED_WARNING_FRACTION = 0.01
# One chunk of draws holds about this many floats in (resamples, rows, parameters); the chunk size
# depends on the table and the form only, never on `jobs` or n, so that the draws do not either.
CHUNK_FLOATS = 1_500_000
MIN_CHUNK, MAX_CHUNK = 8, 2048
# Resamples are solved in tasks of whole chunks, each task's (resamples, rows) weights or responses
# within TASK_FLOATS (the solver bounds its own temporaries in blocks of rows), and at least MIN_TASKS
# tasks so that every worker has work. Big tasks amortize the solver's per-step cost over many
# resamples: on GPT-3's 8 runs a few resamples take 200+ steps along flat valleys and keep a task going.
TASK_FLOATS = 1_500_000
MIN_TASKS = 8
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
HUGE = 1e300

STATUS = ("ok", "not converged", "no finite fit", "too few rows")
OK, NOT_CONVERGED, NO_FINITE_FIT, TOO_FEW_ROWS = range(4)
FAILED_MESSAGE = ("{failed} of {n} resamples ({pct:.1f}%) failed ({why}); intervals use the {ok} that "
                  "succeeded and may be biased")
PARQUET_NEEDS_PYARROW = "writing Parquet needs pyarrow: pip install 'scaling-cli[parquet]', or use .csv"


# ---------------------------------------------------------------- drawing resamples


@dataclass(frozen=True)
class Resampler:
    """How resample k is drawn. Chunk c (resamples c * chunk_size onwards) uses its own generator,
    `SeedSequence(seed, spawn_key=(c,))`, so draws depend on the seed and the chunk size only.

    `case` draws n rows with replacement (as counts per row), `group` draws the groups with replacement
    (every row of a group gets its group's count), `residual` adds resampled residuals (centered, and
    scaled by sqrt(n / (n - p)) for the degrees of freedom the fit used) to the fitted values in the
    objective's space: y* = f exp(r*) for log objectives, f + r* for `ls`. `wild` (the wild cluster
    bootstrap) keeps every row and multiplies each group's residuals by one random weight (Webb's
    six points below WEBB_BELOW_GROUPS groups, else Rademacher's +-1): y* = f exp(w_g r) or f + w_g r;
    the residuals are the fit's CR2-adjusted ones, which undo the shrinking by the fit's leverage."""

    method: str
    seed: int
    chunk_size: int
    n_rows: int
    groups: np.ndarray | None = None  # (n,) group index of every row, for `group`
    n_groups: int = 0
    fitted: np.ndarray | None = None  # (n,) for `residual`
    residuals: np.ndarray | None = None  # (n,) for `residual`
    log_space: bool = True

    def chunks(self, n: int) -> list[tuple[int, int, int]]:
        """(chunk, first resample, count) covering resamples 0 .. n-1."""
        return [(c, start, min(self.chunk_size, n - start))
                for c, start in enumerate(range(0, n, self.chunk_size))]

    def draw(self, chunk: int, count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Weights (count, n) and responses (count, n) of the first `count` resamples of `chunk`;
        either may be None (weights 1, the observed response)."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(chunk,))))
        n = self.n_rows
        if self.method == "case":
            return _counts(rng.integers(0, n, size=(count, n)), n), None
        if self.method == "group":
            counts = _counts(rng.integers(0, self.n_groups, size=(count, self.n_groups)), self.n_groups)
            return counts[:, self.groups], None
        if self.method == "wild":
            if self.n_groups < WEBB_BELOW_GROUPS:
                w = WEBB_POINTS[rng.integers(0, len(WEBB_POINTS), size=(count, self.n_groups))]
            else:
                w = rng.choice(np.array([-1.0, 1.0]), size=(count, self.n_groups))
            r = w[:, self.groups] * self.residuals
            return None, (self.fitted * np.exp(r) if self.log_space else self.fitted + r)
        r = self.residuals[rng.integers(0, n, size=(count, n))]
        return None, (self.fitted * np.exp(r) if self.log_space else self.fitted + r)

    def tasks(self, n: int) -> list[tuple[int, int]]:
        """(first resample, count) of the tasks solving resamples 0 .. n-1: runs of whole chunks."""
        per = max(1, min(TASK_FLOATS // max(1, self.n_rows), -(-n // MIN_TASKS)) // self.chunk_size)
        step = per * self.chunk_size
        return [(start, min(step, n - start)) for start in range(0, n, step)]

    def draw_span(self, start: int, count: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """`draw` for resamples start .. start + count - 1 (`start` a multiple of the chunk size), the
        chunks they span drawn one by one and stacked."""
        parts = [self.draw(c, min(self.chunk_size, start + count - first))
                 for c, first in ((first // self.chunk_size, first)
                                  for first in range(start, start + count, self.chunk_size))]
        weights = None if parts[0][0] is None else np.concatenate([w for w, _ in parts])
        y = None if parts[0][1] is None else np.concatenate([r for _, r in parts])
        return weights, y

    def resample(self, k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Weights (n,) and response (n,) of resample `k` (None: 1, the observed response)."""
        chunk, row = divmod(k, self.chunk_size)
        weights, y = self.draw(chunk, row + 1)
        return (None if weights is None else weights[row]), (None if y is None else y[row])


def _counts(index: np.ndarray, size: int) -> np.ndarray:
    """How often each of `size` values appears in each row of `index` (m, k), as floats (m, size)."""
    m = index.shape[0]
    flat = (index + size * np.arange(m)[:, None]).ravel()
    return np.bincount(flat, minlength=m * size).reshape(m, size).astype(float)


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
        solved = self.solve(weights, y, count)
        if kind == "boot" and self.studentize is not None:
            use, groups = self.studentize
            theta, code = solved[0], solved[2]
            P = theta.shape[1]
            cov = np.full((count, P, P), np.nan)
            rows = np.flatnonzero(code == OK)
            if rows.size:
                cov[rows] = cluster_covariances(self.solver.problem, theta[rows], use, groups,
                                                None if weights is None else weights[rows],
                                                None if y is None else y[rows])
            solved = (*solved, cov)
        return kind, start, count, solved

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


# ---------------------------------------------------------------- intervals


def cluster_covariances(problem: Problem, thetas: np.ndarray, use: np.ndarray, groups: Groups,
                        weights: np.ndarray | None = None, y: np.ndarray | None = None) -> np.ndarray:
    """CR2 covariances (K, P, P) of the parameters in `use` (NaN elsewhere) at each of `thetas` (K, P),
    on the data of a resample: `weights` (K, n) say how often each row was drawn (a group bootstrap
    draws whole groups, and a group drawn twice counts as two clusters with the same rows), `y` (K, n)
    are the responses of a wild bootstrap. It is the sandwich of `fitting`'s cluster-robust covariance
    (at the fit's optimum, with no weights and the observed response, it is that one), batched over
    resamples, for the studentized interval. A direction that a resample cannot determine (a
    coefficient on its bound of 0 takes its exponent's column with it) gets variance 0."""
    idx = np.flatnonzero(use)
    K, P = thetas.shape
    out = np.full((K, P, P), np.nan)
    if idx.size == 0 or K == 0:
        return out
    slots, first = _group_slots(groups)
    block = int(np.clip(CHUNK_FLOATS // max(1, slots.size * P), 1, MAX_CHUNK))
    for start in range(0, K, block):
        sl = slice(start, min(K, start + block))
        theta = thetas[sl]
        with np.errstate(all="ignore"):
            f = problem.form.predict(theta, problem.X)
            r = problem.objective.residuals(problem.y[None, :] if y is None else y[sl], f)
            J = problem.objective.residual_jacobian(f, problem.form.jacobian(theta, problem.X))[:, :, idx]
        # every row of a group has the group's weight (how often it was drawn)
        wg = np.ones((theta.shape[0], len(first))) if weights is None else weights[sl][:, first]
        # the rows of each group side by side (zero rows pad the smaller groups): sums over a group's
        # rows become batched matrix products
        if slots.size > J.shape[1]:  # groups of unequal sizes
            J = np.concatenate([J, np.zeros_like(J[:, :1])], axis=1)
            r = np.concatenate([r, np.zeros_like(r[:, :1])], axis=1)
        J, r = J[:, slots], r[:, slots]  # (k, G, m, p), (k, G, m)
        used = (wg > 0)[:, :, None]
        # a group not drawn adds nothing (and whatever its rows' residuals are, even NaN)
        gram = np.where(used[..., None], np.swapaxes(J, 2, 3) @ J, 0.0)  # (k, G, p, p): J_g' J_g
        a = np.where(used, (np.swapaxes(J, 2, 3) @ r[..., None])[..., 0], 0.0)  # (k, G, p): J_g' r_g
        total = np.einsum("kg,kgpq->kpq", wg, gram)
        d = np.sqrt(np.clip(np.einsum("kpp->kp", total), 0.0, None))
        d = np.where(d > 0, d, 1.0)
        outer = d[:, None, :, None] * d[:, None, None, :]
        gram = gram / outer
        a = a / d[:, None, :]
        bread = np.linalg.pinv(total / outer[:, 0], hermitian=True)
        # Each group's CR2 score J_g' (I - H_gg)^-1/2 r_g from G_g = J_g' J_g and a_g = J_g' r_g alone:
        # with E_g = B^1/2 G_g B^1/2 = W L W' (L the leverages, H_gg = J_g B J_g'), the score is
        # a_g + G_g B^1/2 W diag(gain / L) W' B^1/2 a_g, gain = (1 - L)^-1/2 - 1: the numbers of the
        # thin SVD of each group's rows (`fitting._cr2_residuals`), from p x p matrices only.
        ev, Q = np.linalg.eigh(bread)
        half = (Q * np.sqrt(np.clip(ev, 0.0, None))[:, None, :]) @ np.swapaxes(Q, 1, 2)
        lev, W = np.linalg.eigh(half[:, None] @ gram @ half[:, None])
        with np.errstate(all="ignore"):
            gain = np.where(lev < 1 - 1e-10, 1 / np.sqrt(np.clip(1 - lev, 1e-300, None)) - 1, -1.0)
            ratio = np.where(lev > 1e-12, gain / lev, 0.0)
        v = np.einsum("kgqp,kgq->kgp", W, np.einsum("kpq,kgq->kgp", half, a))  # W' B^1/2 a_g
        u = np.einsum("kpq,kgq->kgp", half, np.einsum("kgpq,kgq->kgp", W, ratio * v))
        score = a + np.einsum("kgpq,kgq->kgp", gram, u)
        # every copy of a group drawn w times adds its score w times
        meat = np.einsum("kg,kgp,kgq->kpq", wg, score, score)
        V = bread @ meat @ bread / (d[:, :, None] * d[:, None, :])
        block_out = np.full((theta.shape[0], P, P), np.nan)
        block_out[:, idx[:, None], idx[None, :]] = V
        out[sl] = block_out
    return out


def _group_slots(groups: Groups) -> tuple[np.ndarray, np.ndarray]:
    """(G, m) row numbers of every group side by side, m its largest size, the smaller groups padded
    with the row number n (a zero row the caller appends); and a row of every group."""
    order = np.argsort(groups.index, kind="stable")
    sizes = np.asarray(groups.sizes())
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m = int(sizes.max())
    slots = np.full((len(sizes), m), len(order))
    within = np.arange(len(order)) - np.repeat(starts, sizes)
    slots[np.repeat(np.arange(len(sizes)), sizes), within] = order
    return slots, order[starts]


def studentized_interval(draws: np.ndarray, estimate: np.ndarray, se_draws: np.ndarray,
                         se: np.ndarray, level: float) -> np.ndarray:
    """(P, 2) symmetric bootstrap-t interval t -+ q s of each parameter, q the `level` quantile of the
    resamples' |t*| = |t*_b - t| / s*_b (Hall 1988; Efron & Tibshirani 1993, ch. 12). Dividing by each
    resample's own error takes out what resampling whole runs does to the design (a resample that
    lost the only shallow run pins alpha_l far less, and says so through s*_b); the symmetric form is
    used because the t* of an offset such as L0 are skewed where the truth's are not (equal tails
    covered L0 0.865 in benchmarks/coverage_checkpoints.py, symmetric 0.93). A resample whose error
    s*_b is 0 (it cannot determine the parameter) has |t*| = inf: an interval that needs it is
    unbounded. NaN without `se`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(draws - estimate) / se_draws
    t = np.where(se_draws > 0, t, np.inf)
    P = draws.shape[1]
    out = np.full((P, 2), np.nan)
    for p in range(P):
        tp = t[:, p]
        tp = tp[~np.isnan(tp)]
        if not (np.isfinite(se[p]) and se[p] > 0) or tp.size < 2:
            continue
        # infinities as huge numbers, so that interpolating next to one gives a huge end, not NaN
        q = float(np.quantile(np.minimum(tp, HUGE), level))
        q = np.inf if q >= HUGE / 2 else q
        out[p] = estimate[p] - q * se[p], estimate[p] + q * se[p]
    return out


def expanded_interval(draws: np.ndarray, level: float, dof: np.ndarray) -> np.ndarray:
    """(P, 2) expanded percentile interval (Hesterberg 2015): the percentile interval at the tail
    probability Phi(t_dof((1 + level) / 2)) instead of (1 + level) / 2, so that on normal draws it is
    the t interval, not the z interval, of the bootstrap's error. The wild cluster bootstrap keeps the
    design and its spread is the CR2 error's, which is uncertain as Bell & McCaffrey's `dof` (per
    parameter) say: without the expansion its alpha_l interval covered 0.875 under iid noise. NaN
    `dof` keeps the plain percentile."""
    normal = NormalDist()
    P = draws.shape[1]
    out = np.full((P, 2), np.nan)
    for p in range(P):
        upper = (1 + level) / 2
        if p < len(dof) and np.isfinite(dof[p]):
            upper = normal.cdf(t_quantile(upper, float(dof[p])))
        out[p] = np.quantile(draws[:, p], [1 - upper, upper])
    return out


def percentile_interval(draws: np.ndarray, level: float) -> np.ndarray:
    """(P, 2): the (1 - level) / 2 and (1 + level) / 2 quantiles of each column of `draws` (B, P)."""
    q = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return q.T


def basic_interval(draws: np.ndarray, estimate: np.ndarray, level: float) -> np.ndarray:
    """(P, 2): the basic (reverse percentile) interval [2 t - q_hi, 2 t - q_lo]."""
    q = percentile_interval(draws, level)
    return np.stack([2 * estimate - q[:, 1], 2 * estimate - q[:, 0]], axis=1)


def bca_interval(draws: np.ndarray, estimate: np.ndarray, jackknife: np.ndarray,
                 level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P, 2) bias-corrected and accelerated interval (Efron 1987), with the bias z0 and the
    acceleration a (from the jackknife estimates (J, P)) of each parameter. NaN where a parameter's
    draws all fall on one side of the estimate."""
    normal = NormalDist()
    B, P = draws.shape
    below = (draws < estimate).mean(axis=0) + 0.5 * (draws == estimate).mean(axis=0)
    z0 = np.array([normal.inv_cdf(p) if 0 < p < 1 else np.nan for p in below])
    dev = jackknife.mean(axis=0) - jackknife
    num = (dev**3).sum(axis=0)
    den = 6 * (dev**2).sum(axis=0) ** 1.5
    accel = np.divide(num, den, out=np.zeros(P), where=den > 0)
    out = np.full((P, 2), np.nan)
    for p in range(P):
        if not np.isfinite(z0[p]):
            continue
        probs = []
        for tail in ((1 - level) / 2, (1 + level) / 2):
            z = z0[p] + normal.inv_cdf(tail)
            probs.append(normal.cdf(z0[p] + z / (1 - accel[p] * z)))
        out[p] = np.quantile(draws[:, p], probs)
    return out, z0, accel


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class BootstrapEstimate:
    """One parameter: the full-data estimate, the bootstrap standard error and interval, and the
    Jacobian standard error and interval at the same level, for comparison."""

    name: str
    value: float
    se: float
    ci: tuple[float, float]
    jacobian_se: float
    jacobian_ci: tuple[float, float]


@dataclass(frozen=True)
class BootstrapResult:
    """A bootstrap: the full-data fit, every resample's parameters and status, and the intervals.
    Index by parameter name: `result["alpha_l"].ci`.

    >>> from scaling_cli import load_runs
    >>> boot = bootstrap(load_runs("data/example_runs.csv"), n=40, seed=0)
    >>> estimate = boot["alpha_D"]
    >>> estimate.ci[0] < estimate.value < estimate.ci[1], 0.002 < estimate.se < 0.01
    (True, True)
    """

    fit: FitResult
    method: str
    ci: str
    level: float
    n: int
    seed: int
    names: tuple[str, ...]
    estimates: tuple[BootstrapEstimate, ...]
    draws: np.ndarray  # (n, P), also for failed resamples (see `status`)
    values: np.ndarray  # (n,) objective of each resample's solution
    status: np.ndarray  # (n,) codes into STATUS
    iterations: np.ndarray  # (n,) solver iterations, summed over starts
    start_used: np.ndarray  # (n,) which start gave the best solution (0: the full-data optimum)
    starts: np.ndarray  # (S, P) the starts every resample was solved from
    n_failed: int
    seconds: float
    jobs: int
    resampler: Resampler
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    group: str | None = None
    derived: tuple[BootstrapEstimate, ...] = ()  # the form's derived quantities, from every draw
    jackknife: np.ndarray | None = None  # (J, P) leave-one-out estimates, for BCa
    bias: np.ndarray | None = None  # BCa z0 per parameter
    acceleration: np.ndarray | None = None  # BCa a per parameter
    draws_file: str | None = None  # the --draws file the JSON document names instead of inlining draws

    def __getitem__(self, name: str) -> BootstrapEstimate:
        return self.estimates[self.names.index(name)]

    @property
    def ok(self) -> np.ndarray:
        """Mask of the resamples that succeeded."""
        return self.status == OK

    @property
    def fits_per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else math.nan

    def status_counts(self) -> dict[str, int]:
        counts = np.bincount(self.status.astype(int), minlength=len(STATUS))
        return {STATUS[i]: int(c) for i, c in enumerate(counts) if c}

    def resample(self, k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Weights and response of resample `k`, to solve it again (None: 1, the observed response)."""
        return self.resampler.resample(k)

    def to_dict(self) -> dict:
        """The fit's JSON document with a `bootstrap` section (`results.bootstrap_to_dict`); the
        bootstrap's warnings join the fit's."""
        from .results import bootstrap_to_dict

        return bootstrap_to_dict(self)

    def predict(self, points, level: float | None = None):
        """Predicted response at new `points` with percentile intervals of the draws' predictions and
        a prediction interval for a new run (`predict.predict`); `level` defaults to the bootstrap's."""
        from .predict import predict

        return predict(self, points, level=self.level if level is None else level)

    def __repr__(self) -> str:
        """One line: `<BootstrapResult decomposed, 2000 case resamples (0 failed), percentile 95%: ...>`."""
        from .report import _short_estimates

        estimates = _short_estimates((e.name, e.value, e.se) for e in self.estimates + self.derived)
        return (f"<BootstrapResult {self.fit.form.name}, {self.n} {self.method} resamples ({self.n_failed} "
                f"failed), {self.ci} {100 * self.level:g}%: {estimates}>")

    def _repr_html_(self) -> str:
        from .report import html_table

        return html_table(self.to_frame(), repr(self)[1:-1].split(":")[0])

    def to_frame(self):
        """Per parameter and derived quantity: value, se, ci_lo, ci_hi, jacobian_se, jacobian_lo,
        jacobian_hi."""
        import pandas as pd

        rows = [{"name": e.name, "value": e.value, "se": e.se, "ci_lo": e.ci[0], "ci_hi": e.ci[1],
                 "jacobian_se": e.jacobian_se, "jacobian_lo": e.jacobian_ci[0],
                 "jacobian_hi": e.jacobian_ci[1]} for e in self.estimates + self.derived]
        return pd.DataFrame(rows).set_index("name")

    def figures(self) -> dict:
        """Histograms of every parameter and derived quantity with both intervals, and a corner plot of
        every free parameter (the exponents, the coefficients they trade against, and the constant such
        as L0 or E), coefficients of power terms on log10 axes (`plot.bootstrap_figures`); failed
        resamples left out."""
        from .plot import bootstrap_figures

        draws = np.where(self.ok[:, None], _with_derived(self.fit.form, self.draws), np.nan)
        problem = problem_of(self.fit)  # with the fit's --fix and --bound
        paired = set(Centering(problem, self.fit.values).linear.tolist())
        free = [p for i, p in enumerate(self.names) if problem.free[i]]
        coefficients = [p for i, p in enumerate(self.names) if problem.free[i] and i in paired]
        rows = self.estimates + self.derived
        names = [e.name for e in rows]
        return bootstrap_figures(names, draws, [e.value for e in rows], {e.name: e.ci for e in rows},
                                 {e.name: e.jacobian_ci for e in rows}, exponents=free,
                                 log_scale=coefficients, corner_names=list(self.names))

    def draws_frame(self):
        """Every resample as a pandas DataFrame, one row each: `resample` (its index), `status` (`ok` or
        why it failed), one column per parameter and derived quantity, `objective` (NaN when failed)
        and `iterations`. The same table `--draws PATH` writes.

        >>> from scaling_cli import load_runs
        >>> frame = bootstrap(load_runs("data/example_runs.csv"), n=20, seed=0).draws_frame()
        >>> len(frame), list(frame.columns[:4]), bool(frame["status"].eq("ok").all())
        (20, ['resample', 'status', 'c_m', 'alpha_m'], True)
        """
        import pandas as pd

        frame = pd.DataFrame({"resample": np.arange(self.n),
                              "status": np.array(STATUS, dtype=object)[self.status.astype(int)]})
        for name, column in zip(self.names + tuple(e.name for e in self.derived),
                                _with_derived(self.fit.form, self.draws).T, strict=True):
            frame[name] = column
        frame["objective"] = np.where(np.isfinite(self.values), self.values, np.nan)
        frame["iterations"] = self.iterations
        return frame

    def write_draws(self, path: str | Path) -> Path:
        """Write `draws_frame()` to `path`: Parquet for .parquet / .pq, else CSV; whole or not at all."""
        from .report import atomic_write

        path = Path(path)
        frame = self.draws_frame()
        if path.suffix.lower() in (".parquet", ".pq"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise DataError(PARQUET_NEEDS_PYARROW) from None
            writer = frame.to_parquet
        else:
            def writer(p):
                frame.to_csv(p, index=False, float_format="%.17g")
        try:
            return atomic_write(path, lambda p: writer(p))
        except OSError as exc:
            raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None


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
    solver = BatchSolver(problem, theta_hat)
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


def _with_derived(form: Form, theta: np.ndarray) -> np.ndarray:
    """`theta` (K, P) with the form's derived quantities appended as columns (K, P + D)."""
    if not form.derived:
        return theta
    if len(theta) == 0:  # no draws (e.g. every jackknife fit failed): keep the column count
        return np.zeros((0, theta.shape[1] + len(form.derived)))
    with np.errstate(all="ignore"):
        extra = np.column_stack([d.value(theta) for d in form.derived])
    return np.hstack([theta, extra])


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
