"""Figures of a fit: observed against predicted, residuals against each variable, the decomposed law's
partial-loss panels, and Chinchilla's loss against compute."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..report import format_value_error
from .layout import LEGEND_ROW, fixed_layout
from .save import _maybe_save
from .style import (
    FIT_COLOR,
    MEAN_COLOR,
    POINT_COLOR,
    STYLE,
    AxisText,
    _log_limits,
    _pyplot,
    _readable_log_axis,
    _tick_text,
    axis_text,
    plain,
    tex,
    wrap_title,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..fitting import FitResult

BAND_PERCENT = 1.0  # the observed-vs-predicted band, in percent of the loss
N_ISO_CURVES = 5  # iso-parameter curves on the Chinchilla loss-versus-compute figure
MAX_GROUPS = 25  # a variable with at most this many distinct values gets one mean per value
N_BINS = 8  # otherwise its points are averaged in this many log-spaced bins
LEGEND_COLUMNS = 4  # of the legend under the loss-versus-compute figure
COLORBAR_SPACE = 1.0  # inches right of the panel for a colorbar, its tick labels and its label
DECOMPOSED_TERMS = (("c_m", "alpha_m", "m"), ("c_l", "alpha_l", "l"), ("c_D", "alpha_D", "D"))
AXIS_NOUNS = {"m": "width", "l": "depth", "D": "data"}


def _term_tex(c_name: str, a_name: str, symbol: str) -> str:
    """A power-law term c·x^-alpha as mathtext without the dollars: `c_{m}\\,m^{-\\alpha_{m}}`."""
    return f"{tex(c_name)[1:-1]}\\,{tex(symbol)[1:-1]}^{{-{tex(a_name)[1:-1]}}}"



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
        fig, ax = plt.subplots(figsize=(5.2, 4.8))
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
        fixed_layout(fig, ax)
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
        fig, axes = plt.subplots(1, n, figsize=(3.8 * n + 0.6, 3.8), sharey=True, squeeze=False)
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
            ax.set_xlabel((labels or AxisText()).label(symbol, role))
        axes[0].set_ylabel(ylabel)
        title = (f"Residuals of the {plain(result.form.name)} fit ({result.objective.name} objective, "
                 f"n = {int(finite.sum())})")
        if result.objective.name == "huber":
            title += f"; shaded: |r| ≤ δ = {result.objective.delta:g}, where the Huber loss is quadratic"
        fig.suptitle(wrap_title(title, fig.get_figwidth()))
        fixed_layout(fig, axes)
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
        fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.9))
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
            ax.set_xlabel((labels or AxisText()).label(symbol, role))
            ax.set_ylabel(f"$L_{{\\rm obs}} - L_0 - {others}$")
            title = (f"{AXIS_NOUNS[symbol]}: {tex(a_name)} = "
                     f"{format_value_error(alpha, float(result.stderr[ia]))}")
            if hidden:
                unit = (labels or AxisText()).unit
                title += f"\n{hidden} of {len(x)} {unit} with partial loss ≤ 0 not shown"
            ax.set_title(wrap_title(title, 4.5))
            ax.legend(loc="lower left")
        fig.suptitle("Decomposed law, one axis at a time: loss minus the other fitted terms")
        fixed_layout(fig, axes)
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
    from matplotlib.ticker import FuncFormatter

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
        fig, ax = plt.subplots(figsize=(7.2, 5.0))
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
        bar = fig.colorbar(points, cax=ax.inset_axes([1.025, 0, 0.035, 1]))
        bar.set_label((labels or AxisText()).label("N", result.form.variables.get("N", "params")))
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _tick_text(v)))
        legend = fig.legend(loc="lower center", ncols=LEGEND_COLUMNS, frameon=False)
        rows = math.ceil(len(legend.get_texts()) / LEGEND_COLUMNS)
        fixed_layout(fig, ax, below=rows * LEGEND_ROW, right=COLORBAR_SPACE)
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
