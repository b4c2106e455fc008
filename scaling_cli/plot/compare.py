"""The figure of `scalefit compare`: each form's held-out relative errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .style import _style, plain, wrap_title

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..compare import CompareResult

COMPARE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
COMPARE_FIGURE = "compare_heldout"


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
