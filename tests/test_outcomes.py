"""What a run leaves behind and how it exits: not converged (exit 3, report and JSON still written),
figures before JSON, --plot-dir checked before any work, the run's id in its JSON (issue 9)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import write_table

from scaling_cli.errors import EXIT_NOT_CONVERGED


def test_a_fit_that_does_not_converge_writes_everything_and_exits_3(cli, tmp_path, monkeypatch):
    from scaling_cli import fitting
    from scaling_cli.solve import Solution

    real = fitting.global_minimize

    def stops_short(problem, **kwargs):
        sol, n_grid, n_starts = real(problem, **kwargs)
        return Solution(sol.theta, sol.value, np.zeros_like(sol.converged), sol.iterations,
                        sol.escalated), n_grid, n_starts

    monkeypatch.setattr(fitting, "global_minimize", stops_short)
    table = write_table(tmp_path / "runs.csv")
    target = tmp_path / "fit.json"
    result = cli("fit", table, "--json", target)
    assert result.exit_code == EXIT_NOT_CONVERGED == 3
    assert "converged" in result.stdout and "NO" in result.stdout
    doc = json.loads(target.read_text())
    assert doc["converged"] is False
    assert "without the gradient vanishing" in doc["convergence"]


def test_a_failed_plot_leaves_no_json_and_names_the_old_one(cli, tmp_path, monkeypatch):
    from scaling_cli import plot

    def broken(result):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(plot, "fit_figures", broken)
    table = write_table(tmp_path / "runs.csv")
    fresh = tmp_path / "fresh.json"
    result = cli("fit", table, "--json", fresh, "--plot-dir", tmp_path / "figs")
    assert result.exit_code == 1
    assert not fresh.exists()
    old = tmp_path / "old.json"
    old.write_text('{"run": "earlier"}')
    result = cli("fit", table, "--json", old, "--plot-dir", tmp_path / "figs")
    assert result.exit_code == 1
    assert old.read_text() == '{"run": "earlier"}'
    assert f"note: {old} was not replaced: it holds an earlier run's result" in result.stderr


@pytest.mark.parametrize("make", ["file", "under_a_file"])
def test_plot_dir_is_checked_before_any_work(make, cli, tmp_path, monkeypatch):
    from scaling_cli import fitting

    def never(*args, **kwargs):
        raise AssertionError("the fit ran")

    monkeypatch.setattr(fitting, "fit", never)
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    plot_dir = blocker if make == "file" else blocker / "figs"
    table = write_table(tmp_path / "runs.csv")
    result = cli("fit", table, "--plot-dir", plot_dir)
    assert result.exit_code == 2
    message = ("it is not a directory" if make == "file" else f"{blocker} is not a directory")
    assert result.stderr.startswith("Error: ") and message in result.stderr


def test_each_run_has_its_own_id(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv")
    ids = set()
    for _ in range(2):
        result = cli("fit", table, "--json", tmp_path / "fit.json", "-q")
        assert result.exit_code == 0
        ids.add(json.loads((tmp_path / "fit.json").read_text())["run"]["id"])
    assert len(ids) == 2


def test_fix_and_bound_from_the_command_line(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv")
    target = tmp_path / "fit.json"
    result = cli("fit", table, "--fix", "L0=1.7", "--bound", "alpha_l=0.5:", "--json", target)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(target.read_text())
    assert doc["params"]["L0"]["value"] == 1.7 and doc["params"]["L0"]["stderr"] is None
    assert doc["fixed"] == {"L0": 1.7} and doc["bounds"] == {"alpha_l": [0.5, 10.0]}
    assert doc["params"]["alpha_l"]["value"] >= 0.5
    assert "L0 held at 1.7 (--fix)" in result.stdout
    assert "alpha_l bounded to [0.5, 10] (--bound)" in result.stdout


def test_fix_on_a_yaml_form_lowers_nothing_it_should_not(cli, tmp_path):
    """Fixing a parameter at its free optimum gives back the same objective."""
    from test_cli import ROOT

    table = write_table(tmp_path / "runs.csv")
    free = tmp_path / "free.json"
    form = ROOT / "configs" / "decomposed.yaml"
    assert cli("fit", table, "--config", form, "--json", free, "-q").exit_code == 0
    alpha_d = json.loads(free.read_text())["params"]["alpha_D"]["value"]
    held = tmp_path / "held.json"
    result = cli("fit", table, "--config", form, "--fix", f"alpha_D={alpha_d!r}", "--json", held, "-q")
    assert result.exit_code == 0, result.stderr
    objective = [json.loads(p.read_text())["objective"]["value"] for p in (free, held)]
    assert objective[1] == pytest.approx(objective[0], rel=1e-9)


@pytest.mark.parametrize(("args", "message"), [
    (("--fix", "L1=2"), "form 'decomposed' has no parameter 'L1'"),
    (("--fix", "L0"), "--fix takes NAME=VALUE, not 'L0'"),
    (("--fix", "L0=abc"), "--fix L0=abc: 'abc' is not a number"),
    (("--bound", "alpha_l=3:1"), "bounds of alpha_l must have LO < HI, not 3:1"),
    (("--bound", "alpha_l=3"), "--bound takes NAME=LO:HI"),
    (("--fix", "L0=-1"), "L0 = -1 is outside its bounds [0, inf]"),
])
def test_bad_fix_and_bound_are_one_error_line(args, message, cli, tmp_path):
    table = write_table(tmp_path / "runs.csv")
    result = cli("fit", table, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and message in result.stderr
