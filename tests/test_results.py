"""Saved fits: the JSON of `fit --json` / `bootstrap --json` loads back into results that predict
exactly what the originals predict; damaged, foreign or newer documents are clear errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from scaling_cli import load_result, load_runs
from scaling_cli.bootstrap import BootstrapResult, bootstrap
from scaling_cli.errors import ResultError, ScalefitError
from scaling_cli.fitting import FitResult, fit
from scaling_cli.report import write_json
from scaling_cli.results import SCHEMA_VERSION, fit_to_dict
from scaling_cli.spec import load_form

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "example_runs.csv"
# points inside and far outside the example table's design
POINTS = {"width": [300.0, 1024, 8192, 16384], "depth": [4, 24, 80, 200], "tokens": [2e9, 5e10, 1.4e12, 1e13]}


@pytest.fixture(scope="module")
def example_fit() -> FitResult:
    return fit(load_runs(EXAMPLE, exclude_top_loss=10), "decomposed")


@pytest.fixture(scope="module")
def example_bootstrap(example_fit) -> BootstrapResult:
    runs = load_runs(EXAMPLE, exclude_top_loss=10)
    return bootstrap(runs, "decomposed", n=150, seed=4, fit_result=example_fit)


def saved(tmp_path: Path, result, name: str = "fit.json"):
    path = tmp_path / name
    write_json(path, result.to_dict())
    return path


def test_a_saved_fit_predicts_bit_for_bit(tmp_path, example_fit):
    loaded = load_result(saved(tmp_path, example_fit))
    assert isinstance(loaded, FitResult) and type(loaded.form) is type(example_fit.form)
    assert np.array_equal(loaded.values, example_fit.values)
    assert np.array_equal(loaded.covariance, example_fit.covariance, equal_nan=True)
    before, after = example_fit.predict(POINTS), loaded.predict(POINTS)
    assert np.array_equal(before.predicted, after.predicted)
    assert np.array_equal(before.ci, after.ci) and np.array_equal(before.pi, after.pi)
    for s in before.beyond:
        assert np.array_equal(before.beyond[s], after.beyond[s])
    # and it writes the same document again: nothing was lost on the way
    assert fit_to_dict(loaded) == {**fit_to_dict(example_fit), "versions": fit_to_dict(loaded)["versions"]}


def test_the_saved_fit_records_how_the_table_was_read(tmp_path, example_fit):
    doc = json.loads(saved(tmp_path, example_fit).read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["form_spec"] == {"builtin": "decomposed"}
    assert doc["data"]["roles"]["width"] == "d_model"
    assert doc["data"]["load_options"]["exclude_top_loss"] == 10
    runs = load_runs(EXAMPLE, exclude_top_loss=10)
    for symbol, role in (("m", "width"), ("l", "depth"), ("D", "tokens")):
        assert doc["data"]["ranges"][symbol] == [runs.column(role).min(), runs.column(role).max()]


def test_a_yaml_form_is_saved_as_its_text_and_rebuilt_from_it(tmp_path):
    form = load_form(ROOT / "configs" / "decomposed.yaml")
    result = fit(load_runs(EXAMPLE), form)
    path = saved(tmp_path, result)
    doc = json.loads(path.read_text())
    assert doc["form_spec"]["yaml"] == (ROOT / "configs" / "decomposed.yaml").read_text()
    loaded = load_result(path)
    assert loaded.form.expression == form.expression
    assert np.array_equal(loaded.predict(POINTS).predicted, result.predict(POINTS).predicted)
    assert np.array_equal(loaded.predict(POINTS).ci, result.predict(POINTS).ci)


def test_a_tampered_form_is_parsed_never_run(tmp_path, example_fit):
    doc = example_fit.to_dict()
    doc["form_spec"] = {"yaml": "expression: __import__('os').system('echo hacked')\nvariables: {m: width}\n"
                                "parameters: {c: {}}\n", "name": "evil"}
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultError, match="cannot be rebuilt.*__import__"):
        load_result(path)


@pytest.mark.parametrize("inline", [True, False])
def test_a_saved_bootstrap_keeps_every_draw(tmp_path, example_bootstrap, inline):
    result = example_bootstrap
    if not inline:  # the JSON names the --draws file beside it instead of inlining the draws
        result.write_draws(tmp_path / "draws.csv")
        result = replace(result, draws_file="draws.csv")
    loaded = load_result(saved(tmp_path, result))
    assert isinstance(loaded, BootstrapResult)
    assert np.array_equal(loaded.draws, result.draws, equal_nan=True)
    assert np.array_equal(loaded.status, result.status)
    assert [e.ci for e in loaded.estimates] == [e.ci for e in result.estimates]
    before, after = result.predict(POINTS), loaded.predict(POINTS)
    assert after.method == "bootstrap" and after.n_draws == int(result.ok.sum())
    assert np.array_equal(before.ci, after.ci) and np.array_equal(before.pi, after.pi)


def test_a_newer_schema_is_refused(tmp_path, example_fit):
    doc = example_fit.to_dict()
    doc["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "new.json"
    path.write_text(json.dumps(doc))
    newer = f"newer scalefit \\(schema_version {SCHEMA_VERSION + 1}\\).*upgrade"
    with pytest.raises(ResultError, match=newer):
        load_result(path)
    assert issubclass(ResultError, ScalefitError) and ResultError.exit_code == 2


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "a saved fit is a JSON object, not list"),
    ('{"form": "decomposed"}', "not a saved scalefit fit \\(no schema_version\\)"),
    ('{"forms": [], "ranking": []}', "a `scalefit compare` result"),
    ('{"schema_version": "1"}', "schema_version must be an integer"),
    ('{"schema_version": 1, "form_spec": {"builtin": "decomposed"}}', "a damaged saved fit"),
    ('{"schema_version": 1, "form_spec": {"builtin": "nope"}}', "unknown form 'nope'"),
])
def test_broken_documents_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(ResultError, match=message):
        load_result(path)


def test_the_cli_refuses_a_newer_schema_in_one_line(tmp_path, cli, example_fit):
    doc = example_fit.to_dict()
    doc["schema_version"] = 99
    path = tmp_path / "new.json"
    path.write_text(json.dumps(doc))
    out = cli("predict", path, "--at", "width=1024,depth=24,tokens=1e11")
    assert out.exit_code == 2
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1
    assert "schema_version 99" in out.stderr


def test_fit_and_bootstrap_cli_write_loadable_documents(tmp_path, cli):
    out = cli("fit", EXAMPLE, "--json", tmp_path / "f.json", "-q")
    assert out.exit_code == 0, out.output
    out = cli("bootstrap", EXAMPLE, "--n", "40", "--json", tmp_path / "b.json", "--draws", tmp_path / "d.csv",
              "-q")
    assert out.exit_code == 0, out.output
    f, b = load_result(tmp_path / "f.json"), load_result(tmp_path / "b.json")
    assert b.draws_file == "d.csv" and np.array_equal(b.fit.values, f.values)
    assert np.array_equal(f.predict(POINTS).predicted, b.predict(POINTS).predicted)
