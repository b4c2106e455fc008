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


# ---------------------------------------------------------------- bad input that used to be "a bug"

def _rows(n: int = 30) -> list[str]:
    return [f"{256 * (i % 5 + 1)},{4 + i % 7},{1e9 * (i + 1)},{3.0 - 0.01 * i}" for i in range(n)]


def test_a_cell_beyond_float_is_an_infinite_value(cli, tmp_path):
    path = tmp_path / "runs.csv"
    rows = _rows()
    rows[4] = "512,8,1e1000000,2.9"
    path.write_text("\n".join(["d_model,n_layers,tokens,loss"] + rows) + "\n")
    result = cli("fit", path)
    assert result.exit_code == 2
    assert result.stderr == f"Error: {path}: column 'tokens' has infinite values in row 5\n"


@pytest.mark.parametrize("used", [False, True])
def test_a_json_integer_of_400_digits(used, cli, tmp_path):
    path = tmp_path / "runs.jsonl"
    records = [dict(zip(("d_model", "n_layers", "tokens", "loss"), map(float, r.split(",")), strict=True))
               for r in _rows()]
    lines = [json.dumps(r) for r in records]
    key = "tokens" if used else "unused"
    lines[2] = lines[2][:-1] + f', "{key}": {"9" * 400}}}' if not used else \
        lines[2].replace(f'"tokens": {records[2]["tokens"]}', f'"tokens": {"9" * 400}')
    path.write_text("\n".join(lines) + "\n")
    result = cli("fit", path, "-q")
    if used:
        assert result.exit_code == 2
        assert result.stderr == f"Error: {path}: column 'tokens' has infinite values in row 3\n"
    else:
        assert result.exit_code == 0, result.stderr


def test_json_nested_100000_deep(cli, tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    result = cli("fit", path)
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {path}: JSON nested too deeply to be a table of runs (arrays or "
                             f"objects inside each other)\n")


def test_a_gzip_bomb_stops_at_the_limit(cli, tmp_path, monkeypatch):
    import gzip

    from scaling_cli import readers

    monkeypatch.setattr(readers, "MAX_DECOMPRESSED_BYTES", 2**20)
    path = tmp_path / "bomb.csv.gz"
    header = b"d_model,n_layers,tokens,loss\n"
    path.write_bytes(gzip.compress(header + b"0" * (3 * 2**20)))
    result = cli("fit", path)
    assert result.exit_code == 2
    assert result.stderr == (f"Error: {path}: decompresses to more than 1 MiB, the limit for a table; "
                             f"decompress it yourself if it really is one\n")


def test_a_small_gzip_table_still_reads(cli, tmp_path):
    import gzip

    path = tmp_path / "runs.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(["d_model,n_layers,tokens,loss"] + _rows()) + "\n").encode()))
    assert cli("fit", path, "-q").exit_code == 0


@pytest.mark.parametrize("where", ["reading", "fitting"])
def test_out_of_memory_says_what_was_too_large(where, cli, tmp_path, monkeypatch):
    from scaling_cli import fitting, readers

    def too_big(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(*((readers, "_read_delimited") if where == "reading" else (fitting, "fit")), too_big)
    table = write_table(tmp_path / "runs.csv")
    result = cli("fit", table)
    assert result.exit_code == 2
    if where == "reading":
        assert result.stderr.startswith(f"Error: {table}: out of memory reading the table (")
        assert result.stderr.endswith("it is too large for this machine\n")
    else:
        assert result.stderr.startswith("Error: out of memory: the table, or the computation it asks for")


def test_values_near_1e308_do_not_crash_the_figures(cli, tmp_path):
    path = tmp_path / "runs.csv"
    rows = _rows()
    rows[3] = f"512,8,1e9,{1e308}"
    path.write_text("\n".join(["d_model,n_layers,tokens,loss"] + rows) + "\n")
    result = cli("fit", path, "-q", "--plot-dir", tmp_path / "figs", "--json", tmp_path / "fit.json")
    assert result.exit_code in (0, 3), result.stderr  # drawn, or left out with a warning
    assert "Error" not in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "figs" / "observed_vs_predicted.png").exists()
    assert (tmp_path / "fit.json").exists()


def test_numpy_warnings_never_reach_stderr(cli, tmp_path, monkeypatch):
    import warnings

    from scaling_cli import fitting

    real = fitting.fit

    def noisy(*args, **kwargs):
        with np.errstate(over="warn"):
            np.exp(np.array([1000.0]))
        warnings.warn("overflow encountered", RuntimeWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fitting, "fit", noisy)
    result = cli("fit", write_table(tmp_path / "runs.csv"), "-q")
    assert result.exit_code == 0 and result.stderr == ""


def test_names_are_text_in_figures(cli, tmp_path):
    """A form called `cost$` and a column called `$x^{$` would be mathtext (and break the figure)."""
    from scaling_cli.plot import tex, variable_label

    assert tex("alpha_l") == r"$\alpha_{\ell}$"
    assert tex("a__b") == "a__b" and tex("x$") == r"x\$"
    assert variable_label("x", "$x^{$") == r"\$x^{\$ $x$"
    path = tmp_path / "runs.csv"
    rows = [f"{1e9 * (i + 1)},{3.0 * (i + 1) ** -0.3 + 0.5 + 0.001 * (i % 3)}" for i in range(30)]
    path.write_text("\n".join(["$x^{$,loss"] + rows) + "\n")
    form = tmp_path / "form.yaml"
    form.write_text("name: cost$\nexpression: A * x**(-a) + E\nvariables: {x: '$x^{$'}\n"
                    "parameters: {A: {min: 0}, a: {min: 0, max: 3}, E: {min: 0}}\n")
    result = cli("fit", path, "--config", form, "-q", "--plot-dir", tmp_path / "figs")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "figs" / "observed_vs_predicted.png").exists()


def test_the_forms_init_is_always_polished(tmp_path):
    """An init giving every nonlinear parameter is a start of its own (linear ones solved for), not
    just a grid value that must rank among the best grid points to be polished."""
    from scaling_cli import fit, load_runs, parse_form
    from scaling_cli.search import N_POLISH

    runs = load_runs(write_table(tmp_path / "runs.csv"))
    spec = {"name": "d", "expression": "c_m * m**(-alpha_m) + c_l * l**(-alpha_l) + c_D * D**(-alpha_D) + L0",
            "variables": {"m": "width", "l": "depth", "D": "tokens"},
            "parameters": {p: {"min": 0} for p in ("c_m", "c_l", "c_D", "L0")}
            | {p: {"min": 0, "max": 10, "init": 1.5} for p in ("alpha_m", "alpha_l", "alpha_D")}}
    with_init = fit(runs, parse_form(spec, "<with init>"))
    assert with_init.n_starts == N_POLISH + 1
    del spec["parameters"]["alpha_D"]["init"]
    partial = fit(runs, parse_form(spec, "<partial init>"))
    assert partial.n_starts == N_POLISH
    assert with_init.objective_value == pytest.approx(partial.objective_value, rel=1e-9)


def test_bootstrap_takes_fix_and_bound_too(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv")
    target = tmp_path / "boot.json"
    result = cli("bootstrap", table, "--n", "50", "--fix", "L0=1.7", "--bound", "alpha_l=0.5:3",
                 "--json", target)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(target.read_text())
    assert doc["fixed"] == {"L0": 1.7} and doc["bounds"] == {"alpha_l": [0.5, 3.0]}
    assert doc["bootstrap"]["params"]["L0"]["ci"] == [1.7, 1.7]  # held in every resample
    lo, hi = doc["bootstrap"]["params"]["alpha_l"]["ci"]
    assert 0.5 <= lo <= hi <= 3.0
    assert "L0 held at 1.7 (--fix)" in result.stdout
