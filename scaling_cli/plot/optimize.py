"""Figures of `scalefit optimize`: the compute-optimal frontier and the iso-FLOP view."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .layout import LEGEND_ROW, fixed_layout
from .save import _maybe_save
from .style import STYLE, _pyplot, _readable_log_axis, _tick_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

def optimize_figures(result, fit_result) -> dict[str, Figure]:
    """Figures of `scalefit optimize`: the compute-optimal frontier (with several budgets) and the
    iso-FLOP view at the middle budget (decomposed and chinchilla forms)."""
    figures = {}
    if len(result) > 1:
        figures["frontier"] = frontier(result)
    from ..forms import Chinchilla, Decomposed

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
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
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
        fig.legend(handles, labels, loc="lower center", ncols=3, frameon=False)
        fig.suptitle(f"{result.form}: compute-optimal frontier ({result.cost_model})", fontsize=10)
        fixed_layout(fig, axes, below=LEGEND_ROW)
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
            fig, axes = plt.subplots(figsize=(5.5, 4.0))
            ax = axes
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
            fig, axes = plt.subplots(1, 2, figsize=(10, 4.0))
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
        fixed_layout(fig, axes)
    return _maybe_save(fig, path)
