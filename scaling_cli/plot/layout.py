"""Fixed margins for a grid of panels, sized from the figure's own text, in place of a layout engine.

matplotlib's constrained (and tight) layout draws the whole figure once to measure it, then draws it
again to save it, measuring every tick label twice on the way: a third of a fit figure's cost. The
figures here are regular grids whose text is known before drawing (titles, axis labels, tick labels
from each axis's locator and formatter), so their margins are computed from that text: the width of a
tick label from its characters, the height of a title from its lines. `tests/test_plot.py` draws the
figures and checks that no text leaves the figure or runs into a neighbouring panel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .style import _visible

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PT = 1 / 72  # inches per point
CHAR_WIDTH = 0.64  # widest digit of DejaVu Sans, in ems: an upper bound for a tick label's characters
LINE_HEIGHT = 1.25  # a line of text, in font sizes (mathtext with sub- and superscripts: MATH_LINE)
MATH_LINE = 1.5
EDGE = 0.1  # inches of blank paper around the outermost text
TICK_SPACE = 3.5 + 3.5 + 1  # tick length, its pad, and a point of slack, in points
LEGEND_ROW = 0.27  # inches per row of a figure legend (9 pt entries, some with mathtext)


def _lines_height(text: str, fontsize: float) -> float:
    """Inches taken by `text` (its lines, at `fontsize` points); 0 for no text."""
    if not text:
        return 0.0
    per_line = MATH_LINE if "$" in text else LINE_HEIGHT
    return (text.count("\n") + 1) * per_line * fontsize * PT


def _width(text: str, fontsize: float) -> float:
    """Inches taken by the longest line of `text` written across the page (an upper bound)."""
    if not text:
        return 0.0
    return max(len(_visible(line)) for line in text.split("\n")) * CHAR_WIDTH * fontsize * PT


def _tick_labels(axis) -> tuple[list[str], str]:
    """The major tick labels an axis will draw inside its view, and its offset text (`1e-3`, ...)."""
    lo, hi = sorted(axis.get_view_interval())
    span = hi - lo
    locs = [v for v in axis.get_majorticklocs() if lo - 1e-9 * span <= v <= hi + 1e-9 * span]
    formatter = axis.get_major_formatter()
    labels = formatter.format_ticks(locs) if locs else []
    offset = formatter.get_offset() if hasattr(formatter, "get_offset") else ""
    return [label for label in labels if label], offset


def _needs(ax: Axes) -> dict[str, float]:
    """Inches of text that `ax` puts outside its frame on each side."""
    import matplotlib

    tick_size = matplotlib.rcParams["ytick.labelsize"]
    if isinstance(tick_size, str):
        tick_size = matplotlib.font_manager.FontProperties(size=tick_size).get_size_in_points()
    params = {"x": ax.xaxis.get_tick_params(which="major"), "y": ax.yaxis.get_tick_params(which="major")}
    need = {"left": 0.0, "right": 0.0, "bottom": 0.0, "top": 0.0, "offset": 0.0}
    if params["y"].get("labelleft", True):
        labels, offset = _tick_labels(ax.yaxis)
        widest = max((_width(t, tick_size) for t in labels), default=0.0)
        need["left"] = TICK_SPACE * PT + widest
        if offset:
            need["offset"] = need["top"] = _lines_height(offset, tick_size)
    ylabel = ax.yaxis.label
    if ylabel.get_visible() and ylabel.get_text():
        need["left"] += (matplotlib.rcParams["axes.labelpad"] + 1) * PT \
            + _lines_height(ylabel.get_text(), ylabel.get_fontsize())
    if params["x"].get("labelbottom", True):
        labels, offset = _tick_labels(ax.xaxis)
        tall = max((_lines_height(t, tick_size) for t in labels), default=0.0)
        need["bottom"] = TICK_SPACE * PT + tall
        # the last label hangs half its width past the frame
        need["right"] = 0.5 * _width(labels[-1], tick_size) if labels else 0.0
        if offset:  # under the tick labels, at the right end
            need["bottom"] += _lines_height(offset, tick_size)
    xlabel = ax.xaxis.label
    if xlabel.get_visible() and xlabel.get_text():
        need["bottom"] += (matplotlib.rcParams["axes.labelpad"] + 1) * PT \
            + _lines_height(xlabel.get_text(), xlabel.get_fontsize())
    if ax.title.get_text():
        need["top"] = max(need["top"], 0.0) + (matplotlib.rcParams["axes.titlepad"] + 2) * PT \
            + _lines_height(ax.title.get_text(), ax.title.get_fontsize())
    return need


def fixed_layout(fig: Figure, axes, *, below: float = 0.0, right: float = 0.0) -> None:
    """Place the grid of `axes` (rows x columns, as `subplots` returns them) with margins that hold
    their tick labels, axis labels and titles, and the figure's suptitle; `below` and `right` are inches
    kept free under the grid (a figure legend) and beside it (a colorbar). Call it once the panels are
    labelled and their limits set.

    >>> import matplotlib
    >>> from matplotlib.figure import Figure
    >>> fig = Figure(figsize=(4, 3))
    >>> ax = fig.subplots()
    >>> _ = ax.set_ylabel("loss"), ax.set_xlim(0, 1000)
    >>> fixed_layout(fig, ax)
    >>> bool(0.1 < fig.subplotpars.left < 0.25 and fig.subplotpars.top > 0.9)
    True
    """
    grid = np.atleast_2d(np.asarray(axes, dtype=object))
    nrows, ncols = grid.shape
    width, height = fig.get_size_inches()
    needs = [[_needs(ax) if ax.get_visible() and ax.axison else dict.fromkeys(
        ("left", "right", "bottom", "top", "offset"), 0.0) for ax in row] for row in grid]

    def most(side: str, rows, cols) -> float:
        return max((needs[r][c][side] for r in rows for c in cols), default=0.0)

    suptitle = fig.get_suptitle()
    # a suptitle hangs from 98% of the height (matplotlib's default), at up to 12 points
    top = (max(EDGE, 0.02 * height) + _lines_height(suptitle, 12) + 0.08 if suptitle else EDGE) \
        + most("top", [0], range(ncols))
    bottom = EDGE + below + most("bottom", [nrows - 1], range(ncols))
    left = EDGE + most("left", range(nrows), [0])
    right_margin = EDGE + right + most("right", range(nrows), [ncols - 1])
    wspace = max((most("right", range(nrows), [c]) + most("left", range(nrows), [c + 1])
                  for c in range(ncols - 1)), default=0.0) + 0.12
    hspace = max((most("bottom", [r], range(ncols)) + most("top", [r + 1], range(ncols))
                  for r in range(nrows - 1)), default=0.0) + 0.12
    panel_w = (width - left - right_margin - (ncols - 1) * wspace) / ncols
    panel_h = (height - top - bottom - (nrows - 1) * hspace) / nrows
    fig.subplots_adjust(left=left / width, right=1 - right_margin / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace / max(panel_w, 0.1),
                        hspace=hspace / max(panel_h, 0.1))
    for ax, need in zip(grid.ravel(), (n for row in needs for n in row), strict=True):
        if need["offset"] and ax.title.get_text():  # the title goes over the y axis's offset text
            ax.title.set_y(1 + need["offset"] / max(panel_h, 0.1))
