"""Checkpoint tables (issue 7): groups, cluster-robust errors, design diagnostics, curve-table helpers."""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from scaling_cli import fit, load_runs
from scaling_cli.bootstrap import WEBB_POINTS, Resampler, bootstrap
from scaling_cli.design import Groups, between_group, looks_like_curves
from scaling_cli.errors import DataError, ScalefitWarning, SpecError
from scaling_cli.fitting import _cr2_residuals, _scaled_jacobian, bell_mccaffrey_dof, t_quantile
from scaling_cli.forms import get_form
from scaling_cli.io import Runs
from scaling_cli.report import depth_regime
from scaling_cli.solve import Problem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import coverage_checkpoints  # noqa: E402

TRUTH = np.array([274.7, 0.9455, 6.721, 1.325, 529.3, 0.2991, 1.754])  # the paper's law


def grouped_runs(n_runs: int = 12, per_run: int = 8, seed: int = 0, offset_sd: float = 0.01,
                 noise_sd: float = 0.002, widths=None, depths=None) -> Runs:
    """Runs of the decomposed law, each at `per_run` token counts, with a random offset per run."""
    rng = np.random.default_rng(seed)
    widths = np.exp(rng.uniform(np.log(256), np.log(4096), n_runs)).round() if widths is None else widths
    depths = np.exp(rng.uniform(np.log(4), np.log(64), n_runs)).round() if depths is None else depths
    run = np.repeat(np.arange(n_runs), per_run)
    # checkpoints on a shared grid; one row per run: each run's own token count
    tokens = (np.tile(np.geomspace(1e9, 1e11, per_run), n_runs) if per_run > 1
              else np.exp(rng.uniform(np.log(1e9), np.log(1e11), n_runs)))
    X = {"m": np.asarray(widths, float)[run], "l": np.asarray(depths, float)[run], "D": tokens}
    log_f = np.log(get_form("decomposed").predict(TRUTH[None, :], X)[0])
    loss = np.exp(log_f + rng.normal(0, offset_sd, n_runs)[run] + rng.normal(0, noise_sd, len(run)))
    data = {"width": X["m"], "depth": X["l"], "tokens": X["D"], "loss": loss,
            "run": np.array([f"r{g}" for g in run], dtype=object)}
    roles = {"width": "width", "depth": "depth", "tokens": "tokens", "loss": "loss", "group": "run"}
    return Runs(path="<grouped>", sha256=None, data=data, roles=roles, n_total=len(run))


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalefitWarning)
        return fit(*args, **kwargs)


# ---------------------------------------------------------------- the sandwich


def test_cr2_matches_its_definition_with_the_full_hat_matrix():
    """The low-rank CR2 residuals equal (I - H_gg)^-1/2 r_g computed densely from the hat matrix."""
    runs = grouped_runs(n_runs=6, per_run=5)
    result = quiet_fit(runs, "decomposed")
    problem = Problem.build(result.form, result.inputs, result.observed, result.objective)
    idx = np.arange(7)
    r, Js, _ = _scaled_jacobian(problem, result.values, idx)
    groups = Groups("run", runs.group_index()[0], 6)
    bread = np.linalg.pinv(Js.T @ Js)
    fast = _cr2_residuals(r, Js, bread, groups)
    H = Js @ bread @ Js.T
    for g in range(6):
        rows = np.flatnonzero(groups.index == g)
        w, Q = np.linalg.eigh(np.eye(rows.size) - H[np.ix_(rows, rows)])
        inv_half = (Q / np.sqrt(w)) @ Q.T
        # (both sides carry the rounding of an ill-conditioned J'J, about 1e-6 here)
        np.testing.assert_allclose(fast[rows], inv_half @ r[rows], rtol=1e-4, atol=1e-12)
    # and the reported covariance is the sandwich of those residuals' group scores
    scores = np.array([Js[groups.index == g].T @ fast[groups.index == g] for g in range(6)])
    d = np.linalg.norm(problem.residuals_and_jacobian(result.values[None, :])[1][0], axis=0)
    V = bread @ scores.T @ scores @ bread / np.outer(d, d)
    ok = np.isfinite(np.diag(result.covariance))
    np.testing.assert_allclose(result.covariance[np.ix_(ok, ok)], V[np.ix_(ok, ok)], rtol=1e-4)


def _linear_cr2(X: np.ndarray, y: np.ndarray, groups: Groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OLS estimate, CR2 standard errors and Bell-McCaffrey degrees of freedom of a linear model."""
    bread = np.linalg.inv(X.T @ X)
    beta = bread @ X.T @ y
    adjusted = _cr2_residuals(y - X @ beta, X, bread, groups)
    scores = np.zeros((groups.count, X.shape[1]))
    np.add.at(scores, groups.index, X * adjusted[:, None])
    V = bread @ scores.T @ scores @ bread
    return beta, np.sqrt(np.diag(V)), bell_mccaffrey_dof(X, bread, groups)


def test_bell_mccaffrey_dof_is_g_minus_1_for_a_balanced_mean():
    """For the mean of G equal clusters CR2 is the classical variance of the cluster means, exactly
    t(G - 1) under iid errors, and the Bell-McCaffrey degrees of freedom say so."""
    groups = Groups("g", np.repeat(np.arange(9), 4), 9)
    X = np.column_stack([np.ones(36), np.tile(np.linspace(-1, 1, 4), 9)])  # a within-cluster slope too
    _, _, dof = _linear_cr2(X, np.zeros(36), groups)
    assert dof[0] == pytest.approx(8.0, rel=1e-9)
    assert dof[1] == pytest.approx(8.0, rel=1e-9)  # balanced within each cluster as well


def test_bell_mccaffrey_dof_restores_coverage_when_two_clusters_carry_a_parameter():
    """A regressor that only 2 of 14 clusters carry (as one run at depth 3 carries alpha_l on the
    Gemstones design): CR2 with t(G - 1) undercovers its true coefficient under iid errors, and the
    Bell-McCaffrey degrees of freedom (about 2.5 here) bring the coverage back to 95% or a little
    above (the approximation is mildly conservative in such designs, Imbens & Kolesar 2016)."""
    G, per = 14, 5
    groups = Groups("g", np.repeat(np.arange(G), per), G)
    carried = np.where(np.isin(groups.index, [0, 1]), 1.0, 0.0) * np.tile(np.linspace(0.5, 1.5, per), G)
    X = np.column_stack([np.ones(G * per), np.repeat(np.linspace(-1, 1, G), per), carried])
    truth = np.array([1.0, 0.5, 2.0])
    rng = np.random.default_rng(7)
    hits_bm, hits_g1 = [], []
    for _ in range(600):
        y = X @ truth + rng.normal(0, 0.3, G * per)
        beta, se, dof = _linear_cr2(X, y, groups)
        err = abs(beta[2] - truth[2]) / se[2]
        hits_bm.append(err <= t_quantile(0.975, dof[2]))
        hits_g1.append(err <= t_quantile(0.975, G - 1))
    assert dof[2] < 3 < G - 1
    assert 0.93 <= np.mean(hits_bm) <= 0.99
    assert np.mean(hits_g1) < 0.91


def test_fit_intervals_use_bell_mccaffrey_dof_on_checkpoint_tables():
    """Per parameter t quantiles: the architecture exponents rest on fewer runs than the data exponent
    and get fewer degrees of freedom; the JSON and a reloaded fit keep them; no groups, none."""
    from scaling_cli.results import fit_from_dict

    runs = grouped_runs(n_runs=10, per_run=6, seed=3)
    result = quiet_fit(runs, "decomposed")
    dof = dict(zip(result.names, result.param_dof, strict=True))
    assert all(1 <= v <= result.ci_dof for v in dof.values())
    assert dof["alpha_l"] < dof["alpha_D"]
    e = result.estimate("alpha_l")
    half = t_quantile(0.975, dof["alpha_l"]) * e.stderr
    assert e.ci95 == pytest.approx((e.value - half, e.value + half))
    doc = result.to_dict()
    assert doc["covariance"]["ci_dof_by_param"]["alpha_l"] == pytest.approx(dof["alpha_l"])
    np.testing.assert_allclose(fit_from_dict(doc).param_dof, result.param_dof)
    plain = quiet_fit(grouped_runs(n_runs=40, per_run=1), "decomposed")
    assert len(plain.param_dof) == 0 and "ci_dof_by_param" not in plain.to_dict()["covariance"]


def test_one_row_per_group_changes_nothing():
    runs = grouped_runs(n_runs=60, per_run=1, offset_sd=0.0, noise_sd=0.005)
    grouped = quiet_fit(runs, "decomposed")
    plain = quiet_fit(Runs(runs.path, None, runs.data, {k: v for k, v in runs.roles.items() if k != "group"},
                           runs.n_total), "decomposed")
    assert grouped.covariance_type == plain.covariance_type == "iid"
    np.testing.assert_array_equal(grouped.stderr, plain.stderr)
    # asked for, the sandwich over one-row runs is the heteroskedasticity-robust one, near iid here
    robust = quiet_fit(runs, "decomposed", errors="cluster")
    assert robust.covariance_type == "cluster-robust CR2" and robust.ci_dof == 59
    assert np.all(np.abs(robust.stderr / plain.stderr - 1) < 0.35)


def test_cluster_errors_are_reported_with_groups_and_iid_ones_kept():
    runs = grouped_runs()
    result = quiet_fit(runs, "decomposed")
    assert result.covariance_type == "cluster-robust CR2"
    assert result.group_column == "run" and result.n_groups == 12 and result.ci_dof == 11
    # widths and depths are fixed per run: their terms and L0 only vary between runs
    assert set(result.between) == {"c_m", "alpha_m", "c_l", "alpha_l", "L0"}
    # with run offsets of 0.01 and row noise of 0.002 (8 rows a run), the iid errors are far too
    # small for the width and depth terms; the data exponent is pinned within runs, and its iid error
    # (inflated by the offsets it counts as row noise) is the larger one
    for name in ("c_m", "alpha_m", "c_l", "alpha_l"):
        i = result.names.index(name)
        assert result.stderr[i] > 2.5 * result.stderr_iid[i], name
    assert result.estimate("alpha_D").stderr < 0.5 * result.stderr_iid[result.names.index("alpha_D")]
    i = result.names.index("L0")
    doc = result.to_dict()
    assert doc["covariance"]["type"] == "cluster-robust CR2" and doc["covariance"]["ci_dof"] == 11
    assert doc["groups"] == {"column": "run", "count": 12, "between": list(result.between)}
    assert doc["params"]["L0"]["stderr_iid"] == pytest.approx(result.stderr_iid[i])
    iid = quiet_fit(runs, "decomposed", errors="iid")
    np.testing.assert_allclose(iid.stderr, result.stderr_iid)
    assert any("iid errors on a table of 12 groups" in w for w in iid.warnings)


def test_cluster_errors_need_groups():
    runs = grouped_runs()
    plain = Runs(runs.path, None, runs.data, {k: v for k, v in runs.roles.items() if k != "group"},
                 runs.n_total)
    with pytest.raises(DataError, match="cluster-robust errors need a group column"):
        quiet_fit(plain, "decomposed", errors="cluster")


def test_two_runs_cannot_pin_the_architecture_terms():
    """With 2 runs no interval for what only differences between runs determine (issue 7, item 4)."""
    runs = grouped_runs(n_runs=2, per_run=30, widths=[512, 2048], depths=[8, 32])
    result = quiet_fit(runs, "decomposed")
    for name in ("c_m", "alpha_m", "c_l", "alpha_l", "L0"):
        est = result.estimate(name)
        assert math.isnan(est.stderr) and est.note, name
    assert not result.regime_allowed
    boot = bootstrap(runs, "decomposed", n=40, method="group", fit_result=result)
    for name in ("c_m", "alpha_m", "c_l", "alpha_l"):
        assert all(math.isnan(v) for v in boot[name].ci), name
    assert any("no bootstrap interval for" in note for note in boot.notes)
    assert any("the wild cluster bootstrap (method='wild') keeps every run" in note for note in boot.notes)


def test_identical_rows_give_no_confident_bootstrap_interval():
    runs = grouped_runs(n_runs=30, per_run=1, widths=np.full(30, 1024.0), depths=np.full(30, 16.0))
    data = dict(runs.data, tokens=np.full(30, 1e10), loss=np.full(30, 2.5))
    runs = Runs(runs.path, None, data, {k: v for k, v in runs.roles.items() if k != "group"}, 30)
    result = quiet_fit(runs, "decomposed")
    boot = bootstrap(runs, "decomposed", n=20, fit_result=result)
    for e in boot.estimates:
        if e.name in result.undetermined or e.name in result.at_bound:
            assert math.isnan(e.ci[0]) and math.isnan(e.se), e.name
    assert set(result.undetermined) | set(result.at_bound) == set(result.names)


def test_checkpoint_coverage_small_simulation():
    """A small version of benchmarks/coverage_checkpoints.py: with run-level correlated noise the
    default (cluster-robust) intervals cover far more often than the iid ones, and near 95%."""
    if not coverage_checkpoints.TABLE.exists():
        pytest.skip(f"{coverage_checkpoints.TABLE} not found (../shared absent)")
    design = coverage_checkpoints.gemstones_design()
    coverage = coverage_checkpoints.simulate(40, 0, seed=1, noise="checkpoint", design=design,
                                             columns=("fit", "fit iid"))
    names = design.names
    for name in ("alpha_m", "alpha_l", "alpha_D", "L0"):
        i = names.index(name)
        assert coverage["fit"][i] >= 0.8, (name, coverage["fit"][i])
    architecture = [names.index(n) for n in ("c_m", "alpha_m", "c_l", "alpha_l")]
    assert coverage["fit"][architecture].mean() > coverage["fit iid"][architecture].mean() + 0.1


# ---------------------------------------------------------------- the wild cluster bootstrap


@pytest.mark.parametrize(("n_groups", "points"), [(5, set(np.round(WEBB_POINTS, 12))), (20, {-1.0, 1.0})])
def test_wild_weights_are_one_per_group(n_groups, points):
    groups = np.repeat(np.arange(n_groups), 3)
    fitted = np.full(groups.size, 2.0)
    residuals = np.linspace(-0.01, 0.01, groups.size) + 0.003
    sampler = Resampler("wild", 0, 64, groups.size, groups, n_groups, fitted, residuals, True)
    weights, y = sampler.draw(0, 64)
    assert weights is None
    w = np.log(y / fitted) / residuals  # each row's weight
    for g in range(n_groups):
        assert np.ptp(w[:, groups == g], axis=1).max() < 1e-9
    values = np.unique(w.round(9))
    assert len(values) == len(points)
    np.testing.assert_allclose(values, sorted(points), atol=1e-8)


def test_wild_bootstrap_on_checkpoints_is_honest_about_few_runs():
    runs = grouped_runs(n_runs=10, per_run=6, seed=3)
    result = quiet_fit(runs, "decomposed")
    boot = bootstrap(runs, "decomposed", n=200, method="wild", fit_result=result)
    assert boot.method == "wild" and boot.n_failed == 0
    assert any("Webb's six-point" in note for note in boot.notes)
    # the run offsets dominate what only differences between runs pin: the wild intervals are far
    # wider than the iid Jacobian ones, and near the cluster-robust ones of the fit
    for name in ("c_m", "alpha_m", "c_l", "alpha_l", "L0"):
        i = result.names.index(name)
        lo, hi = boot[name].ci
        assert hi - lo > 2.5 * 2 * 1.96 * result.stderr_iid[i], name
        jlo, jhi = boot[name].jacobian_ci
        assert 0.5 < (hi - lo) / (jhi - jlo) < 1.5, name


def test_a_checkpoint_fit_with_every_parameter_held_has_no_errors_and_no_crash():
    """With every parameter held there is nothing for the cluster-robust covariance to estimate: the
    fit reports its values with no errors (it used to fail unpacking the covariance's result)."""
    runs = grouped_runs(n_runs=12, per_run=8, seed=3)
    free = quiet_fit(runs, "decomposed")
    every = {name: float(value) for name, value in zip(free.form.params, free.values, strict=True)}
    held = quiet_fit(runs, "decomposed", fixed=every)
    assert held.covariance_type == "cluster-robust CR2"
    assert np.array_equal(held.values, free.values)
    assert np.all(np.isnan(held.stderr)) and all(note == "fixed" for note in (e.note for e in held.estimates))


def test_resample_covariance_counts_a_group_drawn_twice_as_two_clusters():
    """The CR2 covariance of a group-bootstrap resample (weights 2 on one run, 0 on another) equals the
    fit's cluster-robust covariance of the table in which that run's rows appear twice as two runs
    and the other is gone; with no weights it is the fit's own."""
    from scaling_cli.bootstrap import cluster_covariances
    from scaling_cli.fitting import _cluster_covariance, problem_of

    runs = grouped_runs(n_runs=8, per_run=5, seed=2)
    result = quiet_fit(runs, "decomposed")
    problem = problem_of(result)
    groups = Groups("run", runs.group_index()[0], 8)
    use = np.isfinite(result.stderr)
    own = cluster_covariances(problem, result.values[None, :], use, groups)[0]

    def close(a, b):  # relative to the scale of each entry's variances
        scale = np.sqrt(np.outer(np.diag(b), np.diag(b)))
        np.testing.assert_allclose(a / scale, b / scale, rtol=0, atol=1e-6)

    close(own[np.ix_(use, use)], result.covariance[np.ix_(use, use)])
    theta = result.values * np.array([1.05, 1.0, 0.95, 1.02, 1.1, 0.99, 1.0])  # any point will do
    counts = np.array([2, 0, 1, 1, 1, 1, 1, 1], dtype=float)
    weights = counts[groups.index][None, :]
    keep = np.concatenate([np.flatnonzero(groups.index == 0), np.flatnonzero(groups.index != 1)])
    index = np.concatenate([np.full(5, 8), groups.index[groups.index != 1]])  # the copy is run 8
    _, index = np.unique(index, return_inverse=True)
    twice = Problem.build(problem.form, {k: v[keep] for k, v in problem.X.items()}, problem.y[keep],
                          problem.objective)
    expected, _, _, _ = _cluster_covariance(twice, theta, use, Groups("run", index, int(index.max()) + 1))
    got = cluster_covariances(problem, theta[None, :], use, groups, weights)[0]
    ok = np.isfinite(np.diag(expected))
    close(got[np.ix_(ok, ok)], expected[np.ix_(ok, ok)])


@pytest.mark.parametrize("form_name", ["decomposed", "chinchilla"])
@pytest.mark.parametrize("objective", ["log-ls", "ls"])
@pytest.mark.parametrize("grouping", ["runs", "pairs of runs", "interleaved"])
def test_resample_covariances_from_run_sums_equal_those_from_the_jacobian(form_name, objective, grouping,
                                                                          monkeypatch):
    """The per-resample CR2 covariances of a checkpoint table from the power-sum basis summed over
    cells (runs of rows in one group and one width and depth) against the general path through each
    group's Jacobian rows, with group-bootstrap weights, for groups that are the runs, groups of two
    runs of the same width and depth, and groups whose rows are interleaved (the general path)."""
    import scaling_cli.intervals as intervals
    from scaling_cli.bootstrap import cluster_covariances
    from scaling_cli.objectives import Objective

    # runs 0 and 1, and 2 and 3, share a width and a depth: one segment spans two groups
    runs = grouped_runs(n_runs=12, per_run=24, seed=4,
                        widths=[512.0, 512, 1024, 1024, 768, 1536, 2048, 3072, 4096, 6144, 2560, 3584],
                        depths=[6.0, 6, 12, 12, 24, 8, 32, 16, 20, 48, 10, 40])
    form = get_form(form_name)
    X = {"m": runs.column("width"), "l": runs.column("depth"), "D": runs.column("tokens")}
    if form_name == "chinchilla":
        X = {"N": 12 * X["m"] ** 2 * X["l"], "D": X["D"]}
    problem = Problem.build(form, X, runs.column("loss"), Objective(objective))
    run = np.repeat(np.arange(12), 24)
    index = {"runs": run, "pairs of runs": run // 2, "interleaved": np.arange(len(run)) % 12}[grouping]
    groups = Groups("run", index, int(index.max()) + 1)
    assert (intervals._PowerSumCells.of(problem, groups) is None) == (grouping == "interleaved")
    from scaling_cli.search import global_minimize

    theta = global_minimize(problem)[0].theta[0]
    rng = np.random.default_rng(1)
    thetas = theta * (1 + 0.002 * rng.normal(size=(6, len(theta))))
    counts = rng.multinomial(groups.count, np.full(groups.count, 1 / groups.count), 6)
    weights = counts[:, index].astype(float)
    use = np.ones(len(theta), dtype=bool)
    ours = cluster_covariances(problem, thetas, use, groups, weights)
    monkeypatch.setattr(intervals._PowerSumCells, "of", classmethod(lambda cls, problem, groups: None))
    theirs = cluster_covariances(problem, thetas, use, groups, weights)
    scale = np.sqrt(np.einsum("kii->ki", theirs)[:, :, None] * np.einsum("kii->ki", theirs)[:, None, :])
    # (the two sum the same products in another order; CR2 of a nearly collinear design magnifies that)
    np.testing.assert_allclose(ours / scale, theirs / scale, rtol=0, atol=1e-6)


def test_studentized_interval_inverts_the_resampled_t():
    """With resampled t* = (draw - estimate) / se* standard normal the bootstrap-t interval is
    estimate -+ 1.96 se, whatever the spread of the draws themselves; a resample that cannot pin the
    parameter (se* = 0) counts as an infinite |t*|."""
    from scaling_cli.bootstrap import studentized_interval

    rng = np.random.default_rng(0)
    se_draws = rng.uniform(0.5, 3.0, (20000, 1))
    draws = 1.0 + se_draws * rng.standard_normal((20000, 1))
    ci = studentized_interval(draws, np.array([1.0]), se_draws, np.array([0.1]), 0.95)
    np.testing.assert_allclose(ci[0], [1.0 - 0.196, 1.0 + 0.196], atol=0.01)
    se_draws[:600] = 0.0  # 3% of resamples: |t*| = inf, still inside the 95% quantile
    ci = studentized_interval(draws, np.array([1.0]), se_draws, np.array([0.1]), 0.95)
    assert np.all(np.isfinite(ci[0])) and ci[0, 1] - ci[0, 0] > 2 * 0.196
    se_draws[:1200] = 0.0  # 6%: the interval needs one of them, and is unbounded
    ci = studentized_interval(draws, np.array([1.0]), se_draws, np.array([0.1]), 0.95)
    assert ci[0, 0] == -np.inf and ci[0, 1] == np.inf


def test_bootstrap_studentizes_on_checkpoint_tables_only():
    runs = grouped_runs(n_runs=12, per_run=5, seed=4)
    result = quiet_fit(runs, "decomposed")
    boot = bootstrap(runs, "decomposed", n=60, fit_result=result)
    assert boot.method == "group" and boot.ci == "studentized"
    assert any("studentized (bootstrap-t)" in note for note in boot.notes)
    for e in boot.estimates:
        lo, hi = e.ci
        assert lo <= e.value <= hi, e.name
    assert bootstrap(runs, "decomposed", n=20, method="wild", fit_result=result).ci == "expanded"
    assert bootstrap(runs, "decomposed", n=20, method="case", fit_result=result).ci == "percentile"
    plain = grouped_runs(n_runs=40, per_run=1)
    assert bootstrap(plain, "decomposed", n=20, fit_result=quiet_fit(plain, "decomposed")).ci == "percentile"
    with pytest.raises(SpecError, match="studentized intervals need a least-squares objective"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalefitWarning)
        bootstrap(runs, "decomposed", "huber", n=20, ci="studentized")


def test_bootstrap_defaults_to_whole_runs_on_checkpoint_tables():
    runs = grouped_runs(n_runs=25, per_run=4)
    boot = bootstrap(runs, "decomposed", n=20, fit_result=quiet_fit(runs, "decomposed"))
    assert boot.method == "group" and boot.group == "run"
    runs = grouped_runs(n_runs=40, per_run=1)
    assert bootstrap(runs, "decomposed", n=20, fit_result=quiet_fit(runs, "decomposed")).method == "case"


# ---------------------------------------------------------------- design and the regime sentence


def test_chinchilla_design_diagnostics():
    runs = load_runs(shared_file("data", "chinchilla_width_depth.csv"), exclude_top_loss=40)
    with pytest.warns(ScalefitWarning, match=r"nearly collinear \(r = 0.92\)"):
        result = fit(runs, "decomposed")
    design = result.design
    assert design.width_depth_slope == pytest.approx(0.6, abs=0.05)
    assert design.variable("d_model").levels == len(np.unique(runs.column("width")))
    assert design.variable("num_tokens").decades == pytest.approx(
        np.log10(runs.column("tokens").max() / runs.column("tokens").min()))
    # independent runs: no group column, nothing changes
    assert result.group_column is None and result.covariance_type == "iid"
    np.testing.assert_array_equal(result.stderr, result.stderr_iid)


def test_regime_sentence_is_withheld_with_two_depths_and_says_it_assumes_a_power_law():
    runs = grouped_runs(n_runs=40, per_run=1, depths=np.where(np.arange(40) % 2, 8.0, 32.0))
    result = quiet_fit(runs, "decomposed")
    sentence = depth_regime(result)
    assert "cannot place depth scaling in a regime (depth has only 2 distinct values" in sentence
    assert "excludes" not in sentence and "consistent with" not in sentence
    good = quiet_fit(grouped_runs(n_runs=60, per_run=1, noise_sd=0.003), "decomposed")
    assert good.regime_allowed
    assert "assumes the depth term is a power law" in depth_regime(good)


def test_between_group_columns():
    groups = Groups("g", np.array([0, 0, 1, 1]), 2)
    J = np.array([[1.0, 2.0, 0.1], [1.0, 2.0, 0.2], [1.0, 3.0, 0.3], [1.0, 3.0, 0.5]])
    assert between_group(J, groups).tolist() == [True, True, False]


def test_gemstones_without_its_run_column_suggests_group():
    runs = load_runs(shared_file("data", "gemstones", "hot.jsonl"), columns={"group": "run_name"})
    plain = Runs(runs.path, None, runs.data, {k: v for k, v in runs.roles.items() if k != "group"},
                 runs.n_total)
    form = get_form("decomposed")
    hint = looks_like_curves(form, plain, form.inputs(plain))
    assert hint is not None and "--group width,depth" in hint
    wd = load_runs(shared_file("data", "chinchilla_width_depth.csv"))
    assert looks_like_curves(form, wd, form.inputs(wd)) is None


# ---------------------------------------------------------------- curve-table helpers


def test_gpt3_curves_name_their_groups_and_withhold_the_regime(cli, tmp_path):
    curves, configs = shared_file("data", "gpt3_curves.csv"), shared_file("data", "gpt3_configs.csv")
    out = cli("fit", curves, "--configs", configs, "--on", "model=model_name", "--drop-missing",
              "--column", "tokens=step", "--scale", "tokens=1e9", "--json", tmp_path / "fit.json")
    assert out.exit_code == 0, out.stderr
    import json

    doc = json.loads((tmp_path / "fit.json").read_text())
    assert doc["groups"]["column"] == "model" and doc["groups"]["count"] == 8
    assert doc["covariance"]["type"] == "cluster-robust CR2" and doc["covariance"]["ci_dof"] == 7
    assert doc["columns"]["loss"] == "val_loss" and doc["columns"]["tokens"] == "step"
    assert any("only 8 groups (column 'model') for 7 free parameters" in w for w in doc["warnings"])
    alpha_l = doc["params"]["alpha_l"]
    assert alpha_l["stderr"] > 5 * alpha_l["stderr_iid"]
    text = out.stdout
    assert "8 in column 'model'" in text and "cluster-robust CR2, t(1.7-5.1)" in text
    dof = doc["covariance"]["ci_dof_by_param"]
    assert all(1 <= v <= 7 for v in dof.values()) and dof["alpha_l"] < 7  # 8 runs carry it
    assert "cannot place depth scaling in a regime" in " ".join(text.split())
    assert "excludes smooth refinement" not in text


def test_scale_min_max_and_last_per_group(tmp_path):
    table = tmp_path / "curves.csv"
    rows = ["run,d_model,n_layers,step,loss"]
    for run, (width, depth) in enumerate([(256, 4), (512, 8), (1024, 16)]):
        for step in (1, 2, 5, 10):
            rows.append(f"r{run},{width},{depth},{step},{3 - 0.1 * run - 0.01 * step}")
    table.write_text("\n".join(rows) + "\n")
    runs = load_runs(table, columns={"tokens": "step"}, scale={"tokens": 1e9}, min_values={"tokens": 2e9})
    assert runs.group_column == "run"
    np.testing.assert_array_equal(np.unique(runs.column("tokens")), [2e9, 5e9, 1e10])
    assert runs.n_excluded == 3 and any("dropped 3 rows with tokens below 2e+09" in n for n in runs.notes)
    last = load_runs(table, columns=["tokens=step"], max_values=["tokens=5"], last_per_group=True)
    assert len(last) == 3 and np.all(last.column("tokens") == 5)
    combined = load_runs(table, columns=["tokens=step"], group="d_model,n_layers")
    assert combined.group_index()[1] == 3 and combined.group_column == "d_model,n_layers"


@pytest.mark.parametrize(("kwargs", "message"), [  # the library names its arguments, the CLI its flags
    ({"scale": ["tokens=0"]}, "scale tokens=0: the value must be a positive number"),
    ({"scale": ["tokens"]}, "scale 'tokens': expected ROLE=VALUE, e.g. scale tokens=1e9"),
    ({"min_values": ["tokens=abc"]}, "min_values tokens=abc: the value must be a number"),
    ({"max_values": ["nope=3"]}, "{path}: no column or role 'nope' to scale or filter"),
    ({"min_values": ["tokens=1e15"]}, "{path}: no rows left after min_values / max_values"),
    ({"group": "runn"}, "{path}: group: no column 'runn' (closest: 'run')"),
])
def test_row_option_errors(tmp_path, kwargs, message):
    table = tmp_path / "t.csv"
    table.write_text("run,d_model,n_layers,tokens,loss\nr1,256,4,1e9,3\nr1,256,4,2e9,2.9\n")
    with pytest.raises(DataError) as info:
        load_runs(table, **kwargs)
    assert str(info.value).startswith(message.format(path=table))


def test_last_per_group_needs_groups(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("d_model,n_layers,tokens,loss\n256,4,1e9,3\n256,4,2e9,2.9\n")
    with pytest.raises(DataError, match="last_per_group needs a group column"):
        load_runs(table, last_per_group=True)


def test_cli_unknown_errors_choice_is_bad_input(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("run,d_model,n_layers,tokens,loss\nr1,256,4,1e9,3\nr1,256,4,2e9,2.9\n")
    out = cli("fit", table, "--errors", "sandwich")
    assert out.exit_code == 2
    assert out.stderr == "Error: unknown errors 'sandwich': use auto, iid, cluster\n"


def test_cli_row_option_error_is_one_line(cli, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("run,d_model,n_layers,tokens,loss\nr1,256,4,1e9,3\nr1,256,4,2e9,2.9\n")
    out = cli("fit", table, "--scale", "tokens=-1", "--json", str(tmp_path / "out.json"))
    assert out.exit_code == 2
    assert out.stderr == "Error: --scale tokens=-1: the value must be a positive number\n"
    assert not (tmp_path / "out.json").exists()
