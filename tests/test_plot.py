"""Figures: the right panels for each form, the plotted fit equals the fitted law, files written whole."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import shared_file

from scaling_cli import DataError, fit, load_runs
from scaling_cli.errors import ScalefitWarning
from scaling_cli.forms import Chinchilla
from scaling_cli.plot import (
    bootstrap_figures,
    fit_figures,
    partial_terms,
    power_law_band,
    residuals,
    save_figures,
    tex,
)

DECOMPOSED_TRUTH = {"c_m": 300.0, "alpha_m": 1.0, "c_l": 8.0, "alpha_l": 1.3, "c_D": 500.0,
                    "alpha_D": 0.3, "L0": 1.75}
CHINCHILLA_TRUTH = {"E": 1.8, "A": 480.0, "alpha": 0.35, "B": 2100.0, "beta": 0.37}
MAGIC = {"png": b"\x89PNG", "pdf": b"%PDF"}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _write(path, columns: dict[str, np.ndarray]) -> None:
    names = list(columns)
    rows = [",".join(names)] + [",".join(f"{columns[n][i]:.10g}" for n in names)
                                for i in range(len(columns[names[0]]))]
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def decomposed_result(tmp_path_factory):
    """A log-ls fit of the decomposed law to 150 seeded runs with 0.5% log-normal noise."""
    rng = np.random.default_rng(1)
    n = 150
    m = rng.choice([256, 512, 1024, 2048, 4096, 8192], n).astype(float)
    layers = rng.choice([4, 8, 12, 16, 24, 32, 48, 64, 80], n).astype(float)
    tokens = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
    t = DECOMPOSED_TRUTH
    loss = (t["c_m"] * m ** -t["alpha_m"] + t["c_l"] * layers ** -t["alpha_l"]
            + t["c_D"] * tokens ** -t["alpha_D"] + t["L0"]) * np.exp(rng.normal(0, 0.005, n))
    path = tmp_path_factory.mktemp("dec") / "runs.csv"
    _write(path, {"d_model": m, "n_layers": layers, "tokens": tokens, "loss": loss})
    return fit(load_runs(path), "decomposed")


def _chinchilla_columns(seed: int, n: int) -> dict[str, np.ndarray]:
    """n runs drawn from CHINCHILLA_TRUTH with 0.5% log-normal noise: params, tokens, loss."""
    rng = np.random.default_rng(seed)
    params = np.exp(rng.uniform(np.log(5e7), np.log(1.6e10), n))
    tokens = np.exp(rng.uniform(np.log(1e9), np.log(3e11), n))
    t = CHINCHILLA_TRUTH
    loss = (t["E"] + t["A"] * params ** -t["alpha"] + t["B"] * tokens ** -t["beta"]) \
        * np.exp(rng.normal(0, 0.005, n))
    return {"params": params, "tokens": tokens, "loss": loss}


@pytest.fixture(scope="module")
def chinchilla_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("chin") / "runs.csv"
    _write(path, _chinchilla_columns(seed=2, n=120))
    return fit(load_runs(path, require=("params", "tokens", "loss")), "chinchilla")


def _axis_count(figures):
    return {name: len(fig.axes) for name, fig in figures.items()}


# ---------------------------------------------------------------- which figures


def test_decomposed_figures_and_panels(decomposed_result):
    figures = fit_figures(decomposed_result)
    assert _axis_count(figures) == {"observed_vs_predicted": 1, "residuals": 3, "partial_terms": 3}
    panels = figures["partial_terms"].axes
    assert [ax.get_xscale() for ax in panels] == ["log"] * 3
    assert [ax.get_yscale() for ax in panels] == ["log"] * 3
    # the columns of the fitted table (d_model, n_layers), which the result recorded
    assert [ax.get_xlabel() for ax in panels] == ["width $m$ (d_model)", r"depth $\ell$ (n_layers)",
                                                  "training tokens $D$"]


def test_chinchilla_figures(chinchilla_result):
    figures = fit_figures(chinchilla_result)
    # loss_vs_compute: the axes, with its colour bar as a child
    assert _axis_count(figures) == {"observed_vs_predicted": 1, "residuals": 2, "loss_vs_compute": 1}
    ax = figures["loss_vs_compute"].axes[0]
    (bar,) = ax.child_axes
    assert bar.get_ylabel() == "parameters $N$"
    assert ax.get_xscale() == "log"
    runs = next(c for c in ax.collections if c.get_label().startswith("runs"))
    N, D = chinchilla_result.inputs["N"], chinchilla_result.inputs["D"]
    np.testing.assert_allclose(runs.get_offsets()[:, 0], 6 * N * D)
    np.testing.assert_allclose(runs.get_array(), N)  # coloured by N
    iso = [line for line in ax.get_lines() if line.get_label().startswith("fit, $N$")]
    assert 3 <= len(iso) <= 6


def test_iso_parameter_curves_are_the_fitted_law(chinchilla_result):
    ax = fit_figures(chinchilla_result)["loss_vs_compute"].axes[0]
    r = chinchilla_result
    curves = [line for line in ax.get_lines() if (line.get_gid() or "").startswith("iso")]
    assert len(curves) >= 6  # each N: extrapolated (dotted) and inside the data (solid)
    for line in curves:
        n_value = float(line.get_gid().split(":")[1])
        C, L = (np.asarray(v, float) for v in line.get_data())
        ok = np.isfinite(C)
        D = C[ok] / (6 * n_value)
        expected = r["E"] + r["A"] * n_value ** -r["alpha"] + r["B"] * D ** -r["beta"]
        np.testing.assert_allclose(L[ok], expected, rtol=1e-10)


class OtherForm(Chinchilla):
    name = "my_form"


def test_other_forms_get_the_generic_figures(chinchilla_result):
    result = dataclasses.replace(chinchilla_result, form=OtherForm())
    assert _axis_count(fit_figures(result)) == {"observed_vs_predicted": 1, "residuals": 2}


# ---------------------------------------------------------------- what is drawn


def test_depth_panel_line_is_the_fitted_power_law(decomposed_result):
    r = decomposed_result
    depth = partial_terms(r).axes[1]
    (line,) = [ln for ln in depth.get_lines() if ln.get_gid() == "fit"]
    x, y = (np.asarray(v, float) for v in line.get_data())
    np.testing.assert_allclose(y, r["c_l"] * x ** -r["alpha_l"], rtol=1e-12)
    assert x.min() == pytest.approx(r.inputs["l"].min()) and x.max() == pytest.approx(r.inputs["l"].max())
    assert "alpha_{\\ell}" in depth.get_title() and f"{r['alpha_l']:.2f}"[:3] in depth.get_title()


def test_partial_points_are_loss_minus_the_other_terms(decomposed_result):
    r = decomposed_result
    depth = partial_terms(r).axes[1]
    runs = next(c for c in depth.collections if c.get_label() == "runs")
    m, layers, D = r.inputs["m"], r.inputs["l"], r.inputs["D"]
    partial = r.observed - (r["c_m"] * m ** -r["alpha_m"] + r["c_D"] * D ** -r["alpha_D"] + r["L0"])
    shown = partial > 0
    assert 0 < (~shown).sum() < 20  # deep runs' partial loss is within the noise of zero
    np.testing.assert_allclose(runs.get_offsets(), np.column_stack([layers, partial])[shown], rtol=1e-10)
    assert f"{(~shown).sum()} of {r.n_points} runs with partial loss ≤ 0 not shown" in depth.get_title()


def test_nonpositive_partial_losses_are_left_out_and_counted(decomposed_result):
    r = decomposed_result
    own = r["c_l"] * r.inputs["l"] ** -r["alpha_l"]
    observed = r.predicted + 0.01  # every partial loss for depth is own + 0.01 > 0
    drop = np.arange(7)
    observed[drop] = r.predicted[drop] - own[drop] - 0.01  # ... except these: -0.01
    depth = partial_terms(dataclasses.replace(r, observed=observed)).axes[1]
    runs = next(c for c in depth.collections if c.get_label() == "runs")
    assert len(runs.get_offsets()) == r.n_points - 7
    np.testing.assert_allclose(np.asarray(runs.get_offsets())[:, 1], own[7:] + 0.01)
    assert f"7 of {r.n_points} runs with partial loss ≤ 0 not shown" in depth.get_title()
    width = partial_terms(dataclasses.replace(r, observed=r.predicted + 0.01)).axes[0]
    assert "not shown" not in width.get_title()


def test_band_is_drawn_and_skipped_without_errors(decomposed_result):
    from matplotlib.collections import PolyCollection

    def bands(result):
        return [c for c in partial_terms(result).axes[1].collections if isinstance(c, PolyCollection)]

    assert len(bands(decomposed_result)) == 1
    nan_cov = np.full_like(decomposed_result.covariance, np.nan)
    assert bands(dataclasses.replace(decomposed_result, covariance=nan_cov)) == []


def test_band_is_the_delta_method_on_log_f():
    c, alpha = 6.0, 1.3
    cov = np.array([[4.0, 0.5], [0.5, 0.08]])
    x = np.array([4.0, 12.0, 80.0])
    lo, hi = power_law_band(c, alpha, cov, x)
    grad = np.column_stack([np.full_like(x, 1 / c), -np.log(x)])  # d log f / d (c, alpha)
    sd = np.sqrt(np.einsum("ni,ij,nj->n", grad, cov, grad))
    f = c * x**-alpha
    np.testing.assert_allclose(np.log(hi / f), sd)
    np.testing.assert_allclose(np.log(f / lo), sd)
    assert power_law_band(c, alpha, np.full((2, 2), np.nan), x) is None


def test_residual_panels_are_log_residuals(decomposed_result):
    r = decomposed_result
    fig = residuals(r)
    assert [ax.get_xscale() for ax in fig.axes] == ["log"] * 3
    for ax, symbol in zip(fig.axes, ("m", "l", "D"), strict=True):
        points = ax.collections[0].get_offsets()
        np.testing.assert_allclose(points, np.column_stack([r.inputs[symbol],
                                                            np.log(r.observed) - np.log(r.predicted)]))
        assert any(np.allclose(line.get_ydata(), 0) for line in ax.get_lines())  # the zero line


def test_observed_vs_predicted_has_identity_band_and_legend(decomposed_result):
    ax = fit_figures(decomposed_result)["observed_vs_predicted"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["±1%", "observed = predicted", f"runs (n = {decomposed_result.n_points})"]
    (identity,) = ax.get_lines()
    np.testing.assert_allclose(identity.get_xdata(), identity.get_ydata())


# ---------------------------------------------------------------- saving


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_save_figures_writes_whole_files(decomposed_result, tmp_path, fmt):
    import matplotlib.pyplot as plt

    figures = fit_figures(decomposed_result)
    target = tmp_path / "new" / "plots"
    paths = save_figures(figures, target, fmt)
    assert [p.name for p in paths] == [f"{n}.{fmt}" for n in figures]
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in paths)  # no temp files
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 1000
        if fmt == "svg":
            assert b"<svg" in data[:2000]
        else:
            assert data.startswith(MAGIC[fmt])
    assert not any(plt.fignum_exists(f.number) for f in figures.values())


def test_save_figures_into_an_impossible_directory(decomposed_result, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DataError, match="cannot create plot directory .*file/plots"):
        save_figures(fit_figures(decomposed_result), blocker / "plots", "png")


def test_save_figures_rejects_an_unknown_format(decomposed_result, tmp_path):
    with pytest.raises(DataError, match="plot format must be one of png, pdf, svg, not 'jpg'"):
        save_figures(fit_figures(decomposed_result), tmp_path, "jpg")


def test_failed_save_leaves_nothing_behind(decomposed_result, tmp_path):
    figures = fit_figures(decomposed_result)

    def broken(path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    figures["residuals"].savefig = broken
    with pytest.raises(DataError, match="cannot write figure .*residuals.png: No space left on device"):
        save_figures(figures, tmp_path, "png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["observed_vs_predicted.png"]


def test_matplotlib_is_not_imported_with_the_module():
    code = "import sys, scaling_cli.plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- bootstrap


NAMES = ("c_l", "alpha_l", "L0", "beta")


@pytest.fixture
def draws():
    rng = np.random.default_rng(3)
    values = rng.multivariate_normal([6.0, 1.3, 1.75, 0.3], np.diag([4.0, 0.08, 6e-4, 1e-4]), 500)
    values[:20] = np.nan  # failed resamples
    values[20:37, 1] = np.nan  # partly failed rows count as failed too
    return values


def _intervals(draws):
    return {n: tuple(np.nanpercentile(draws[:, i], [2.5, 97.5])) for i, n in enumerate(NAMES)}


def test_bootstrap_histograms_leave_out_failed_resamples(draws):
    full = np.array([6.0, 1.3, 1.75, 0.3])
    figures = bootstrap_figures(NAMES, draws, full, _intervals(draws))
    assert set(figures) == {"bootstrap_histograms", "bootstrap_corner"}
    hist = figures["bootstrap_histograms"]
    assert len([ax for ax in hist.axes if ax.get_visible()]) == 4
    for ax in hist.axes:
        (bars,) = [p for p in ax.patches if p.get_gid() == "histogram"]
        assert bars.get_data().values.sum() == 463
    assert "463 of 500 resamples (37 failed, left out)" in hist.get_suptitle()


def test_bootstrap_histograms_mark_estimate_and_intervals(draws):
    full = np.array([6.0, 1.3, 1.75, 0.3])
    intervals = _intervals(draws)
    jacobian = {"alpha_l": (0.8, 1.8)}
    ax = bootstrap_figures(NAMES, draws, full, intervals, jacobian)["bootstrap_histograms"].axes[1]
    vertical = {round(float(line.get_xdata()[0]), 9) for line in ax.get_lines()}
    assert {round(v, 9) for v in (1.3, *intervals["alpha_l"], 0.8, 1.8)} <= vertical
    assert tex("alpha_l") in ax.get_title()


def test_corner_plot_of_exponents(draws):
    full = np.array([6.0, 1.3, 1.75, 0.3])
    corner = bootstrap_figures(NAMES, draws, full, _intervals(draws))["bootstrap_corner"]
    assert len(corner.axes) == 4  # alpha_l and beta: a 2 x 2 grid
    scatter_ax = corner.axes[2]  # row 1, column 0: beta against alpha_l
    offsets = scatter_ax.collections[0].get_offsets()
    assert len(offsets) == 463
    ok = np.isfinite(draws).all(axis=1)
    np.testing.assert_allclose(offsets, draws[ok][:, [1, 3]])
    assert len(scatter_ax.collections) > 1  # the density contours
    assert scatter_ax.get_xlabel() == tex("alpha_l") and scatter_ax.get_ylabel() == tex("beta")


def test_corner_plot_of_chosen_parameters_and_none_without_exponents(draws):
    full = np.array([6.0, 1.3, 1.75, 0.3])
    figures = bootstrap_figures(NAMES, draws, full, _intervals(draws), exponents=["c_l", "alpha_l", "L0"])
    assert len(figures["bootstrap_corner"].axes) == 9
    plain = bootstrap_figures(["E", "A"], draws[:, :2], full[:2], {})
    assert set(plain) == {"bootstrap_histograms"}
    with pytest.raises(DataError, match="corner plot: no parameter 'gamma'"):
        bootstrap_figures(NAMES, draws, full, {}, exponents=["gamma"])


def test_bootstrap_with_every_resample_failed():
    draws = np.full((10, 2), np.nan)
    fig = bootstrap_figures(["alpha", "beta"], draws, [0.3, 0.4], {})["bootstrap_histograms"]
    assert "0 of 10 resamples (10 failed" in fig.get_suptitle()


def test_tex_names():
    assert tex("alpha_l") == r"$\alpha_{\ell}$"
    assert tex("L0") == "$L_{0}$"
    assert tex("beta") == r"$\beta$"


# ---------------------------------------------------------------- real data


def test_paper_table_figures(chinchilla_wd, tmp_path):
    r = fit(load_runs(chinchilla_wd, exclude_top_loss=40), "decomposed")
    figures = fit_figures(r)
    depth = figures["partial_terms"].axes[1]
    assert depth.get_title().startswith(r"depth: $\alpha_{\ell}$ = 1.3")
    paths = save_figures(figures, tmp_path, "png")
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_one_depth_for_every_run_still_draws(decomposed_result):
    """A design the data cannot resolve (every run equally deep, no errors) still gives figures, quietly."""
    r = decomposed_result
    inputs = dict(r.inputs, l=np.full(r.n_points, 24.0))
    flat = dataclasses.replace(r, inputs=inputs, covariance=np.full_like(r.covariance, np.nan),
                               stderr=np.full_like(r.stderr, np.nan))
    depth = fit_figures(flat)["partial_terms"].axes[1]
    assert "± n/a" in depth.get_title()
    lo, hi = depth.get_xlim()
    assert 0 < lo < 24 < hi


# ---------------------------------------------------------------- figures for papers (issue 11)


def test_pdf_embeds_truetype_fonts_and_svg_keeps_text(decomposed_result, tmp_path):
    """Journals refuse Type 3 fonts; an SVG whose labels are paths cannot be edited."""
    pdf = save_figures(fit_figures(decomposed_result), tmp_path, "pdf")
    for path in pdf:
        data = path.read_bytes()
        assert b"/Subtype /Type3" not in data, path.name
        assert b"/Subtype /TrueType" in data or b"/Subtype /Type0" in data, path.name
    # the embedded fonts lost only the layout tables, which a PDF does not read, and only while saving
    from fontTools import subset

    assert not {"GSUB", "GPOS", "GDEF", "MATH"} & set(subset.Options().drop_tables)
    svg = save_figures(fit_figures(decomposed_result), tmp_path, "svg")
    for path in svg:
        text = path.read_text()
        assert "<text" in text and "partial" not in path.name or "<text" in text, path.name


def test_one_valued_panel_draws_its_fitted_line(decomposed_result):
    """Every run equally deep: the depth panel's legend entry for the fit has a line to point at."""
    r = decomposed_result
    flat = dataclasses.replace(r, inputs=dict(r.inputs, l=np.full(r.n_points, 24.0)))
    depth = fit_figures(flat)["partial_terms"].axes[1]
    (line,) = [ln for ln in depth.get_lines() if ln.get_gid() == "fit"]
    xs = np.asarray(line.get_xdata())
    lo, hi = depth.get_xlim()
    assert xs.min() < 24 < xs.max() and xs.min() >= lo and xs.max() <= hi


def test_long_titles_are_wrapped_to_the_figure(chinchilla_result):
    """The Epoch Huber fit's residuals title was clipped at both ends of a two-panel figure."""
    r = dataclasses.replace(chinchilla_result, objective=dataclasses.replace(
        chinchilla_result.objective, name="huber", delta=1e-3))
    fig = residuals(r)
    title = fig.get_suptitle()
    assert "\n" in title and "where the Huber loss is quadratic" in title.replace("\n", " ")
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width  # not clipped


def test_corner_plot_has_every_parameter_and_log_coefficients():
    """The bootstrap's corner plot includes the constant (L0 or E), which trades against the exponents,
    and puts the coefficients of power terms on log10 axes; the histograms include derived quantities."""
    from scaling_cli.bootstrap import bootstrap
    from scaling_cli.forms import shipped_form_path
    from scaling_cli.spec import load_form

    form = load_form(shipped_form_path("chinchilla"))
    from scaling_cli.io import Runs

    n = 80
    runs = Runs(path="<test>", sha256=None, data=_chinchilla_columns(seed=4, n=n),
                roles={"params": "params", "tokens": "tokens", "loss": "loss"}, n_total=n)
    result = bootstrap(runs, form, n=60, seed=0)
    figures = result.figures()
    corner = figures["bootstrap_corner"]
    k = 5
    assert len(corner.axes) == k * k
    xlabels = [corner.axes[(k - 1) * k + c].get_xlabel() for c in range(k)]
    assert xlabels == [tex("E"), "$\\log_{10}\\,A$", tex("alpha"), "$\\log_{10}\\,B$", tex("beta")]
    hist_titles = [ax.get_title() for ax in figures["bootstrap_histograms"].axes if ax.get_visible()]
    assert len(hist_titles) == 6 and hist_titles[-1].startswith(tex("a"))


def test_a_log_axis_within_a_decade_has_labels_across_its_range():
    """Gemstones' width panel ran from 0.55 to 1.9 and had no label above 1."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from scaling_cli.plot.style import _readable_log_axis

    ax = Figure().subplots()
    ax.set_yscale("log")
    ax.set_ylim(0.55, 1.9)
    _readable_log_axis(ax.yaxis, 0.55, 1.9)
    ticks = [t for t in ax.get_yticks() if 0.55 <= t <= 1.9]
    assert len(ticks) >= 4 and max(ticks) > 1.4 and min(ticks) < 0.8


def test_fit_figures_label_a_checkpoint_table_from_the_result():
    """A fit of a table with runs calls its rows checkpoints and names the columns it used, without
    being handed the table (a reloaded result labels its figures the same way)."""
    from scaling_cli.plot import axis_text

    runs = load_runs(shared_file("data", "gemstones", "hot.jsonl"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalefitWarning)
        result = fit(runs, "decomposed")
    assert axis_text(result) == axis_text(runs)
    assert axis_text(result).unit == "checkpoints" and axis_text(result).columns["group"] == "run_name"
    legend = fit_figures(result)["observed_vs_predicted"].axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("checkpoints (n = 220)") for label in legend)



def _check_layout(fig, name):
    """Every panel's text (tick labels, axis labels, title, legend) inside the figure and off the other
    panels' frames; the suptitle and a figure legend off every panel."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    panels = [ax for ax in fig.axes if ax.get_visible()]
    boxes = {ax: ax.get_tightbbox(renderer) for ax in panels}
    for ax, box in boxes.items():
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, \
            f"{name}: panel {ax.get_title() or ax.get_xlabel()!r} runs off the figure: {box}"
        for other in panels:
            if other is not ax:
                assert not box.overlaps(other.bbox), \
                    f"{name}: the text of {ax.get_xlabel()!r} runs into the panel of {other.get_xlabel()!r}"
    extras = [fig._suptitle] if fig._suptitle is not None else []
    extras += fig.legends
    for artist in extras:
        box = artist.get_window_extent(renderer)
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, name
        for ax, panel in boxes.items():
            assert not box.overlaps(panel), f"{name}: {type(artist).__name__} overlaps {ax.get_xlabel()!r}"


def test_fixed_margins_keep_text_inside_and_apart(decomposed_result, chinchilla_result, draws):
    """The figures place their panels on margins computed from their text rather than by matplotlib's
    layout engines; drawn, no text leaves the figure or runs into another panel."""
    huber = dataclasses.replace(chinchilla_result, objective=dataclasses.replace(
        chinchilla_result.objective, name="huber", delta=1e-3))
    figures = {**fit_figures(decomposed_result), **{f"chinchilla {k}": v for k, v in
                                                     fit_figures(chinchilla_result).items()},
               "huber residuals": residuals(huber)}
    figures.update(bootstrap_figures(NAMES, draws, np.array([6.0, 1.3, 1.75, 0.3]), _intervals(draws)))
    from conftest import ROOT

    from scaling_cli.optimize import Constraints, optimize
    from scaling_cli.plot import optimize_figures

    example = fit(load_runs(ROOT / "data" / "example_runs.csv"), "decomposed")
    figures.update(optimize_figures(optimize(example, np.geomspace(1e20, 1e24, 5),
                                             constraints=Constraints(width_multiple=64)), example))
    for name, fig in figures.items():
        if name != "bootstrap_corner":
            assert fig.get_layout_engine() is None, name  # no measuring draw before each save
        _check_layout(fig, name)


def test_axis_labels_show_the_scale_a_column_was_read_with(tmp_path):
    """A table whose tokens are in billions, read with scale={"tokens": 1e9} (`--scale tokens=1e9`):
    the tokens axes say the column and its factor; the other axes say no factor."""
    import pandas as pd
    from conftest import ROOT

    frame = pd.read_csv(ROOT / "data" / "example_runs.csv")
    tokens = frame.pop("num_tokens").to_numpy()
    frame["step"] = tokens / 1e9
    path = tmp_path / "billions.csv"
    frame.to_csv(path, index=False)
    runs = load_runs(path, columns={"tokens": "step"}, scale={"tokens": 1e9})
    np.testing.assert_allclose(runs.data["step"], tokens)
    figures = fit_figures(fit(runs, "decomposed"))  # from the result alone: it recorded how it was read
    for name in ("residuals", "partial_terms"):
        labels = [ax.get_xlabel() for ax in figures[name].axes]
        assert labels == ["width $m$ (d_model)", r"depth $\ell$ (n_layers)",
                          "training tokens $D$ (step ×1e9)"]
    # a factor keyed by the column's name is the same scale
    by_column = load_runs(path, columns={"tokens": "step"}, scale={"step": 1e9})
    from scaling_cli.plot import axis_text

    assert axis_text(by_column).scales == {"tokens": 1e9} == axis_text(runs).scales
