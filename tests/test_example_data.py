"""The example table in data/: made by its script, and the fit on it recovers the truth."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scaling_cli import fit, load_runs

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_example.py"
RUNS_CSV = ROOT / "data" / "example_runs.csv"
TRUTH_JSON = ROOT / "data" / "example_truth.json"


@pytest.fixture(scope="module")
def make_example():
    """The generating script, imported as a module."""
    spec = importlib.util.spec_from_file_location("make_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads(TRUTH_JSON.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def example_fit():
    return fit(load_runs(RUNS_CSV), "decomposed")


def test_script_reproduces_committed_files(tmp_path, truth):
    subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(tmp_path)], check=True,
                   capture_output=True, text=True)
    assert (tmp_path / RUNS_CSV.name).read_bytes() == RUNS_CSV.read_bytes()
    assert json.loads((tmp_path / TRUTH_JSON.name).read_text(encoding="utf-8")) == truth


def test_truth_matches_script(make_example, truth):
    assert truth["params"] == make_example.TRUTH
    assert truth["seed"] == make_example.DEFAULT_SEED
    assert truth["n_rows"] == make_example.DEFAULT_ROWS
    assert truth["noise"] == {"kind": "log-normal", "sigma": make_example.NOISE_SIGMA}
    assert truth["command"] == make_example.command(truth["seed"], truth["n_rows"])
    assert truth == make_example.truth_document()


def test_paper_exponents(truth):
    assert {k: truth["params"][k] for k in ("alpha_m", "alpha_l", "alpha_D")} == \
        {"alpha_m": 0.98, "alpha_l": 1.2, "alpha_D": 0.30}


def test_design_is_realistic(make_example, truth):
    runs = load_runs(RUNS_CSV)
    width, depth, tokens, loss = (runs.column(r) for r in ("width", "depth", "tokens", "loss"))
    assert len(loss) == truth["n_rows"]
    assert (width.min(), width.max()) == (256, 8192)
    assert (depth.min(), depth.max()) == (4, 80)
    assert 1e9 <= tokens.min() < 3e9 and 3e11 < tokens.max() <= 1e12
    assert 1.8 < loss.min() and loss.max() < 4.5
    # width and depth vary independently: every width comes with shallow and deep models
    assert abs(np.corrcoef(np.log(width), np.log(depth))[0, 1]) < 0.2
    # the noise is about 0.5% around the law
    log_noise = np.log(loss / make_example.law(width, depth, tokens))
    assert 0.004 < log_noise.std() < 0.006


@pytest.mark.parametrize("name", ["c_m", "alpha_m", "c_l", "alpha_l", "c_D", "alpha_D", "L0"])
def test_fit_covers_truth(example_fit, truth, name):
    estimate = example_fit.estimate(name)
    lo, hi = estimate.ci95
    assert lo <= truth["params"][name] <= hi, f"{name}: {truth['params'][name]} outside [{lo}, {hi}]"
    assert example_fit.converged and not example_fit.at_bound and not example_fit.undetermined


def test_cli_fit_on_example(cli, tmp_path, truth):
    out = tmp_path / "fit.json"
    result = cli("fit", RUNS_CSV, "--json", out, "-q")
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["n_points"] == truth["n_rows"]
    for name, value in truth["params"].items():
        lo, hi = doc["params"][name]["ci95"]
        assert lo <= value <= hi, name


def test_demo_prints_the_truth_beside_the_fit(tmp_path, capsys):
    """`make demo` runs scripts/demo_truth.py on the fit's JSON: every interval beside the truth."""
    spec = importlib.util.spec_from_file_location("demo_truth", ROOT / "scripts" / "demo_truth.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    fit_json = tmp_path / "fit.json"
    fit_json.write_text(json.dumps(fit(load_runs(RUNS_CSV)).to_dict()))
    assert demo.main([str(fit_json), str(TRUTH_JSON)]) == 0
    out = capsys.readouterr().out
    truth = json.loads(TRUTH_JSON.read_text())["params"]
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and
            line.split()[0] in truth}
    assert set(rows) == set(truth)
    for name, value in truth.items():
        assert rows[name][1] == f"{value:g}" and rows[name][-1] == "yes", rows[name]
    assert out.rstrip().endswith("7 of 7 95% intervals cover the truth")
