"""The numerical engine: exact bounded linear least squares, batched Newton-LM, global search."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import least_squares, nnls

from scaling_cli import get_form
from scaling_cli.linear import _bounded_linear_ls
from scaling_cli.objectives import Objective
from scaling_cli.search import global_minimize, grid_search, tie_tolerance
from scaling_cli.solve import Problem, levenberg_marquardt

TRUTH = np.array([300.0, 0.98, 8.0, 1.2, 500.0, 0.30, 1.75])


def problem(objective: str = "log-ls", seed: int = 0, n: int = 150) -> Problem:
    rng = np.random.default_rng(seed)
    X = {"m": np.exp(rng.uniform(np.log(256), np.log(8192), n)).round(),
         "l": np.exp(rng.uniform(np.log(4), np.log(80), n)).round(),
         "D": np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))}
    form = get_form("decomposed")
    y = form.predict(TRUTH[None, :], X)[0] * np.exp(rng.normal(0, 0.005, n))
    return Problem.build(form, X, y, Objective(objective, 1e-3 if objective == "huber" else None))


@pytest.mark.parametrize("seed", range(5))
def test_bounded_linear_ls_is_exact_nnls(seed):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(6, 30, 4))
    t = rng.normal(size=(6, 30)) + B @ np.array([1.0, -2.0, 0.5, -0.1])
    c = _bounded_linear_ls(np.swapaxes(B, 1, 2) @ B, np.einsum("gnl,gn->gl", B, t), np.ones(4, bool))
    for g in range(6):
        expected, _ = nnls(B[g], t[g])
        assert np.allclose(c[g], expected, atol=1e-8)


def test_bounded_linear_ls_leaves_unconstrained_columns_free():
    rng = np.random.default_rng(9)
    B = rng.normal(size=(1, 50, 3))
    t = B[0] @ np.array([-3.0, 2.0, -1.0])
    c = _bounded_linear_ls(B[0].T @ B[0][None], (B[0].T @ t)[None], np.array([False, True, True]))
    assert c[0, 0] < 0 and c[0, 2] == 0.0  # column 0 may go negative, column 2 may not


@pytest.mark.parametrize("objective", ["log-ls", "ls"])
def test_lm_matches_scipy_least_squares(objective):
    pr = problem(objective)
    sol = levenberg_marquardt(pr, TRUTH[None, :] * 1.05)
    assert sol.converged[0]

    def residuals(theta):
        return pr.residuals(theta[None, :])[0]

    def jac(theta):
        return pr.residuals_and_jacobian(theta[None, :])[1][0]

    ref = least_squares(residuals, TRUTH * 1.05, jac=jac, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert sol.value[0] <= np.sum(ref.fun**2) * (1 + 1e-12)
    assert np.allclose(sol.theta[0], ref.x, rtol=1e-6)


def test_batched_lm_equals_separate_runs():
    pr = problem(seed=1)
    starts = TRUTH[None, :] * np.array([[1.0], [1.1], [0.9]])
    together = levenberg_marquardt(pr, starts)
    for k in range(3):
        alone = levenberg_marquardt(pr, starts[k:k + 1])
        # rounding differs between batch sizes, so paths differ; the optimum agrees to the
        # tolerance the convergence test promises
        assert together.value[k] == pytest.approx(alone.value[0], rel=1e-12)
        assert np.allclose(together.theta[k], alone.theta[0], rtol=1e-7)


def test_weights_equal_repeated_rows():
    """Weight 2 on a row is the same problem as that row twice (what a case bootstrap relies on)."""
    pr = problem(seed=2, n=60)
    w = np.ones(pr.n)
    w[:10] = 2.0
    weighted = levenberg_marquardt(pr, TRUTH[None, :], weights=w[None, :])
    X2 = {k: np.concatenate([v, v[:10]]) for k, v in pr.X.items()}
    pr2 = Problem.build(pr.form, X2, np.concatenate([pr.y, pr.y[:10]]), pr.objective)
    repeated = levenberg_marquardt(pr2, TRUTH[None, :])
    assert weighted.value[0] == pytest.approx(repeated.value[0], rel=1e-10)
    assert np.allclose(weighted.theta[0], repeated.theta[0], rtol=1e-7)


def test_lm_keeps_bounds():
    pr = problem(seed=3)
    start = TRUTH.copy()
    start[6] = 0.0  # L0 on its lower bound
    sol = levenberg_marquardt(pr, start[None, :])
    assert np.all(sol.theta >= pr.lower) and np.all(sol.theta <= pr.upper)


def test_huber_lm_reaches_a_stationary_point():
    pr = problem("huber", seed=4)
    sol = levenberg_marquardt(pr, TRUTH[None, :])
    assert sol.converged[0]
    # no coordinate direction lowers the objective at the solution
    base = sol.value[0]
    for p in range(len(TRUTH)):
        for sign in (-1, 1):
            moved = sol.theta.copy()
            moved[0, p] *= 1 + sign * 1e-7
            assert pr.value(moved)[0] >= base * (1 - 1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_global_search_beats_the_truth_without_any_start(seed):
    """The true parameters are a feasible point, so the global minimum cannot be above them."""
    pr = problem(seed=seed)
    top, values, n_grid = grid_search(pr)
    assert n_grid > 1000 and np.all(np.diff(values) >= 0)
    solution, _, n_starts = global_minimize(pr)
    assert n_starts == len(top)
    # best first; rows tied with the best (to rounding) keep the order of their starts
    assert np.all(np.diff(solution.value) >= -tie_tolerance(pr, solution.value[0]))
    assert solution.value[0] <= pr.value(TRUTH[None, :])[0]
    assert solution.value[0] < values[0]  # polishing improved on the grid


@pytest.mark.parametrize("form_name", ["decomposed", "chinchilla"])
@pytest.mark.parametrize("objective", ["log-ls", "ls", "huber"])
@pytest.mark.parametrize("case", ["plain", "weighted", "fixed exponent"])
def test_power_sum_grid_gives_the_general_grids_points_and_values(form_name, objective, case, monkeypatch):
    """The grid for power-sum forms (normal equations from pairs of exponent values) against the
    general path (a design matrix per grid point): every grid point's coefficients and objective."""
    from scaling_cli import search

    pr = problem(objective, seed=4)
    if form_name == "chinchilla":
        X = {"N": 12 * pr.X["m"] ** 2 * pr.X["l"], "D": pr.X["D"]}
        pr = Problem.build(get_form("chinchilla"), X, pr.y, pr.objective)
    rng = np.random.default_rng(5)
    weights = rng.poisson(1.0, pr.n).astype(float) if case == "weighted" else None
    if case == "fixed exponent":
        name = "alpha_l" if form_name == "decomposed" else "beta"
        pr = Problem.build(pr.form, pr.X, pr.y, pr.objective, {name: 0.5})
    theta = search.grid_points(pr)
    fast, fast_values = theta.copy(), np.empty(len(theta))
    assert search._power_sum_grid(pr, fast, fast_values, weights, 10_000)
    monkeypatch.setattr(search, "_power_sum_grid", lambda *args: False)
    top, values, n_grid = search.exhaustive_grid(pr, weights, keep=len(theta))
    assert n_grid == len(theta)
    order = np.argsort(fast_values, kind="stable")
    assert np.allclose(fast_values[order], values, rtol=1e-9, atol=0)
    assert np.allclose(fast[order], top, rtol=1e-6, atol=1e-9)


def test_the_power_sum_grid_leaves_forms_with_a_held_or_bounded_coefficient_to_the_general_path():
    from scaling_cli import search

    pr = problem()
    for fixed, bounds in (({"L0": 1.7}, None), (None, {"c_m": (10.0, 1e4)})):
        held = Problem.build(pr.form, pr.X, pr.y, pr.objective, fixed, bounds)
        theta = search.grid_points(held)
        assert not search._power_sum_grid(held, theta, np.empty(len(theta)), None, 10_000)


def test_a_row_whose_derivatives_overflow_stops_without_breaking_the_batch():
    from scaling_cli.forms import Decomposed

    class Exploding(Decomposed):
        """Derivatives overflow where c_m is beyond 1e6, as they can for extreme starts."""

        def jacobian(self, theta, X):
            J = super().jacobian(theta, X)
            J[np.atleast_2d(theta)[:, 0] > 1e6] = np.inf
            return J

    base = problem(seed=6)
    pr = Problem.build(Exploding(), base.X, base.y, base.objective)
    extreme = TRUTH.copy()
    extreme[0] = 1e9
    sol = levenberg_marquardt(pr, np.stack([TRUTH * 1.05, extreme]))
    assert sol.converged[0] and not sol.converged[1]
    good = levenberg_marquardt(pr, TRUTH[None, :] * 1.05)
    assert sol.value[0] == pytest.approx(good.value[0], rel=1e-12)


def test_a_start_ends_where_it_would_alone_whatever_its_batch():
    """Each start of a Newton-LM batch is centered on itself: its path does not depend on the rows
    before it (it used to be centered on the first row)."""
    pr = problem(seed=2)
    starts = np.array([TRUTH * [1.3, 0.7, 2.0, 1.5, 0.5, 1.2, 0.9],
                       [50.0, 0.3, 1.0, 3.0, 5000.0, 0.6, 1.0],
                       TRUTH * 1.05])
    for k in range(len(starts)):
        alone = levenberg_marquardt(pr, starts[k:k + 1])
        for order in (np.roll(np.arange(3), 1), np.roll(np.arange(3), 2), np.arange(3)[::-1]):
            batch = levenberg_marquardt(pr, starts[order])
            row = int(np.flatnonzero(order == k)[0])
            # the same path up to rounding (batched and single products may round differently)
            assert batch.converged[row] == alone.converged[0]
            assert abs(int(batch.iterations[row]) - int(alone.iterations[0])) <= 3
            assert batch.value[row] == pytest.approx(alone.value[0], rel=1e-11)
            assert np.allclose(batch.theta[row], alone.theta[0], rtol=1e-6)


def test_a_nist_start_is_independent_of_a_grid_point_before_it():
    """ENSO's Start 1 converges alone; polished after a grid point (as global_minimize used to put
    it) it went non-finite because the batch was centered on the grid point."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_nist import problem as nist_problem

    nist, form, runs = nist_problem("ENSO")
    pr = Problem.build(form, form.inputs(runs), form.observed(runs), Objective("ls"))
    start = np.array([nist["start1"][p] for p in form.params])
    grid_point = grid_search(pr, keep=1)[0][0]
    alone = levenberg_marquardt(pr, start[None])
    after = levenberg_marquardt(pr, np.stack([grid_point, start]))
    assert np.isfinite(alone.value[0])
    assert after.value[1] == pytest.approx(alone.value[0], rel=1e-12)
    assert after.iterations[1] == alone.iterations[0]


@pytest.mark.parametrize("form_name", ["decomposed", "chinchilla"])
@pytest.mark.parametrize("objective", ["log-ls", "ls", "huber"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("by_run", [False, True])
def test_power_sum_kernel_gives_the_jacobian_paths_derivatives(form_name, objective, weighted, by_run,
                                                               monkeypatch):
    """The solver's power-sum kernel (derivatives from the powers, no Jacobian) against the general
    path through the form's Jacobian and second-order terms, on repeating and continuous inputs, with
    the rows in random order and run by run (a checkpoint table: the kernel sums width and depth
    terms per run)."""
    from scaling_cli.forms import Inputs
    from scaling_cli.solve import BatchSolver

    rng = np.random.default_rng(3)
    n, K = 600, 5
    run = rng.integers(0, 30, n)
    if by_run:
        run = np.sort(run)
    m = np.array([256.0, 512, 1024, 2048, 4096])[run % 5]
    ell = np.array([4.0, 8, 16, 32])[run % 4]
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e11), n))
    form = get_form(form_name)
    if form_name == "decomposed":
        X, theta = {"m": m, "l": ell, "D": D}, TRUTH
    else:
        X, theta = {"N": 12 * m * m * ell, "D": D}, np.array([1.7, 400.0, 0.34, 410.0, 0.28])
    y = form.predict(theta[None, :], X)[0] * np.exp(rng.normal(0, 0.05, n))
    pr = Problem.build(form, X, y, Objective(objective, 1e-3 if objective == "huber" else None))
    solver = BatchSolver(pr, theta, center=False)
    thetas = theta * (1 + 0.2 * rng.normal(size=(K, len(theta))))
    w = rng.poisson(1.0, (K, n)).astype(float) if weighted else None
    ty = pr.objective.transform(y)[None, :]
    inputs = Inputs(X)
    assert inputs.distinct  # the repeating inputs take the distinct-value path
    assert (inputs.segments is not None) == by_run
    kernel = solver._block_derivatives(thetas, ty, w, inputs)
    monkeypatch.setattr(type(form), "power_sum", lambda self: None)
    general = solver._block_derivatives(thetas, ty, w, inputs)
    for ours, theirs in zip(kernel, general, strict=True):
        assert np.max(np.abs(ours - theirs)) <= 1e-12 * np.max(np.abs(theirs))


def grouped_problem(objective: str = "log-ls", n_groups: int = 16, rows: int = 400, seed: int = 4):
    """A checkpoint table of `n_groups` runs, run by run (each its own width and depth, logged at
    `rows` token counts), and the first row of each run."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(n_groups), rows)
    m = np.array([256.0, 512, 1024, 2048])[group % 4]
    ell = np.array([4.0, 8, 16, 24, 32])[group % 5]
    D = np.concatenate([np.sort(np.exp(rng.uniform(np.log(1e9), np.log(1e11), rows)))
                        for _ in range(n_groups)])
    X = {"m": m, "l": ell, "D": D}
    form = get_form("decomposed")
    y = form.predict(TRUTH[None, :], X)[0] * np.exp(rng.normal(0, 0.01, len(D)))
    pr = Problem.build(form, X, y, Objective(objective, 1e-3 if objective == "huber" else None))
    return pr, group, np.arange(0, len(D), rows)


def group_weights(group: np.ndarray, K: int, seed: int = 5) -> np.ndarray:
    from scaling_cli.resample import _counts

    G = int(group.max()) + 1
    return _counts(np.random.default_rng(seed).integers(0, G, size=(K, G)), G)[:, group]


@pytest.mark.parametrize("objective", ["log-ls", "huber"])
def test_blocks_cut_at_the_groups_give_the_plain_blocks_objective_derivatives_and_solutions(objective):
    """With `pieces` (a group bootstrap's runs) each block is worked out only for the resamples that
    draw its group, its sums multiplied by their counts afterwards: the same objective, derivatives
    and solutions as blocks over every resample with per-row weights, to rounding."""
    from scaling_cli.solve import BatchSolver

    pr, group, first = grouped_problem(objective)
    K = 48
    w = group_weights(group, K)
    plain, pieced = BatchSolver(pr, TRUTH), BatchSolver(pr, TRUTH, pieces=first)
    blocks = pieced._weighted_blocks(K, None, w)
    assert all(scale is not None for _, _, _, scale, _ in blocks)  # the blocks cut at the groups were taken
    assert any(isinstance(part, np.ndarray) for _, _, part, _, _ in blocks)  # and some left resamples out
    assert sum(len(scale) for _, _, _, scale, _ in blocks) < K * len(blocks)
    thetas = TRUTH * (1 + 0.1 * np.random.default_rng(6).normal(size=(K, len(TRUTH))))
    x = plain.centering.to_centered(thetas)
    assert np.allclose(pieced._objective(x, None, w), plain._objective(x, None, w), rtol=1e-12, atol=0)
    for ours, theirs in zip(pieced._derivatives(x, None, w), plain._derivatives(x, None, w), strict=True):
        assert np.max(np.abs(ours - theirs)) <= 1e-11 * np.max(np.abs(theirs))
    a, b = pieced.solve(thetas, None, w), plain.solve(thetas, None, w)
    assert a.converged.all() and b.converged.all()
    assert np.allclose(a.value, b.value, rtol=1e-10, atol=0)
    assert np.allclose(a.theta, b.theta, rtol=1e-6, atol=1e-9)


def test_rows_of_weight_zero_count_for_nothing_even_where_not_finite():
    """A group that a resample leaves out cannot make its objective non-finite, with blocks cut at
    the groups or not; a row of positive weight that is not finite still does."""
    from scaling_cli.solve import BatchSolver

    pr, group, first = grouped_problem()
    y = pr.y.copy()
    y[group == 2] = -1.0  # log y is NaN there
    bad = Problem.build(pr.form, pr.X, y, pr.objective)
    kept = group != 2
    without = Problem.build(pr.form, {k: v[kept] for k, v in pr.X.items()}, pr.y[kept], pr.objective)
    K = 48
    w = group_weights(group, K)
    w[:, group == 2] = 0.0
    w[0, group == 2] = 1.0  # the first resample draws it
    thetas = TRUTH * (1 + 0.1 * np.random.default_rng(6).normal(size=(K, len(TRUTH))))
    expected = without.value(thetas, w[:, kept])
    for pieces in (None, first):
        solver = BatchSolver(bad, TRUTH, center=False, pieces=pieces)
        S = solver._objective(thetas, None, w)
        assert S[0] == np.inf
        assert np.allclose(S[1:], expected[1:], rtol=1e-12, atol=0)
    r = np.array([[1.0, np.nan, 2.0], [1.0, np.nan, 2.0], [1.0, np.inf, 2.0]])
    assert Objective("ls").value(r, np.array([[1.0, 0.0, 2.0], [1.0, 1.0, 2.0], [1.0, 0.0, 1.0]])).tolist() \
        == [9.0, np.inf, 5.0]


def test_pieces_promise_weights_constant_over_each():
    from scaling_cli.solve import BatchSolver

    pr, group, first = grouped_problem()
    w = group_weights(group, 48)
    w[1, 5] += 1.0
    with pytest.raises(ValueError, match="vary within a piece"):
        BatchSolver(pr, TRUTH, pieces=first).solve(np.repeat(TRUTH[None, :], 48, axis=0), None, w)
