"""Figures of a bootstrap: one histogram per parameter with both intervals, and the corner plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..errors import DataError
from ..report import format_value_error
from .layout import LEGEND_ROW, fixed_layout
from .save import _maybe_save
from .style import (
    BOOT_COLOR,
    FIT_COLOR,
    JACOBIAN_COLOR,
    POINT_COLOR,
    STYLE,
    _pyplot,
    scientific_ticks,
    tex,
    wrap_title,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CORNER_LEVELS = (0.95, 0.68)  # probability mass enclosed by the corner plot's contours
CORNER_MIN_DRAWS = 30  # fewer draws than this: scatter only, no density contours
OUTLIER_SPAN = 3.0  # a histogram trims its axes to the central 99% when the full range is this much wider


def _finite_draws(draws) -> tuple[np.ndarray, int]:
    draws = np.atleast_2d(np.asarray(draws, dtype=float))
    ok = np.all(np.isfinite(draws), axis=1)
    return draws[ok], int((~ok).sum())


def _hist_range(values: np.ndarray, marks: Sequence[float]) -> tuple[tuple[float, float], int]:
    """The histogram's range and how many draws fall outside it: the full range, unless a few wild draws
    would squash the rest, then the central 99% (widened to show the marks)."""
    lo, hi = float(values.min()), float(values.max())
    core_lo, core_hi = np.percentile(values, [0.5, 99.5])
    if core_hi > core_lo and hi - lo > OUTLIER_SPAN * (core_hi - core_lo):
        marks = [m for m in marks if np.isfinite(m)]
        lo, hi = min([core_lo, *marks]), max([core_hi, *marks])
        pad = 0.03 * (hi - lo)
        lo, hi = lo - pad, hi + pad
    if hi <= lo:
        lo, hi = lo - 0.5 * max(abs(lo), 1e-12), hi + 0.5 * max(abs(hi), 1e-12)
    outside = int(((values < lo) | (values > hi)).sum())
    return (lo, hi), outside


def _mark_interval(ax: Axes, interval, color: str, style: str, label: str | None, shade: bool) -> None:
    if interval is None:
        return
    lo, hi = (float(v) for v in interval)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return
    if shade:
        ax.axvspan(lo, hi, color=color, alpha=0.15, lw=0, zorder=0)
    ax.axvline(lo, color=color, ls=style, lw=1.6, label=label, zorder=3)
    ax.axvline(hi, color=color, ls=style, lw=1.6, zorder=3)


def _histogram_panel(ax: Axes, values: np.ndarray, full: float, interval, jacobian) -> None:
    marks = [full, *(interval or ()), *(jacobian or ())]
    span, outside = _hist_range(values, marks)
    bins = int(np.clip(math.sqrt(len(values)), 10, 50))
    counts, edges = np.histogram(values, bins=bins, range=span)
    # one filled outline rather than a rectangle per bin: a tenth of the drawing cost, same picture
    ax.stairs(counts, edges, fill=True, color="0.62", linewidth=0, zorder=2, gid="histogram")
    _mark_interval(ax, interval, BOOT_COLOR, "--", "bootstrap interval", shade=True)
    _mark_interval(ax, jacobian, JACOBIAN_COLOR, ":", "Jacobian interval", shade=False)
    if math.isfinite(full):
        ax.axvline(full, color="black", lw=1.6, label="full-data estimate", zorder=4)
    if outside:
        ax.text(0.98, 0.97, f"{outside} beyond axes", transform=ax.transAxes, ha="right", va="top",
                fontsize=8)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    scientific_ticks(ax.xaxis)


def bootstrap_histograms(names: Sequence[str], draws, full_values, intervals: Mapping[str, Sequence[float]],
                         jacobian_intervals: Mapping[str, Sequence[float]] | None = None,
                         path: str | Path | None = None) -> Figure:
    """One histogram per parameter of the bootstrap draws (failed resamples, rows with NaN, left out),
    with the full-data estimate, the bootstrap interval and, if given, the Jacobian interval."""
    import matplotlib

    plt = _pyplot()
    ok, failed = _finite_draws(draws)
    full_values = np.asarray(full_values, dtype=float)
    P = len(names)
    ncols = min(4, P)
    nrows = math.ceil(P / ncols)
    with matplotlib.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows + 0.7), squeeze=False)
        flat = axes.ravel()
        for i, name in enumerate(names):
            ax = flat[i]
            jac = (jacobian_intervals or {}).get(name)
            if len(ok):
                values = ok[:, i]
                _histogram_panel(ax, values, float(full_values[i]), intervals.get(name), jac)
                se = values.std(ddof=1) if len(values) > 1 else math.nan
                ax.set_title(f"{tex(name)} = {format_value_error(float(full_values[i]), se)}")
            else:
                ax.text(0.5, 0.5, "no successful resamples", transform=ax.transAxes, ha="center")
                ax.set_title(tex(name))
        for ax in flat[P:]:
            ax.set_visible(False)
        handles, labels = flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncols=len(handles), frameon=False)
        total = len(ok) + failed
        fig.suptitle(wrap_title(f"Bootstrap: {len(ok)} of {total} resamples"
                                + (f" ({failed} failed, left out)" if failed else "")
                                + "; titles show the full-data estimate ± bootstrap s.e.",
                                fig.get_figwidth()))
        fixed_layout(fig, axes, below=LEGEND_ROW if handles else 0.0)
    return _maybe_save(fig, path)


def _density_levels(hist: np.ndarray, masses: Sequence[float]) -> list[float]:
    """Density thresholds enclosing the given probability masses (highest density first), ascending and
    strictly inside the histogram's range, so that contour never warns."""
    flat = np.sort(hist.ravel())[::-1]
    cum = np.cumsum(flat)
    if cum[-1] <= 0:
        return []
    cum /= cum[-1]
    levels = sorted({float(flat[min(np.searchsorted(cum, m), len(flat) - 1)]) for m in masses})
    top = float(hist.max())
    return [v for v in levels if 0 < v < top]


def _smooth(hist: np.ndarray) -> np.ndarray:
    kernel = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    for axis in (0, 1):
        hist = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, hist)
    return hist


def corner(names: Sequence[str], draws, full_values, intervals: Mapping[str, Sequence[float]],
           exponents: Sequence[str] | None = None, path: str | Path | None = None,
           log_scale: Sequence[str] = ()) -> Figure | None:
    """Corner plot of some parameters' bootstrap draws (default: the exponents, names starting with
    'alpha' or 'beta'): pairwise scatter with density contours enclosing 68% and 95% of the draws below
    the diagonal, marginal histograms on it, correlations (of the raw draws) above it. Parameters named
    in `log_scale` whose draws are all positive are shown as log10, so that a coefficient's long right
    tail does not squash its panels. None when there is nothing to show.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> draws = np.column_stack([np.exp(rng.normal(5, 0.5, 200)), rng.normal(1, 0.1, 200)])
    >>> fig = corner(["c", "alpha"], draws, [150.0, 1.0], {}, exponents=["c", "alpha"], log_scale=["c"])
    >>> print(fig.axes[2].get_xlabel())
    $\\log_{10}\\,c$
    """
    import matplotlib

    names = list(names)
    chosen = list(exponents) if exponents is not None else [
        n for n in names if n.startswith(("alpha", "beta"))]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise DataError(f"corner plot: no parameter {', '.join(map(repr, unknown))}; "
                        f"parameters are {', '.join(names)}")
    if not chosen:
        return None
    plt = _pyplot()
    ok, failed = _finite_draws(draws)
    full_values = np.asarray(full_values, dtype=float).copy()
    idx = [names.index(n) for n in chosen]
    k = len(idx)
    size = max(2.4, min(3.2, 9.0 / k))
    raw = ok.copy()
    intervals = dict(intervals)
    logged = {n for n in log_scale if n in chosen and len(ok) and np.all(ok[:, names.index(n)] > 0)
              and full_values[names.index(n)] > 0}
    for n in logged:
        j = names.index(n)
        ok[:, j], full_values[j] = np.log10(ok[:, j]), math.log10(full_values[j])
        if intervals.get(n) is not None:
            intervals[n] = tuple(math.log10(v) if v > 0 else math.nan for v in intervals[n])

    def label(n: str) -> str:
        return f"$\\log_{{10}}\\,{tex(n)[1:-1]}$" if n in logged else tex(n)
    with matplotlib.rc_context(STYLE):
        fig, axes = plt.subplots(k, k, figsize=(size * k + 0.5, size * k + 0.5), squeeze=False)
        # a regular grid labelled only on its left column and bottom row: fixed margins in inches, since
        # constrained layout measured every one of the k*k panels (a third of the figure's cost)
        side = size * k + 0.5
        fig.subplots_adjust(left=0.9 / side, right=1 - 0.15 / side, bottom=0.75 / side, top=1 - 0.75 / side,
                            wspace=0.12, hspace=0.12)
        spans = {}
        for a in range(k):
            vals = ok[:, idx[a]] if len(ok) else np.zeros(0)
            spans[a] = _hist_range(vals, [full_values[idx[a]], *intervals.get(chosen[a], ())])[0] \
                if len(vals) else (0.0, 1.0)
        point_alpha = float(np.clip(150 / max(len(ok), 1), 0.04, 0.5))
        for row in range(k):
            for col in range(k):
                ax = axes[row, col]
                if col > row:
                    if len(ok) > 2:
                        rho = np.corrcoef(raw[:, idx[col]], raw[:, idx[row]])[0, 1]
                        ax.text(0.5, 0.5, f"ρ({tex(chosen[row])}, {tex(chosen[col])})\n= {rho:+.2f}",
                                transform=ax.transAxes, ha="center", va="center", fontsize=10)
                    ax.axis("off")
                    continue
                if row == col:
                    if len(ok):
                        _histogram_panel(ax, ok[:, idx[row]], float(full_values[idx[row]]),
                                         intervals.get(chosen[row]), None)
                    ax.set_xlim(*spans[col])
                else:
                    x, y = ok[:, idx[col]], ok[:, idx[row]]
                    ax.scatter(x, y, s=3, color=POINT_COLOR, alpha=point_alpha, edgecolors="none",
                               rasterized=True)
                    if len(ok) >= CORNER_MIN_DRAWS and np.ptp(x) > 0 and np.ptp(y) > 0:
                        hist, xe, ye = np.histogram2d(x, y, bins=30, range=[spans[col], spans[row]])
                        hist = _smooth(hist)
                        levels = _density_levels(hist, CORNER_LEVELS)
                        if levels:
                            xc, yc = (xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2
                            ax.contour(xc, yc, hist.T, levels=levels, colors="black",
                                       linewidths=[1.0, 1.6][-len(levels):])
                    ax.plot(full_values[idx[col]], full_values[idx[row]], marker="+", color=FIT_COLOR,
                            ms=12, mew=2)
                    ax.set_xlim(*spans[col])
                    ax.set_ylim(*spans[row])
                    scientific_ticks(ax.xaxis)
                    scientific_ticks(ax.yaxis)
                    if col == 0:
                        ax.set_ylabel(label(chosen[row]))
                    else:
                        ax.tick_params(labelleft=False)
                if row == k - 1:
                    ax.set_xlabel(label(chosen[col]))
                else:
                    ax.tick_params(labelbottom=False)
        note = f"; {failed} failed resamples left out" if failed else ""
        fig.suptitle(wrap_title(f"Bootstrap draws (n = {len(ok)}{note}): contours enclose "
                                f"{' and '.join(f'{100 * m:.0f}%' for m in sorted(CORNER_LEVELS))}; "
                                f"+ full-data fit", fig.get_figwidth()))
    return _maybe_save(fig, path)


def bootstrap_figures(names: Sequence[str], draws, full_values, intervals: Mapping[str, Sequence[float]],
                      jacobian_intervals: Mapping[str, Sequence[float]] | None = None,
                      exponents: Sequence[str] | None = None, log_scale: Sequence[str] = (),
                      corner_names: Sequence[str] | None = None) -> dict[str, Figure]:
    """The bootstrap's figures by file stem: `bootstrap_histograms` (one panel per parameter) and
    `bootstrap_corner` (the exponents, or the parameters named in `exponents`) when there is one to
    show. Rows of `draws` (B, P) holding NaN are failed resamples and are left out."""
    figures = {"bootstrap_histograms": bootstrap_histograms(names, draws, full_values, intervals,
                                                            jacobian_intervals)}
    corner_names = list(names if corner_names is None else corner_names)
    keep = [names.index(n) for n in corner_names]
    fig = corner(corner_names, np.asarray(draws, dtype=float)[:, keep], np.asarray(full_values)[keep],
                 intervals, exponents, log_scale=log_scale)
    if fig is not None:
        figures["bootstrap_corner"] = fig
    return figures
