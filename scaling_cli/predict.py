"""Predictions from a fit: the law's value at new points, how sure we are of it, and how far the points
lie outside the data that was fitted.

For each point:
- a confidence interval for the law itself. From a fit: the delta method on the covariance the fit
  reports, with Student's t on the degrees of freedom the fit's own intervals use (`interval_dof`). For
  log objectives (log-ls, huber) it is computed for log f, so it is multiplicative and stays positive.
  From a bootstrap: the percentiles of the predictions of every successful draw.
- a prediction interval for a new run: the law's uncertainty plus the residual scale s (the RMSE of the
  residuals in the objective's space, on n - k degrees of freedom): f exp(±t sqrt(se_log^2 + s^2)) for
  log objectives, f ± t sqrt(se^2 + s^2) for `ls`. For a bootstrap the two half-widths of the percentile
  interval are combined with t s the same way (in quadrature, side by side).
- per variable, the decades beyond the fitted range: log10(x / largest fitted) when above it (> 0),
  log10(x / smallest fitted) when below it (< 0), 0 inside. A point is an extrapolation when any is not 0.

Intervals far outside the data rest on the law holding there: the backtest in
`benchmarks/backtest_extrapolation.py` counts how often held-out larger runs fall inside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .errors import DataError, SpecError

if TYPE_CHECKING:
    from .bootstrap import BootstrapResult
    from .fitting import FitResult
    from .io import Runs

DEFAULT_LEVEL = 0.95
CHUNK_FLOATS = 2_000_000  # draws x points evaluated at once for a bootstrap


@dataclass(frozen=True)
class Prediction:
    """Predictions at n points. Arrays have one entry per point; `ci` and `pi` are (n, 2).

    >>> from scaling_cli import fit, load_runs
    >>> result = fit(load_runs("data/example_runs.csv"))
    >>> p = predict(result, {"width": [1024, 2048], "depth": [24, 24], "tokens": [1e10, 1e10]})
    >>> p.predicted.round(3), bool((p.pi[:, 0] < p.ci[:, 0]).all()), p.to_frame().shape[0]
    (array([2.736, 2.584]), True, 2)
    """

    form: str
    response: str
    variables: tuple[str, ...]  # the form's symbols, in order
    labels: Mapping[str, str]  # symbol -> the role or column it stands for
    points: Mapping[str, np.ndarray]  # symbol -> values
    predicted: np.ndarray
    ci: np.ndarray
    pi: np.ndarray
    level: float
    method: str  # "delta" or "bootstrap"
    dof: float  # degrees of freedom of the t quantiles
    residual_scale: float
    log_space: bool
    beyond: Mapping[str, np.ndarray]  # symbol -> signed decades beyond the fitted range
    ranges: Mapping[str, tuple[float, float]]
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)  # columns carried through
    n_draws: int = 0
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.predicted)

    @property
    def extrapolation(self) -> np.ndarray:
        """True for points outside the fitted range of any variable."""
        out = np.zeros(len(self), dtype=bool)
        for v in self.beyond.values():
            out |= np.asarray(v) != 0
        return out

    def interval_description(self) -> str:
        """What the intervals are, in two sentences."""
        if self.method == "bootstrap":
            law = f"percentiles of the predictions of {self.n_draws} bootstrap draws"
        else:
            law = f"delta method on the fit's covariance, t with {self.dof:g} dof"
        space = "in log space (multiplicative)" if self.log_space else "(additive)"
        return (f"CI: confidence interval of the law, {law}. PI: prediction interval for a new run, "
                f"adding the residual scale {self.residual_scale:.3g} {space}.")

    def to_dict(self) -> dict:
        """JSON-safe: the settings, and one record per point."""
        from .results import jsonable

        return jsonable({
            "form": self.form, "response": self.response, "level": self.level,
            "interval": self.method, "dof": self.dof, "residual_scale": self.residual_scale,
            "log_space": self.log_space, "n_draws": self.n_draws,
            "ranges": {self.labels[s]: list(self.ranges[s]) for s in self.variables if s in self.ranges},
            "warnings": list(self.warnings),
            "points": self.records(),
        })

    def records(self) -> list[dict]:
        rows = []
        for i in range(len(self)):
            row: dict[str, Any] = {name: _plain(values[i]) for name, values in self.extra.items()}
            row.update({self.labels[s]: float(self.points[s][i]) for s in self.variables})
            row.update({"predicted": float(self.predicted[i]),
                        "ci": [float(self.ci[i, 0]), float(self.ci[i, 1])],
                        "pi": [float(self.pi[i, 0]), float(self.pi[i, 1])],
                        "beyond_decades": {self.labels[s]: float(self.beyond[s][i]) for s in self.variables},
                        "extrapolation": bool(self.extrapolation[i])})
            rows.append(row)
        return rows

    def to_frame(self):
        """One row per point: carried columns, variables, predicted, ci_lo/hi, pi_lo/hi, beyond_*,
        extrapolation (pandas)."""
        import pandas as pd

        frame = pd.DataFrame({name: values for name, values in self.extra.items()})
        for s in self.variables:
            frame[self.labels[s]] = self.points[s]
        frame["predicted"] = self.predicted
        frame["ci_lo"], frame["ci_hi"] = self.ci[:, 0], self.ci[:, 1]
        frame["pi_lo"], frame["pi_hi"] = self.pi[:, 0], self.pi[:, 1]
        for s in self.variables:
            frame[f"beyond_{self.labels[s]}"] = self.beyond[s]
        frame["extrapolation"] = self.extrapolation
        frame.index = range(len(self))
        return frame


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---------------------------------------------------------------- the numbers the fit reports


def interval_dof(result: FitResult) -> float:
    """Degrees of freedom of the t quantiles behind the fit's own intervals: n - k, or groups - 1 for
    a cluster-robust covariance (`ci_dof`)."""
    return float(result.ci_dof) if result.ci_dof else float(result.stats.dof)


def residual_scale(result: FitResult) -> float:
    """RMSE of the residuals in the objective's space on n - k degrees of freedom (k free parameters)."""
    k = sum(1 for e in result.estimates if e.note != "fixed")
    n = result.n_points
    return math.sqrt(result.stats.rss / (n - k)) if n > k and math.isfinite(result.stats.rss) else math.nan


# ---------------------------------------------------------------- points


def resolve_points(result: FitResult, points: Mapping[str, Any] | Runs
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The form's variables (symbol -> float array) at `points`, and the other columns carried along.

    `points` is a `Runs` table, or a mapping whose keys are a variable's symbol (`m`), its role
    (`width`) or the column it came from in the fitted table (`d_model`); values are numbers, strings
    such as `1.4T`, or sequences of them."""
    from .io import Runs, normalize_name, parse_number

    form = result.form
    if isinstance(points, Runs):
        X = {s: np.asarray(v, dtype=float) for s, v in form.inputs(points).items()}
        used = {points.roles.get(col, col) for col in form.variables.values()}
        extra = {name: values for name, values in points.data.items() if name not in used}
        return _checked(result, X), extra
    aliases: dict[str, str] = {}
    for symbol, column in form.variables.items():
        for name in (symbol, column, result.roles.get(column)):
            if name:
                aliases.setdefault(normalize_name(name), symbol)
    X: dict[str, Any] = {}
    for key, value in points.items():
        symbol = aliases.get(normalize_name(str(key)))
        if symbol is None:
            known = ", ".join(f"{c} ({s})" for s, c in form.variables.items())
            raise DataError(f"'{key}' is not a variable of form '{form.name}': its variables are {known}")
        if symbol in X:
            raise DataError(f"'{key}' gives {form.variables[symbol]} ({symbol}) a second time")
        values = np.atleast_1d(np.asarray(value, dtype=object))
        parsed = []
        for v in values.ravel():
            try:
                x = parse_number(v)
            except (ValueError, TypeError):
                x = None
            if x is None:
                raise DataError(f"{key}={v!r} is not a number (values such as 8192, 1.4T or 3e21 parse)")
            parsed.append(x)
        X[symbol] = np.array(parsed, dtype=float)
    missing = [f"{c} ({s})" for s, c in form.variables.items() if s not in X]
    if missing:
        raise DataError(f"form '{form.name}' needs a value for every variable; missing "
                        f"{', '.join(missing)}")
    sizes = {len(v) for v in X.values()}
    if len(sizes - {1}) > 1:
        raise DataError("the variables have different numbers of values: give one value or the same "
                        "number for each")
    n = max(sizes)
    return _checked(result, {s: np.broadcast_to(v, (n,)).astype(float) for s, v in X.items()}), {}


def _checked(result: FitResult, X: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    form = result.form
    positive = set(form.positive_columns())
    for symbol, values in X.items():
        bad = ~np.isfinite(values) | ((values <= 0) if form.variables[symbol] in positive else False)
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            need = "a positive number" if form.variables[symbol] in positive else "a finite number"
            raise DataError(f"{form.variables[symbol]} ({symbol}) must be {need}, not {values[i]:g} "
                            f"(point {i + 1})")
    return X


def beyond_range(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Signed decades outside [lo, hi]: log10(x / hi) above, log10(x / lo) below, 0 inside."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        above = np.log10(x / hi) if hi > 0 else np.where(x > hi, np.inf, 0.0)
        below = np.log10(x / lo) if lo > 0 else np.where(x < lo, -np.inf, 0.0)
    return np.where(x > hi, above, np.where(x < lo, below, 0.0)) + 0.0


# ---------------------------------------------------------------- predicting


def predict(result: FitResult | BootstrapResult, points: Mapping[str, Any] | Runs,
            level: float = DEFAULT_LEVEL) -> Prediction:
    """Predict at `points` (see `resolve_points`) with intervals at `level`: a `Prediction`.

    >>> from scaling_cli import fit, load_runs
    >>> result = fit(load_runs("data/example_runs.csv"))
    >>> p = predict(result, {"m": [4096], "l": [48], "D": [1e11]}, level=0.9)
    >>> round(float(p.predicted[0]), 3), p.level, p.method
    (2.161, 0.9, 'delta')
    """
    from .bootstrap import OK, BootstrapResult
    from .fitting import t_quantile

    if not 0 < level < 1:
        raise SpecError(f"--level must be between 0 and 1 (e.g. 0.95), not {level}")
    boot = result if isinstance(result, BootstrapResult) else None
    fit = boot.fit if boot is not None else result
    form = fit.form
    X, extra = resolve_points(fit, points)
    theta = fit.values
    with np.errstate(all="ignore"):
        f = form.predict(theta[None, :], X)[0]
    log_space = fit.objective.log_space
    notes: list[str] = []
    if log_space and np.any(~(f > 0)):
        notes.append("the law predicts a non-positive value at some points: no intervals there")
    dof = interval_dof(fit)
    t = t_quantile((1 + level) / 2, dof)
    s = residual_scale(fit)
    if boot is None:
        se = _delta_se(fit, X, f, notes)  # in the objective's space
        half = t * se
        half_pi = t * np.sqrt(se**2 + s**2)
        ci = _interval(f, half, half, log_space)
        pi = _interval(f, half_pi, half_pi, log_space)
        n_draws = 0
    else:
        good = boot.draws[boot.status == OK]
        lo, hi = _draw_percentiles(form, good, X, level)
        with np.errstate(all="ignore"):
            if log_space:
                down, up = np.log(f) - np.log(lo), np.log(hi) - np.log(f)
            else:
                down, up = f - lo, hi - f
        ci = np.column_stack([lo, hi])
        pi = _interval(f, np.hypot(np.maximum(down, 0), t * s), np.hypot(np.maximum(up, 0), t * s), log_space)
        n_draws = len(good)
        notes += [w for w in boot.warnings if "failed" in w]
    ranges = dict(fit.ranges)
    beyond = {sym: (beyond_range(X[sym], *ranges[sym]) if sym in ranges else np.full(len(f), np.nan))
              for sym in form.variables}
    if not ranges:
        notes.append("the saved fit has no fitted ranges: distances beyond the data are unknown")
    return Prediction(
        form=form.name, response=form.response, variables=tuple(form.variables),
        labels={sym: _label(fit, sym) for sym in form.variables}, points=X, predicted=f, ci=ci, pi=pi,
        level=level, method="bootstrap" if boot is not None else "delta", dof=dof, residual_scale=s,
        log_space=log_space, beyond=beyond, ranges=ranges, extra=extra, n_draws=n_draws,
        warnings=tuple(dict.fromkeys(notes)))


def _label(fit: FitResult, symbol: str) -> str:
    return fit.form.variables[symbol]


def _interval(f: np.ndarray, down: np.ndarray, up: np.ndarray, log_space: bool) -> np.ndarray:
    with np.errstate(all="ignore"):
        if log_space:
            return np.column_stack([f * np.exp(-down), f * np.exp(up)])
        return np.column_stack([f - down, f + up])


def _delta_se(fit: FitResult, X: Mapping[str, np.ndarray], f: np.ndarray, notes: list[str]) -> np.ndarray:
    """Standard error of the prediction in the objective's space (of log f for log objectives).

    Parameters without a variance (fixed, or at a bound) count as known, as in the fit's own
    intervals; a parameter the data cannot determine leaves the points that depend on it without one."""
    theta = fit.values
    with np.errstate(all="ignore"):
        J = fit.form.jacobian(theta[None, :], X)[0]
    cov = fit.covariance
    known = np.isfinite(np.diag(cov))
    Jk = J[:, known]
    var = np.einsum("np,pq,nq->n", Jk, cov[np.ix_(known, known)], Jk)
    se = np.sqrt(np.clip(var, 0, None))
    undetermined = [i for i, name in enumerate(fit.names) if name in fit.undetermined]
    if undetermined:
        depends = np.any(J[:, undetermined] != 0, axis=1)
        if depends.any():
            se = np.where(depends, np.nan, se)
            notes.append(f"no interval where the prediction depends on {', '.join(fit.undetermined)}, "
                         f"which the data cannot determine")
    if fit.objective.log_space:
        with np.errstate(all="ignore"):
            se = se / f
    return se


def _draw_percentiles(form, draws: np.ndarray, X: Mapping[str, np.ndarray], level: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the draws' predictions at every point, in blocks of points."""
    n = len(next(iter(X.values())))
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    if len(draws) == 0:
        return lo, hi
    block = max(1, CHUNK_FLOATS // len(draws))
    q = [(1 - level) / 2, (1 + level) / 2]
    for start in range(0, n, block):
        part = {s: v[start:start + block] for s, v in X.items()}
        with np.errstate(all="ignore"):
            F = form.predict(draws, part)
        lo[start:start + block], hi[start:start + block] = np.quantile(F, q, axis=0)
    return lo, hi


# ---------------------------------------------------------------- points from the command line


def parse_at(items: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """`--at width=8192,depth=80,tokens=1.4T` items (one point each) as {name: [value per point]};
    every item names the same variables. Values stay text: `resolve_points` parses them.

    >>> parse_at(["width=8192,depth=80,tokens=1.4T", "width=4096,depth=48,tokens=300B"])
    {'width': ['8192', '4096'], 'depth': ['80', '48'], 'tokens': ['1.4T', '300B']}
    """
    points: dict[str, list[str]] = {}
    for n, item in enumerate(items):
        pairs = {}
        for part in (p for p in item.split(",") if p.strip()):
            if "=" not in part:
                raise DataError(f"--at '{item}': expected NAME=VALUE pairs separated by commas, e.g. "
                                f"--at width=8192,depth=80,tokens=1.4T")
            key, value = (x.strip() for x in part.split("=", 1))
            if key in pairs:
                raise DataError(f"--at '{item}': {key} is given twice")
            pairs[key] = value
        if n and set(pairs) != set(points):
            raise DataError(f"--at '{item}' names {', '.join(pairs) or 'nothing'}, but the first --at names "
                            f"{', '.join(points)}: every point needs the same variables")
        for key, value in pairs.items():
            points.setdefault(key, []).append(value)
    if not points:
        raise DataError("no points: give --at NAME=VALUE,... (repeatable) or --table FILE")
    return points


def load_points(result: FitResult | BootstrapResult, path, *, format: str | None = None,
                columns: list[str] | None = None) -> Runs:
    """A table of new points, read by the same loaders as a table of runs: the form's variables are
    found by the column mapping the fit used (and `columns`, ROLE=NAME, which win); a loss column is
    not needed, and every other column is carried through."""
    from .io import load_runs, parse_column_overrides

    fit = getattr(result, "fit", result)
    form = fit.form
    saved = dict(fit.load_options.get("columns") or {})
    overrides = {**saved, **parse_column_overrides(columns)}
    variables = list(dict.fromkeys(form.variables.values()))
    positive = [c for c in form.positive_columns() if c in variables]
    # the response of load_runs only matters for --exclude-top-loss; a variable stands in for it
    return load_runs(path, require=variables, format=format, columns=overrides, response=variables[0],
                     positive=positive)
