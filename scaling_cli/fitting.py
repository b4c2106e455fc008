"""One fit: a form, a table, an objective in; one frozen `FitResult` out.

Uncertainties come from the Jacobian of the same residuals that were minimized:
cov = s^2 (J'J)^-1 with s^2 = RSS / (n - p) for least-squares objectives, and Huber's (1981, §7.6)
robust estimate for the Huber objective. Parameters that the data cannot determine (a rank-deficient or
ill-conditioned Jacobian) and parameters sitting on a bound get no standard error, and say why.

On a table whose rows fall into runs (a group column: checkpoints of one run share its noise) the
reported covariance is the cluster-robust sandwich of Liang & Zeger (1986), with the runs as clusters:
B (sum_g s_g s_g') B, B = (J'J)^-1, s_g = J_g' r~_g. For least squares r~_g are Bell & McCaffrey's
(2002) CR2 residuals (I - H_gg)^-1/2 r_g, which undo the shrinking of residuals by the fit's leverage;
for Huber (psi of the residuals, B from the inner rows) the CR1 factor G / (G - 1) is used. Intervals
then use Student's t: for CR2 with each parameter's Bell & McCaffrey (2002) degrees of freedom, as
Imbens & Kolesar (2016) recommend (at most G - 1, and far fewer when a few runs carry a parameter: on
the Gemstones design one run is the only one at depth 3 and alpha_l gets about 7 where G - 1 = 21, and
t(21) covered the true alpha_l 91% of the time instead of 95%); for CR1 with G - 1. The iid errors
stay in `stderr_iid`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .cluster import (  # noqa: F401  (bell_mccaffrey_dof and the CR2 helpers were defined here)
    CONDITION_LIMIT,
    NULL_LOADING,
    _cluster_covariance,
    _contrast_dof,
    _cr2_residuals,
    _scaled_jacobian,
    bell_mccaffrey_dof,
)
from .design import (
    GROUPS_PER_PARAMETER,
    Design,
    Groups,
    between_group,
    describe_design,
    groups_of,
    looks_like_curves,
)
from .distributions import t_quantile  # noqa: F401  (t_quantile is part of this API)
from .errors import DataError, FitError, ScalefitWarning, SpecError, option
from .forms import Form, get_form
from .io import Runs
from .linear import solve_linear
from .objectives import Objective
from .robust import robust_minimize
from .search import global_minimize
from .solve import Problem, levenberg_marquardt

ERRORS = ("auto", "iid", "cluster")
BOUNDED_INTERVAL_NOTE = "cut at bound"  # see interval_for
UPPER_BOUNDED_INTERVAL_NOTE = "cut at upper bound"
BOTH_BOUNDS_INTERVAL_NOTE = "cut at both bounds"
HUBER_BOOTSTRAP_HINT = ("Huber objective: standard errors use Huber's (1981) asymptotic formula; "
                        "run `scalefit bootstrap` for intervals you can trust")


def interval_for(value: float, se: float, quantile: float, lower: float = -math.inf,
                 upper: float = math.inf) -> tuple[tuple[float, float], str]:
    """The interval `value ± quantile·se`, cut at the parameter's finite lower bound when it would reach
    below it (a coefficient ≥ 0 with a large error), so that no interval claims impossible values.
    Returns the interval and a note: "" when whole, `BOUNDED_INTERVAL_NOTE` when cut (or the upper /
    both-bounds notes when a finite `upper` cuts it too); (NaN, NaN) without
    a finite error.

    Cutting never changes which true values the interval covers (they all respect the bound). A
    log-scale interval, lower + (value − lower)·exp(±quantile·se/(value − lower)), respects the bound
    too, but claims more: in the coverage simulation of benchmarks/coverage.py (400 tables) it covered
    c_m 0.865 of the time against 0.888 for this one.

    >>> interval_for(270.0, 140.0, 2.0)
    ((-10.0, 550.0), '')
    >>> interval_for(270.0, 140.0, 2.0, lower=0.0)
    ((0.0, 550.0), 'cut at bound')
    """
    if not (math.isfinite(se) and math.isfinite(value)):
        return (math.nan, math.nan), ""
    lo, hi = value - quantile * se, value + quantile * se
    note = ""
    if math.isfinite(lower) and lo < lower <= value:
        lo, note = float(lower), BOUNDED_INTERVAL_NOTE
    # and at a finite upper bound (an exponent <= 10 whose t has few degrees of freedom), likewise
    if math.isfinite(upper) and hi > upper >= value:
        hi, note = float(upper), BOTH_BOUNDS_INTERVAL_NOTE if note else UPPER_BOUNDED_INTERVAL_NOTE
    return (lo, hi), note


def prediction_errors(observed: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, float]:
    """|observed - predicted| / |observed| per row, and the RMSE of log residuals (NaN unless every
    observed and predicted value is positive). Fit statistics and held-out errors both use it."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rel = np.abs(observed - predicted) / np.abs(observed)
        positive = len(observed) > 0 and np.all(observed > 0) and np.all(predicted > 0)
        log_res = np.log(observed) - np.log(predicted) if positive else None
    return rel, float(np.sqrt(np.mean(log_res**2))) if log_res is not None else math.nan


@dataclass(frozen=True)
class Estimate:
    """One parameter: value, standard error (NaN when not available) and 95% interval.

    >>> from scaling_cli import fit, load_runs
    >>> estimate = fit(load_runs("data/example_runs.csv")).estimate("alpha_D")
    >>> round(estimate.value, 3), round(estimate.stderr, 4), [round(v, 3) for v in estimate.ci95]
    (0.302, 0.0045, [0.293, 0.31])
    """

    name: str
    value: float
    stderr: float
    ci95: tuple[float, float]
    note: str = ""  # why the error is not available, or that the parameter is fixed / at a bound


@dataclass(frozen=True)
class FitStats:
    """How well a fit fits: residual sum of squares (in the objective's space), RMSE of log loss, mean
    |relative error|, R², AIC, BIC and residual degrees of freedom.

    >>> from scaling_cli import fit, load_runs
    >>> stats = fit(load_runs("data/example_runs.csv")).stats
    >>> stats.dof, round(stats.rmse_log, 4), stats.aic < stats.bic
    (249, 0.0051, True)
    """

    rss: float
    rmse_log: float
    mean_abs_rel_error: float
    r2: float
    aic: float
    bic: float
    dof: int


@dataclass(frozen=True)
class FitResult:
    """Everything one fit found. Index by parameter name for the value: `result["alpha_l"]`.

    >>> from scaling_cli import fit, load_runs
    >>> result = fit(load_runs("data/example_runs.csv"))
    >>> result
    <FitResult decomposed, log-ls, 256 rows, converged: c_m=263±12, alpha_m=0.9731±0.0079, ...>
    >>> round(result["alpha_l"], 2), result.correlation().shape, list(result.to_frame().columns)[:3]
    (1.2, (7, 7), [...])
    """

    form: Form
    objective: Objective
    objective_value: float
    names: tuple[str, ...]
    values: np.ndarray
    stderr: np.ndarray
    covariance: np.ndarray  # NaN in the rows and columns of parameters without an error
    estimates: tuple[Estimate, ...]
    stats: FitStats
    n_points: int
    n_excluded: int
    converged: bool
    at_bound: tuple[str, ...]
    undetermined: tuple[str, ...]
    warnings: tuple[str, ...]
    n_grid: int
    n_starts: int
    seconds: float
    notes: tuple[str, ...] = ()
    input_path: str | None = None
    input_sha256: str | None = None
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    observed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    inputs: Mapping[str, np.ndarray] = field(default_factory=dict)
    derived: tuple[Estimate, ...] = ()
    # which covariance `covariance`, `stderr` and the intervals are: "iid" or "cluster-robust CR2/CR1"
    covariance_type: str = "iid"
    stderr_iid: np.ndarray = field(default_factory=lambda: np.zeros(0))
    covariance_iid: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    ci_dof: int = 0  # degrees of freedom of the t quantile of the intervals (G - 1 when clustered)
    # per parameter, the t degrees of freedom its interval used when they differ from ci_dof
    # (cluster-robust CR2: Bell & McCaffrey's, at most G - 1); empty when every interval uses ci_dof
    param_dof: np.ndarray = field(default_factory=lambda: np.zeros(0))
    group_column: str | None = None
    n_groups: int | None = None  # None without a group column
    between: tuple[str, ...] = ()  # free parameters that only differences between groups pin
    design: Design | None = None
    columns: Mapping[str, str] = field(default_factory=dict)  # role or symbol -> column used
    regime_withheld: str = ""  # why the design cannot place alpha_l in a regime ("" when it can)
    convergence: str = ""  # why the fit did not converge ("" when it did)
    n_escalated: int = 0  # starts solved again by the robust strategy after stopping short
    fixed_by_user: tuple[tuple[str, float], ...] = ()  # (name, value) held by `fixed=` (--fix)
    bounds_by_user: tuple[tuple[str, float, float], ...] = ()  # (name, lo, hi) set by `bounds=` (--bound)
    roles: Mapping[str, str] = field(default_factory=dict)  # role -> column of the table fitted
    load_options: Mapping[str, object] = field(default_factory=dict)  # how the table was read
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # variable -> (min, max) fitted
    profile: object | None = None  # profile.ProfileResult, when asked for (`with_profile`, --ci profile)
    # where the search's starts ended converged (M, P), best first (the first is `values`); compare
    # starts its held-out fits from the distinct ones. Empty for a result loaded from JSON.
    minima: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def with_profile(self, level: float = 0.95) -> FitResult:
        """This result with profile-likelihood intervals (`profile.profile_intervals`) attached."""
        from .profile import profile_intervals

        return dataclasses.replace(self, profile=profile_intervals(self, level))

    def __getitem__(self, name: str) -> float:
        return float(self.values[self.names.index(name)])

    @property
    def regime_allowed(self) -> bool:
        """Whether the design can place alpha_l in a regime (`report.depth_regime`)."""
        return not self.regime_withheld

    def estimate(self, name: str) -> Estimate:
        return self.estimates[self.names.index(name)]

    def correlation(self) -> np.ndarray:
        """The correlation matrix (NaN where an error is not available)."""
        sd = np.sqrt(np.diag(self.covariance))
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.covariance / np.outer(sd, sd)

    def to_dict(self) -> dict:
        """The JSON document `scalefit fit --json` writes: plain floats, None for unknown."""
        from .results import fit_to_dict

        return fit_to_dict(self)

    def predict(self, points, level: float = 0.95):
        """Predicted response at new `points` (a mapping of variable, role or column name to values,
        or a `Runs` table) with a delta-method confidence interval for the law, a prediction interval
        for a new run and the distance beyond the fitted data: a `predict.Prediction`."""
        from .predict import predict

        return predict(self, points, level=level)
    def __repr__(self) -> str:
        """One line: `<FitResult decomposed, log-ls, 203 rows, converged: c_m=270±140, ...>`."""
        from .report import fit_repr

        return fit_repr(self)

    def _repr_html_(self) -> str:
        from .report import html_table

        return html_table(self.to_frame(), repr(self)[1:-1].split(":")[0])

    def to_frame(self):
        """Parameters as a pandas DataFrame (value, stderr, ci95_lo, ci95_hi, note)."""
        import pandas as pd

        rows = [{"name": e.name, "value": e.value, "stderr": e.stderr, "ci95_lo": e.ci95[0],
                 "ci95_hi": e.ci95[1], "note": e.note} for e in self.estimates + self.derived]
        return pd.DataFrame(rows).set_index("name")


def _covariance(problem: Problem, theta: np.ndarray, free: np.ndarray
                ) -> tuple[np.ndarray, list[str], str]:
    """Covariance of the free parameters; the names that cannot be determined; the reason."""
    r, J = problem.residuals_and_jacobian(theta[None, :])
    r, J = r[0], J[0][:, free]
    n, k = J.shape
    P = len(theta)
    cov_full = np.full((P, P), np.nan)
    names = [problem.form.params[i] for i in np.flatnonzero(free)]
    if k == 0:
        return cov_full, [], ""
    if n <= k:
        return cov_full, names, f"only {n} points for {k} free parameters"
    if not np.all(np.isfinite(J)):
        return cov_full, names, "the Jacobian is not finite at the optimum"
    norms = np.linalg.norm(J, axis=0)
    zero = norms == 0
    Js = J / np.where(zero, 1.0, norms)
    _, s, Vt = np.linalg.svd(Js, full_matrices=False)
    s_max = s[0] if s.size and s[0] > 0 else 1.0
    null = s < s_max / CONDITION_LIMIT
    bad = zero.copy()
    if null.any():
        bad |= np.any(np.abs(Vt[null]) > NULL_LOADING, axis=0)
    reason = ""
    if bad.any():
        reason = ("the data cannot determine them (Jacobian rank "
                  f"{int((~null).sum())} of {k}; e.g. every run has the same value of a variable)")
    ok = ~bad
    Jok = J[:, ok]
    if problem.objective.least_squares:
        scale = float(r @ r) / (n - k)
        A = Jok.T @ Jok
    else:  # Huber (1981) eq. (7.6.x): K^2 [sum psi^2 / (n-p)] / m^2 (J'J)^-1, m = mean psi'
        delta = problem.objective.delta
        psi = np.clip(r, -delta, delta)
        dpsi = (np.abs(r) <= delta).astype(float)
        m = dpsi.mean()
        if m == 0:
            return cov_full, names, "no residual lies inside the Huber delta; use `scalefit bootstrap`"
        kappa = 1 + k / n * dpsi.var() / m**2
        scale = kappa**2 * float(psi @ psi) / (n - k) / m**2
        A = Jok.T @ Jok
    d = np.sqrt(np.diag(A))
    d = np.where(d > 0, d, 1.0)
    inv = np.linalg.pinv(A / np.outer(d, d)) / np.outer(d, d)
    idx_free = np.flatnonzero(free)
    idx_ok = idx_free[ok]
    cov_full[np.ix_(idx_ok, idx_ok)] = scale * inv
    return cov_full, [names[i] for i in np.flatnonzero(bad)], reason


STRATEGIES = ("auto", "newton", "robust", "best")


def _check_fixed_and_bounds(form: Form, fixed: Mapping[str, float] | None,
                            bounds: Mapping[str, tuple[float, float]] | None) -> None:
    """Names must be the form's parameters, values finite, bounds ordered and a fixed value inside the
    parameter's bounds; a SpecError says which."""
    from .errors import SpecError
    from .forms import check_params

    check_params(form, list(fixed or ()) + list(bounds or ()))
    lo_all, hi_all = form.bounds()
    for name, (lo, hi) in (bounds or {}).items():
        i = form.index(name)
        lo = lo_all[i] if math.isnan(lo) else lo
        hi = hi_all[i] if math.isnan(hi) else hi
        if not lo < hi:
            raise SpecError(f"bounds of {name} must have LO < HI, not {lo:g}:{hi:g}")
        lo_all[i], hi_all[i] = lo, hi
    for name, value in (fixed or {}).items():
        i = form.index(name)
        if not math.isfinite(value):
            raise SpecError(f"{name} cannot be fixed at {value}: give a finite number")
        if not lo_all[i] <= value <= hi_all[i]:
            raise SpecError(f"{name} = {value:g} is outside its bounds [{lo_all[i]:g}, {hi_all[i]:g}]")


def _init_start(problem: Problem) -> np.ndarray | None:
    """The form's `init` as a start when it gives every free nonlinear parameter (linear ones it
    lacks are solved exactly for those values); None otherwise."""
    form = problem.form
    init = form.init
    if not init:
        return None
    free = [p for i, p in enumerate(form.params) if problem.free[i]]
    if any(p not in init for p in free if p not in form.linear):
        return None
    vec = problem.with_fixed(np.array([[init.get(p, np.nan) for p in form.params]], dtype=float))
    if any(p not in init for p in free):
        vec = solve_linear(problem, vec)
    vec = np.clip(vec, problem.lower, problem.upper)[0]
    return vec if np.all(np.isfinite(vec)) else None


def fit(runs: Runs, form: Form | str = "decomposed", objective: Objective | str | None = None,
        delta: float | None = None, fixed: Mapping[str, float] | None = None,
        starts: Sequence[Mapping[str, float]] | None = None, global_search: bool = True,
        strategy: str = "auto", bounds: Mapping[str, tuple[float, float]] | None = None,
        errors: str = "auto") -> FitResult:
    """Fit `form` to `runs` and return a `FitResult`.

    The global search tries a grid of the nonlinear parameters (solving the linear ones exactly) and
    polishes the best points; `starts` adds starting points of your own (and with
    `global_search=False` they are the only ones), and so does the form's `init` when it gives every
    free nonlinear parameter (linear ones it lacks are solved for). Every start is polished on its
    own. `strategy="auto"` (the default) solves a start that stops short under the Newton-LM (not
    converged, not finite, at a saddle) again by `robust.robust_minimize`; `"robust"` does that for
    every start; `"newton"` never; `"best"` only the start that ended lowest, when it stopped short
    (cheaper: `compare` uses it, and its tests check the result against `"auto"`'s). `fixed` holds
    parameters at values and `bounds` ({name: (lo, hi)}) narrows a parameter's range; both are
    reported.

    `errors`: "auto" reports cluster-robust errors when the table has a group column with several
    rows in some group (checkpoints of runs), else iid Jacobian errors; "iid" and "cluster" force
    one (cluster needs a group column).

    >>> from scaling_cli import load_runs
    >>> result = fit(load_runs("data/example_runs.csv"), "decomposed")
    >>> round(result["alpha_l"], 2), result.estimate("alpha_l").note, result.converged
    (1.2, '', True)
    """
    t0 = time.perf_counter()
    if errors not in ERRORS:
        raise SpecError(f"unknown errors '{errors}': use {', '.join(ERRORS)}")
    form = get_form(form) if isinstance(form, str) else form
    if not isinstance(objective, Objective):
        objective = Objective(objective or form.objective, delta if delta is not None else form.delta)
    X = form.inputs(runs)
    y = form.observed(runs)
    if objective.log_space and np.any(y <= 0):
        rows = np.flatnonzero(y <= 0) + 1
        raise DataError(f"{runs.path}: the {objective.name} objective takes the log of the response "
                        f"'{form.response}', but it is not positive in rows "
                        f"{', '.join(map(str, rows[:5]))}{', ...' if rows.size > 5 else ''}; "
                        f"use {option('objective', 'ls')}")
    _check_fixed_and_bounds(form, fixed, bounds)
    problem = Problem.build(form, X, y, objective, fixed, bounds)
    n, k = len(y), int(problem.free.sum())
    if n <= k:
        raise FitError(f"{n} rows are not enough to fit {k} free parameters of form '{form.name}'")
    start_vectors = []
    for s in starts or []:
        vec = np.array([s.get(p, form.init.get(p, np.nan)) for p in form.params], dtype=float)
        if np.isnan(vec[problem.free]).any():
            missing = [p for p, v, f in zip(form.params, vec, problem.free, strict=True)
                       if f and np.isnan(v)]
            raise FitError(f"a start lacks values for {', '.join(missing)}")
        start_vectors.append(vec)
    init_start = _init_start(problem)
    if init_start is not None and not any(np.array_equal(init_start, v) for v in start_vectors):
        start_vectors.append(init_start)
    if not global_search and not start_vectors:
        raise FitError("global_search=False needs starts")
    if strategy not in STRATEGIES:
        raise FitError(f"unknown strategy '{strategy}': use {', '.join(STRATEGIES)}")
    minimizer = robust_minimize if strategy == "robust" else levenberg_marquardt
    escalate = "best" if strategy == "best" else strategy == "auto"
    solution, n_grid, n_starts = global_minimize(problem, starts=start_vectors, use_grid=global_search,
                                                 minimizer=minimizer, escalate=escalate)
    theta, value = solution.theta[0], float(solution.value[0])
    if not np.isfinite(value):
        raise FitError(f"no start gave a finite objective for form '{form.name}' (predictions must be "
                       f"positive for a log objective)", partial=theta)
    groups = groups_of(runs)
    if errors == "cluster" and groups is None:
        raise DataError(f"{runs.path}: cluster-robust errors need a group column (group, run, run_name, "
                        f"run_id, model, model_name) or group=COLUMN")
    result = _result(runs, form, problem, theta, value, bool(solution.converged[0]), n_grid, n_starts,
                     time.perf_counter() - t0, groups, errors)
    escalated = 0 if solution.escalated is None else int(solution.escalated.sum())
    return dataclasses.replace(
        result, convergence="" if result.converged else _why_not_converged(problem, solution),
        n_escalated=escalated, fixed_by_user=tuple((p, float(v)) for p, v in (fixed or {}).items()),
        minima=solution.theta[solution.converged & np.isfinite(solution.value)],
        bounds_by_user=tuple((p, float(problem.lower[form.index(p)]), float(problem.upper[form.index(p)]))
                             for p in (bounds or {})))


def problem_of(result: FitResult) -> Problem:
    """The problem a fit solved (its form, inputs, response, objective, fixed parameters and bounds)."""
    bounds = {name: (lo, hi) for name, lo, hi in result.bounds_by_user}
    return Problem.build(result.form, result.inputs, result.observed, result.objective,
                         dict(result.fixed_by_user), bounds)


def cluster_residuals(result: FitResult, groups: Groups) -> np.ndarray:
    """The fit's residuals in the objective's space, CR2-adjusted per group for least-squares objectives
    (raw for Huber): what the wild cluster bootstrap flips."""
    problem = problem_of(result)
    use = np.array([np.isfinite(result.stderr_iid[i]) if len(result.stderr_iid) else True
                    for i in range(len(result.names))]) & problem.free
    r, Js, _ = _scaled_jacobian(problem, result.values, np.flatnonzero(use))
    if not problem.objective.least_squares or not use.any():
        return r
    return _cr2_residuals(r, Js, np.linalg.pinv(Js.T @ Js), groups)


def _why_not_converged(problem: Problem, solution) -> str:
    """One sentence on how the best start stopped short."""
    from .search import saddle

    if saddle(problem, solution.theta[:1])[0]:
        return ("the best point is not a strict minimum (a flat or negative curvature direction): "
                "the objective may fall further along it")
    escalated = solution.escalated is not None and bool(solution.escalated[0])
    return (f"the optimizer stopped after {int(solution.iterations[0])} steps without the gradient "
            f"vanishing{' (also under the robust strategy)' if escalated else ''}: a parameter may "
            f"be running off to infinity, or the law may not fit these runs")


def _result(runs: Runs, form: Form, problem: Problem, theta: np.ndarray, value: float,
            converged: bool, n_grid: int, n_starts: int, seconds: float, groups: Groups | None = None,
            errors: str = "auto") -> FitResult:
    objective = problem.objective
    n, _P = problem.n, len(theta)
    tiny = 1e-9 * (1 + np.abs(theta))
    on_lower = problem.free & (theta <= problem.lower + tiny)
    on_upper = problem.free & (theta >= problem.upper - tiny)
    at_bound_mask = on_lower | on_upper
    cov_free = problem.free & ~at_bound_mask
    cov, undetermined, reason = _covariance(problem, theta, cov_free)
    cov_iid, iid_undetermined = cov, list(undetermined)
    k = int(problem.free.sum())
    dof = n - k
    ci_dof = dof
    covariance_type = "iid"
    param_dof = np.zeros(0)
    group_messages: list[str] = []
    between: tuple[str, ...] = ()
    too_few_groups = False
    # "auto" clusters when some run has several rows; "cluster" also when every run has one (then the
    # sandwich is the heteroskedasticity-robust HC2)
    clustered = groups is not None and (errors == "cluster" or (errors == "auto" and not groups.trivial))
    if groups is not None and (clustered or not groups.trivial):
        determined = cov_free & np.array([p not in undetermined for p in form.params])
        # in the prediction's own space: a log residual's column divides by the prediction, which
        # varies within a run even where the term does not
        mask = between_group(form.jacobian(theta[None, :], problem.X)[0][:, determined], groups)
        between = tuple(form.params[i] for i in np.flatnonzero(determined)[mask])
        too_few_groups = groups.count < GROUPS_PER_PARAMETER * k
        if clustered:
            cov, withheld, kind, param_dof = _cluster_covariance(problem, theta, determined, groups)
            covariance_type = f"cluster-robust {kind}"
            ci_dof = groups.count - 1
            if withheld:
                undetermined = list(undetermined) + withheld
                group_messages.append(
                    f"cannot determine {', '.join(withheld)} from {groups.count} groups of column "
                    f"'{groups.column}': the runs are too few for the parameters that only differences "
                    f"between runs pin")
        else:
            group_messages.append(
                f"iid errors on a table of {groups.count} groups (column '{groups.column}'): they treat "
                f"every row as an independent run, and are wrong (mostly too narrow) when the rows of a "
                f"run are correlated")
        if too_few_groups:
            within = [p for p, d in zip(form.params, determined, strict=True) if d and p not in between]
            group_messages.append(
                f"only {groups.count} groups (column '{groups.column}') for {k} free parameters (want "
                f"at least {GROUPS_PER_PARAMETER * k}): the intervals are unreliable. "
                + (f"{', '.join(between)} vary only between groups and rest on {groups.count} group-level "
                   f"points" if between else "")
                + (f"; {', '.join(within)} also vary within groups" if within else ""))
    tq = t_quantile(0.975, ci_dof)
    # per parameter t quantiles: Bell-McCaffrey's dof for CR2 (see bell_mccaffrey_dof), else ci_dof
    tqs = np.full(len(theta), tq)
    if len(param_dof):
        tqs = np.array([t_quantile(0.975, v) if np.isfinite(v) else tq for v in param_dof])
    stderr = np.sqrt(np.clip(np.diag(cov), 0, None))
    stderr = np.where(np.isnan(np.diag(cov)), np.nan, stderr)
    stderr_iid = np.where(np.isnan(np.diag(cov_iid)), np.nan, np.sqrt(np.clip(np.diag(cov_iid), 0, None)))
    estimates = []
    for i, name in enumerate(form.params):
        note = ""
        if not problem.free[i]:
            note = "fixed"
        elif at_bound_mask[i]:
            note = f"at its {'lower' if on_lower[i] else 'upper'} bound"
        elif name in undetermined:
            note = "cannot be determined"
        se = float(stderr[i])
        ci, how = interval_for(float(theta[i]), se, float(tqs[i]), float(problem.lower[i]),
                               float(problem.upper[i]))
        estimates.append(Estimate(name, float(theta[i]), se, (float(ci[0]), float(ci[1])), note or how))

    derived = []
    for d in form.derived:
        val = float(d.value(theta[None, :])[0])
        g = d.gradient(theta[None, :])[0]
        used = g != 0
        se = float(np.sqrt(g[used] @ cov[np.ix_(used, used)] @ g[used])) if used.any() else 0.0
        se = se if np.isfinite(se) else math.nan
        tq_d = tq
        if len(param_dof) and np.isfinite(se) and groups is not None:
            tq_d = t_quantile(0.975, _contrast_dof(problem, theta, np.isfinite(param_dof), groups, g, tq))
        ci = (val - tq_d * se, val + tq_d * se) if np.isfinite(se) else (math.nan, math.nan)
        derived.append(Estimate(d.name, val, se, ci, d.description))

    pred = form.predict(theta[None, :], problem.X)[0]
    y = problem.y
    r = objective.residuals(y, pred)
    rss = float(r @ r)
    centered = (np.log(y) if objective.log_space else y)
    tss = float(((centered - centered.mean()) ** 2).sum())
    rel, rmse_log = prediction_errors(y, pred)
    stats = FitStats(
        rss=rss,
        rmse_log=rmse_log,
        mean_abs_rel_error=float(np.mean(rel)) if np.all(np.isfinite(rel)) else math.nan,
        r2=1 - rss / tss if tss > 0 else math.nan,
        aic=n * math.log(rss / n) + 2 * k if rss > 0 else math.nan,
        bic=n * math.log(rss / n) + k * math.log(n) if rss > 0 else math.nan,
        dof=dof,
    )
    messages = []
    if not converged:
        messages.append("the optimizer stopped at its iteration limit before converging")
    for i in np.flatnonzero(at_bound_mask):
        bound = problem.lower[i] if on_lower[i] else problem.upper[i]
        messages.append(f"{form.params[i]} = {theta[i]:.6g} is at its bound {bound:g}: its error is "
                        f"not available and the others are conditional on it")
    if iid_undetermined:
        messages.append(f"cannot determine {', '.join(iid_undetermined)}: {reason}")
    elif reason:
        messages.append(reason)
    messages += group_messages
    design = describe_design(form, runs, problem.X)
    messages += list(design.warnings)
    curves = looks_like_curves(form, runs, problem.X) if groups is None else None
    if curves:
        messages.append(curves)
    too_few_runs = f"only {groups.count} runs for {k} parameters" if too_few_groups else ""
    regime_withheld = _regime_withheld(form, design, undetermined, at_bound_mask, too_few_runs)
    for message in messages:
        warnings.warn(message, ScalefitWarning, stacklevel=3)
    if not objective.least_squares:
        messages.append(HUBER_BOOTSTRAP_HINT)
    return FitResult(
        form=form, objective=objective, objective_value=value, names=tuple(form.params),
        values=theta.copy(), stderr=stderr, covariance=cov, estimates=tuple(estimates), stats=stats,
        n_points=n, n_excluded=runs.n_excluded, converged=converged,
        at_bound=tuple(form.params[i] for i in np.flatnonzero(at_bound_mask)),
        undetermined=tuple(undetermined), warnings=tuple(messages), n_grid=n_grid, n_starts=n_starts,
        seconds=seconds, notes=runs.notes, input_path=runs.path, input_sha256=runs.sha256,
        predicted=pred, observed=y, inputs=dict(problem.X), derived=tuple(derived),
        covariance_type=covariance_type, stderr_iid=stderr_iid, covariance_iid=cov_iid, ci_dof=ci_dof,
        param_dof=param_dof,
        group_column=groups.column if groups is not None else None,
        n_groups=groups.count if groups is not None else None, between=between, design=design,
        columns=_columns_used(form, runs), regime_withheld=regime_withheld,
        roles=dict(runs.roles), load_options=dict(runs.options),
        ranges={s: (float(np.min(x)), float(np.max(x))) for s, x in problem.X.items() if np.size(x)})


def _regime_withheld(form: Form, design: Design, undetermined, at_bound: np.ndarray,
                     too_few_runs: str) -> str:
    """Why the design cannot place alpha_l in a regime ("" when it can): width or depth missing or with
    fewer than 3 distinct values, its exponent undetermined or on a bound, or (`too_few_runs`, said
    only when nothing else is) too few runs for the parameters."""
    roles = (("width", "alpha_m"), ("depth", "alpha_l"))
    reasons = []
    for role, _ in roles:
        symbol = next((s for s, key in form.variables.items() if key == role), None)
        variable = design.variable(symbol) if symbol else None
        if variable is None:
            reasons.append(f"the form has no {role} variable")
        elif variable.levels < 3:
            reasons.append(f"{variable.column} has only {variable.levels} distinct value"
                           f"{'s' if variable.levels != 1 else ''}")
    for _, exponent in roles:
        if exponent in form.params:
            if at_bound[form.index(exponent)]:
                reasons.append(f"{exponent} is at a bound")
            elif exponent in undetermined:
                reasons.append(f"{exponent} is undetermined")
    return "; ".join(reasons) or too_few_runs


def _columns_used(form: Form, runs: Runs) -> dict[str, str]:
    """Role (or column) -> the column that played it, for the form's variables, response and groups."""
    keys = list(form.variables.values()) + form.response_columns() + ["group"]
    return {key: runs.roles.get(key, key) for key in keys if key in runs.roles or key in runs.data}
