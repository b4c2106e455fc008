"""Saving figures: each written whole or not at all (PNG, PDF with TrueType fonts, SVG with text),
and closed."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ..errors import DataError
from ..report import atomic_write
from .style import _pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FORMATS = ("png", "pdf", "svg")
PNG_DPI = 200
# How files are written: TrueType fonts embedded in PDF (Type 3 fonts are refused by some journals and
# look poor when edited), real <text> elements in SVG so that labels stay editable.
SAVE_STYLE = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}
# OpenType layout tables (kerning, ligatures, math layout) a PDF never reads: its glyphs are placed one by one
LAYOUT_TABLES = ["GSUB", "GPOS", "GDEF", "MATH"]


@contextmanager
def _lean_font_subsets():
    """While a PDF is written, fontTools leaves the OpenType layout tables out of the fonts it embeds.
    matplotlib subsets every embedded TrueType font (DejaVu Sans and its oblique, for mathtext) per
    file, and subsetting DejaVu's kerning and substitution tables was a quarter of a fit figure's PDF
    time; a PDF viewer never reads them, since matplotlib positions every glyph itself."""
    from fontTools import subset

    default = subset.Options._drop_tables_default
    subset.Options._drop_tables_default = default + [t for t in LAYOUT_TABLES if t not in default]
    try:
        yield
    finally:
        subset.Options._drop_tables_default = default


def _save_one(fig: Figure, path: Path, fmt: str) -> Path:
    import matplotlib

    kwargs = {"dpi": PNG_DPI} if fmt == "png" else {}

    def write(tmp: Path) -> None:
        with matplotlib.rc_context(SAVE_STYLE), _lean_font_subsets() if fmt == "pdf" else nullcontext():
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
    >>> from scaling_cli.plot import fit_figures
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
