"""Figures for `scalefit compare`: held-out predictions against observations, every form overlaid.

matplotlib is imported inside the function, so that importing this module (and `scalefit --help`) stays
fast. Saving and closing is `plot.save_figures`' job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .compare import CompareResult

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
FIGURE_NAME = "compare_heldout"


def compare_figures(result: CompareResult) -> dict[str, Figure]:
    """One figure, `compare_heldout`: two panels (extrapolation to the largest runs; out-of-fold
    cross-validation), observed against predicted for every ranked form, with the line y = x."""
    from matplotlib.figure import Figure

    response = result.ranked[0].form.response if result.ranked else "response"
    fig = Figure(figsize=(11, 5), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (
        ("extrapolation", f"extrapolation: fit below, predict the top {100 * result.holdout_top:g}% "
                          f"by {result.by}"),
        ("cv", f"{result.folds}-fold cross-validation (out of fold)"),
    )
    for ax, (attr, title) in zip(axes, panels, strict=True):
        lo, hi = np.inf, -np.inf
        for i, entry in enumerate(result.ranked):
            held = getattr(entry, attr)
            if held is None or held.failed or not len(held.observed):
                continue
            ok = np.isfinite(held.predicted) & (held.predicted > 0)
            if not ok.any():
                continue
            label = f"{entry.rank}. {entry.name} (mean |rel. error| {100 * held.mean_abs_rel_error:.2f}%)"
            ax.scatter(held.predicted[ok], held.observed[ok], s=18, alpha=0.7,
                       marker=MARKERS[i % len(MARKERS)], label=label)
            lo = min(lo, held.predicted[ok].min(), held.observed[ok].min())
            hi = max(hi, held.predicted[ok].max(), held.observed[ok].max())
        if np.isfinite(lo) and np.isfinite(hi):
            pad = 0.02 * (hi - lo) if hi > lo else 0.05 * abs(hi) or 1.0
            line = np.array([lo - pad, hi + pad])
            ax.plot(line, line, color="0.3", lw=1, ls="--", label="y = x")
            ax.set_xlim(*line)
            ax.set_ylim(*line)
            ax.legend(fontsize="small", loc="upper left")
        else:
            ax.text(0.5, 0.5, "no held-out predictions", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(f"predicted {response}")
        ax.set_ylabel(f"observed {response}")
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(f"held-out predictions: {result.n_points} rows, ranked by {result.rank_by}")
    return {FIGURE_NAME: fig}
