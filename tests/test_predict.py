"""Predictions: intervals checked against the textbook formulas, the bootstrap and simulated coverage;
distances beyond the data; the `scalefit predict` command."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from scaling_cli.bootstrap import bootstrap
from scaling_cli.errors import DataError
from scaling_cli.fitting import fit, t_quantile
from scaling_cli.forms import get_form
from scaling_cli.io import Runs
from scaling_cli.predict import beyond_range, parse_at
from scaling_cli.report import write_json
from scaling_cli.spec import parse_form

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "example_runs.csv"
TRUTH = np.array([300.0, 0.98, 8.0, 1.2, 500.0, 0.30, 1.75])
NOISE = 0.005


def design(rng, n):
    return {"m": np.exp(rng.uniform(np.log(256), np.log(4096), n)).round(),
            "l": np.exp(rng.uniform(np.log(4), np.log(48), n)).round(),
            "D": np.exp(rng.uniform(np.log(1e9), np.log(3e11), n))}


def synthetic(seed: int, n: int = 120) -> Runs:
    rng = np.random.default_rng(seed)
    X = design(rng, n)
    loss = get_form("decomposed").predict(TRUTH[None, :], X)[0] * np.exp(rng.normal(0, NOISE, n))
    data = {"width": X["m"], "depth": X["l"], "tokens": X["D"], "loss": loss}
    return Runs(path="<synthetic>", sha256=None, data=data, roles={k: k for k in data}, n_total=n)


def test_a_straight_line_gets_the_textbook_intervals():
    """For y = a + b x fitted by least squares, the delta method is exact: the confidence interval of
    the mean is t s sqrt(x0' (X'X)^-1 x0) and the prediction interval t s sqrt(1 + x0' (X'X)^-1 x0)."""
    form = parse_form({"expression": "a + b * x", "variables": {"x": "x"}, "response": "y",
                       "parameters": {"a": {}, "b": {}}, "objective": "ls"})
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 10, 30)
    y = 2 + 0.5 * x + rng.normal(0, 0.3, 30)
    result = fit(Runs("<line>", None, {"x": x, "y": y}, {}, 30), form)
    x0 = np.array([-5.0, 0.0, 4.2, 10.0, 25.0])
    p = result.predict({"x": x0}, level=0.9)
    A = np.column_stack([np.ones(30), x])
    beta, rss = np.linalg.lstsq(A, y, rcond=None)[:2]
    s = math.sqrt(rss[0] / 28)
    lever = np.einsum("ni,ij,nj->n", np.column_stack([np.ones(5), x0]), np.linalg.inv(A.T @ A),
                      np.column_stack([np.ones(5), x0]))
    t = t_quantile(0.95, 28)
    f = beta[0] + beta[1] * x0
    assert np.allclose(p.predicted, f, rtol=1e-10)
    ci, pi = t * s * np.sqrt(lever), t * s * np.sqrt(1 + lever)
    assert np.allclose(p.ci, np.column_stack([f - ci, f + ci]), rtol=1e-8)
    assert np.allclose(p.pi, np.column_stack([f - pi, f + pi]), rtol=1e-8)
    assert p.beyond["x"][0] == 0.0 or p.beyond["x"][0] != p.beyond["x"][0]  # x <= 0: not a log distance
    assert p.residual_scale == pytest.approx(s, rel=1e-10)


def test_delta_method_and_bootstrap_intervals_agree_inside_the_design():
    runs = synthetic(seed=3, n=150)
    result = fit(runs, "decomposed")
    # 2,000 draws: the percentile interval's own Monte Carlo error is then a few percent of its width
    boot = bootstrap(runs, "decomposed", n=2000, seed=1, fit_result=result)
    rng = np.random.default_rng(9)
    X = {s: np.exp(rng.uniform(np.log(lo), np.log(hi), 40)) for s, (lo, hi) in result.ranges.items()}
    delta, perc = result.predict(X), boot.predict(X)
    assert not delta.extrapolation.any()
    ratio = np.diff(perc.ci, axis=1)[:, 0] / np.diff(delta.ci, axis=1)[:, 0]
    assert np.all((ratio > 0.75) & (ratio < 1.25)), ratio
    assert 0.9 < np.median(ratio) < 1.1
    # the prediction interval of a new run is wider than the law's, and both contain the prediction
    for p in (delta, perc):
        assert np.all(p.pi[:, 0] < p.ci[:, 0]) and np.all(p.ci[:, 1] < p.pi[:, 1])
        assert np.all((p.ci[:, 0] < p.predicted) & (p.predicted < p.ci[:, 1]))


def test_prediction_intervals_cover_new_runs_95_percent_of_the_time():
    """Simulated coverage of the 95% prediction interval for new runs inside the design
    (benchmarks/predict_coverage.py runs a larger version)."""
    rng = np.random.default_rng(2024)
    hits = total = 0
    form = get_form("decomposed")
    for seed in range(24):
        result = fit(synthetic(seed=100 + seed, n=100), "decomposed")
        X = design(rng, 40)
        new = form.predict(TRUTH[None, :], X)[0] * np.exp(rng.normal(0, NOISE, 40))
        p = result.predict(X)
        hits += int(np.sum((p.pi[:, 0] <= new) & (new <= p.pi[:, 1])))
        total += 40
    assert 0.92 <= hits / total <= 0.98, hits / total


def test_distance_beyond_the_data_in_decades():
    assert beyond_range(np.array([10.0, 100.0, 5.0, 1.0, 0.1]), 1.0, 10.0).tolist() == \
        pytest.approx([0.0, 1.0, 0.0, 0.0, -1.0])
    result = fit(synthetic(seed=5), "decomposed")
    lo, hi = result.ranges["D"]
    p = result.predict({"width": 1024, "depth": 16, "tokens": [hi * 1000, lo, math.sqrt(lo * hi)]})
    assert p.beyond["D"].tolist() == pytest.approx([3.0, 0.0, 0.0])
    assert p.extrapolation.tolist() == [True, False, False]
    # far beyond the data the law's interval widens
    assert np.diff(np.log(p.ci[0])) > 3 * np.diff(np.log(p.ci[2]))


def test_points_are_named_by_symbol_role_or_column_and_parse_suffixes():
    result = fit(synthetic(seed=6), "decomposed")
    a = result.predict({"m": 8192, "l": 80, "D": 1.4e12})
    b = result.predict({"width": "8192", "depth": 80, "tokens": "1.4T"})
    assert np.array_equal(a.predicted, b.predicted) and np.array_equal(a.ci, b.ci)
    with pytest.raises(DataError, match="'heads' is not a variable of form 'decomposed': its variables are "
                                        "width \\(m\\), depth \\(l\\), tokens \\(D\\)"):
        result.predict({"width": 1, "depth": 1, "tokens": 1, "heads": 8})
    with pytest.raises(DataError, match="missing tokens \\(D\\)"):
        result.predict({"width": 1024, "depth": 8})
    with pytest.raises(DataError, match="tokens=.1.4Q. is not a number"):
        result.predict({"width": 1024, "depth": 8, "tokens": "1.4Q"})
    with pytest.raises(DataError, match="width \\(m\\) must be a positive number, not -3"):
        result.predict({"width": -3, "depth": 8, "tokens": 1e9})
    assert parse_at(["width=1,depth=2", "depth=3,width=4"]) == {"width": ["1", "4"], "depth": ["2", "3"]}
    with pytest.raises(DataError, match="every point needs the same variables"):
        parse_at(["width=1,depth=2", "width=3"])


def test_predict_command(tmp_path, cli):
    out = cli("fit", EXAMPLE, "--json", tmp_path / "fit.json", "-q")
    assert out.exit_code == 0, out.output
    table = tmp_path / "new.csv"
    table.write_text("name,d_model,n_layers,tokens\nbig,8192,80,1.4T\nsmall,512,8,20B\n")
    out = cli("predict", tmp_path / "fit.json", "--table", table, "--output", tmp_path / "p.csv",
              "--json", tmp_path / "p.json", "--level", "0.9")
    assert out.exit_code == 0, out.output
    text = " ".join(out.stdout.split())
    assert "decomposed: predicted loss at 2 points" in text and "90% CI" in text
    assert "1 of 2 points extrapolate" in text
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
    import pandas as pd

    frame = pd.read_csv(tmp_path / "p.csv")
    assert frame["name"].tolist() == ["big", "small"]  # carried through
    assert frame["extrapolation"].tolist() == [True, False]
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["level"] == 0.9 and doc["points"][0]["name"] == "big"
    assert doc["points"][0]["predicted"] == pytest.approx(frame["predicted"][0], rel=1e-15)
    same = cli("predict", tmp_path / "fit.json", "--at", "width=8192,depth=80,tokens=1.4T", "--level", "0.9",
               "--json", "-")
    assert json.loads(same.stdout)["points"][0]["ci"] == doc["points"][0]["ci"]


@pytest.mark.parametrize("args, message", [
    ((), "no points: give --at NAME=VALUE,... or --table FILE"),
    (("--at", "width=1"), "missing depth \\(l\\), tokens \\(D\\)"),
    (("--at", "width"), "expected NAME=VALUE pairs"),
    (("--at", "width=1,depth=2,tokens=3", "--level", "1.5"), "--level must be between 0 and 1"),
    (("--table", "nope.csv"), "nope.csv"),
])
def test_predict_bad_input_is_one_line_and_exit_2(tmp_path, cli, args, message):
    doc = tmp_path / "fit.json"
    write_json(doc, fit(synthetic(seed=7), "decomposed").to_dict())
    out = cli("predict", doc, *args)
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith("Error: ") and out.stderr.count("\n") == 1
    assert re.search(message, out.stderr), out.stderr
