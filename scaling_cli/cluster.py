"""Cluster-robust covariance: the sandwich over groups of rows (the runs of a checkpoint table), with
Bell & McCaffrey's CR2 residuals and degrees of freedom (Imbens & Kolesar 2016)."""

from __future__ import annotations

import numpy as np

from .design import Groups
from .solve import Problem

CONDITION_LIMIT = 1e10  # of the column-scaled Jacobian; beyond it a direction counts as undetermined
NULL_LOADING = 0.05  # a parameter loading a near-null direction by more than this is undetermined


def _cluster_covariance(problem: Problem, theta: np.ndarray, use: np.ndarray, groups: Groups
                        ) -> tuple[np.ndarray, list[str], str, np.ndarray]:
    """The cluster-robust covariance (P, P) of the parameters in `use` (NaN elsewhere), the names of
    those it cannot pin (a null direction: fewer groups than the parameters need), its kind, and each
    parameter's Bell-McCaffrey degrees of freedom (P,) (NaN where it has none, and for CR1)."""
    P = len(theta)
    cov = np.full((P, P), np.nan)
    idx = np.flatnonzero(use)
    if idx.size == 0:
        return cov, [], "CR2", np.full(P, np.nan)
    r, Js, d = _scaled_jacobian(problem, theta, idx)
    G = groups.count
    scores = np.zeros((G, idx.size))
    if problem.objective.least_squares:
        kind, factor = "CR2", 1.0
        bread = np.linalg.pinv(Js.T @ Js)
        np.add.at(scores, groups.index, Js * _cr2_residuals(r, Js, bread, groups)[:, None])
    else:
        kind, factor = "CR1", G / max(1, G - 1)
        delta = problem.objective.delta
        inner = (np.abs(r) <= delta).astype(float)
        bread = np.linalg.pinv(Js.T @ (Js * inner[:, None]))
        np.add.at(scores, groups.index, Js * np.clip(r, -delta, delta)[:, None])
    V = factor * bread @ (scores.T @ scores) @ bread
    sd = np.sqrt(np.clip(np.diag(V), 0.0, None))
    dof = np.full(P, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        C = V / np.outer(sd, sd)
    withheld = sd <= 0
    if np.all(np.isfinite(C[~withheld][:, ~withheld])) and (~withheld).sum():
        keep = np.flatnonzero(~withheld)
        ev, vecs = np.linalg.eigh(C[np.ix_(keep, keep)])
        null = ev < max(ev.max(), 1e-300) / CONDITION_LIMIT
        if null.any():
            withheld[keep] |= np.any(np.abs(vecs[:, null]) > NULL_LOADING, axis=1)
    ok = idx[~withheld]
    cov[np.ix_(ok, ok)] = (V / np.outer(d, d))[np.ix_(~withheld, ~withheld)]
    if kind == "CR2":
        dof[ok] = bell_mccaffrey_dof(Js, bread, groups)[~withheld]
    return cov, [problem.form.params[i] for i in idx[withheld]], kind, dof


def bell_mccaffrey_dof(Js: np.ndarray, bread: np.ndarray, groups: Groups,
                       contrasts: np.ndarray | None = None) -> np.ndarray:
    """Degrees of freedom (m,) of the CR2 t statistic of each parameter (or of each column c of
    `contrasts` (k, m), for c' theta in Js's scaled coordinates): Bell & McCaffrey's (2002)
    Satterthwaite approximation, as Imbens & Kolesar (2016, eq. 11) recommend it, capped at G - 1.

    The CR2 variance of parameter j is a quadratic form e' C C' e in the errors, C (n, G) having per
    group g the column (I - H)_{.,g} A_g l_g, with A_g = (I - H_gg)^-1/2 and l = Js bread e_j the
    parameter's linear weights on the rows. Under iid errors its distribution is matched by a scaled
    chi-square with (sum lambda)^2 / sum lambda^2 degrees of freedom, lambda the eigenvalues of C'C
    (G, G). When a few runs carry a parameter (one run at a depth no other run has, say) the variance
    rests on their few residuals and this is far below G - 1; then t(G - 1) undercovers.
    With B = bread = (Js'Js)^-1 and a_g = Js_g' A_g l_g, C'C = diag(l_g' A_g^2 l_g) - A' B A, so no
    (n, G) matrix is formed."""
    k = Js.shape[1]
    G = groups.count
    contrasts = np.eye(k) if contrasts is None else contrasts
    m = contrasts.shape[1]
    weights = Js @ (bread @ contrasts)  # (n, m): column j is l for contrast j
    adjusted = _cr2_residuals(weights, Js, bread, groups)  # A_g l_g, stacked
    own = np.zeros((G, m))
    np.add.at(own, groups.index, adjusted**2)
    dof = np.full(m, np.nan)
    for j in range(m):
        a = np.zeros((G, k))
        np.add.at(a, groups.index, Js * adjusted[:, j:j + 1])
        CtC = np.diag(own[:, j]) - a @ bread @ a.T
        lam = np.clip(np.linalg.eigvalsh(CtC), 0.0, None)
        if lam.sum() > 0:
            dof[j] = min(float(lam.sum() ** 2 / (lam**2).sum()), G - 1.0)
    return dof


def _scaled_jacobian(problem: Problem, theta: np.ndarray, idx: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residuals (n,), the Jacobian of the parameters `idx` with unit-norm columns (n, k), and the norms."""
    r, J = problem.residuals_and_jacobian(theta[None, :])
    r, J = r[0], J[0][:, idx]
    d = np.linalg.norm(J, axis=0)
    d = np.where(d > 0, d, 1.0)
    return r, J / d, d


def _cr2_residuals(r: np.ndarray, Js: np.ndarray, bread: np.ndarray, groups: Groups) -> np.ndarray:
    """Bell & McCaffrey's residuals (I - H_gg)^-1/2 r_g of every group g, H = Js bread Js' (r (n,), or
    (n, m) for m vectors at once)."""
    w, Q = np.linalg.eigh(bread)
    half = (Q * np.sqrt(np.clip(w, 0.0, None))) @ Q.T
    order = np.argsort(groups.index, kind="stable")
    adjusted = np.empty_like(r)
    for rows in np.split(order, np.cumsum(groups.sizes())[:-1]):
        # through the thin SVD of J_g B^1/2 (H_gg = U S^2 U'): cost n_g k^2, so groups of thousands of
        # rows are cheap; a leverage of 1 gets the pseudo-inverse
        U, sv, _ = np.linalg.svd(Js[rows] @ half, full_matrices=False)
        lev = sv**2
        gain = np.where(lev < 1 - 1e-10, 1 / np.sqrt(np.clip(1 - lev, 1e-300, None)) - 1, -1.0)
        if r.ndim == 1:
            adjusted[rows] = r[rows] + U @ (gain * (U.T @ r[rows]))
        else:  # several vectors at once (columns)
            adjusted[rows] = r[rows] + U @ (gain[:, None] * (U.T @ r[rows]))
    return adjusted


def _contrast_dof(problem: Problem, theta: np.ndarray, ok: np.ndarray, groups: Groups,
                  gradient: np.ndarray, fallback: float) -> float:
    """Bell-McCaffrey degrees of freedom of the CR2 error of gradient' theta (a derived quantity);
    `fallback` when the gradient loads a parameter without an error."""
    idx = np.flatnonzero(ok)
    if np.any(gradient[~ok] != 0) or idx.size == 0:
        return fallback
    _, Js, d = _scaled_jacobian(problem, theta, idx)
    bread = np.linalg.pinv(Js.T @ Js)
    return float(bell_mccaffrey_dof(Js, bread, groups, (gradient[idx] / d)[:, None])[0])
