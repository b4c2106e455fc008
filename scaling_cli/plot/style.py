"""The house style of every figure: rc settings, colours, what axes call things (the table's columns,
"runs" or "checkpoints"), names as mathtext, readable ticks, titles wrapped to the figure."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

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
    # titles at a fixed height over their panel: left to matplotlib, every draw measures all the y tick
    # labels of a titled panel to dodge an offset text (a quarter of a figure's drawing time);
    # layout.fixed_layout lifts a title over an offset text itself
    "axes.titley": 1.0,
}
# How files are written: TrueType fonts embedded in PDF (Type 3 fonts are refused by some journals and
# look poor when edited), real <text> elements in SVG so that labels stay editable.
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
    """What the figures call things, from the table: the column that played each role, the noun for
    its rows ("checkpoints" when a group column holds several rows per group, else "runs"), and the
    factor each role's column was multiplied by when it was read (`--scale tokens=1e9`)."""

    columns: Mapping[str, str] = field(default_factory=dict)
    unit: str = "runs"
    scales: Mapping[str, float] = field(default_factory=dict)

    def label(self, symbol: str, role: str) -> str:
        """The axis label of a variable: its role, symbol, column and scale (`variable_label`).

        >>> AxisText({"tokens": "step"}, scales={"tokens": 1e9}).label("D", "tokens")
        'training tokens $D$ (step ×1e9)'
        """
        return variable_label(symbol, role, self.columns.get(role), self.scales.get(role))


def _role_scales(roles: Mapping[str, str], options: Mapping) -> dict[str, float]:
    """{role: factor} from how a table was read: `scale` is keyed by role or by column."""
    by_column = {column: role for role, column in roles.items()}
    return {key if key in roles else by_column.get(key, key): float(factor)
            for key, factor in dict(options.get("scale") or {}).items()}


def axis_text(runs) -> AxisText:
    """`AxisText` for a `Runs` table, or for a `FitResult` (the roles, groups and scales of the table it
    fitted).

    >>> from scaling_cli import load_runs
    >>> axis_text(load_runs("data/example_runs.csv", scale={"tokens": 1e-9})).scales
    {'tokens': 1e-09}
    >>> axis_text(load_runs("data/example_runs.csv")).columns["tokens"]
    'num_tokens'
    """
    if runs is None:
        return AxisText()
    if hasattr(runs, "n_points"):  # a FitResult knows its table's roles and how many runs it had
        checkpoints = runs.n_groups is not None and runs.n_groups < runs.n_points
        return AxisText(dict(runs.roles), "checkpoints" if checkpoints else "runs",
                        _role_scales(runs.roles, runs.load_options))
    unit = "runs"
    group = runs.roles.get("group")
    if group is not None and group in runs.data:
        n_groups = len(set(runs.data[group].tolist()))
        unit = "checkpoints" if 0 < n_groups < len(runs) else "runs"
    return AxisText(dict(runs.roles), unit, _role_scales(runs.roles, runs.options))


SYMBOL_TEX = {"l": r"\ell", "alpha": r"\alpha", "beta": r"\beta", "gamma": r"\gamma", "delta": r"\delta",
              "sigma": r"\sigma", "mu": r"\mu", "nu": r"\nu", "lambda": r"\lambda", "eta": r"\eta"}


def _style():
    """The house style as an rc context (fonts, sizes, spines), for figures made without pyplot."""
    import matplotlib

    return matplotlib.rc_context(STYLE)
SAFE_TEX_NAME = re.compile(r"[A-Za-z]+(_[A-Za-z0-9]+)?|[A-Za-z]+[0-9]")
MAX_DECADES_TICKED = 9  # a log axis over more decades keeps matplotlib's locator (a tick every few)
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




def variable_label(symbol: str, role: str, column: str | None = None, scale: float | None = None) -> str:
    """An axis label for a variable, naming the column that was used and the factor it was multiplied
    by when read, if any: 'width $m$ (hidden_size)', 'training tokens $D$ (step ×1e9)'.

    >>> variable_label("m", "width", "hidden_size"), variable_label("m", "width", "width")
    ('width $m$ (hidden_size)', 'width $m$')
    >>> variable_label("D", "tokens", "step", 1e9), variable_label("D", "tokens", "tokens", 1e9)
    ('training tokens $D$ (step ×1e9)', 'training tokens $D$ (×1e9)')
    """
    times = f"×{_factor_text(scale)}" if scale is not None and scale != 1 else ""
    template = ROLE_LABELS.get(role)
    if template is None:
        label = f"{plain(role)} {tex(symbol)}" if role != symbol else tex(symbol)
        return f"{label} ({times})" if times else label
    column = column or DEFAULT_COLUMNS[role]
    if column.lower() == role:  # a column called "width" needs no "(width)"
        label = template.split(" (")[0].format(sym=tex(symbol))
        return f"{label} ({times})" if times else label
    return template.format(sym=tex(symbol), col=f"{plain(column)} {times}" if times else plain(column))


def _factor_text(factor: float) -> str:
    """A scale factor as a user would type it: 1e9, 0.001, 2.5e-06 -> '1e9', '0.001', '2.5e-6'."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{factor:g}")


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


_PLAIN_SCALAR = []  # the formatter class, made once matplotlib is imported


def scientific_ticks(axis) -> None:
    """Tick labels as plain numbers, with a `×10⁻³` (and `+1.75`) offset at the axis's end when the
    values are very small, very large or close together. matplotlib's `ticklabel_format(style="sci",
    useMathText=True)` draws the same but makes every tick label mathtext, which was a third of a
    bootstrap figure's drawing time.

    >>> import matplotlib
    >>> from matplotlib.figure import Figure
    >>> ax = Figure().subplots()
    >>> _ = ax.set_xlim(0.0012, 0.0018)
    >>> scientific_ticks(ax.xaxis)
    >>> formatter = ax.xaxis.get_major_formatter()
    >>> labels = formatter.format_ticks(ax.xaxis.get_majorticklocs())
    >>> labels[:2], formatter.get_offset()
    (['1.2', '1.3'], '×10⁻³')
    """
    if not _PLAIN_SCALAR:
        from matplotlib.ticker import ScalarFormatter

        class PlainScalarFormatter(ScalarFormatter):
            def get_offset(self) -> str:  # matplotlib's "1e-3+1.75" as "×10⁻³+1.75"
                text = super().get_offset()
                power = re.fullmatch(r"1e([−-]?\d+)(.*)", text)
                if power is None:
                    return text
                exponent = power[1].replace("−", "-").translate(SUPERSCRIPTS)
                return f"×10{exponent}{power[2]}"

        _PLAIN_SCALAR.append(PlainScalarFormatter)
    formatter = _PLAIN_SCALAR[0](useMathText=False)
    formatter.set_powerlimits((-3, 4))
    axis.set_major_formatter(formatter)


def _readable_log_axis(axis, lo: float, hi: float) -> None:
    """On a log axis spanning less than two decades, matplotlib labels few ticks or crowds minor ones in
    scientific notation; give it four to seven round ticks with plain labels instead, spread over the
    whole range (an axis from 0.55 to 1.9 gets 0.75, 1, 1.25, 1.5, 1.75, not 0.6 to 1 only). A wider axis
    keeps matplotlib's powers of ten, labelled in plain text (10⁹) rather than mathtext."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator

    if not (lo > 0 and hi > lo) or hi > LARGEST_TICK:
        return
    if hi / lo > 100:  # powers of ten, labelled as plain text (10⁹) rather than mathtext
        view_lo, view_hi = sorted(axis.get_view_interval())  # an autoscaled axis's margins get ticks too
        lo, hi = (min(lo, view_lo), max(hi, view_hi)) if view_lo > 0 else (lo, hi)
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        if len(decades) <= MAX_DECADES_TICKED:
            # matplotlib's own ticks, but only those inside the axis: its locator returns a decade more
            # on each side, and every tick costs a Tick object (half of a log axis's drawing time)
            axis.set_major_locator(FixedLocator([10.0**k for k in decades if lo <= 10.0**k <= hi]))
            axis.set_minor_locator(FixedLocator([m * 10.0**k for k in decades for m in range(2, 10)
                                                 if lo <= m * 10.0**k <= hi]))
            axis.set_minor_formatter(NullFormatter())
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: _tick_text(v)))
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

