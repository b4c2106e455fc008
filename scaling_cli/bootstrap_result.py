"""What a bootstrap returns: the estimates and intervals of every parameter, every resample's draws
and status, and how to save, tabulate and plot them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .fitting import FitResult, problem_of
from .forms import Form
from .resample import Resampler
from .solve import Centering

STATUS = ("ok", "not converged", "no finite fit", "too few rows")
OK, NOT_CONVERGED, NO_FINITE_FIT, TOO_FEW_ROWS = range(4)
PARQUET_NEEDS_PYARROW = "writing Parquet needs pyarrow: pip install 'scaling-cli[parquet]', or use .csv"


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
    >>> from scaling_cli.bootstrap import bootstrap
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
        >>> from scaling_cli.bootstrap import bootstrap
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


def _with_derived(form: Form, theta: np.ndarray) -> np.ndarray:
    """`theta` (K, P) with the form's derived quantities appended as columns (K, P + D)."""
    if not form.derived:
        return theta
    if len(theta) == 0:  # no draws (e.g. every jackknife fit failed): keep the column count
        return np.zeros((0, theta.shape[1] + len(form.derived)))
    with np.errstate(all="ignore"):
        extra = np.column_stack([d.value(theta) for d in form.derived])
    return np.hstack([theta, extra])
