"""Tables for `scalefit predict` and `scalefit optimize`: forecasts and compute-optimal plans with their
intervals, for people (rich) and as CSV."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rich.console import Console

_OPT_ROWS = (("width", "width m"), ("depth", "depth l"), ("tokens", "tokens D"), ("params", "params N"),
             ("loss", "loss L"), ("tokens_per_param", "tokens / param"), ("aspect", "width / depth"))

# ---------------------------------------------------------------- predict and optimize


def _g(x: float, digits: int = 4) -> str:
    """A number in `digits` significant digits, plain for 1e-3 <= |x| < 1e6 and scientific otherwise."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}" if x == 0 or 1e-3 <= abs(x) < 1e6 else f"{x:.{max(1, digits - 2)}e}"


def _decimals(values, digits: int = 4) -> int:
    """Decimal places that show the smallest of `values` to `digits` significant digits (at most 6)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return 3
    return max(0, min(6, digits - 1 - math.floor(math.log10(min(finite)))))


def _short(x: float) -> str:
    """A variable's value in at most ~7 characters: 8192, 80, 1.4e12, 2.5e-3."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    if 1e-2 <= abs(x) < 1e6:
        return f"{x:.4g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def prediction_table(prediction):
    """Per point: the variables, the predicted response, its confidence and prediction intervals,
    and per variable the decades beyond the fitted range (fits 80 columns for three variables)."""
    from rich import box
    from rich.table import Table

    p = prediction
    pct = f"{100 * p.level:g}%"
    table = Table(box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, padding=(0, 1, 0, 0),
                  title=f"{p.form}: predicted {p.response} at {len(p)} point{'s' * (len(p) != 1)}")
    for s in p.variables:
        table.add_column(p.labels[s], justify="right", no_wrap=True)
    d = min(4, _decimals([x for row in (p.predicted, p.ci.ravel(), p.pi.ravel()) for x in row], 4))
    table.add_column(p.response, justify="right", no_wrap=True)
    table.add_column(f"{pct} CI", justify="center", no_wrap=True)
    table.add_column(f"{pct} PI", justify="center", no_wrap=True)
    for s in p.variables:
        table.add_column(f"±{s}" if len(p.variables) > 1 else "beyond", justify="right", no_wrap=True)
    for i in range(len(p)):
        table.add_row(*[_short(float(p.points[s][i])) for s in p.variables],
                      _fixed_or_na(p.predicted[i], d), _pair(p.ci[i], d), _pair(p.pi[i], d),
                      *[_beyond(p.beyond[s][i]) for s in p.variables])
    return table


def _beyond(x: float) -> str:
    if not math.isfinite(x):
        return "?"
    return "·" if x == 0 else f"{x:+.2f}"


def _fixed_or_na(x: float, d: int) -> str:
    return f"{x:.{d}f}" if math.isfinite(x) else "n/a"


def _pair(pair, d: int) -> str:
    lo, hi = pair
    return f"{lo:.{d}f}–{hi:.{d}f}" if math.isfinite(lo) and math.isfinite(hi) else "n/a"


def render_prediction(prediction, console: Console) -> None:
    """Print predictions: the table, what the intervals are, and how far the points extrapolate."""
    console.print(prediction_table(prediction))
    console.print(prediction.interval_description(), markup=False)
    n_out = int(prediction.extrapolation.sum())
    ranges = ", ".join(f"{prediction.labels[s]} {_g(lo)}..{_g(hi)}"
                       for s, (lo, hi) in prediction.ranges.items() if s in prediction.labels)
    symbols = ", ".join(f"±{s}" for s in prediction.variables)
    console.print(f"{symbols}: decades beyond the fitted range ({ranges}); + above the largest, - below "
                  f"the smallest, · inside. {n_out} of {len(prediction)} points extrapolate"
                  + (": their intervals assume the law holds there." if n_out else "."), markup=False)
    for warning in prediction.warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False)


def _sig(x: float, digits: int = 3) -> str:
    """`digits` significant digits: fixed below 1e4 (1540, 71.40, 0.0123), else 3.90e10."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x)))) if x != 0 else digits - 1
    return f"{x:.{decimals}f}"


def _span(pair, digits: int = 3) -> str:
    lo, hi = pair
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "n/a"
    return f"{_sig(lo, digits)}–{_sig(hi, digits)}"


def optimum_table(result):
    """One budget: the continuous optimum, its interval (bootstrap) and the best trainable shape."""
    from rich import box
    from rich.table import Table

    r = result
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("quantity")
    table.add_column("optimum", justify="right")
    if r.intervals is not None:
        table.add_column(f"{100 * r.level:g}% interval", justify="right")
    if r.shape is not None:
        table.add_column("best shape", justify="right")
    for key, label in _OPT_ROWS:
        value = r.optimum[key][0]
        if not math.isfinite(value) and (r.shape is None or not math.isfinite(r.shape[key][0])):
            continue
        digits = 5 if key == "loss" else 4
        row = [label, _sig(value, digits)]
        if r.intervals is not None:
            row.append(_span(r.intervals[key][0], 3 if key != "loss" else 4))
        if r.shape is not None:
            shape = r.shape[key][0]
            row.append(f"{shape:.0f}" if key in ("width", "depth") and math.isfinite(shape)
                       else _sig(shape, digits))
        table.add_row(*row)
    if r.shape is not None and math.isfinite(r.shape["penalty"][0]):
        table.add_row("loss given up", "", *([""] if r.intervals is not None else []),
                      f"+{_sig(r.shape['penalty'][0], 2)}")
    return table


def frontier_table(result):
    """Several budgets: the optimum per budget, and the best shape with its loss penalty."""
    from rich import box
    from rich.table import Table

    r = result
    table = Table(box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, padding=(0, 1, 0, 0),
                  title=f"{r.form}: compute-optimal frontier, {len(r)} budgets")
    has_shape = "width" if np.isfinite(r.optimum["width"]).any() else None
    columns = [("FLOP", None)] + [(label, key) for key, label in (
        ("width", "m*"), ("depth", "l*"), ("tokens", "D*"), ("params", "N*"), ("tokens_per_param", "D/N"),
        ("loss", "L*")) if np.isfinite(r.optimum[key]).any()]
    for label, _ in columns:
        table.add_column(label, justify="right", no_wrap=True)
    if r.shape is not None and has_shape:
        table.add_column("shape m×l", justify="right", no_wrap=True)
        table.add_column("ΔL", justify="right", no_wrap=True)
    for i in range(len(r)):
        row = [_sig(r.flops[i], 2)]
        for _, key in columns[1:]:
            row.append(_sig(r.optimum[key][i], 4 if key == "loss" else 3))
        if r.shape is not None and has_shape:
            w, d = r.shape["width"][i], r.shape["depth"][i]
            row.append(f"{w:.0f}×{d:.0f}" if math.isfinite(w) and math.isfinite(d) else "none")
            row.append(_sig(r.shape["penalty"][i], 2))
        table.add_row(*row)
    return table


def frontier_intervals_table(result):
    """Several budgets from a bootstrap: percentile intervals of the optimum."""
    from rich import box
    from rich.table import Table

    r = result
    table = Table(box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, padding=(0, 1, 0, 0),
                  title=f"{100 * r.level:g}% intervals over {r.n_draws} bootstrap draws")
    keys = [(key, label) for key, label in (("width", "m*"), ("depth", "l*"), ("params", "N*"),
                                            ("tokens", "D*"), ("loss", "L*"))
            if np.isfinite(r.optimum[key]).any()]
    table.add_column("FLOP", justify="right", no_wrap=True)
    for _, label in keys:
        table.add_column(label, justify="right", no_wrap=True)
    for i in range(len(r)):
        table.add_row(_sig(r.flops[i], 2), *[_span(r.intervals[key][i], 4 if key == "loss" else 2)
                                             for key, _ in keys])
    return table


def render_optimum(result, console: Console) -> None:
    """Print `scalefit optimize`: the optimum (one budget) or the frontier, and how it was found."""
    if len(result) == 1:
        console.print(f"{result.form}: compute-optimal run for C = {_sig(result.flops[0])} FLOP",
                      markup=False)
        console.print(optimum_table(result))
    else:
        console.print(frontier_table(result))
        if result.intervals is not None:
            console.print(frontier_intervals_table(result))
    console.print(f"cost model: {result.cost_model}; solved by {result.method}.", markup=False)
    if result.shape is not None and np.isfinite(result.optimum["width"]).any():
        penalty = "; ΔL: the loss it gives up" if len(result) > 1 else ""
        console.print(f"best shape: {result.constraints.describe()}, tokens spending the budget"
                      f"{penalty}.", markup=False)
    if result.intervals is not None:
        console.print(f"intervals: percentiles over {result.n_draws} bootstrap draws; "
                      f"{int(result.n_no_interior.max())} without an interior optimum.", markup=False)
    for warning in result.warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False)
