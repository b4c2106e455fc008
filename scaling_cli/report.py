"""Tables for people (rich) and JSON for scripts, and writing files whole or not at all."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

import numpy as np

from .errors import DataError

# jsonable, versions and fit_to_dict live in `results` (the serialization that fitting, bootstrap and
# report share); imported here so that `report.jsonable` and friends keep working
from .results import fit_to_dict, jsonable, versions  # noqa: F401

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


def _layout(value: float, err: float, sig: int = 2) -> tuple[int, int]:
    """How a value with a (positive, finite) error prints: (exponent, decimals). The error is rounded to
    `sig` significant digits and the value to the same place. Magnitudes from 1e-4 to 1e6 print plainly
    (exponent 0); beyond them both are scaled by 10**exponent, the value's own power of ten when it
    shows a digit (`(2 ± 64)e+5`, never `(0.2 ± 6.4)e+6`), else the error's. `decimals` may be negative:
    the place (10**-decimals) both are rounded to."""
    d = _decimals_for(err, sig)
    err_exp = sig - 1 - d
    shown = value != 0 and abs(_rounded(value, d)) > 0
    value_exp = math.floor(math.log10(abs(value))) if shown else err_exp
    if max(value_exp, err_exp) >= 6 or max(value_exp, err_exp) <= -4:
        exponent = value_exp if shown else err_exp
        return exponent, d + exponent
    return 0, d


def _fixed(x: float, decimals: int) -> str:
    """`x` rounded to `decimals` places (negative: to tens, hundreds, ...), as plain text."""
    return f"{_rounded(x, decimals):.{max(decimals, 0)}f}"


def format_value_error(value: float, err: float | None, sig: int = 2) -> str:
    """`value ± err` with err rounded to `sig` significant digits and value to the same place;
    scientific notation for very large or small magnitudes; `± n/a` without an error.

    >>> format_value_error(0.94548, 0.08479), format_value_error(274.7, 143.3)
    ('0.945 ± 0.085', '270 ± 140')
    >>> format_value_error(2.0e5, 6.4e6), format_value_error(1.2345e-7, 2.1e-9)
    ('(2 ± 64)e+5', '(1.235 ± 0.021)e-7')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    if err is None or not math.isfinite(err) or err <= 0:
        return f"{value:.5g} ± n/a" if err is None or not math.isfinite(err) else f"{value:.6g} ± 0"
    exponent, d = _layout(value, err, sig)
    if exponent:
        scale = 10.0**exponent
        return f"({_fixed(value / scale, d)} ± {_fixed(err / scale, d)})e{exponent:+d}"
    return f"{_fixed(value, d)} ± {_fixed(err, d)}"


def format_interval(lo: float, hi: float, err: float | None, sig: int = 2, value: float | None = None) -> str:
    """An interval rounded like its parameter's `value ± err` (the same place, the same power of ten),
    so that `270 ± 140` stands beside `[-10, 560]`, not `[-8, 557]`. Without `value`, the interval's
    midpoint stands in for it.

    >>> format_interval(-7.94, 557.39, 143.3), format_interval(2.1e6, 4.3e6, 5.5e5, value=3.2e6)
    ('[-10, 560]', '[2.10e+6, 4.30e+6]')
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    if err is None or not math.isfinite(err) or err <= 0:
        return f"[{lo:.4g}, {hi:.4g}]"
    if value is None or not math.isfinite(value):
        value = (lo + hi) / 2
    exponent, d = _layout(value, err, sig)
    if exponent:
        scale = 10.0**exponent
        return f"[{_fixed(lo / scale, d)}e{exponent:+d}, {_fixed(hi / scale, d)}e{exponent:+d}]"
    return f"[{_fixed(lo, d)}, {_fixed(hi, d)}]"


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


def write_frame_csv(path: str | Path, frame) -> Path:
    """Write a pandas DataFrame as CSV (full float precision), whole or not at all; `-` is stdout."""
    if str(path) == "-":
        frame.to_csv(sys.stdout, index=False, float_format="%.17g")
        return Path("-")
    try:
        return atomic_write(path, lambda p: frame.to_csv(p, index=False, float_format="%.17g"))
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None




# ---------------------------------------------------------------- words


POWER_LAW_CAVEAT = " (This assumes the depth term is a power law; compare forms to test that.)"
REGIME_WITHHELD = ("{head}: these runs cannot place depth scaling in a regime ({why}); no claim is made "
                   "about ensemble averaging (≈ 1) or smooth refinement (≥ 3).")


def depth_regime(result: FitResult, interval: tuple[float, float] | None = None,
                 stderr: float | None = None, label: str = "95% interval") -> str | None:
    """One sentence placing alpha_l and its interval against the paper's regimes, for `decomposed`.

    It uses the interval the report shows (`interval`, e.g. a bootstrap's; default the fit's), and is
    withheld when the design cannot tell (width or depth undetermined or with fewer than 3 values, or
    too few runs for the parameters)."""
    if "alpha_l" not in result.names:
        return None
    est = result.estimate("alpha_l")
    lo, hi = interval if interval is not None else est.ci95
    head = f"alpha_l = {format_value_error(est.value, est.stderr if stderr is None else stderr)}"
    why = getattr(result, "regime_withheld", "")
    if why:
        return REGIME_WITHHELD.format(head=head, why=why)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (f"{head}: its interval is not available ({est.note or 'no standard error'}), so these "
                f"runs cannot place depth scaling in a regime.")
    err = est.stderr if stderr is None else stderr
    span = f"{label} {format_interval(lo, hi, err, value=est.value)}"
    return _regime_sentence(head, lo, hi, span) + POWER_LAW_CAVEAT


def _regime_sentence(head: str, lo: float, hi: float, span: str) -> str:
    """The claim the interval [lo, hi] (printed as `span`) supports about the two regimes."""
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


def _split_terms(expression: str) -> list[str]:
    """The top-level terms of a formula, each but the first with its sign: `a * x**(-b) + c - d` ->
    [`a * x**(-b)`, `+ c`, `- d`]. Signs inside parentheses, after an operator (`x**-b`) or in a number
    (`1e-3`) do not split."""
    terms, depth, start, prev, prev2 = [], 0, 0, "", ""
    for i, ch in enumerate(expression):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif (ch in "+-" and depth == 0 and i > start and (prev.isalnum() or prev in "_)")
              and not (prev in "eE" and prev2.isdigit())):
            terms.append(expression[start:i].strip())
            start = i
        if not ch.isspace():
            prev2, prev = prev, ch
    terms.append(expression[start:].strip())
    return [t[0] + " " + t[1:].strip() if t[:1] in "+-" and len(terms) > 1 else t for t in terms if t]


def formula_lines(name: str, expression: str, width: int = 80) -> list[str]:
    """`name: expression` as lines of at most `width` characters, broken only between terms (a
    continuation starts with the term's sign, under the first term); a single term longer than a line
    stays whole.

    >>> formula_lines("decomposed", "c_m * m**(-alpha_m) + c_l * l**(-alpha_l) + L0", 40)
    ['decomposed: c_m * m**(-alpha_m)', '            + c_l * l**(-alpha_l) + L0']
    """
    head = f"{name}: "
    indent = " " * len(head) if len(head) <= width // 3 else "    "
    lines, current = [], head
    for term in _split_terms(expression):
        bare = current in (head, indent)
        candidate = current + term if bare else f"{current} {term}"
        if len(candidate) <= width or bare:
            current = candidate
        else:
            lines.append(current)
            current = indent + term
    lines.append(current)
    return lines


def print_formula(console: Console, form, extra: str | None = None) -> None:
    """Print a form's name and formula on lines of their own, broken between terms to fit the console;
    `extra` (e.g. how a bootstrap resampled) follows on its own line."""
    for line in formula_lines(form.name, form.describe(), console.width):
        console.print(line, markup=False, highlight=False, overflow="fold")
    if extra:
        console.print(extra, markup=False, highlight=False)


def params_table(result: FitResult, title: str | None = None):
    from rich.table import Table

    """Parameters and derived quantities: value ± standard error, 95% interval, note. The numbers never
    wrap; the note column takes what width is left. The formula is printed above it by `print_formula`
    (a `title` is only shown when given)."""
    from .fitting import BOTH_BOUNDS_INTERVAL_NOTE, BOUNDED_INTERVAL_NOTE, UPPER_BOUNDED_INTERVAL_NOTE

    table = Table(title=title, title_justify="left")
    table.add_column("parameter", style="bold", overflow="fold")  # a long name folds; numbers never do
    table.add_column("value ± standard error", justify="right", no_wrap=True)
    table.add_column("95% interval", justify="right", no_wrap=True)
    table.add_column("note", overflow="fold")
    for e in result.estimates + result.derived:
        table.add_row(e.name, format_value_error(e.value, e.stderr),
                      format_interval(*e.ci95, e.stderr, value=e.value),
                      e.note if e in result.estimates else f"derived: {e.note}")
    notes = {e.note for e in result.estimates}
    if notes & {BOUNDED_INTERVAL_NOTE, BOTH_BOUNDS_INTERVAL_NOTE}:
        table.caption = ("cut at bound: value - t·s.e. falls below the lowest value the parameter "
                         "can take (0), so the interval starts there")
        table.caption_justify = "left"
    if notes & {UPPER_BOUNDED_INTERVAL_NOTE, BOTH_BOUNDS_INTERVAL_NOTE}:
        table.caption = ((table.caption + "; " if table.caption else "")
                         + "cut at upper bound: value + t·s.e. passes the highest value the parameter "
                         "can take, so the interval ends there")
        table.caption_justify = "left"
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
        *([("groups (runs)", f"{result.n_groups} in column '{result.group_column}'")]
          if result.group_column is not None else []),
        ("errors", _errors_label(result)),
        ("converged", "yes" if result.converged else "NO"),
        ("starts tried", f"{result.n_grid} grid points, {result.n_starts} polished"
         + (f", {result.n_escalated} escalated to robust" if result.n_escalated else "")),
        ("time", f"{result.seconds:.2f} s"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def _errors_label(result: FitResult) -> str:
    if result.covariance_type.startswith("cluster"):
        return f"{result.covariance_type}, t({_dof_range(result)})"
    if not result.objective.least_squares:
        return f"iid, Huber's formula, t({result.ci_dof})"
    return f"iid Jacobian, t({result.ci_dof})"


def _dof_range(result: FitResult) -> str:
    """`21`, or `2.8-21` when the parameters' t degrees of freedom differ (Bell-McCaffrey's)."""
    dof = result.param_dof[np.isfinite(result.param_dof)] if len(result.param_dof) else []
    if not len(dof):
        return str(result.ci_dof)
    lo, hi = float(np.min(dof)), float(np.max(dof))
    return f"{lo:.2g}" if round(lo, 1) == round(hi, 1) else f"{lo:.2g}-{hi:.2g}"


def columns_line(result: FitResult) -> str:
    """`columns: width=d_model, depth=n_layers, tokens=step, loss=val_loss, group=model`."""
    return "columns: " + ", ".join(f"{role}={column}" for role, column in result.columns.items())


def design_lines(result: FitResult) -> list[str]:
    """The design in a few short lines: per variable its column, distinct values and decades, and
    how log width and log depth move together."""
    design = result.design
    if design is None:
        return []
    parts = [f"{v.column} {v.levels} value{'s' if v.levels != 1 else ''} over {v.decades:.2f} decades"
             for v in design.variables]
    lines = ["design: " + "; ".join(parts)]
    if design.width_depth_correlation is not None:
        lines.append(f"design: log depth rises with log width at slope {design.width_depth_slope:.2f} "
                     f"(r = {design.width_depth_correlation:.2f})")
    return lines


def errors_note(result: FitResult) -> str | None:
    """What the reported errors are, on a table with groups."""
    if result.group_column is None:
        return None
    if result.covariance_type.startswith("cluster"):
        return (f"errors are cluster-robust ({result.covariance_type.split()[-1]}) over {result.n_groups} "
                f"runs (column '{result.group_column}'), intervals from t with "
                + (f"Bell-McCaffrey degrees of freedom ({_dof_range(result)}; at most {result.ci_dof}, fewer "
                   f"where a few runs carry a parameter)" if len(result.param_dof) else
                   f"{result.ci_dof} degrees of freedom")
                + "; the iid errors, which treat every row as an independent run, are in the JSON "
                "(stderr_iid) and with --errors iid")
    return None
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
    print_formula(console, result.form)
    console.print(params_table(result))
    console.print(stats_table(result))
    if result.profile is not None:
        console.print(profile_table(result))
    sentence = depth_regime(result)
    if sentence:
        console.print(sentence, markup=False)
    for note in [columns_line(result), *design_lines(result), errors_note(result), *result.notes]:
        if note:
            console.print(f"note: {note}", style="dim", markup=False)
    for name, value in result.fixed_by_user:
        console.print(f"note: {name} held at {value:g} (--fix)", style="dim", markup=False)
    for name, lo, hi in result.bounds_by_user:
        console.print(f"note: {name} bounded to [{lo:g}, {hi:g}] (--bound)", style="dim", markup=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False)


# ---------------------------------------------------------------- scalefit forms


def forms_table(catalog: Sequence[Mapping[str, str]]):
    """The forms `scalefit forms` lists (`forms.form_catalog()`): name, where it comes from, and its
    formula with its reference below it."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("use", no_wrap=True)
    table.add_column("formula and reference", overflow="fold")
    for row in catalog:
        use = "--form" if row["kind"] == "built-in" else "--config"
        cell = Text(row["expression"])
        if row["reference"]:
            cell.append("\n" + row["reference"], style="dim")
        table.add_row(row["name"], f"{use} {row['name']}", cell, end_section=True)
    return table


def render_forms(catalog: Sequence[Mapping[str, str]], console: Console, directory: str) -> None:
    """Print the catalog of forms and where the shipped YAML files are."""
    console.print(forms_table(catalog))
    console.print(f"shipped YAML forms are in {directory}; copy one to write your own (--config FILE)",
                  markup=False, highlight=False)


# ---------------------------------------------------------------- short reprs for notebooks


def _short_estimates(pairs: Iterable[tuple[str, float, float]], limit: int = 4) -> str:
    """`c_m=270±140, alpha_m=0.945±0.085, ...`: the first few parameters, compactly."""
    pairs = list(pairs)
    text = ", ".join(f"{name}={format_value_error(value, err).replace(' ± ', '±')}"
                     for name, value, err in pairs[:limit])
    return text + (f", ... ({len(pairs)} in all)" if len(pairs) > limit else "")


def fit_repr(result: FitResult) -> str:
    """One line for `repr(FitResult)`: form, objective, rows, convergence and the first parameters."""
    flags = "converged" if result.converged else "NOT converged"
    if result.at_bound:
        flags += f"; at bound: {', '.join(result.at_bound)}"
    if result.undetermined:
        flags += f"; undetermined: {', '.join(result.undetermined)}"
    estimates = _short_estimates((e.name, e.value, e.stderr) for e in result.estimates + result.derived)
    return (f"<FitResult {result.form.name}, {result.objective.name}, {result.n_points} rows, {flags}: "
            f"{estimates}>")


def html_table(frame, heading: str) -> str:
    """A notebook's HTML view: a heading line and a pandas table (values to 6 significant digits)."""
    import html

    return (f"<p><b>{html.escape(heading)}</b></p>"
            + frame.to_html(float_format=lambda v: f"{v:.6g}", na_rep="n/a"))
