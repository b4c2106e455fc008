"""scalefit compare: forms ranked on the same rows by AIC, cross-validation and extrapolation."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from scaling_cli.compare import (
    CompareResult,
    compare_forms,
    distinct_minima,
    fold_labels,
    group_labels,
    holdout_key,
    holdout_mask,
    load_compare_spec,
    subset,
    warm_fit,
)
from scaling_cli.errors import DataError, FitError, ScalefitWarning, SpecError
from scaling_cli.forms import DATA_EXPONENT_GRID, EXPONENT_GRID, Chinchilla, Form, _power_terms_second_order
from scaling_cli.io import load_runs

# A law with a strong depth term: at depth 2 it adds 1.0 to the loss, at depth 64 about 0.03.
TRUE = {"c_m": 300.0, "alpha_m": 1.0, "c_l": 2.0, "alpha_l": 1.0, "c_D": 400.0, "alpha_D": 0.3, "L0": 1.7}
COLUMNS = ("run", "d_model", "n_layers", "tokens", "params", "flops", "loss")
FAST = ("--folds", "2")


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone (80 columns under CliRunner)."""
    return " ".join(text.split())


def true_loss(width, depth, tokens):
    return (TRUE["c_m"] * width ** -TRUE["alpha_m"] + TRUE["c_l"] * depth ** -TRUE["alpha_l"]
            + TRUE["c_D"] * tokens ** -TRUE["alpha_D"] + TRUE["L0"])


def write_runs(path: Path, n_models: int = 24, checkpoints: int = 3, seed: int = 1,
               columns: tuple[str, ...] = COLUMNS) -> Path:
    """Runs of the decomposed law: models of independent width and depth, a few token counts each
    (one `run` per model, so cross-validation must keep its rows together), 0.3% log-normal noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_models):
        width = float(rng.choice([256, 512, 1024, 2048, 4096]))
        depth = float(rng.choice([2, 4, 8, 16, 32, 64]))
        for tokens in np.sort(10 ** rng.uniform(9, 11, checkpoints)):
            params = 12 * depth * width**2
            loss = true_loss(width, depth, tokens) * math.exp(rng.normal(0, 0.003))
            row = {"run": f"m{i:02d}", "d_model": width, "n_layers": depth, "tokens": tokens,
                   "params": params, "flops": 6 * params * tokens, "loss": loss}
            rows.append({k: row[k] for k in columns})
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return path


class DepthFree(Form):
    """L = c_m m^-alpha_m + c_D D^-alpha_D + L0: the decomposed law without its depth term."""

    name = "depth_free"
    expression = "c_m * m**(-alpha_m) + c_D * D**(-alpha_D) + L0"
    params = ("c_m", "alpha_m", "c_D", "alpha_D", "L0")
    variables = {"m": "width", "D": "tokens"}
    linear = ("c_m", "c_D", "L0")
    lower = dict.fromkeys(params, 0.0)
    upper = {"alpha_m": 10.0, "alpha_D": 10.0}
    grid = {"alpha_m": EXPONENT_GRID, "alpha_D": DATA_EXPONENT_GRID}

    def _powers(self, theta, X):
        theta = np.atleast_2d(theta)
        return X["m"][None, :] ** -theta[:, 1, None], X["D"][None, :] ** -theta[:, 3, None]

    def predict(self, theta, X):
        theta = np.atleast_2d(theta)
        pm, pd = self._powers(theta, X)
        return theta[:, 0, None] * pm + theta[:, 2, None] * pd + theta[:, 4, None]

    def jacobian(self, theta, X):
        theta = np.atleast_2d(theta)
        pm, pd = self._powers(theta, X)
        J = np.empty((theta.shape[0], len(X["m"]), 5))
        J[:, :, 0] = pm
        J[:, :, 1] = -theta[:, 0, None] * pm * np.log(X["m"])[None, :]
        J[:, :, 2] = pd
        J[:, :, 3] = -theta[:, 2, None] * pd * np.log(X["D"])[None, :]
        J[:, :, 4] = 1.0
        return J

    def second_order(self, theta, X, v):
        pm, pd = self._powers(theta, X)
        return _power_terms_second_order(theta, v, [(0, 1, pm, np.log(X["m"])), (2, 3, pd, np.log(X["D"]))])

    def design(self, theta, X):
        pm, pd = self._powers(theta, X)
        return np.stack([pm, pd, np.ones_like(pm)], axis=-1), np.zeros_like(pm)


class Negative(Form):
    """A broken law that predicts a negative loss everywhere: no log objective is finite."""

    name = "negative"
    params = ("c",)
    variables = {"m": "width"}
    linear = ()
    lower = {"c": 1.0}
    upper = {"c": 2.0}
    grid = {"c": np.array([1.0, 1.5, 2.0])}

    def predict(self, theta, X):
        return -np.atleast_2d(theta)[:, :1] * np.ones((1, len(X["m"])))

    def jacobian(self, theta, X):
        return -np.ones((np.atleast_2d(theta).shape[0], len(X["m"]), 1))

    def design(self, theta, X):
        n = len(X["m"])
        return np.zeros((np.atleast_2d(theta).shape[0], n, 0)), self.predict(theta, X)


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory) -> Path:
    return write_runs(tmp_path_factory.mktemp("compare") / "runs.csv")


@pytest.fixture(scope="module")
def result(runs_csv) -> CompareResult:
    return compare_forms(runs_csv, ["decomposed", DepthFree()], folds=2)


# ---------------------------------------------------------------- ranking the true law


def test_true_form_ranks_first_by_extrapolation_and_aic(result):
    assert [e.name for e in result.entries] == ["decomposed", "depth_free"]
    true, free = result["decomposed"], result["depth_free"]
    assert true.rank == 1 and free.rank == 2
    assert true.fit.stats.aic < free.fit.stats.aic - 50
    assert true.extrapolation.mean_abs_rel_error < free.extrapolation.mean_abs_rel_error / 3
    assert true.cv.mean_abs_rel_error < free.cv.mean_abs_rel_error / 3
    # the true law predicts held-out runs at about the noise level (0.3%)
    assert true.extrapolation.mean_abs_rel_error < 0.01
    assert true.cv.rmse_log < 0.01


@pytest.mark.parametrize("rank_by", ["aic", "bic", "cv", "extrapolation"])
def test_true_form_ranks_first_by_every_criterion(result, rank_by):
    ranked = result.rerank(rank_by)
    assert ranked.rank_by == rank_by
    assert [(e.rank, e.name) for e in ranked.entries] == [(1, "decomposed"), (2, "depth_free")]


@pytest.mark.parametrize("rank_by", ["aic", "cv"])
def test_ranking_follows_the_metric(runs_csv, rank_by):
    ranked = compare_forms(runs_csv, [DepthFree(), "chinchilla"], folds=2, rank_by=rank_by)
    metrics = [e.metric(rank_by) for e in ranked.entries]
    assert metrics == sorted(metrics) and [e.rank for e in ranked.entries] == [1, 2]
    with pytest.raises(SpecError, match="^rank_by must be one of extrapolation, cv, aic, bic, not 'r2'$"):
        ranked.rerank("r2")


def test_forms_whose_metric_agrees_to_rounding_rank_by_aic_then_as_given(result):
    """Two forms that reach the same fit (an interaction term at 0) have errors that differ only in
    their last bits, which any change of summation order moves: that is a tie, broken by AIC and then
    by the order the forms were given, never by the bits."""
    from dataclasses import replace

    from scaling_cli.compare import rank_entries

    true, other = result["decomposed"], result["depth_free"]
    assert true.fit.stats.aic < other.fit.stats.aic
    tied = replace(other, extrapolation=replace(
        other.extrapolation, mean_abs_rel_error=true.extrapolation.mean_abs_rel_error * (1 - 1e-14)))
    assert [e.name for e in rank_entries([tied, true], "extrapolation")] == ["decomposed", "depth_free"]
    ahead = replace(tied, extrapolation=replace(
        other.extrapolation, mean_abs_rel_error=true.extrapolation.mean_abs_rel_error * (1 - 1e-6)))
    assert [e.name for e in rank_entries([true, ahead], "extrapolation")] == ["depth_free", "decomposed"]
    twin = replace(true, name="twin")
    for order in ([true, twin], [twin, true]):
        assert [e.name for e in rank_entries(order, "extrapolation")] == [e.name for e in order]


def test_akaike_weights_sum_to_one(result):
    weights = [e.akaike_weight for e in result.ranked]
    assert math.isclose(sum(weights), 1.0, rel_tol=1e-12)
    assert weights[0] > 0.99
    aic = [e.fit.stats.aic for e in result.ranked]
    assert math.isclose(weights[1] / weights[0], math.exp(-(aic[1] - aic[0]) / 2), rel_tol=1e-9)


def test_all_forms_fit_the_same_rows(result):
    n = {e.fit.n_points for e in result.ranked}
    assert n == {result.n_points} == {72}
    assert np.array_equal(result["decomposed"].fit.observed, result["depth_free"].fit.observed)
    assert result.aic_comparable


def test_holdout_numbers_are_consistent(result):
    for e in result.ranked:
        ex = e.extrapolation
        assert ex.n_test == result.n_holdout and ex.n_train == result.n_points - result.n_holdout
        assert ex.max_abs_rel_error >= ex.mean_abs_rel_error
        assert e.cv.n_test == result.n_points and not np.isnan(e.cv.predicted).any()


# ---------------------------------------------------------------- rows: folds, holdout, subsets


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_folds_partition_rows_and_keep_groups_whole(runs_csv, folds):
    runs = load_runs(runs_csv)
    groups = group_labels(runs)
    assert groups is not None and len(set(groups)) == 24
    labels = fold_labels(len(runs), folds, groups, seed=0)
    # each row is held out exactly once: one label per row, every label used
    assert labels.shape == (len(runs),)
    assert set(labels) == set(range(folds))
    for g in set(groups):
        assert len(set(labels[groups == g])) == 1
    sizes = np.bincount(labels)
    assert sizes.max() - sizes.min() <= 3  # groups of 3 rows, balanced greedily


def test_folds_without_groups_are_balanced_and_seeded():
    a = fold_labels(23, 5, seed=7)
    assert sorted(np.bincount(a)) == [4, 4, 5, 5, 5]
    assert np.array_equal(a, fold_labels(23, 5, seed=7))
    assert not np.array_equal(a, fold_labels(23, 5, seed=8))


def test_too_few_groups_for_the_folds():
    with pytest.raises(DataError, match=r"^3 groups \(runs\) cannot be split into 5 folds: pass folds=3 "
                                        r"or fewer$"):
        fold_labels(9, 5, np.repeat(["a", "b", "c"], 3))


@pytest.mark.parametrize("by, column", [("flops", "flops"), ("params", "params"), ("tokens", "tokens")])
@pytest.mark.parametrize("top", [0.1, 0.2, 0.5])
def test_holdout_is_exactly_the_top_quantile(runs_csv, by, column, top):
    runs = load_runs(runs_csv)
    key, note = holdout_key(runs, by)
    assert note is None
    assert np.array_equal(key, runs.column(column))
    mask = holdout_mask(key, top)
    n_top = math.ceil(top * len(runs))
    threshold = np.sort(key)[-n_top]
    assert np.array_equal(mask, key >= threshold)
    if by != "params":  # continuous values: no ties, so exactly the top fraction
        assert mask.sum() == n_top
    assert key[~mask].max() < key[mask].min()


def test_holdout_ties_go_to_the_holdout():
    key = np.array([1.0, 2.0, 3.0, 3.0, 3.0, 4.0])
    assert holdout_mask(key, 0.2).tolist() == [False, False, True, True, True, True]
    with pytest.raises(DataError, match="every row ties at the holdout threshold 5"):
        holdout_mask(np.full(4, 5.0), 0.5)


def test_holdout_key_derives_params_and_flops_and_says_so(tmp_path):
    path = write_runs(tmp_path / "shape.csv", n_models=6,
                      columns=("d_model", "n_layers", "tokens", "loss"))
    runs = load_runs(path)
    params, note = holdout_key(runs, "params")
    assert np.allclose(params, 12 * runs.column("depth") * runs.column("width") ** 2)
    assert "12 * depth * width^2" in note
    flops, note = holdout_key(runs, "flops")
    assert np.allclose(flops, 6 * params * runs.column("tokens"))
    assert note.startswith("the table has no flops or params")


def test_holdout_key_without_params_or_shape(tmp_path):
    path = write_runs(tmp_path / "nos.csv", n_models=4, columns=("d_model", "tokens", "loss"))
    runs = load_runs(path, require=("width", "tokens", "loss"))
    with pytest.raises(DataError, match=r"by='params' needs a params column \(or width and depth"):
        holdout_key(runs, "params")


def test_subset_keeps_rows_and_counts_the_rest_excluded(runs_csv):
    runs = load_runs(runs_csv)
    mask = runs.column("loss") > np.median(runs.column("loss"))
    part = subset(runs, mask)
    assert len(part) == mask.sum()
    assert part.n_excluded == runs.n_excluded + (~mask).sum()
    assert np.array_equal(part.column("width"), runs.column("width")[mask])
    assert np.array_equal(part.kept_rows, runs.kept_rows[mask])
    assert np.array_equal(subset(runs, np.flatnonzero(mask)).column("loss"), part.column("loss"))


# ---------------------------------------------------------------- failures are listed, not fatal


def test_a_form_missing_its_column_is_listed_and_the_others_ranked(tmp_path):
    path = write_runs(tmp_path / "noparams.csv",
                      columns=("run", "d_model", "n_layers", "tokens", "flops", "loss"))
    with pytest.warns(ScalefitWarning, match="form 'chinchilla' could not be fitted"):
        res = compare_forms(path, ["chinchilla", DepthFree()], folds=2)
    assert [e.name for e in res.ranked] == ["depth_free"]
    (failed,) = res.failed
    assert failed.name == "chinchilla" and failed.rank is None and failed.fit is None
    assert "no column for params" in failed.error
    assert res.entries[-1] is failed
    assert res["depth_free"].akaike_weight == 1.0
    doc = res.to_dict()
    assert doc["forms"][1] == {"rank": None, "name": "chinchilla", "source": "built-in",
                               "expression": failed.form.describe(), "status": "failed",
                               "error": failed.error}


def test_a_form_that_cannot_be_fitted_is_listed(runs_csv):
    with pytest.warns(ScalefitWarning, match="form 'negative' could not be fitted: no start gave a finite"):
        res = compare_forms(runs_csv, [Negative(), "chinchilla"], folds=2)
    assert [e.name for e in res.ranked] == ["chinchilla"]
    assert res["negative"].error.startswith("no start gave a finite objective")


def test_no_form_fitted_is_a_fit_error(runs_csv):
    with pytest.raises(FitError, match=r"^no form could be fitted: 'negative': no start gave"):
        compare_forms(runs_csv, [Negative()], folds=2)


def test_a_form_with_another_response_is_listed(tmp_path):
    path = write_runs(tmp_path / "two.csv")
    text = path.read_text().splitlines()
    rows = [text[0] + ",smoothed"] + [line + f",{float(line.rsplit(',', 1)[1]) * 1.01}" for line in text[1:]]
    path.write_text("\n".join(rows) + "\n")

    class OnSmoothed(DepthFree):
        name = "on_smoothed"
        response = "smoothed"

    with pytest.warns(ScalefitWarning, match="differs from that of 'chinchilla'"):
        res = compare_forms(path, ["chinchilla", OnSmoothed()], folds=2)
    assert [e.name for e in res.ranked] == ["chinchilla"]
    assert res["on_smoothed"].error == ("its response (smoothed) differs from that of 'chinchilla': forms "
                                        "are compared on one response")


def test_forms_declaring_different_objectives_need_one(runs_csv):
    class Huberized(Chinchilla):
        name = "huberized"
        objective = "huber"

    with pytest.raises(SpecError, match=r"the forms declare different objectives \('chinchilla' log-ls, "
                                        r"'huberized' huber\).*pass objective"):
        compare_forms(runs_csv, ["chinchilla", Huberized()])
    res = compare_forms(runs_csv, ["chinchilla", Huberized()], objective="ls", folds=2)
    assert {e.fit.objective.name for e in res.ranked} == {"ls"}


def test_huber_objective_notes_that_aic_is_indicative(runs_csv):
    res = compare_forms(runs_csv, ["chinchilla"], objective="huber", delta=1e-2, folds=2)
    assert res.objective.delta == 1e-2
    assert any("indicative" in note for note in res.notes)


def test_the_same_form_twice_is_refused(runs_csv):
    with pytest.raises(SpecError, match="^form 'decomposed' is given more than once"):
        compare_forms(runs_csv, ["decomposed", "decomposed"])


@pytest.mark.parametrize("kwargs, message", [
    ({"folds": 1}, "folds must be an integer of 2 or more, not 1"),  # the library names its arguments
    ({"holdout_top": 0.0}, "holdout_top must be a fraction strictly between 0 and 1, not 0.0"),
    ({"holdout_top": 1}, "holdout_top must be a fraction strictly between 0 and 1, not 1"),
    ({"by": "width"}, "by must be one of flops, params, tokens, not 'width'"),
    ({"rank_by": "r2"}, "rank_by must be one of extrapolation, cv, aic, bic, not 'r2'"),
    ({"seed": -1}, "seed must be a non-negative integer, not -1"),
])
def test_bad_options_fail_before_any_work(kwargs, message):
    with pytest.raises(SpecError) as info:
        compare_forms("never-read.csv", ["decomposed"], **kwargs)
    assert str(info.value) == message


# ---------------------------------------------------------------- JSON


def test_json_document_keys(result):
    doc = result.to_dict()
    assert set(doc) == {"rank_by", "objective", "n_points", "n_excluded", "cv", "holdout", "aic_comparable",
                        "forms", "notes", "warnings", "seed", "versions", "input"}
    assert doc["cv"] == {"folds": 2, "seed": 0, "grouped_by": "run"}
    assert set(doc["holdout"]) == {"top", "by", "threshold", "n_test", "n_train"}
    assert doc["holdout"]["n_test"] + doc["holdout"]["n_train"] == doc["n_points"] == 72
    form = doc["forms"][0]
    assert set(form) == {"rank", "name", "source", "expression", "status", "error", "objective",
                         "n_free_params", "params", "stats", "akaike_weight", "cv", "extrapolation",
                         "converged", "warnings"}
    assert set(form["params"]) == set(TRUE)
    assert set(form["stats"]) == {"rss", "rmse_log", "mean_abs_rel_error", "r2", "aic", "bic", "dof"}
    assert set(form["cv"]) == set(form["extrapolation"]) == {
        "n_train", "n_test", "mean_abs_rel_error", "max_abs_rel_error", "rmse_log", "failed"}
    assert form["n_free_params"] == 7
    assert "scalefit" in doc["versions"] and len(doc["input"]["sha256"]) == 64
    json.dumps(doc, allow_nan=False)


# ---------------------------------------------------------------- the compare file


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compare.yaml"
    path.write_text(text)
    return path


def test_compare_file_resolves_paths_and_settings(tmp_path):
    write_runs(tmp_path / "runs.csv", n_models=6)
    spec = load_compare_spec(write_spec(tmp_path, (
        "data: runs.csv\nforms: [decomposed, chinchilla]\nfolds: 4\nholdout_top: 0.25\nby: params\n"
        "seed: 3\nrank_by: aic\nexclude_top_loss: 2\ncolumns: {width: d_model}\n")))
    assert spec.data == tmp_path / "runs.csv"
    assert spec.forms == ("decomposed", "chinchilla")
    assert spec.settings == {"folds": 4, "holdout_top": 0.25, "by": "params", "seed": 3, "rank_by": "aic",
                             "exclude_top_loss": 2, "columns": ["width=d_model"]}


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "a compare file is a mapping with keys data, forms"),
    ("forms: [decomposed]\nfold: 3\n", "unknown key 'fold'; the keys are data, forms"),
    ("forms: decomposed\n", "forms: must be a list of form names or YAML files, not 'decomposed'"),
    ("forms: [decomposed, 3]\n", "forms[1]: must be a form name or a YAML file, not 3"),
    ("folds: 1\n", "folds: must be an integer of 2 or more, not 1"),
    ("folds: true\n", "folds: must be an integer, not True"),
    ("holdout_top: 2\n", "holdout_top: must be a fraction strictly between 0 and 1, not 2"),
    ("by: width\n", "by: must be one of flops, params, tokens, not 'width'"),
    ("columns: [width]\n", "columns: must be a mapping ROLE: COLUMN, not ['width']"),
    ("data: [\n", "line 2: not valid YAML"),
    ("a: &x [1, 2]\nb: [*x, *x]\n", "alias"),
])
def test_bad_compare_files(tmp_path, text, message):
    path = write_spec(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_compare_spec(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


# ---------------------------------------------------------------- the command


def test_cli_ranks_and_reports(cli, runs_csv):
    out = cli("compare", runs_csv, "decomposed", "chinchilla", *FAST)
    assert out.exit_code == 0, out.stderr
    assert "2 forms on 72 rows, objective log-ls, ranked by extrapolation error" in out.stdout
    assert "grouped by run" in out.stdout
    assert "alpha_l = " in out.stdout and "alpha = " in out.stdout


def test_cli_json_to_stdout_is_only_json_and_the_plot_is_written(cli, runs_csv, tmp_path):
    out = cli("compare", runs_csv, "chinchilla", *FAST, "--seed", "4", "--json", "-", "--plot-dir", tmp_path,
              "--plot-format", "svg")
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["seed"] == 4 and [f["rank"] for f in doc["forms"]] == [1]
    assert "1 forms on 72 rows" in out.stderr
    assert f"wrote {tmp_path / 'compare_heldout.svg'}" in "".join(out.stderr.split("\n"))
    assert (tmp_path / "compare_heldout.svg").stat().st_size > 1000


def test_cli_quiet_json_file(cli, runs_csv, tmp_path):
    out = cli("compare", runs_csv, "chinchilla", *FAST, "--quiet", "--json", tmp_path / "c.json")
    assert (out.exit_code, out.stdout) == (0, "")
    assert json.loads((tmp_path / "c.json").read_text())["holdout"]["by"] == "flops"


def test_heldout_figure_has_every_form_and_the_diagonal(result):
    from scaling_cli.plot import compare_figures

    figures = compare_figures(result)
    assert list(figures) == ["compare_heldout"]
    for ax in figures["compare_heldout"].axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[0].startswith("1. decomposed") and labels[1].startswith("2. depth_free")
        assert labels[-1] == "predicted = observed"  # the zero line of the relative error
        assert ax.get_legend().get_window_extent().y1 < ax.get_window_extent().y0  # below the data


def test_cli_takes_everything_from_a_compare_file(cli, tmp_path):
    write_runs(tmp_path / "runs.csv", n_models=12)
    spec = write_spec(tmp_path, "data: runs.csv\nforms: [chinchilla]\nfolds: 2\nby: tokens\n"
                                "rank_by: bic\n")
    out = cli("compare", "--spec", spec, "--json", "-")
    assert out.exit_code == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["cv"]["folds"], doc["holdout"]["by"], doc["rank_by"]) == (2, "tokens", "bic")
    # the command line wins over the file
    out = cli("compare", "--spec", spec, "--by", "params", "--json", "-")
    assert json.loads(out.stdout)["holdout"]["by"] == "params"


@pytest.mark.parametrize("args, message", [
    (("--by", "width"), "--by must be one of flops, params, tokens, not 'width'"),
    (("--holdout-top", "1.5"), "--holdout-top must be a fraction strictly between 0 and 1, not 1.5"),
    (("--holdout-top", "0"), "--holdout-top must be a fraction strictly between 0 and 1, not 0.0"),
    (("--folds", "1"), "--folds must be an integer of 2 or more, not 1"),
    (("--rank-by", "r2"), "--rank-by must be one of extrapolation, cv, aic, bic, not 'r2'"),
    (("--objective", "l1"), "unknown objective 'l1': use one of log-ls, ls, huber"),
])
def test_cli_bad_options(cli, runs_csv, args, message):
    out = cli("compare", runs_csv, "chinchilla", *args)
    assert out.exit_code == 2
    assert out.stderr == f"Error: {message}\n"


def test_cli_unknown_form(cli, runs_csv, tmp_path):
    out = cli("compare", runs_csv, "decomposed", "kapla")
    assert out.exit_code == 2
    assert out.stderr == ("Error: unknown form 'kapla': give a built-in form (decomposed, chinchilla), a "
                          "shipped form (`scalefit forms` lists them) or a YAML file\n")
    missing = tmp_path / "nope.yaml"
    out = cli("compare", runs_csv, "decomposed", missing)
    assert (out.exit_code, out.stderr) == (2, f"Error: {missing}: no such form file\n")


def test_cli_needs_data_and_forms(cli, runs_csv):
    for args in ((), (runs_csv,)):
        out = cli("compare", *args)
        assert out.exit_code == 2
        assert out.stderr == ("Error: compare needs DATA and at least one FORM (built-in name or YAML file), "
                              "or a --spec FILE that names them\n")


def test_cli_lists_a_failed_form_and_ranks_the_others(cli, tmp_path):
    path = write_runs(tmp_path / "noparams.csv", columns=("run", "d_model", "n_layers", "tokens", "loss"))
    out = cli("compare", path, "decomposed", "chinchilla", *FAST)
    assert out.exit_code == 0, out.stderr
    text = flat(out.stdout)
    assert "failed: chinchilla (built-in): " in text and "no column for params" in text
    assert "1 forms on 72 rows" in text
    assert "12 * depth * width^2" in text  # the holdout key had to be derived, and says so


def test_cli_no_form_fitted(cli, tmp_path):
    path = write_runs(tmp_path / "noparams.csv", columns=("d_model", "n_layers", "tokens", "loss"))
    out = cli("compare", path, "chinchilla", *FAST)
    assert out.exit_code == 2
    assert out.stderr.startswith(f"Error: {path}: no column for params;")


DEPTH_FREE_YAML = """\
name: depth_free_yaml
expression: c_m * m**(-alpha_m) + c_D * D**(-alpha_D) + L0
variables: {m: width, D: tokens}
response: loss
parameters:
  c_m: {min: 0}
  alpha_m: {min: 0, max: 10}
  c_D: {min: 0}
  alpha_D: {min: 0, max: 10}
  L0: {min: 0}
"""


def test_cli_compares_yaml_forms_with_built_in_ones(cli, runs_csv, tmp_path):
    form = tmp_path / "depth_free.yaml"
    form.write_text(DEPTH_FREE_YAML)
    out = cli("compare", runs_csv, form, "chinchilla", *FAST, "--rank-by", "aic", "--json", "-")
    assert out.exit_code == 0, out.stderr
    forms = json.loads(out.stdout)["forms"]
    assert {(f["name"], f["source"]) for f in forms} == {("depth_free_yaml", str(form)),
                                                         ("chinchilla", "built-in")}
    assert [f["rank"] for f in forms] == [1, 2] and forms[0]["stats"]["aic"] < forms[1]["stats"]["aic"]
    assert forms[0]["akaike_weight"] + forms[1]["akaike_weight"] == pytest.approx(1.0)


def test_cli_help_mentions_the_options(cli):
    out = cli("compare", "--help")
    assert out.exit_code == 0
    for option in ("--spec", "--folds", "--holdout-top", "--by", "--seed", "--rank-by", "--json",
                   "--plot-dir"):
        assert option in out.stdout


# ---------------------------------------------------------------- real data


def test_chinchilla_width_depth_decomposed_and_chinchilla_are_ranked(chinchilla_wd):
    res = compare_forms(chinchilla_wd, ["decomposed", "chinchilla"], folds=2,
                        load_options={"exclude_top_loss": 40})
    assert res.n_points == 203 and not res.failed
    assert {e.name for e in res.ranked} == {"decomposed", "chinchilla"}
    assert [e.rank for e in res.ranked] == [1, 2]
    assert math.isclose(sum(e.akaike_weight for e in res.ranked), 1.0)
    # both laws describe these runs to about 0.4% and extrapolate to the largest compute to about 1%
    for e in res.ranked:
        assert 0.003 < e.fit.stats.mean_abs_rel_error < 0.005
        assert e.cv.mean_abs_rel_error < 0.006
        assert e.extrapolation.mean_abs_rel_error < 0.015
    assert res["decomposed"].fit.estimate("alpha_l").value == pytest.approx(1.33, abs=0.05)
    assert res.n_holdout == math.ceil(0.2 * 203)


# ---------------------------------------------------------------- held-out fits from the full fit's minima

SHIPPED = Path(__file__).resolve().parents[1] / "scaling_cli" / "forms_yaml"


def close(a, b, rtol: float) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(np.abs(a - b) <= rtol * np.maximum(np.abs(a), np.abs(b)) + 1e-12))


@pytest.mark.slow
def test_warm_started_held_out_fits_reach_what_the_full_search_reaches(chinchilla_wd):
    # interaction has two minima on a fold of this table (c_ml = 0, and c_ml > 0 lower there): the fold
    # fits must find the one the full global search finds, from the minima of the fit on all rows
    forms = [SHIPPED / f"{name}.yaml" for name in ("chinchilla", "decomposed", "interaction")]
    options = {"exclude_top_loss": 40}
    fast = compare_forms(chinchilla_wd, forms, load_options=options)
    slow = compare_forms(chinchilla_wd, forms, load_options=options, exhaustive=True)
    assert [e.name for e in fast.ranked] == [e.name for e in slow.ranked]
    for entry in fast.ranked:
        other = slow[entry.name]
        assert close(entry.fit.objective_value, other.fit.objective_value, 1e-10)
        assert close(entry.fit.values, other.fit.values, 1e-6), entry.name
        assert close(entry.akaike_weight, other.akaike_weight, 1e-6)
        for what in ("cv", "extrapolation"):
            mine, theirs = getattr(entry, what), getattr(other, what)
            assert close(mine.predicted, theirs.predicted, 1e-6), (entry.name, what)
            assert close(mine.mean_abs_rel_error, theirs.mean_abs_rel_error, 1e-6)
    assert len(distinct_minima(fast["interaction"].fit.minima)) >= 2


def test_kaplan_held_out_fit_is_rescued_to_the_global_optimum(chinchilla_wd):
    # the Newton-LM crawls along Kaplan's valley from any start; the warm start goes on to the robust
    # strategy, and ends where the full global search on the same rows ends
    from scaling_cli.fitting import fit
    from scaling_cli.objectives import Objective
    from scaling_cli.spec import load_form

    runs = load_runs(chinchilla_wd, exclude_top_loss=40)
    form = load_form(SHIPPED / "kaplan.yaml")
    objective = Objective("log-ls")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalefitWarning)  # Kaplan's law fits these runs poorly; it says so
        full = fit(runs, form, objective, strategy="best")
        everywhere = fit(runs, form, objective)  # strategy="auto": every start that stopped short
        train = subset(runs, ~holdout_mask(holdout_key(runs, "flops")[0], 0.2))
        reference = fit(train, form, objective)
    # the cheaper search of compare's fits on all rows solves one start again, and ends where "auto" does
    assert full.n_escalated == 1 < everywhere.n_escalated
    assert close(full.values, everywhere.values, 1e-8) and full.converged
    for robust in (False, True):  # after the Newton-LM gave up, or at once
        theta = warm_fit(train, form, objective, full.minima, robust=robust)
        assert theta is not None and reference.converged
        assert close(theta, reference.values, 1e-6)
        assert not close(theta, full.values, 1e-3)  # a different optimum from the start: it moved there


def test_distinct_minima_keeps_the_first_of_each_point():
    minima = np.array([[1.0, 2.0], [1.0 + 1e-9, 2.0], [np.nan, 1.0], [1.0, 2.1], [0.0, 2.1]])
    np.testing.assert_array_equal(distinct_minima(minima), [[1.0, 2.0], [1.0, 2.1], [0.0, 2.1]])
    assert distinct_minima(np.zeros((0, 3))).shape == (0, 3)


def test_a_warm_start_that_cannot_be_verified_leaves_it_to_the_global_search(runs_csv):
    from scaling_cli.forms import get_form
    from scaling_cli.objectives import Objective

    runs = load_runs(runs_csv)
    form, objective = get_form("decomposed"), Objective("log-ls")
    assert warm_fit(runs, form, objective, np.full((1, 7), np.nan)) is None  # no finite start
    assert warm_fit(runs, form, objective, np.ones((1, 3))) is None  # another form's minima
    assert warm_fit(subset(runs, np.arange(5)), form, objective, np.ones((1, 7))) is None  # 5 rows, 7 params
    # from the truth it ends at a verified minimum, the one the global search finds
    from scaling_cli.fitting import fit

    theta = warm_fit(runs, form, objective, np.array([[TRUE[p] for p in form.params]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalefitWarning)
        reference = fit(runs, form, objective)
    assert close(theta, reference.values, 1e-6)


@pytest.mark.parametrize("objective, warm", [("log-ls", True), ("ls", True), ("huber", False)])
def test_held_out_fits_are_warm_started_under_least_squares_only(runs_csv, monkeypatch, objective, warm):
    import scaling_cli.heldout as heldout

    calls = []
    original = heldout.warm_fit

    def spy(*args, **kwargs):
        calls.append(args[2].name)
        return original(*args, **kwargs)

    monkeypatch.setattr(heldout, "warm_fit", spy)
    compare_forms(runs_csv, ["decomposed"], objective=objective, folds=2)
    assert len(calls) == (3 if warm else 0)  # two folds and the extrapolation
