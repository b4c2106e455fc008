"""Bootstrap intervals from the draws: percentile, basic, BCa, the expanded percentile, and the
studentized (bootstrap-t) interval with each resample's cluster-robust CR2 covariance."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Mapping

import numpy as np

from .design import Groups
from .fitting import t_quantile
from .forms import Inputs
from .solve import Problem, _power_sum_columns

HUGE = 1e300
# cluster_covariances works on blocks of resamples holding about this many floats (resamples x rows x
# parameters)
COVARIANCE_FLOATS = 1_500_000
MAX_BLOCK = 2048


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
    cells = _PowerSumCells.of(problem, groups)
    block = int(np.clip(COVARIANCE_FLOATS // max(1, slots.size * P), 1, MAX_BLOCK))
    for start in range(0, K, block):
        sl = slice(start, min(K, start + block))
        theta = thetas[sl]
        y_block = problem.y[None, :] if y is None else y[sl]
        with np.errstate(all="ignore"):
            gram, a = (_slot_sums(problem, theta, y_block, idx, slots) if cells is None
                       else cells.sums(theta, y_block, idx))  # (k, G, p, p): J_g' J_g, (k, G, p): J_g' r_g
        # every row of a group has the group's weight (how often it was drawn)
        wg = np.ones((theta.shape[0], len(first))) if weights is None else weights[sl][:, first]
        used = (wg > 0)[:, :, None]
        # a group not drawn adds nothing (and whatever its rows' residuals are, even NaN)
        gram = np.where(used[..., None], gram, 0.0)
        a = np.where(used, a, 0.0)
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
        # thin SVD of each group's rows (`cluster._cr2_residuals`), from p x p matrices only.
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


def _slot_sums(problem: Problem, theta: np.ndarray, y: np.ndarray, idx: np.ndarray, slots: np.ndarray):
    """Each group's J_g' J_g (k, G, p, p) and J_g' r_g (k, G, p), J the residual Jacobian in the
    parameters `idx`: the rows of each group side by side (zero rows pad the smaller groups, `slots`),
    so that sums over a group's rows become batched matrix products."""
    f = problem.form.predict(theta, problem.X)
    r = problem.objective.residuals(y, f)
    J = problem.objective.residual_jacobian(f, problem.form.jacobian(theta, problem.X))[:, :, idx]
    if slots.size > J.shape[1]:  # groups of unequal sizes
        J = np.concatenate([J, np.zeros_like(J[:, :1])], axis=1)
        r = np.concatenate([r, np.zeros_like(r[:, :1])], axis=1)
    J, r = J[:, slots], r[:, slots]  # (k, G, m, p), (k, G, m)
    return np.swapaxes(J, 2, 3) @ J, (np.swapaxes(J, 2, 3) @ r[..., None])[..., 0]


@dataclass(frozen=True)
class _PowerSumCells:
    """`_slot_sums` for a power-sum form (`Form.power_sum`) on a least-squares objective whose groups
    come in runs of rows: the Jacobian is never formed. Its columns are multiples of the solver's basis
    rows (`solve._power_sum_columns`), and a width or depth term's rows are constant over each run of
    rows (`Inputs.segments`); the table is cut into cells, runs of rows in one group and one segment,
    each group's sums are sums over its cells, and a cell's are the products of its constant basis
    rows with the cell's sums of the per-row quantities (the token term's rows, weighted)."""

    problem: Problem
    X: Mapping[str, np.ndarray]
    starts: np.ndarray  # first row of every cell
    segment: np.ndarray  # the segment of every cell
    order: np.ndarray  # the cells ordered by group
    group_starts: np.ndarray  # where each group's cells begin in that order

    MAX_CELL_FRACTION = 0.25  # more cells than this fraction of the rows: the slots are cheaper

    @classmethod
    def of(cls, problem: Problem, groups: Groups) -> _PowerSumCells | None:
        spec = problem.form.power_sum()
        if spec is None or not problem.objective.least_squares or problem.n == 0:
            return None
        X = Inputs(problem.X)
        segment_starts = X.segments[0] if X.segments is not None else np.zeros(1, dtype=np.intp)
        change = np.flatnonzero(groups.index[1:] != groups.index[:-1]) + 1
        starts = np.union1d(segment_starts, change).astype(np.intp)
        if len(starts) > cls.MAX_CELL_FRACTION * problem.n:
            return None
        segment = np.searchsorted(segment_starts, starts, side="right") - 1
        cell_group = groups.index[starts]
        order = np.argsort(cell_group, kind="stable")
        group_starts = np.flatnonzero(np.r_[True, cell_group[order][1:] != cell_group[order][:-1]])
        return cls(problem, X, starts, segment, order, group_starts)

    def sums(self, theta: np.ndarray, y: np.ndarray, idx: np.ndarray):
        pr = self.problem
        obj = pr.objective
        spec = pr.form.power_sum()
        f, Q, R, _, per_run, per_row = _power_sum_columns(spec, theta, self.X, derivatives=True)
        r = obj.residuals_from(obj.transform(y), f)
        # J_r = -J_f / f for log residuals, -J_f otherwise
        u = 1.0 / f if obj.log_space else np.ones_like(f)
        w2, wa = u * u, -r * u
        K, F, E = theta.shape[0], R.shape[1], Q.shape[1]

        def cell_sums(v):
            return np.add.reduceat(v, self.starts, axis=-1)

        Qc = Q[:, :, self.segment]  # (k, E, cells)
        W, A = cell_sums(w2), cell_sums(wa)
        WR, AR = cell_sums(R * w2[:, None, :]), cell_sums(R * wa[:, None, :])
        WRR = cell_sums(R[:, :, None, :] * (R * w2[:, None, :])[:, None, :, :])  # (k, F, F, cells)
        nb = E + F
        G = np.empty((K, len(self.starts), nb, nb))
        G[:, :, :E, :E] = np.einsum("kic,kjc,kc->kcij", Qc, Qc, W)
        G[:, :, :E, E:] = np.einsum("kic,kjc->kcij", Qc, WR)
        G[:, :, E:, :E] = np.swapaxes(G[:, :, :E, E:], 2, 3)
        G[:, :, E:, E:] = np.moveaxis(WRR, 3, 1)
        a = np.concatenate([np.moveaxis(Qc * A[:, None, :], 1, 2), np.moveaxis(AR, 1, 2)], axis=2)
        G = np.add.reduceat(G[:, self.order], self.group_starts, axis=1)  # (k, groups, nb, nb)
        a = np.add.reduceat(a[:, self.order], self.group_starts, axis=1)
        # basis rows -> parameters: per-run rows (p, q per term), the constant, per-row rows
        i_const = spec[0]
        ones = np.ones(K)
        columns = [c for ic, ia, _ in per_run for c in ((ic, ones), (ia, -theta[:, ic]))]
        columns += [] if i_const is None else [(i_const, ones)]
        columns += [c for ic, ia, _ in per_row for c in ((ic, ones), (ia, -theta[:, ic]))]
        where = {p: j for j, (p, _) in enumerate(columns)}
        cols = [where[p] for p in idx]
        factor = np.stack([columns[j][1] for j in cols], axis=1)  # (k, p)
        gram = G[:, :, cols][:, :, :, cols] * (factor[:, :, None] * factor[:, None, :])[:, None]
        return gram, a[:, :, cols] * factor[:, None, :]


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
