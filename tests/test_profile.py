"""Profile-likelihood intervals: the ends are where the re-optimized objective meets the F threshold,
they agree with lmfit's conf_interval, and a small simulation covers the truth (the full one is
benchmarks/profile_coverage.py)."""

from __future__ import annotations

import importlib.util
import json
import math
import warnings

import pytest
from conftest import ROOT

from scaling_cli import fit, load_runs
from scaling_cli.errors import ScalefitWarning
from scaling_cli.profile import profile_intervals, threshold


@pytest.fixture(scope="module")
def paper_fit():
    from conftest import shared_file

    runs = load_runs(shared_file("data", "chinchilla_width_depth.csv"), exclude_top_loss=40)
    return runs, fit(runs, "decomposed")


def test_the_ends_are_where_the_profile_meets_the_threshold(paper_fit):
    """Checked by independent fits with the parameter held at each end (`fixed=`)."""
    runs, result = paper_fit
    prof = profile_intervals(result)
    assert prof.threshold == pytest.approx(threshold(result.objective_value, 203, 7))
    for name in ("c_m", "alpha_l", "L0"):
        for end in prof[name].interval:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ScalefitWarning)
                held = fit(runs, "decomposed", fixed={name: end})
            assert held.objective_value == pytest.approx(prof.threshold, rel=1e-4), (name, end)


def test_coefficients_reach_further_up_than_down(paper_fit):
    """c_m trades against alpha_m: its profile interval is skewed up, and (unlike the Jacobian one)
    stays positive."""
    _, result = paper_fit
    prof = profile_intervals(result, names=["c_m", "c_l", "alpha_D"])
    for name in ("c_m", "c_l"):
        lo, hi = prof[name].interval
        value = result[name]
        assert 0 < lo < value < hi and hi - value > 2 * (value - lo)
        # the symmetric Jacobian interval reaches below 0 and is cut there
        assert result.estimate(name).ci95[0] == 0.0 and result.estimate(name).note == "cut at bound"
    lo, hi = prof["alpha_D"].interval  # an exponent the data pin: nearly the Jacobian interval
    jac = result.estimate("alpha_D").ci95
    assert lo == pytest.approx(jac[0], rel=0.01) and hi == pytest.approx(jac[1], rel=0.01)


def test_alpha_l_agrees_with_lmfit_conf_interval(paper_fit):
    lmfit = pytest.importorskip("lmfit")
    _, result = paper_fit
    minimizer = _bench().lmfit_minimizer(result)
    ci = lmfit.conf_interval(minimizer, minimizer.minimize(method="leastsq"), p_names=["alpha_l"], sigmas=[2])
    theirs = (ci["alpha_l"][0][1], ci["alpha_l"][-1][1])  # about [0.927, 1.744]
    ours = profile_intervals(result, level=math.erf(2 / math.sqrt(2)), names=["alpha_l"])["alpha_l"]
    assert ours.lower == pytest.approx(theirs[0], abs=1e-3)
    assert ours.upper == pytest.approx(theirs[1], abs=1e-3)


def test_a_parameter_at_its_bound_is_closed_there():
    """Data with no width effect put c_m on its bound 0: that end is the bound, and said so."""
    from test_fitting import TRUTH_DECOMPOSED, synthetic_runs

    runs = synthetic_runs("decomposed", dict(TRUTH_DECOMPOSED, c_m=0.0), seed=6, noise=0.002)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalefitWarning)
        result = fit(runs, "decomposed")
    bounded = [n for n in result.at_bound if result[n] == 0.0]
    assert bounded
    prof = profile_intervals(result, names=bounded)
    for name in bounded:
        assert prof[name].lower == 0.0 and "lower end at its bound" in prof[name].note
        assert prof[name].upper > 0


def test_small_profile_coverage_simulation():
    """A few tables of benchmarks/profile_coverage.py: profile intervals cover the truth at least as
    often as the Jacobian ones, and most of the time."""
    module = _bench()
    from conftest import shared_file

    shared_file("data", "chinchilla_width_depth.csv")
    coverage = module.simulate(datasets=6, seed=1)
    assert coverage["profile"].mean() >= 0.85
    assert coverage["profile"].min() >= 4 / 6
    assert coverage["profile"].mean() >= coverage["jacobian"].mean() - 0.05


def test_cli_profile_report_and_json(cli, tmp_path, paper_fit):
    from conftest import shared_file

    target = tmp_path / "fit.json"
    result = cli("fit", shared_file("data", "chinchilla_width_depth.csv"), "--exclude-top-loss", "40",
                 "--ci", "profile", "--json", target)
    assert result.exit_code == 0, result.stderr
    assert "profile-likelihood 95% intervals" in result.stdout
    doc = json.loads(target.read_text())
    lo, hi = doc["profile"]["params"]["alpha_l"]["ci"]
    assert 0.92 < lo < 0.95 and 1.72 < hi < 1.75
    assert doc["profile"]["level"] == 0.95
    bad = cli("fit", shared_file("data", "chinchilla_width_depth.csv"), "--ci", "bootstrap")
    assert bad.exit_code == 2 and "--ci must be jacobian or profile" in bad.stderr


def _bench():
    """benchmarks/profile_coverage.py as a module (its simulation and its lmfit reference)."""
    path = ROOT / "benchmarks" / "profile_coverage.py"
    spec = importlib.util.spec_from_file_location("profile_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
