"""Tables for people (rich) and JSON for scripts, and writing files whole or not at all."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from .errors import DataError

if TYPE_CHECKING:
    from rich.console import Console

    from .fitting import FitResult

PAPER_ALPHA_L = "Liu et al. (2026)"
ENSEMBLE_ALPHA = 1.0
REFINEMENT_ALPHA = 3.0


# ---------------------------------------------------------------- numbers


def _decimals_for(err: float, sig: int = 2) -> int:
    """Decimal places that show `err` to `sig` significant digits once rounded there: 0.0996 rounds
    to 0.10, so two places (not three, which would print 0.100)."""
    return sig - 1 - int(f"{abs(err):.{sig - 1}e}".split("e")[1])


def _rounded(x: float, decimals: int) -> float:
    """`x` rounded to `decimals` places, without a negative zero (-0.0004 shows as 0.00, not -0.00)."""
    return round(x, decimals) + 0.0


def format_value_error(value: float, err: float | None, sig: int = 2) -> str:
    """`value ± err` with err rounded to `sig` significant digits and value to the same place;
    scientific notation for very large or small magnitudes; `± n/a` without an error."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if err is None or not math.isfinite(err) or err <= 0:
        return f"{value:.5g} ± n/a" if err is None or not math.isfinite(err) else f"{value:.6g} ± 0"
    magnitude = math.floor(math.log10(abs(value))) if value != 0 else math.floor(math.log10(err))
    big = max(magnitude, math.floor(math.log10(err)))
    if big >= 6 or big <= -4:
        scale = 10.0**big
        d = max(0, _decimals_for(err / scale, sig))
        return f"({_rounded(value / scale, d):.{d}f} ± {err / scale:.{d}f})e{big:+d}"
    d = _decimals_for(err, sig)
    if d > 0:
        return f"{_rounded(value, d):.{d}f} ± {err:.{d}f}"
    return f"{_rounded(value, d):.0f} ± {round(err, d):.0f}"


def format_interval(lo: float, hi: float, err: float | None, sig: int = 2) -> str:
    """An interval printed to the precision of its parameter's error."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    if err is None or not math.isfinite(err) or err <= 0:
        return f"[{lo:.4g}, {hi:.4g}]"
    big = max(math.floor(math.log10(max(abs(lo), abs(hi), 1e-300))), math.floor(math.log10(err)))
    if big >= 6 or big <= -4:
        return f"[{lo:.3e}, {hi:.3e}]"
    d = max(0, _decimals_for(err, sig))
    return f"[{lo:.{d}f}, {hi:.{d}f}]"


def jsonable(value: Any) -> Any:
    """Plain Python values for JSON: numpy scalars to floats/ints, NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of scalefit, Python and the numerical libraries that were imported."""
    from . import __version__

    out = {"scalefit": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for name in ("scipy", "lmfit", "pandas", "matplotlib", "sympy", *extra):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            out[name] = module.__version__
    return out


def fit_to_dict(result: FitResult) -> dict:
    """The JSON document of a fit, with exactly the documented keys."""
    doc = {
        "form": result.form.name,
        "objective": result.objective.to_dict(result.objective_value),
        "n_points": result.n_points,
        "n_excluded": result.n_excluded,
        "params": {e.name: {"value": e.value, "stderr": e.stderr, "ci95": list(e.ci95)}
                   for e in result.estimates},
        "covariance": {"names": list(result.names), "matrix": result.covariance},
        "stats": {
            "rss": result.stats.rss,
            "rmse_log": result.stats.rmse_log,
            "mean_abs_rel_error": result.stats.mean_abs_rel_error,
            "r2": result.stats.r2,
            "aic": result.stats.aic,
            "bic": result.stats.bic,
            "dof": result.stats.dof,
        },
        "converged": result.converged,
        "convergence": result.convergence or ("converged" if result.converged else "did not converge"),
        "warnings": list(result.warnings),
        "versions": versions(),
        "input": {"path": result.input_path, "sha256": result.input_sha256},
    }
    if result.profile is not None:
        doc["profile"] = result.profile.to_dict()
    if result.fixed_by_user:
        doc["fixed"] = dict(result.fixed_by_user)
    if result.bounds_by_user:
        doc["bounds"] = {name: [lo, hi] for name, lo, hi in result.bounds_by_user}
    if result.derived:
        doc["derived"] = {e.name: {"value": e.value, "stderr": e.stderr, "ci95": list(e.ci95)}
                          for e in result.derived}
    return jsonable(doc)


# ---------------------------------------------------------------- files


def check_writable(path: str | Path) -> None:
    """Raise a DataError now if `path` cannot be written (no such directory, or it is a directory),
    so that a command can fail before its work rather than after. `-` (stdout) always passes."""
    if str(path) == "-":
        return
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"cannot write {path}: directory {parent} does not exist")
    if path.is_dir():
        raise DataError(f"cannot write {path}: it is a directory")


def check_plot_dir(directory: str | Path) -> None:
    """Raise a DataError now if `directory` is a file, or does not exist and cannot be made (its
    nearest existing ancestor is not a writable directory)."""
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise DataError(f"cannot save plots into {directory}: it is not a directory")
        if not os.access(directory, os.W_OK):
            raise DataError(f"cannot save plots into {directory}: it is not writable")
        return
    parent = directory.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"cannot create plot directory {directory}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise DataError(f"cannot create plot directory {directory}: {parent} is not writable")


def run_record() -> dict:
    """What identifies this run in its JSON: a random id and the UTC time it finished."""
    import datetime
    import uuid

    return {"id": uuid.uuid4().hex,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then move the file into place; on any failure nothing is left behind."""
    path = Path(path)
    check_writable(path)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        # mkstemp creates 0600; give the file the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, doc: dict) -> None:
    """Write `doc` as JSON to `path`, or to stdout when path is `-`."""
    text = json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- words


def depth_regime(result: FitResult) -> str | None:
    """One sentence placing alpha_l and its interval against the paper's regimes, for `decomposed`."""
    if "alpha_l" not in result.names:
        return None
    est = result.estimate("alpha_l")
    lo, hi = est.ci95
    head = f"alpha_l = {format_value_error(est.value, est.stderr)}"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (f"{head}: its interval is not available ({est.note or 'no standard error'}), so these "
                f"runs cannot place depth scaling in a regime.")
    span = f"95% interval [{lo:.2f}, {hi:.2f}]"
    if lo <= ENSEMBLE_ALPHA <= hi and hi < REFINEMENT_ALPHA:
        return (f"{head} ({span}): consistent with layers averaging like an ensemble (alpha_l ≈ 1, "
                f"{PAPER_ALPHA_L}) and excludes smooth refinement (alpha_l ≥ 3).")
    if lo <= ENSEMBLE_ALPHA and hi >= REFINEMENT_ALPHA:
        return (f"{head} ({span}): too uncertain to tell ensemble averaging (≈ 1) from smooth "
                f"refinement (≥ 3).")
    if lo >= REFINEMENT_ALPHA:
        return (f"{head} ({span}): consistent with smooth refinement (alpha_l ≥ 3), not with "
                f"ensemble averaging (≈ 1).")
    if hi < ENSEMBLE_ALPHA:
        return (f"{head} ({span}): below 1, shallower than ensemble averaging; excludes smooth "
                f"refinement (≥ 3).")
    if hi < (ENSEMBLE_ALPHA + REFINEMENT_ALPHA) / 2:
        return (f"{head} ({span}): close to ensemble averaging (alpha_l ≈ 1), though 1 itself lies "
                f"below the interval; excludes smooth refinement (≥ 3).")
    if hi < REFINEMENT_ALPHA:
        return f"{head} ({span}): above ensemble averaging (≈ 1) and below smooth refinement (≥ 3)."
    return f"{head} ({span}): above 1; cannot exclude smooth refinement (≥ 3)."


# ---------------------------------------------------------------- rich tables


def params_table(result: FitResult, title: str | None = None):
    from rich.table import Table

    table = Table(title=title or f"{result.form.name}: {result.form.describe()}", title_justify="left")
    table.add_column("parameter", style="bold")
    table.add_column("value ± standard error", justify="right")
    table.add_column("95% interval", justify="right")
    table.add_column("note")
    for e in result.estimates + result.derived:
        table.add_row(e.name, format_value_error(e.value, e.stderr), format_interval(*e.ci95, e.stderr),
                      e.note if e in result.estimates else f"derived: {e.note}")
    return table


def stats_table(result: FitResult):
    from rich.table import Table

    s = result.stats
    obj = result.objective
    table = Table(title="fit statistics", title_justify="left", show_header=False)
    table.add_column("statistic")
    table.add_column("value", justify="right")
    rows = [
        ("rows used / dropped", f"{result.n_points} / {result.n_excluded}"),
        (f"objective ({obj.name}{f', delta={obj.delta:g}' if obj.delta else ''})",
         f"{result.objective_value:.6g}"),
        ("mean squared log error" if obj.log_space else "mean squared error",
         f"{s.rss / result.n_points:.6g}"),
        ("RMSE of log residuals", _num(s.rmse_log, ".4g")),
        ("mean absolute relative error", _num(100 * s.mean_abs_rel_error, ".3f", "%")),
        ("R²" + (" (log space)" if obj.log_space else ""), _num(s.r2, ".5f")),
        ("AIC / BIC", f"{_num(s.aic, '.2f')} / {_num(s.bic, '.2f')}"),
        ("degrees of freedom", str(s.dof)),
        ("converged", "yes" if result.converged else "NO"),
        ("starts tried", f"{result.n_grid} grid points, {result.n_starts} polished"
         + (f", {result.n_escalated} escalated to robust" if result.n_escalated else "")),
        ("time", f"{result.seconds:.2f} s"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def profile_table(result: FitResult):
    """Profile-likelihood intervals beside the Jacobian ones, with each end's distance from the
    estimate (unequal where the objective is not quadratic)."""
    from rich.table import Table

    prof = result.profile
    title = f"profile-likelihood {100 * prof.level:g}% intervals"
    if not result.objective.least_squares:
        title += " (Huber: the F threshold by analogy, not a likelihood; prefer the bootstrap)"
    table = Table(title=title, title_justify="left")
    table.add_column("parameter")
    table.add_column("profile interval", justify="right")
    table.add_column("- / +", justify="right")
    table.add_column("Jacobian interval", justify="right")
    table.add_column("note")
    for interval in prof.intervals:
        est = result.estimate(interval.name)
        err = est.stderr if math.isfinite(est.stderr) else None
        lo, hi = interval.lower, interval.upper
        span = (format_interval(lo, hi, err) if math.isfinite(lo) and math.isfinite(hi)
                else f"[{lo:.4g}, {hi:.4g}]")
        down, up = interval.value - lo, hi - interval.value
        sides = f"-{down:.3g} / +{up:.3g}" if math.isfinite(down) and math.isfinite(up) else "n/a"
        table.add_row(interval.name, span, sides, format_interval(*est.ci95, err), interval.note)
    return table


def _num(x: float, fmt: str, suffix: str = "") -> str:
    return f"{x:{fmt}}{suffix}" if x is not None and math.isfinite(x) else "n/a"


def render_fit(result: FitResult, console: Console) -> None:
    """Print a fit: parameters, statistics, the depth-regime sentence, notes and warnings."""
    console.print(params_table(result))
    console.print(stats_table(result))
    if result.profile is not None:
        console.print(profile_table(result))
    sentence = depth_regime(result)
    if sentence:
        console.print(sentence)
    for note in result.notes:
        console.print(f"note: {note}", style="dim", markup=False)
    for name, value in result.fixed_by_user:
        console.print(f"note: {name} held at {value:g} (--fix)", style="dim", markup=False)
    for name, lo, hi in result.bounds_by_user:
        console.print(f"note: {name} bounded to [{lo:g}, {hi:g}] (--bound)", style="dim", markup=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False)
