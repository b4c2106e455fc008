"""Figures of a fit and of a bootstrap, for a paper: each builder returns a matplotlib Figure.

matplotlib is imported inside the functions (with the Agg backend), never at module import, so that
`scalefit --help` stays instant. `save_figures` writes each figure whole or not at all and closes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from .errors import DataError
from .report import atomic_write, format_value_error

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .compare import CompareResult
    from .fitting import FitResult

PLOT_FORMATS = ("png", "pdf", "svg")
PNG_DPI = 200
COMPARE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
COMPARE_FIGURE = "compare_heldout"
BAND_PERCENT = 1.0  # the observed-vs-predicted band, in percent of the loss
N_ISO_CURVES = 5  # iso-parameter curves on the Chinchilla loss-versus-compute figure
MAX_GROUPS = 25  # a variable with at most this many distinct values gets one mean per value
N_BINS = 8  # otherwise its points are averaged in this many log-spaced bins
CORNER_LEVELS = (0.95, 0.68)  # probability mass enclosed by the corner plot's contours
CORNER_MIN_DRAWS = 30  # fewer draws than this: scatter only, no density contours
OUTLIER_SPAN = 3.0  # a histogram trims its axes to the central 99% when the full range is this much wider

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "figure.titlesize": 12,
    "legend.framealpha": 0.9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
# How files are written: TrueType fonts embedded in PDF (Type 3 fonts are refused by some journals and
# look poor when edited), real <text> elements in SVG so that labels stay editable.
SAVE_STYLE = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}
TITLE_CHARS_PER_INCH = 11  # characters of an 11-12 pt title that fit in an inch of figure width
POINT_COLOR = "#1f77b4"
FIT_COLOR = "#d62728"
MEAN_COLOR = "black"
BOOT_COLOR = "#ff7f0e"
JACOBIAN_COLOR = "#2ca02c"

# How each role is named on an axis; a symbol the table calls something else falls back to its name.
# {col} is the table's column that played the role (the default in brackets when it is not known).
ROLE_LABELS = {
    "width": "width {sym} ({col})",
    "depth": "depth {sym} ({col})",
    "tokens": "training tokens {sym} ({col})",
    "params": "parameters {sym} ({col})",
    "flops": "training compute {sym} ({col})",
}
DEFAULT_COLUMNS = {"width": "d_model", "depth": "layers", "tokens": "tokens", "params": "params",
                   "flops": "FLOP"}


@dataclass(frozen=True)
class AxisText:
    """What the figures call things, from the table: the column that played each role, and the noun for
    its rows ("checkpoints" when a group column holds several rows per group, else "runs")."""

    columns: Mapping[str, str] = field(default_factory=dict)
    unit: str = "runs"


def axis_text(runs) -> AxisText:
    """`AxisText` for a `Runs` table, or for a `FitResult` (the roles and groups of the table it fitted).

    >>> from scaling_cli import load_runs
    >>> axis_text(load_runs("data/example_runs.csv"))
    AxisText(columns={'width': 'd_model', 'depth': 'n_layers', 'tokens': 'num_tokens', 'loss': 'loss', \
'params': 'params', 'flops': 'flops'}, unit='runs')
    """
    if runs is None:
        return AxisText()
    if hasattr(runs, "n_points"):  # a FitResult knows its table's roles and how many runs it had
        checkpoints = runs.n_groups is not None and runs.n_groups < runs.n_points
        return AxisText(dict(runs.roles), "checkpoints" if checkpoints else "runs")
    unit = "runs"
    group = runs.roles.get("group")
    if group is not None and group in runs.data:
        n_groups = len(set(runs.data[group].tolist()))
        unit = "checkpoints" if 0 < n_groups < len(runs) else "runs"
    return AxisText(dict(runs.roles), unit)
SYMBOL_TEX = {"l": r"\ell", "alpha": r"\alpha", "beta": r"\beta", "gamma": r"\gamma", "delta": r"\delta",
              "sigma": r"\sigma", "mu": r"\mu", "nu": r"\nu", "lambda": r"\lambda", "eta": r"\eta"}
DECOMPOSED_TERMS = (("c_m", "alpha_m", "m"), ("c_l", "alpha_l", "l"), ("c_D", "alpha_D", "D"))
AXIS_NOUNS = {"m": "width", "l": "depth", "D": "data"}


# ---------------------------------------------------------------- helpers


def _style():
    """The house style as an rc context (fonts, sizes, spines), for figures made without pyplot."""
    import matplotlib

    return matplotlib.rc_context(STYLE)
SAFE_TEX_NAME = re.compile(r"[A-Za-z]+(_[A-Za-z0-9]+)?|[A-Za-z]+[0-9]")
LARGEST_TICK = 1e250  # beyond this, round ticks (m * 10**k) would overflow: matplotlib's own are used


def plain(text: str) -> str:
    """A form, column or file name as plain text in a figure: a `$` would start mathtext."""
    return str(text).replace("$", r"\$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tex(name: str) -> str:
    """A parameter or variable name as mathtext: `alpha_l` -> `$\\alpha_{\\ell}$`, `L0` -> `$L_{0}$`."""
    def part(s: str) -> str:
        return SYMBOL_TEX.get(s, s)

    if not SAFE_TEX_NAME.fullmatch(name):  # anything else stays text: never mathtext from a user
        return plain(name)
    if "_" in name:
        head, sub = name.split("_", 1)
        return f"${part(head)}_{{{part(sub)}}}$"
    if len(name) > 1 and name[-1].isdigit() and not name[:-1].isdigit():
        return f"${part(name[:-1])}_{{{name[-1]}}}$"
    return f"${part(name)}$"


def _term_tex(c_name: str, a_name: str, symbol: str) -> str:
    """A power-law term c·x^-alpha as mathtext without the dollars: `c_{m}\\,m^{-\\alpha_{m}}`."""
    return f"{tex(c_name)[1:-1]}\\,{tex(symbol)[1:-1]}^{{-{tex(a_name)[1:-1]}}}"


def variable_label(symbol: str, role: str, column: str | None = None) -> str:
    """An axis label for a variable, naming the column that was used: 'width $m$ (hidden_size)'.

    >>> variable_label("m", "width", "hidden_size"), variable_label("m", "width", "width")
    ('width $m$ (hidden_size)', 'width $m$')
    """
    template = ROLE_LABELS.get(role)
    if template is None:
        return f"{plain(role)} {tex(symbol)}" if role != symbol else tex(symbol)
    column = column or DEFAULT_COLUMNS[role]
    if column.lower() == role:  # a column called "width" needs no "(width)"
        return template.split(" (")[0].format(sym=tex(symbol))
    return template.format(sym=tex(symbol), col=column)


SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _tick_text(value: float) -> str:
    """A tick label in plain text (`0.75`, `10⁹`, `2×10¹⁰`): unicode superscripts rather than mathtext,
    which matplotlib parses once per label and which made up a sixth of a figure's drawing time.

    >>> _tick_text(0.75), _tick_text(1e9), _tick_text(2e10), _tick_text(5e-5)
    ('0.75', '10⁹', '2×10¹⁰', '5×10⁻⁵')
    """
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)) + 1e-9)
    if -3 <= exponent <= 4:
        return f"{value:g}"
    mantissa = value / 10.0**exponent
    power = f"10{str(exponent).translate(SUPERSCRIPTS)}"
    if abs(mantissa - 1) < 1e-9:
        return power
    return f"{mantissa:g}×{power}"


def _readable_log_axis(axis, lo: float, hi: float) -> None:
    """On a log axis spanning less than two decades, matplotlib labels few ticks or crowds minor ones in
    scientific notation; give it four to seven round ticks with plain labels instead, spread over the
    whole range (an axis from 0.55 to 1.9 gets 0.75, 1, 1.25, 1.5, 1.75, not 0.6 to 1 only)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

    if not (lo > 0 and hi > lo) or hi / lo > 100 or hi > LARGEST_TICK:
        return
    if hi / lo < 10:  # within a decade: evenly spaced round values, which look even on log axes too
        for nbins in (5, 8):  # and spread over the whole range, not bunched below the one power of ten
            ticks = [t for t in MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
                     if lo <= t <= hi]
            if len(ticks) >= 4:
                break
    else:
        decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
        for multipliers in ((1, 2, 5), (1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 7), tuple(range(1, 10))):
            ticks = [t for t in (m * 10.0**k for k in decades for m in multipliers) if lo <= t <= hi]
            if len(ticks) >= 4:
                break
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _tick_text(v)))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def wrap_title(text: str, width_inches: float, scale: float = 1.0) -> str:
    """`text` broken into lines that fit a figure `width_inches` wide (at ~11 characters an inch for
    an 11-12 pt title; `scale` < 1 for smaller type), so that no title is clipped. Mathtext (`$...$`)
    is never broken.

    >>> title = "Residuals of the chinchilla fit (huber objective, n = 240); shaded: |r| <= 0.001"
    >>> print(wrap_title(title, 3))
    Residuals of the chinchilla fit
    (huber objective, n = 240);
    shaded: |r| <= 0.001
    """
    limit = max(20, int(width_inches * TITLE_CHARS_PER_INCH / scale))
    lines = []
    for paragraph in text.split("\n"):
        words, current = paragraph.split(" "), ""
        for word in words:  # keep $...$ pieces whole even when they hold spaces
            candidate = f"{current} {word}" if current else word
            if current and current.count("$") % 2 == 1:
                current = candidate
            elif len(_visible(candidate)) > limit and current:
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
    return "\n".join(lines)


def _visible(text: str) -> str:
    """Roughly the characters a reader sees: mathtext commands and braces dropped."""
    import re

    return re.sub(r"\\[a-zA-Z]+|[{}$_^]", "", text)


def _log_limits(values: np.ndarray, pad: float = 1.15) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = float(values.min()), float(values.max())
    # values near 1e308 (or spans of hundreds of decades): matplotlib's log ticks, which run a stride
    # past the limits, overflow to inf; keep the axis where they cannot
    top = LARGEST_TICK
    lo, hi = (lo / 2, hi * 2) if hi == lo else (lo / pad, hi * pad)
    hi = min(hi, top)
    return max(lo, hi / top, 1 / top), hi


def _result_variables(result: FitResult) -> list[tuple[str, str]]:
    """(symbol, role) of the result's variables, in the form's order."""
    return [(s, role) for s, role in result.form.variables.items() if s in result.inputs]


def _residuals(result: FitResult) -> tuple[np.ndarray, str]:
    obs, pred = np.asarray(result.observed, float), np.asarray(result.predicted, float)
    if result.objective.log_space:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(obs) - np.log(pred), r"log residual  $\log L_{\rm obs} - \log L_{\rm pred}$"
    return obs - pred, r"residual  $L_{\rm obs} - L_{\rm pred}$"


def power_law_band(c: float, alpha: float, cov: np.ndarray, x: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """±1σ band of f = c·x^-alpha from the covariance of (c, alpha) by the delta method on log f:
    var(log f) = var c / c² − 2 log x cov(c, alpha) / c + log² x var alpha. Multiplicative, so it stays
    positive on log axes. None when the errors are not available."""
    cov = np.asarray(cov, dtype=float)
    if c <= 0 or not np.all(np.isfinite(cov)):
        return None
    logx = np.log(x)
    var = cov[0, 0] / c**2 - 2 * logx * cov[0, 1] / c + logx**2 * cov[1, 1]
    if np.any(var < 0):
        return None
    f = c * x**-alpha
    spread = np.exp(np.sqrt(var))
    return f / spread, f * spread


def _group_means(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means of y (with standard errors) per distinct x, or per log-spaced bin of x when x takes many
    values. Groups of one point get no error bar."""
    distinct = np.unique(x)
    if len(distinct) <= MAX_GROUPS:
        keys = np.searchsorted(distinct, x)
        centers = distinct
    else:
        edges = np.geomspace(x.min(), x.max(), N_BINS + 1)
        keys = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, N_BINS - 1)
        centers = np.sqrt(edges[:-1] * edges[1:])
    xs, means, errs = [], [], []
    for k in range(len(centers)):
        members = y[keys == k]
        if len(members) == 0:
            continue
        xs.append(np.exp(np.mean(np.log(x[keys == k]))))
        means.append(members.mean())
        errs.append(members.std(ddof=1) / math.sqrt(len(members)) if len(members) > 1 else 0.0)
    return np.array(xs), np.array(means), np.array(errs)


# ---------------------------------------------------------------- fit figures


def observed_vs_predicted(result: FitResult, path: str | Path | None = None,
                          labels: AxisText | None = None) -> Figure:
    """Observed against predicted loss on log-log axes, with the line y = x and a ±1% band.

    >>> from scaling_cli import fit, load_runs
    >>> result = fit(load_runs("data/example_runs.csv"))
    >>> print(observed_vs_predicted(result).axes[0].get_xlabel())
    predicted loss $L_{\\rm pred}$
    """
    import matplotlib

    plt = _pyplot()
    with matplotlib.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 4.8), constrained_layout=True)
        obs, pred = np.asarray(result.observed, float), np.asarray(result.predicted, float)
        ok = (obs > 0) & (pred > 0) & np.isfinite(obs) & np.isfinite(pred)
        lo, hi = _log_limits(np.concatenate([obs[ok], pred[ok]]), pad=1.04)
        line = np.geomspace(lo, hi, 200)
        frac = BAND_PERCENT / 100
        ax.fill_between(line, line * (1 - frac), line * (1 + frac), color="0.6", alpha=0.35, lw=0,
                        label=f"±{BAND_PERCENT:g}%")
        ax.plot(line, line, color="0.25", lw=1, label="observed = predicted")
        ax.scatter(pred[ok], obs[ok], s=14, color=POINT_COLOR, alpha=0.7, edgecolors="none",
                   label=f"{(labels or AxisText()).unit} (n = {int(ok.sum())})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
        _readable_log_axis(ax.xaxis, lo, hi)
        _readable_log_axis(ax.yaxis, lo, hi)
        ax.set_xlabel(r"predicted loss $L_{\rm pred}$")
        ax.set_ylabel(r"observed loss $L_{\rm obs}$")
        stats = result.stats
        title = f"{plain(result.form.name)} fit, objective {result.objective.name}"
        legend_title = (f"RMSE(log) = {stats.rmse_log:.2g}, mean |rel. err.| = "
                        f"{100 * stats.mean_abs_rel_error:.2g}%")
        ax.set_title(wrap_title(title, 5.2))
        ax.legend(loc="upper left", title=legend_title, title_fontsize=9)
        if not ok.all():
            ax.text(0.98, 0.02, f"{int((~ok).sum())} {(labels or AxisText()).unit} with a non-positive or "
                                f"non-finite value not shown",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    return _maybe_save(fig, path)


def residuals(result: FitResult, path: str | Path | None = None, labels: AxisText | None = None) -> Figure:
    """Residuals in the objective's space against each variable (log x axes), with the zero line; the
    Huber δ zone shaded for a Huber fit.

    >>> from scaling_cli import fit, load_runs
    >>> result = fit(load_runs("data/example_runs.csv"))
    >>> [ax.get_xscale() for ax in residuals(result).axes]
    ['log', 'log', 'log']
    """
    import matplotlib

    plt = _pyplot()
    variables = _result_variables(result)
    r, ylabel = _residuals(result)
    with matplotlib.rc_context(STYLE):
        n = max(len(variables), 1)
        fig, axes = plt.subplots(1, n, figsize=(3.8 * n + 0.6, 3.8), sharey=True, constrained_layout=True,
                                 squeeze=False)
        axes = axes[0]
        finite = np.isfinite(r)
        for ax, (symbol, role) in zip(axes, variables, strict=False):
            x = np.asarray(result.inputs[symbol], float)
            ok = finite & (x > 0)
            if result.objective.name == "huber":
                delta = result.objective.delta
                ax.axhspan(-delta, delta, color="0.85", lw=0)
            ax.axhline(0, color="0.25", lw=1)
            ax.scatter(x[ok], r[ok], s=12, color=POINT_COLOR, alpha=0.6, edgecolors="none")
            ax.set_xscale("log")
            lo, hi = _log_limits(x[ok], pad=1.08)
            ax.set_xlim(lo, hi)
            _readable_log_axis(ax.xaxis, lo, hi)
            ax.set_xlabel(variable_label(symbol, role, (labels or AxisText()).columns.get(role)))
        axes[0].set_ylabel(ylabel)
        title = (f"Residuals of the {plain(result.form.name)} fit ({result.objective.name} objective, "
                 f"n = {int(finite.sum())})")
        if result.objective.name == "huber":
            title += f"; shaded: |r| ≤ δ = {result.objective.delta:g}, where the Huber loss is quadratic"
        fig.suptitle(wrap_title(title, fig.get_figwidth()))
    return _maybe_save(fig, path)


def partial_terms(result: FitResult, path: str | Path | None = None,
                  labels: AxisText | None = None) -> Figure:
    """For the decomposed law, one panel per axis (width, depth, data): the observed loss minus the
    other two fitted terms and L0, against that variable on log-log axes, with the fitted power law
    c·x^-alpha and its ±1σ band. Runs whose partial loss is ≤ 0 cannot be drawn on log axes and are
    counted in the panel's title.

    >>> from scaling_cli import fit, load_runs
    >>> result = fit(load_runs("data/example_runs.csv"))
    >>> [ax.get_title().split(":")[0] for ax in partial_terms(result).axes]
    ['width', 'depth', 'data']
    """
    import matplotlib

    plt = _pyplot()
    theta = np.asarray(result.values, float)
    cov = np.asarray(result.covariance, float)
    names = list(result.names)
    obs, pred = np.asarray(result.observed, float), np.asarray(result.predicted, float)
    roles = dict(result.form.variables)
    with matplotlib.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.9), constrained_layout=True)
        for ax, (c_name, a_name, symbol) in zip(axes, DECOMPOSED_TERMS, strict=True):
            ic, ia = names.index(c_name), names.index(a_name)
            c, alpha = theta[ic], theta[ia]
            x = np.asarray(result.inputs[symbol], float)
            partial = obs - pred + c * x**-alpha
            shown = np.isfinite(partial) & (partial > 0)
            hidden = int((~shown).sum())
            xlo, xhi = _log_limits(x, pad=1.06)
            # one value of the variable: draw the law across the panel, or its legend entry has no line
            grid = np.geomspace(x.min(), x.max(), 200) if x.max() > x.min() else np.geomspace(xlo, xhi, 200)
            fitted = c * grid**-alpha

            xs, means, errs = _group_means(x, partial)
            keep = means > 0
            ylo, yhi = _log_limits(np.concatenate([partial[shown], fitted, means[keep]]), pad=1.25)
            ax.scatter(x[shown], partial[shown], s=12, color=POINT_COLOR, alpha=0.35, edgecolors="none",
                       label=(labels or AxisText()).unit, zorder=2)
            band = power_law_band(c, alpha, cov[np.ix_([ic, ia], [ic, ia])], grid)
            if band is not None:
                ax.fill_between(grid, band[0], band[1], color=FIT_COLOR, alpha=0.2, lw=0, zorder=1,
                                label=r"fit $\pm1\sigma$ (delta method)")
            others = " - ".join(_term_tex(*t) for t in DECOMPOSED_TERMS if t[2] != symbol)
            fit_label = f"fit ${_term_tex(c_name, a_name, symbol)}$"
            (fit_line,) = ax.plot(grid, fitted, color=FIT_COLOR, lw=2, label=fit_label, zorder=3)
            fit_line.set_gid("fit")
            if (errs[keep] > 0).any():
                lower = np.minimum(errs[keep], means[keep] - ylo)
                noun = "value" if len(np.unique(x)) <= MAX_GROUPS else "bin"
                ax.errorbar(xs[keep], means[keep], yerr=[lower, errs[keep]], fmt="D", ms=4.5,
                            color=MEAN_COLOR, ecolor=MEAN_COLOR, elinewidth=1, capsize=2, zorder=4,
                            label=f"mean per {noun} ± s.e.")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(xlo, xhi)
            ax.set_ylim(ylo, yhi)
            _readable_log_axis(ax.xaxis, xlo, xhi)
            _readable_log_axis(ax.yaxis, ylo, yhi)
            role = roles.get(symbol, symbol)
            ax.set_xlabel(variable_label(symbol, role, (labels or AxisText()).columns.get(role)))
            ax.set_ylabel(f"$L_{{\\rm obs}} - L_0 - {others}$")
            title = (f"{AXIS_NOUNS[symbol]}: {tex(a_name)} = "
                     f"{format_value_error(alpha, float(result.stderr[ia]))}")
            if hidden:
                unit = (labels or AxisText()).unit
                title += f"\n{hidden} of {len(x)} {unit} with partial loss ≤ 0 not shown"
            ax.set_title(wrap_title(title, 4.5))
            ax.legend(loc="lower left")
        fig.suptitle("Decomposed law, one axis at a time: loss minus the other fitted terms")
    return _maybe_save(fig, path)


def _nice_round(value: float) -> float:
    """1, 2 or 5 times a power of ten, nearest in log."""
    exponent = math.floor(math.log10(value))
    candidates = np.array([1, 2, 5, 10]) * 10.0**exponent
    return float(candidates[np.argmin(np.abs(np.log(candidates / value)))])


def loss_vs_compute(result: FitResult, path: str | Path | None = None,
                    labels: AxisText | None = None) -> Figure:
    """For the Chinchilla law: loss against compute C = 6·N·D (log x), runs coloured by N, with the
    fitted L(N, D = C / 6N) for a few N spanning the data (solid where D lies in the data's range), and
    the compute-optimal envelope where its optimum lies inside the data's N range."""
    import matplotlib
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    N = np.asarray(result.inputs["N"], float)
    D = np.asarray(result.inputs["D"], float)
    obs = np.asarray(result.observed, float)
    C = 6 * N * D
    theta = np.asarray(result.values, float)[None, :]
    norm = LogNorm(vmin=N.min(), vmax=N.max())
    cmap = matplotlib.colormaps["viridis"]
    c_grid = np.geomspace(C.min(), C.max(), 300)
    with matplotlib.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.2, 5.0), constrained_layout=True)
        points = ax.scatter(C, obs, c=N, cmap=cmap, norm=norm, s=16, alpha=0.8, edgecolors="none",
                            label=f"{(labels or AxisText()).unit} (n = {len(obs)})", zorder=2)
        iso = sorted({_nice_round(v) for v in np.geomspace(N.min(), N.max(), N_ISO_CURVES)})
        iso = [v for v in iso if N.min() / 1.5 <= v <= N.max() * 1.5]
        for n_value in iso:
            d_grid = c_grid / (6 * n_value)
            curve = result.form.predict(theta, {"N": np.full_like(c_grid, n_value), "D": d_grid})[0]
            inside = (d_grid >= D.min()) & (d_grid <= D.max())
            color = cmap(norm(n_value))
            ax.plot(c_grid, curve, color=color, lw=1, ls=":", zorder=3, gid=f"iso-extrapolated:{n_value!r}")
            ax.plot(np.where(inside, c_grid, np.nan), curve, color=color, lw=2, zorder=3,
                    label=f"fit, $N$ = {_tick_text(n_value)}", gid=f"iso:{n_value!r}")
        n_fine = np.geomspace(N.min(), N.max(), 400)
        grid_c, grid_n = np.meshgrid(c_grid, n_fine, indexing="ij")
        surface = result.form.predict(theta, {"N": grid_n.ravel(), "D": (grid_c / (6 * grid_n)).ravel()})
        surface = surface[0].reshape(grid_c.shape)
        best = np.argmin(surface, axis=1)
        interior = (best > 0) & (best < len(n_fine) - 1)
        if interior.any():
            ax.plot(np.where(interior, c_grid, np.nan), surface[np.arange(len(c_grid)), best], color="black",
                    lw=1.5, ls="--", zorder=4, label="compute-optimal (fit)")
        ax.set_xscale("log")
        ax.set_xlim(*_log_limits(C, pad=1.3))
        ylo, yhi = float(obs.min()), float(obs.max())
        ax.set_ylim(ylo - 0.05 * (yhi - ylo), yhi + 0.05 * (yhi - ylo))
        ax.set_xlabel(r"training compute $C = 6\,N D$ (FLOP)")
        ax.set_ylabel("loss $L$")
        ax.set_title("Chinchilla fit: loss against compute (dotted: $D$ outside the data's range)",
                     fontsize=10)
        bar = fig.colorbar(points, ax=ax, pad=0.02)
        bar.set_label("parameters $N$")
        fig.legend(loc="outside lower center", ncols=4, frameon=False)
    return _maybe_save(fig, path)


def fit_figures(result: FitResult, runs=None) -> dict[str, Figure]:
    """Every figure for a fit, by file stem: observed vs predicted and residuals for any form; the
    per-axis partial-loss panels for `decomposed`; loss against compute for `chinchilla`. Axes name the
    columns used and call a checkpoint table's rows "checkpoints", from what the result recorded of its
    table (or from `runs`, when given).

    >>> from scaling_cli import fit, load_runs
    >>> runs = load_runs("data/example_runs.csv")
    >>> sorted(fit_figures(fit(runs), runs))
    ['observed_vs_predicted', 'partial_terms', 'residuals']
    """
    labels = axis_text(runs if runs is not None else result)
    figures = {"observed_vs_predicted": observed_vs_predicted(result, labels=labels),
               "residuals": residuals(result, labels=labels)}
    params = set(result.names)
    if result.form.name == "decomposed" and params >= {p for t in DECOMPOSED_TERMS for p in t[:2]}:
        figures["partial_terms"] = partial_terms(result, labels=labels)
    elif result.form.name == "chinchilla" and {"N", "D"} <= set(result.inputs):
        figures["loss_vs_compute"] = loss_vs_compute(result, labels=labels)
    return figures


# ---------------------------------------------------------------- bootstrap figures


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
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useMathText=True)


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
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows + 0.7),
                                 constrained_layout=True, squeeze=False)
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
            fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), frameon=False)
        total = len(ok) + failed
        fig.suptitle(wrap_title(f"Bootstrap: {len(ok)} of {total} resamples"
                                + (f" ({failed} failed, left out)" if failed else "")
                                + "; titles show the full-data estimate ± bootstrap s.e.",
                                fig.get_figwidth()))
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
                    ax.ticklabel_format(style="sci", scilimits=(-3, 4), useMathText=True)
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


# ---------------------------------------------------------------- saving


def _save_one(fig: Figure, path: Path, fmt: str) -> Path:
    import matplotlib

    kwargs = {"dpi": PNG_DPI} if fmt == "png" else {}

    def write(tmp: Path) -> None:
        with matplotlib.rc_context(SAVE_STYLE):
            fig.savefig(tmp, format=fmt, **kwargs)

    try:
        return atomic_write(path, write)
    except OSError as exc:
        raise DataError(f"cannot write figure {path}: {exc.strerror or exc}") from None


def _maybe_save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in PLOT_FORMATS:
            raise DataError(f"cannot save a figure as {path}: use a .png, .pdf or .svg file name")
        _save_one(fig, path, fmt)
    return fig


def save_figures(figures: Mapping[str, Figure], directory: str | Path, fmt: str = "png",
                 skipped: list[str] | None = None) -> list[Path]:
    """Save each figure as `directory/NAME.fmt` (created with its parents if missing), each written whole
    or not at all; close every figure, also on failure. Returns the paths written. PDFs embed TrueType
    fonts and SVGs keep their text editable (`SAVE_STYLE`). A figure matplotlib cannot draw because its
    values are near the float limit (1e308: its log ticks overflow) is left out, and `skipped` (when
    given) gets a line saying so.

    >>> import tempfile
    >>> from scaling_cli import fit, load_runs
    >>> result = fit(load_runs("data/example_runs.csv"))
    >>> with tempfile.TemporaryDirectory() as out:
    ...     [p.name for p in save_figures(fit_figures(result), out, "pdf")]
    ['observed_vs_predicted.pdf', 'residuals.pdf', 'partial_terms.pdf']
    """
    plt = _pyplot()
    try:
        if fmt not in PLOT_FORMATS:
            raise DataError(f"plot format must be one of {', '.join(PLOT_FORMATS)}, not '{fmt}'")
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create plot directory {directory}: {exc.strerror or exc}") from None
        if not directory.is_dir():
            raise DataError(f"cannot save plots into {directory}: it is not a directory")
        written = []
        for name, fig in figures.items():
            try:
                written.append(_save_one(fig, directory / f"{name}.{fmt}", fmt))
            except OverflowError:
                if skipped is None:
                    raise DataError(f"cannot draw figure {name}: its values are too large to plot "
                                    f"(near 1e308)") from None
                skipped.append(f"{name}: its values are too large to plot (near 1e308)")
        return written
    finally:
        for fig in figures.values():
            plt.close(fig)


# ---------------------------------------------------------------- scalefit compare


def compare_figures(result: CompareResult) -> dict[str, Figure]:
    """One figure, `compare_heldout`: two panels (extrapolation to the largest runs; out-of-fold
    cross-validation), each form's held-out relative error (predicted / observed − 1, in %) against the
    observed value, with the zero line. Relative errors keep many forms apart where observed-against-
    predicted would stack them on the diagonal; each panel's legend sits below it, off the data."""
    from matplotlib.figure import Figure

    response = plain(result.ranked[0].form.response) if result.ranked else "response"
    n_forms = max(len(result.ranked), 1)
    legend_rows = n_forms + 1
    fig = Figure(figsize=(11, 4.6 + 0.2 * legend_rows), layout="constrained")
    with _style():
        axes = fig.subplots(1, 2)
    panels = (
        ("extrapolation", f"extrapolation: fit below, predict the top {100 * result.holdout_top:g}% "
                          f"by {result.by}"),
        ("cv", f"{result.folds}-fold cross-validation (out of fold)"),
    )
    cycle = [f"C{i}" for i in range(10)]
    for ax, (attr, title) in zip(axes, panels, strict=True):
        drawn = False
        for i, entry in enumerate(result.ranked):
            held = getattr(entry, attr)
            if held is None or held.failed or not len(held.observed):
                continue
            ok = np.isfinite(held.predicted) & (held.predicted > 0) & (held.observed != 0)
            if not ok.any():
                continue
            rel = 100 * (held.predicted[ok] / held.observed[ok] - 1)
            label = (f"{entry.rank}. {plain(entry.name)} (mean |rel. error| "
                     f"{100 * held.mean_abs_rel_error:.2f}%)")
            ax.scatter(held.observed[ok], rel, s=14, alpha=0.65, color=cycle[i % len(cycle)],
                       marker=COMPARE_MARKERS[i % len(COMPARE_MARKERS)], label=label, linewidths=0,
                       zorder=3 + n_forms - i)  # the best-ranked forms on top
            drawn = True
        if drawn:
            ax.axhline(0, color="0.3", lw=1, ls="--", label="predicted = observed", zorder=2)
            ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False,
                      ncols=1)
        else:
            ax.text(0.5, 0.5, "no held-out predictions", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(wrap_title(title, 5.2, scale=0.9), fontsize="medium")
        ax.set_xlabel(f"observed {response}")
        ax.set_ylabel(f"predicted / observed {response} − 1 (%)")
    fig.suptitle(f"held-out predictions: {result.n_points} rows, ranked by {result.rank_by}")
    return {COMPARE_FIGURE: fig}


def optimize_figures(result, fit_result) -> dict[str, Figure]:
    """Figures of `scalefit optimize`: the compute-optimal frontier (with several budgets) and the
    iso-FLOP view at the middle budget (decomposed and chinchilla forms)."""
    figures = {}
    if len(result) > 1:
        figures["frontier"] = frontier(result)
    from .forms import Chinchilla, Decomposed

    fit = getattr(fit_result, "fit", fit_result)  # a bootstrap's full-data fit
    if type(fit.form) in (Decomposed, Chinchilla) and result.interior:
        figures["isoflop"] = isoflop(result, fit)
    return figures


FRONTIER_PANELS = (("width", r"width $m^*$"), ("depth", r"depth $\ell^*$"), ("tokens", r"tokens $D^*$"),
                   ("params", r"parameters $N^*$"), ("loss", r"loss $L^*$"))


def frontier(result, path: str | Path | None = None) -> Figure:
    """The compute-optimal m*, l*, D*, N* and L* against the budget C (log-log), with the bootstrap's
    percentile bands when the result has them, and the best trainable shape's values as points."""
    import matplotlib

    plt = _pyplot()
    panels = [(q, label) for q, label in FRONTIER_PANELS if np.isfinite(result.optimum[q]).any()]
    C = np.asarray(result.flops, float)
    with matplotlib.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), constrained_layout=True,
                                 squeeze=False)
        for ax, (q, label) in zip(axes[0], panels, strict=True):
            ax.plot(C, result.optimum[q], color="C0", lw=2, label="optimum (fit)")
            if result.intervals is not None:
                band = result.intervals[q]
                ax.fill_between(C, band[:, 0], band[:, 1], color="C0", alpha=0.2, lw=0,
                                label=f"{100 * result.level:g}% interval")
            if result.shape is not None and q in result.shape and np.isfinite(result.shape[q]).any():
                ax.plot(C, result.shape[q], "o", ms=3, color="C1", label="best shape")
            ax.set_xscale("log")
            ax.set_yscale("log")
            values = np.concatenate([np.ravel(result.optimum[q])] + (
                [np.ravel(result.intervals[q])] if result.intervals is not None else []))
            values = values[np.isfinite(values) & (values > 0)]
            if values.size:
                _readable_log_axis(ax.yaxis, float(values.min()), float(values.max()))
            ax.set_xlabel("compute $C$ (FLOP)")
            ax.set_title(label, fontsize=10)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
        fig.suptitle(f"{result.form}: compute-optimal frontier ({result.cost_model})", fontsize=10)
    return _maybe_save(fig, path)


def isoflop(result, fit_result, index: int | None = None, path: str | Path | None = None) -> Figure:
    """At one budget (the middle one): the loss against width with depth and tokens chosen best for
    each width, and against depth likewise (decomposed); the loss against N for chinchilla. The
    continuous optimum and the best trainable shape are marked."""
    import matplotlib

    plt = _pyplot()
    i = len(result) // 2 if index is None else index
    C = float(result.flops[i])
    theta = np.asarray(fit_result.values, float)[None, :]
    form = fit_result.form
    with matplotlib.rc_context(STYLE):
        if form.name == "chinchilla":
            fig, ax = plt.subplots(figsize=(5.5, 4.0), constrained_layout=True)
            n_star = float(result.optimum["params"][i])
            N = np.geomspace(n_star / 30, n_star * 30, 300)
            L = form.predict(theta, {"N": N, "D": C / (6 * N)})[0]
            ax.plot(N, L, color="C0", lw=2)
            ax.axvline(n_star, color="black", ls="--", lw=1, label=f"$N^*$ = {_tick_text(n_star)}")
            ax.set_xscale("log")
            ax.set_xlabel("parameters $N$ (tokens $D = C / 6N$)")
            ax.set_ylabel("loss $L$")
            ax.legend(frameon=False)
        else:
            fig, axes = plt.subplots(1, 2, figsize=(10, 4.0), constrained_layout=True)
            vocab = result.vocab
            m_star, l_star = float(result.optimum["width"][i]), float(result.optimum["depth"][i])
            widths = np.geomspace(m_star / 20, m_star * 20, 200)
            depths = np.geomspace(max(l_star / 20, 1e-3), l_star * 20, 200)
            grid_m, grid_l = np.meshgrid(widths, depths, indexing="ij")
            N = 12 * grid_l * grid_m**2 + vocab * grid_m
            with np.errstate(all="ignore"):
                L = form.predict(theta, {"m": grid_m.ravel(), "l": grid_l.ravel(),
                                         "D": (C / (6 * N)).ravel()})[0].reshape(grid_m.shape)
            for ax, x, curve, star, name in (
                    (axes[0], widths, L.min(axis=1), m_star, "width $m$ (depth, tokens best for it)"),
                    (axes[1], depths, L.min(axis=0), l_star, r"depth $\ell$ (width, tokens best for it)")):
                ax.plot(x, curve, color="C0", lw=2)
                ax.axvline(star, color="black", ls="--", lw=1, label=f"optimum {_tick_text(star)}")
                key = "width" if ax is axes[0] else "depth"
                if result.shape is not None and np.isfinite(result.shape[key][i]):
                    shape = f"{result.shape['width'][i]:.0f} x {result.shape['depth'][i]:.0f}"
                    ax.plot(result.shape[key][i], result.shape["loss"][i], "o", color="C1",
                            label=f"best shape {shape}")
                ax.set_xscale("log")
                ax.set_xlabel(name)
                ax.set_ylabel("loss $L$")
                lo = float(np.nanmin(curve))
                ax.set_ylim(lo - 0.01 * abs(lo), lo + 0.15 * abs(lo))
                ax.legend(frameon=False, fontsize=8)
        fig.suptitle(f"{result.form}: iso-FLOP view at C = {C:.3g} FLOP", fontsize=10)
    return _maybe_save(fig, path)
