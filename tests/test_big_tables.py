"""Big tables: the grid searched on a subsample of rows reaches the exhaustive grid's optimum, the solver
sums its derivatives over row blocks without changing the answer, and the forms' combined derivatives
are the separate ones."""

from __future__ import annotations

import numpy as np
import pytest

import scaling_cli.search as search
import scaling_cli.solve as solve
from scaling_cli import get_form
from scaling_cli.forms import Form
from scaling_cli.objectives import Objective
from scaling_cli.search import global_minimize, grid_rows
from scaling_cli.solve import BatchSolver, Problem, levenberg_marquardt

DECOMPOSED = np.array([300.0, 0.98, 8.0, 1.2, 500.0, 0.30, 1.75])
CHINCHILLA = np.array([1.8, 480.0, 0.35, 2100.0, 0.37])
SUBSAMPLE = 64  # rows the grid is searched on in these tests (the default is GRID_ROWS)


def design(kind: str, n: int, rng) -> dict[str, np.ndarray]:
    """`iid`: every row its own width, depth and tokens; `checkpoints`: a few runs, each logged at many
    token counts (the tables that grow to a million rows)."""
    if kind == "iid":
        return {"m": np.exp(rng.uniform(np.log(256), np.log(8192), n)).round(),
                "l": np.exp(rng.uniform(np.log(4), np.log(80), n)).round(),
                "D": np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))}
    runs = 12
    run = rng.integers(0, runs, n)
    m = rng.choice([256.0, 512, 1024, 2048, 4096, 8192], runs)[run]
    ell = rng.choice([4.0, 8, 16, 32, 64], runs)[run]
    D = 10 ** rng.uniform(10, 12, runs)[run] * 10 ** rng.uniform(-2, 0, n)
    return {"m": m, "l": ell, "D": D}


def make_problem(form_name: str, kind: str, objective: str, seed: int, n: int = 600,
                 misspecified: bool = False) -> Problem:
    rng = np.random.default_rng(seed)
    X = design(kind, n, rng)
    form = get_form(form_name)
    if form_name == "chinchilla":
        X = {"N": 12 * X["l"] * X["m"] ** 2, "D": X["D"]}
        law = form.predict(CHINCHILLA[None, :], X)[0]
    elif misspecified:  # a Chinchilla law of the same runs, fitted by the decomposed form
        law = get_form("chinchilla").predict(CHINCHILLA[None, :],
                                             {"N": 12 * X["l"] * X["m"] ** 2, "D": X["D"]})[0]
    else:
        law = form.predict(DECOMPOSED[None, :], X)[0]
    y = law * np.exp(rng.normal(0, 0.02 if misspecified else 0.005, n))
    return Problem.build(form, X, y, Objective(objective, 1e-3 if objective == "huber" else None))


CASES = [("decomposed", "iid", "log-ls", 0, False), ("decomposed", "checkpoints", "log-ls", 1, False),
         ("decomposed", "checkpoints", "ls", 2, False), ("decomposed", "iid", "huber", 3, False),
         ("decomposed", "checkpoints", "log-ls", 4, True), ("decomposed", "iid", "log-ls", 5, True),
         ("chinchilla", "iid", "log-ls", 6, False), ("chinchilla", "checkpoints", "huber", 7, False)]


@pytest.mark.parametrize(("form_name", "kind", "objective", "seed", "misspecified"), CASES)
def test_subsampled_grid_reaches_the_exhaustive_optimum(monkeypatch, form_name, kind, objective, seed,
                                                        misspecified):
    pr = make_problem(form_name, kind, objective, seed, misspecified=misspecified)
    monkeypatch.setattr(search, "GRID_ROWS", 10 * pr.n)
    exhaustive, _, _ = global_minimize(pr)
    monkeypatch.setattr(search, "GRID_ROWS", SUBSAMPLE)
    assert grid_rows(pr) is not None and len(grid_rows(pr)) < pr.n / 4  # the subsample path is taken
    subsampled, _, n_starts = global_minimize(pr)
    assert n_starts <= search.SUBSAMPLE_MINIMA < search.N_POLISH
    best, found = exhaustive.value[0], subsampled.value[0]
    assert found <= best * (1 + 1e-10)
    assert np.allclose(subsampled.theta[0], exhaustive.theta[0], rtol=1e-5, atol=1e-8)


def test_subsampled_grid_with_weights_reaches_the_exhaustive_optimum(monkeypatch):
    """Bootstrap weights (zeros included) go with the rows into the subsample (`check_global`)."""
    pr = make_problem("decomposed", "checkpoints", "log-ls", 11)
    weights = np.random.default_rng(0).poisson(1.0, pr.n).astype(float)
    monkeypatch.setattr(search, "GRID_ROWS", 10 * pr.n)
    exhaustive, _, _ = global_minimize(pr, weights)
    monkeypatch.setattr(search, "GRID_ROWS", SUBSAMPLE)
    rows = grid_rows(pr, weights)
    assert np.all(weights[rows] > 0)
    subsampled, _, _ = global_minimize(pr, weights)
    assert subsampled.value[0] <= exhaustive.value[0] * (1 + 1e-10)


def test_grid_rows_are_deterministic_and_hold_the_extremes():
    pr = make_problem("decomposed", "checkpoints", "log-ls", 0, n=5000)
    rows = grid_rows(pr, size=200)
    assert np.array_equal(rows, grid_rows(pr, size=200))
    assert 200 <= len(rows) <= 200 + 8 and np.all(np.diff(rows) > 0)
    for column in [*pr.X.values(), pr.y]:
        assert column[rows].min() == column.min() and column[rows].max() == column.max()
    # every run (rows sharing a width and a depth) is represented in proportion to its rows, and within
    # a run the checkpoints are spread over its token range
    run = np.unique(np.column_stack([pr.X["m"], pr.X["l"]]), axis=0, return_inverse=True)[1].ravel()
    share = np.bincount(run[rows], minlength=run.max() + 1) / len(rows)
    assert np.allclose(share, np.bincount(run) / pr.n, atol=0.02)
    biggest = np.argmax(np.bincount(run))
    tokens = np.log(pr.X["D"][rows][run[rows] == biggest])
    everything = np.log(pr.X["D"][run == biggest])
    assert np.allclose(np.quantile(tokens, [0.25, 0.5, 0.75]), np.quantile(everything, [0.25, 0.5, 0.75]),
                       atol=0.1)
    assert grid_rows(pr, size=5000) is None


@pytest.mark.parametrize("objective", ["log-ls", "ls", "huber"])
@pytest.mark.parametrize("kernel", [True, False])
def test_row_blocks_give_the_same_solution(monkeypatch, objective, kernel):
    pr = make_problem("decomposed", "iid", objective, 3, n=500)
    if not kernel:  # the general Jacobian path
        monkeypatch.setattr(type(pr.form), "power_sum", lambda self: None)
    rng = np.random.default_rng(1)
    weights = rng.poisson(1.0, (6, pr.n)).astype(float)
    start = np.repeat(DECOMPOSED[None, :] * 1.05, 6, axis=0)
    whole = levenberg_marquardt(pr, start, weights)
    monkeypatch.setattr(solve, "ROW_BLOCK_FLOATS", 6 * 7 * 37)  # blocks of 37 rows
    monkeypatch.setattr(solve, "KERNEL_MIN_ROWS", 16)  # (which the kernel then takes too)
    assert len(BatchSolver(pr, DECOMPOSED)._row_blocks(6)) == 14
    blocked = levenberg_marquardt(pr, start, weights)
    assert np.all(whole.converged) and np.all(blocked.converged)
    assert np.allclose(blocked.value, whole.value, rtol=1e-12)
    assert np.allclose(blocked.theta, whole.theta, rtol=1e-8)


@pytest.mark.parametrize("name", ["decomposed", "chinchilla"])
def test_combined_derivatives_are_the_separate_ones(name):
    form = get_form(name)
    pr = make_problem(name, "iid", "log-ls", 0, n=50)
    theta = np.vstack([DECOMPOSED if name == "decomposed" else CHINCHILLA] * 2) * [[1.0], [1.1]]
    v = np.random.default_rng(0).normal(size=(2, 50))
    for method in (form.predict_derivatives, lambda *a: Form.predict_derivatives(form, *a)):  # own, default
        seen: list[np.ndarray] = []
        f, J, second = method(theta, pr.X, lambda f, seen=seen: seen.append(f) or v * f)
        assert np.array_equal(f, form.predict(theta, pr.X)) and np.array_equal(seen[0], f)
        assert np.array_equal(J, form.jacobian(theta, pr.X))
        assert np.array_equal(second, form.second_order(theta, pr.X, v * f))


def test_a_subclass_overriding_the_jacobian_gets_its_own_jacobian():
    from scaling_cli.forms import Decomposed

    class Doubled(Decomposed):
        def jacobian(self, theta, X):
            return 2 * super().jacobian(theta, X)

    pr = make_problem("decomposed", "iid", "log-ls", 0, n=20)
    _, J, _ = Doubled().predict_derivatives(DECOMPOSED[None, :], pr.X, lambda f: f)
    assert np.array_equal(J, 2 * get_form("decomposed").jacobian(DECOMPOSED[None, :], pr.X))


def test_powers_of_repeated_inputs_are_the_powers_of_every_row():
    from scaling_cli.forms import Inputs

    pr = make_problem("decomposed", "checkpoints", "log-ls", 0, n=400)
    X = Inputs(pr.X)
    assert set(X.distinct) == {"m", "l"}  # widths and depths repeat over a run's checkpoints; tokens do not
    form = get_form("decomposed")
    theta = np.vstack([DECOMPOSED, DECOMPOSED * 1.1])
    assert np.array_equal(form.predict(theta, X), form.predict(theta, pr.X))
    f, J, second = form.predict_derivatives(theta, X, lambda f: 1 / f)
    g, J0, second0 = form.predict_derivatives(theta, pr.X, lambda f: 1 / f)
    assert np.array_equal(f, g) and np.array_equal(J, J0) and np.array_equal(second, second0)
