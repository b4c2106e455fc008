"""Compute-optimal shapes: the Lagrange structure of the decomposed law, Chinchilla's closed form on
Epoch AI's fit, the numerical optimizer against both, the exact shape search, bootstrap intervals and
the `scalefit optimize` command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from scaling_cli import load_runs
from scaling_cli.bootstrap import bootstrap
from scaling_cli.errors import SpecError
from scaling_cli.fitting import fit
from scaling_cli.optimize import Constraints, decomposed_optimum, decomposed_shape, optimize, parse_flops
from scaling_cli.report import write_json
from scaling_cli.spec import load_form, parse_form

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "example_runs.csv"
# scalefit's fit of Liu et al.'s table (README): c_m, alpha_m, c_l, alpha_l, c_D, alpha_D, L0
PAPER_FIT = np.array([270.0, 0.945, 6.7, 1.33, 530.0, 0.299, 1.754])
BUDGETS = np.geomspace(1e19, 1e26, 8)


def random_sets(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.array([10 ** rng.uniform(0, 3), rng.uniform(0.2, 2.0), 10 ** rng.uniform(-1, 2),
                      rng.uniform(0.2, 3.0), 10 ** rng.uniform(1, 3.5), rng.uniform(0.15, 0.6),
                      rng.uniform(1, 2)]) for _ in range(n)]


def check_lagrange_structure(theta: np.ndarray, opt: dict, flops: np.ndarray) -> None:
    """Terms in the ratio 2/a_m : 1/a_l : 1/a_D (1e-8); m*, l*, D*, L* - L0 power laws in C with the
    exponents (1/a)/S and -1/S (1e-6); the budget spent exactly."""
    c_m, a_m, c_l, a_l, c_D, a_D, L0 = theta
    m, layers, D, L = (np.asarray(opt[q]).ravel() for q in ("width", "depth", "tokens", "loss"))
    Tm, Tl, TD = c_m * m**-a_m, c_l * layers**-a_l, c_D * D**-a_D
    np.testing.assert_allclose(Tm / TD, (2 / a_m) / (1 / a_D), rtol=1e-8)
    np.testing.assert_allclose(Tl / TD, (1 / a_l) / (1 / a_D), rtol=1e-8)
    S = 2 / a_m + 1 / a_l + 1 / a_D
    logC = np.log(flops)
    for values, exponent in ((m, 1 / a_m / S), (layers, 1 / a_l / S), (D, 1 / a_D / S), (L - L0, -1 / S)):
        slopes = np.diff(np.log(values)) / np.diff(logC)
        np.testing.assert_allclose(slopes, exponent, rtol=0, atol=1e-6)
    np.testing.assert_allclose(72 * layers * m**2 * D, flops, rtol=1e-12)


@pytest.mark.parametrize("theta", [PAPER_FIT, *random_sets(6)],
                         ids=["paper"] + [f"random{i}" for i in range(6)])
def test_the_decomposed_optimum_has_the_lagrange_structure(theta):
    opt = decomposed_optimum(theta[None, :], BUDGETS)
    check_lagrange_structure(theta, {q: v[0] for q, v in opt.items()}, BUDGETS)


@pytest.fixture(scope="module")
def yaml_decomposed_fit():
    """A fit through the YAML form, so that optimize takes its numerical (SLSQP) path."""
    return fit(load_runs(EXAMPLE), load_form(ROOT / "configs" / "decomposed.yaml"))


@pytest.mark.parametrize("theta", [PAPER_FIT, *random_sets(2, seed=1)], ids=["paper", "random0", "random1"])
def test_the_numerical_optimizer_finds_the_same_structure(yaml_decomposed_fit, theta):
    result = replace(yaml_decomposed_fit, values=theta)
    opt = optimize(result, BUDGETS[::2])
    assert opt.method.startswith("numerical")
    check_lagrange_structure(theta, opt.optimum, BUDGETS[::2])
    closed = decomposed_optimum(theta[None, :], BUDGETS[::2])
    np.testing.assert_allclose(opt.optimum["loss"], closed["loss"][0], rtol=1e-9)


def test_a_vocabulary_shifts_the_balance_as_the_lagrange_conditions_say(yaml_decomposed_fit):
    """With N = 12 l m^2 + V m the conditions become a_m T_m = mu (1 + f), a_l T_l = mu f,
    a_D T_D = mu with f = 12 l m^2 / N; the numerical optimizer with a `params:` expression agrees."""
    V = 50257.0
    flops = np.geomspace(1e18, 1e24, 5)
    opt = decomposed_optimum(PAPER_FIT[None, :], flops, vocab=V)
    c_m, a_m, c_l, a_l, c_D, a_D, _ = PAPER_FIT
    m, layers, D, N = (opt[q][0] for q in ("width", "depth", "tokens", "params"))
    f = 12 * layers * m**2 / N
    mu = a_D * c_D * D**-a_D
    np.testing.assert_allclose(a_m * c_m * m**-a_m, mu * (1 + f), rtol=1e-8)
    np.testing.assert_allclose(a_l * c_l * layers**-a_l, mu * f, rtol=1e-8)
    np.testing.assert_allclose(6 * N * D, flops, rtol=1e-12)
    assert np.all(f < 1) and f[0] < f[-1]  # embeddings weigh most in small models
    spec = {"expression": "c_m * m**(-alpha_m) + c_l * l**(-alpha_l) + c_D * D**(-alpha_D) + L0",
            "variables": {"m": "width", "l": "depth", "D": "tokens"},
            "parameters": {p: {} for p in ("c_m", "alpha_m", "c_l", "alpha_l", "c_D", "alpha_D", "L0")},
            "params": f"12 * l * m**2 + {V:g} * m"}
    numerical = optimize(replace(yaml_decomposed_fit, form=parse_form(spec), values=PAPER_FIT), flops)
    np.testing.assert_allclose(numerical.optimum["loss"], opt["loss"][0], rtol=1e-9)
    np.testing.assert_allclose(numerical.optimum["width"], m, rtol=1e-6)


@pytest.fixture(scope="module")
def epoch_fit(request):
    path = shared_file("data", "epoch_chinchilla.csv")
    runs = load_runs(path, require=("params", "tokens", "loss"), exclude_top_loss=5)
    return fit(runs, "chinchilla", "huber", delta=1e-3)


def test_chinchilla_closed_form_on_epochs_fit(epoch_fit):
    """The `chinchilla` package's allocate_compute on these parameters: 73.2B parameters, 1.31T tokens."""
    C = 5.76e23
    opt = optimize(epoch_fit, C)
    E, A, a, B, b = epoch_fit.values
    G = (a * A / (b * B)) ** (1 / (a + b))
    N = G * (C / 6) ** (b / (a + b))
    assert opt.optimum["params"][0] == pytest.approx(N, rel=1e-9)
    assert opt.optimum["tokens"][0] == pytest.approx(C / (6 * N), rel=1e-9)
    assert opt.optimum["params"][0] == pytest.approx(7.32e10, rel=0.005)
    assert opt.optimum["tokens"][0] == pytest.approx(1.31e12, rel=0.005)
    assert opt.optimum["loss"][0] == pytest.approx(E + A * N**-a + B * (C / (6 * N)) ** -b, rel=1e-12)
    # the same law as a YAML form goes through the numerical optimizer and lands on the same optimum
    yaml_fit = replace(epoch_fit, form=load_form(ROOT / "configs" / "chinchilla.yaml"))
    numerical = optimize(yaml_fit, [C, 1e21, 1e25])
    closed = optimize(epoch_fit, [C, 1e21, 1e25])
    np.testing.assert_allclose(numerical.optimum["loss"], closed.optimum["loss"], rtol=1e-9)
    np.testing.assert_allclose(numerical.optimum["params"], closed.optimum["params"], rtol=1e-6)


@pytest.mark.parametrize("C, constraints", [
    (3e19, Constraints(width_multiple=64)),
    (1e21, Constraints(width_multiple=128, max_aspect=60, min_depth=4)),
    (1e21, Constraints(width_multiple=32, max_width=1024, max_depth=30)),
    (2e20, Constraints(width_multiple=1, min_width=3000)),
])
def test_the_best_shape_is_the_best_of_every_shape(C, constraints):
    vocab = 1000.0
    shape = decomposed_shape(PAPER_FIT, C, vocab, constraints)
    W = constraints.width_multiple
    widths = np.arange(W, 6000, W, dtype=float)
    depths = np.arange(1, 400, dtype=float)
    m, layers = np.meshgrid(widths, depths, indexing="ij")
    ok = ((m >= (constraints.min_width or 0)) & (m <= (constraints.max_width or np.inf))
          & (layers >= (constraints.min_depth or 0)) & (layers <= (constraints.max_depth or np.inf))
          & (m <= (constraints.max_aspect or np.inf) * layers))
    N = 12 * layers * m**2 + vocab * m
    D = C / (6 * N)
    c_m, a_m, c_l, a_l, c_D, a_D, L0 = PAPER_FIT
    L = np.where(ok & (D >= 1), L0 + c_m * m**-a_m + c_l * layers**-a_l + c_D * D**-a_D, np.inf)
    i, j = np.unravel_index(np.argmin(L), L.shape)
    assert (shape["width"], shape["depth"]) == (widths[i], depths[j])
    assert shape["loss"] == pytest.approx(L[i, j], rel=1e-14)
    assert shape["width"] % W == 0


def test_bootstrap_intervals_count_draws_without_an_interior_optimum():
    runs = load_runs(EXAMPLE)
    boot = bootstrap(runs, "decomposed", n=120, seed=2)
    draws = boot.draws.copy()
    draws[:7, 3] = 0.0  # alpha_l = 0: depth buys nothing, the optimum runs off to depth 0
    boot = replace(boot, draws=draws)
    flops = np.array([1e20, 1e23])
    opt = optimize(boot, flops, level=0.9)
    assert opt.n_no_interior.tolist() == [7, 7] and opt.n_draws == int(boot.ok.sum())
    assert any("7 of" in w and "no interior optimum" in w for w in opt.warnings)
    cloud = decomposed_optimum(draws[boot.ok][7:], flops)
    for q in ("width", "params", "loss"):
        expected = np.quantile(cloud[q], [0.05, 0.95], axis=0).T
        np.testing.assert_allclose(opt.intervals[q], expected, rtol=1e-12)
        assert np.all((opt.intervals[q][:, 0] < opt.optimum[q]) & (opt.optimum[q] < opt.intervals[q][:, 1]))


def test_parse_flops():
    assert parse_flops(["5.76e23"]).tolist() == [5.76e23]
    np.testing.assert_allclose(parse_flops(["1e20:1e25:6"]), [1e20, 1e21, 1e22, 1e23, 1e24, 1e25], rtol=1e-12)
    for bad in ("1e25:1e20:3", "x", "1e20:1e21", "-1", "1e20:1e21:1"):
        with pytest.raises(SpecError, match="--flops"):
            parse_flops([bad])


def test_optimize_command(tmp_path, cli):
    out = cli("fit", EXAMPLE, "--json", tmp_path / "fit.json", "-q")
    assert out.exit_code == 0, out.output
    out = cli("optimize", tmp_path / "fit.json", "--flops", "1e20:1e24:5", "--width-multiple", "64",
              "--json", tmp_path / "o.json", "--output", tmp_path / "o.csv")
    assert out.exit_code == 0, out.output
    assert "compute-optimal frontier, 5 budgets" in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
    doc = json.loads((tmp_path / "o.json").read_text())
    assert len(doc["budgets"]) == 5 and doc["budgets"][0]["shape"]["width"] % 64 == 0
    import pandas as pd

    frame = pd.read_csv(tmp_path / "o.csv")
    assert frame["width_shape"].tolist() == [b["shape"]["width"] for b in doc["budgets"]]
    one = cli("optimize", tmp_path / "fit.json", "--flops", "1e22")
    assert one.exit_code == 0 and "compute-optimal run for C = 1.00e22 FLOP" in one.stdout


@pytest.mark.parametrize("args, message", [
    (("--flops", "lots"), "--flops lots: expected a budget"),
    (("--flops", "1e22", "--min-width", "512", "--max-width", "256"), "--min-width 512 is above --max-width"),
    (("--flops", "1e22", "--width-multiple", "0"), "--width-multiple must be a positive integer"),
    (("--flops", "1e22", "--vocab", "-5"), "--vocab must be 0 or a positive number"),
])
def test_optimize_bad_input_is_one_line_and_exit_2(tmp_path, cli, args, message):
    write_json(tmp_path / "fit.json", fit(load_runs(EXAMPLE), "decomposed").to_dict())
    out = cli("optimize", tmp_path / "fit.json", *args)
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1 and message in out.stderr


def test_optimize_figures_show_the_frontier_and_the_iso_flop_minimum(tmp_path):
    from scaling_cli.plot import optimize_figures, save_figures

    runs = load_runs(EXAMPLE)
    boot = bootstrap(runs, "decomposed", n=60, seed=1)
    opt = optimize(boot, np.geomspace(1e20, 1e24, 5), constraints=Constraints(width_multiple=64))
    figures = optimize_figures(opt, boot)
    assert set(figures) == {"frontier", "isoflop"}
    panels = figures["frontier"].axes
    assert [ax.get_title() for ax in panels] == ["width $m^*$", "depth $\\ell^*$", "tokens $D^*$",
                                                 "parameters $N^*$", "loss $L^*$"]
    assert all(ax.collections for ax in panels)  # the bootstrap bands
    line = panels[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), opt.optimum["width"])
    # the iso-FLOP curve of width bottoms out at the optimum width (on its 200-point grid)
    curve = figures["isoflop"].axes[0].lines[0]
    x, y = curve.get_xdata(), curve.get_ydata()
    assert abs(np.log(x[np.argmin(y)] / opt.optimum["width"][2])) < np.log(400) / 199
    written = save_figures(figures, tmp_path, "png")
    assert sorted(p.name for p in written) == ["frontier.png", "isoflop.png"]


def test_a_yaml_cost_expression_is_the_budget(epoch_fit):
    """With `cost: 8 * N * D` (activation recomputation, say) the optimum is Chinchilla's closed form
    with C / 8 in place of C / 6."""
    text = (ROOT / "configs" / "chinchilla.yaml").read_text() + "cost: 8 * N * D\n"
    from scaling_cli.spec import parse_form_text

    result = replace(epoch_fit, form=parse_form_text(text, "chinchilla_8ND.yaml"))
    C = 1e23
    opt = optimize(result, C)
    E, A, a, B, b = epoch_fit.values
    N = (a * A / (b * B)) ** (1 / (a + b)) * (C / 8) ** (b / (a + b))
    assert opt.optimum["params"][0] == pytest.approx(N, rel=1e-6)
    assert opt.optimum["tokens"][0] == pytest.approx(C / (8 * N), rel=1e-6)
    assert opt.cost_model.startswith("C = 8 * N * D")


@pytest.mark.parametrize("extra, message", [
    ("cost: 6 * N * tokens_seen\n", "cost: unknown name tokens_seen; it may use N, D$"),
    ("cost: __import__('os')\n", "cost"),
    ("params: 12 * l * m**2\n", "params: unknown name l"),
])
def test_bad_cost_expressions_are_spec_errors(epoch_fit, extra, message):
    from scaling_cli.spec import parse_form_text

    text = (ROOT / "configs" / "chinchilla.yaml").read_text() + extra
    with pytest.raises(SpecError, match=message):
        optimize(replace(epoch_fit, form=parse_form_text(text, "bad.yaml")), 1e22)
