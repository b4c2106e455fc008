"""Figures of a fit and of a bootstrap, for a paper: each builder returns a matplotlib Figure.

One module per command's figures (`fit`, `bootstrap`, `compare`, `optimize`), the house style and the
axis text they share (`style`), and saving (`save`). matplotlib is imported inside the functions (with
the Agg backend), never at module import, so that `scalefit --help` stays instant. `save_figures`
writes each figure whole or not at all and closes it.
"""

from __future__ import annotations

from .bootstrap import bootstrap_figures, bootstrap_histograms, corner
from .compare import COMPARE_FIGURE, compare_figures
from .fit import fit_figures, loss_vs_compute, observed_vs_predicted, partial_terms, power_law_band, residuals
from .optimize import frontier, isoflop, optimize_figures
from .save import PLOT_FORMATS, PNG_DPI, SAVE_STYLE, save_figures
from .style import (
    STYLE,
    AxisText,
    axis_text,
    plain,
    tex,
    variable_label,
    wrap_title,
)

__all__ = [
    "COMPARE_FIGURE", "PLOT_FORMATS", "PNG_DPI", "SAVE_STYLE", "STYLE", "AxisText", "axis_text",
    "bootstrap_figures", "bootstrap_histograms", "compare_figures", "corner", "fit_figures", "frontier",
    "isoflop", "loss_vs_compute", "observed_vs_predicted", "optimize_figures", "partial_terms", "plain",
    "power_law_band", "residuals", "save_figures", "tex", "variable_label", "wrap_title",
]
