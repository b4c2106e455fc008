"""Reports: value ± error rounding, JSON-safe values, whole-or-nothing files, the depth-regime sentence."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from scaling_cli.errors import DataError, ScalefitWarning
from scaling_cli.fitting import Estimate
from scaling_cli.report import (
    atomic_write,
    check_writable,
    depth_regime,
    format_interval,
    format_value_error,
    jsonable,
    versions,
    write_json,
)

NAN = float("nan")

# ---------------------------------------------------------------- value ± error


@pytest.mark.parametrize(("value", "err", "text"), [
    (0.94548, 0.08479, "0.945 ± 0.085"),
    (274.7, 143.3, "270 ± 140"),
    (2143, 371, "2140 ± 370"),
    (1.75, 0.0299, "1.750 ± 0.030"),
    (0.3003, 0.0104, "0.300 ± 0.010"),
    (1.2, 0.3, "1.20 ± 0.30"),
    (3.21, 0.0996, "3.21 ± 0.10"),  # the error rounds up to 0.10: two places, not three
    (12.3, 9.96, "12 ± 10"),
    (-0.0004, 0.3, "0.00 ± 0.30"),  # no negative zero
    (-4, 300, "0 ± 300"),
    (-1.234, 0.056, "-1.234 ± 0.056"),
    (478.1, 12.34, "478 ± 12"),
    (1.2345e-7, 2.1e-9, "(1.235 ± 0.021)e-7"),
    (4.2e-5, 1e-6, "(4.20 ± 0.10)e-5"),
    (2.14e3, 1.5e2, "2140 ± 150"),
    (6.8e9, 9.96e7, "(6.80 ± 0.10)e+9"),
    (2.0e5, 6.4e6, "(2 ± 64)e+5"),  # the value's own power of ten: never (0.2 ± 6.4)e+6
    (243000, 346000, "240000 ± 350000"),
    (1.0, NAN, "1 ± n/a"),
    (0.128172, None, "0.12817 ± n/a"),
    (1.0, math.inf, "1 ± n/a"),
    (2.0, 0.0, "2 ± 0"),
    (NAN, 0.1, "n/a"),
    (None, 0.1, "n/a"),
])
def test_format_value_error(value, err, text):
    assert format_value_error(value, err) == text


def test_format_value_error_with_more_significant_digits():
    assert format_value_error(0.94548, 0.08479, sig=3) == "0.9455 ± 0.0848"
    assert format_value_error(0.94548, 0.08479, sig=1) == "0.95 ± 0.08"


@pytest.mark.parametrize(("lo", "hi", "err", "text"), [
    (0.7782, 1.1127, 0.0848, "[0.778, 1.113]"),
    (-7.94, 557.39, 143.3, "[-10, 560]"),  # the place of 270 ± 140, not [-8, 557]
    (3.0, 3.4, 0.0996, "[3.00, 3.40]"),
    (1e-7, 2e-7, 1e-8, "[1.00e-7, 2.00e-7]"),
    (0.5, 1.5, None, "[0.5, 1.5]"),
    (NAN, NAN, NAN, "n/a"),
    (0.0, math.inf, 1.0, "n/a"),
])
def test_format_interval(lo, hi, err, text):
    assert format_interval(lo, hi, err) == text


@pytest.mark.parametrize(("value", "err", "lo", "hi", "pair", "interval"), [
    (243000, 346000, -445738, 931980, "240000 ± 350000", "[-450000, 930000]"),
    (2.0e5, 6.4e6, -1.23e7, 1.27e7, "(2 ± 64)e+5", "[-123e+5, 127e+5]"),
    (4880, 900, 3100.2, 6652.1, "4880 ± 900", "[3100, 6650]"),
    (1.2345e-7, 2.1e-9, 1.2e-7, 1.28e-7, "(1.235 ± 0.021)e-7", "[1.200e-7, 1.280e-7]"),
])
def test_an_interval_is_rounded_like_its_value_and_error(value, err, lo, hi, pair, interval):
    """One rule: the interval has the places (and the power of ten) of `value ± error` beside it."""
    assert format_value_error(value, err) == pair
    assert format_interval(lo, hi, err, value=value) == interval


# ---------------------------------------------------------------- JSON-safe values


def test_jsonable_turns_numpy_into_plain_python():
    doc = jsonable({
        "f": np.float64(1.5), "f32": np.float32(0.25), "i": np.int64(3), "b": np.bool_(True),
        "arr": np.array([[1.0, np.nan], [np.inf, 2.0]]), "tuple": (np.int32(1), np.float16(0.5)),
        "scalar_array": np.array(4.0), 7: "int key", "s": "text", "none": None, "bool": False,
    })
    assert doc == {"f": 1.5, "f32": 0.25, "i": 3, "b": True, "arr": [[1.0, None], [None, 2.0]],
                   "tuple": [1, 0.5], "scalar_array": 4.0, "7": "int key", "s": "text", "none": None,
                   "bool": False}
    assert type(doc["f"]) is float and type(doc["i"]) is int and type(doc["b"]) is bool
    assert type(doc["f32"]) is float and type(doc["tuple"][0]) is int
    json.dumps(doc, allow_nan=False)


def test_jsonable_nan_and_inf_become_none_at_any_depth():
    doc = jsonable({"a": [{"b": (NAN, -math.inf, 1.0)}], "c": {"d": {"e": np.float64("nan")}}})
    assert doc == {"a": [{"b": [None, None, 1.0]}], "c": {"d": {"e": None}}}


def test_jsonable_keeps_bools_as_bools_not_ints():
    assert jsonable([True, np.True_, 1]) == [True, True, 1]
    assert [type(v) for v in jsonable([True, np.True_, 1])] == [bool, bool, int]


def test_versions_names_scalefit_python_and_numpy():
    from scaling_cli import __version__

    v = versions()
    assert v["scalefit"] == __version__
    assert v["numpy"] == np.__version__
    assert {"scalefit", "python", "numpy"} <= set(v)
    assert all(isinstance(x, str) for x in v.values())


# ---------------------------------------------------------------- files


def test_atomic_write_puts_the_file_in_place(tmp_path):
    target = tmp_path / "out.txt"
    assert atomic_write(target, lambda p: p.write_text("whole")) == target
    assert target.read_text() == "whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"

    def half_then_fail(path):
        path.write_text("half of it")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(target, half_then_fail)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def fail(path):
        path.write_text("new but broken")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_into_a_missing_directory(tmp_path):
    target = tmp_path / "nowhere" / "out.txt"
    with pytest.raises(DataError, match=f"cannot write {target}: directory {target.parent} does not exist"):
        atomic_write(target, lambda p: p.write_text("x"))
    assert list(tmp_path.iterdir()) == []


def test_check_writable_fails_before_any_work(tmp_path):
    check_writable("-")
    check_writable(tmp_path / "new.json")
    (tmp_path / "old.json").write_text("{}")
    check_writable(tmp_path / "old.json")
    missing = tmp_path / "no" / "fit.json"
    with pytest.raises(DataError) as info:
        check_writable(missing)
    assert str(info.value) == f"cannot write {missing}: directory {missing.parent} does not exist"
    with pytest.raises(DataError) as info:
        check_writable(tmp_path)
    assert str(info.value) == f"cannot write {tmp_path}: it is a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_write_json_to_stdout(capsys):
    write_json("-", {"a": np.float64(1.5), "b": NAN, "c": [np.int64(2)]})
    out, err = capsys.readouterr()
    assert err == ""
    assert out.endswith("\n")
    assert json.loads(out) == {"a": 1.5, "b": None, "c": [2]}
    assert "NaN" not in out


def test_write_json_to_a_file(tmp_path):
    target = tmp_path / "fit.json"
    write_json(target, {"x": np.float32(2.0), "y": (math.inf,)})
    assert json.loads(target.read_text()) == {"x": 2.0, "y": [None]}
    assert [p.name for p in tmp_path.iterdir()] == ["fit.json"]


def test_write_json_onto_a_directory_is_a_data_error_and_leaves_nothing(tmp_path):
    target = tmp_path / "fit.json"
    target.mkdir()
    with pytest.raises(DataError, match=f"cannot write {target}"):
        write_json(target, {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["fit.json"]
    assert list(target.iterdir()) == []


def test_write_json_into_a_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        write_json(tmp_path / "no" / "fit.json", {"a": 1})


# ---------------------------------------------------------------- the depth-regime sentence


@dataclass
class _Result:
    """Just enough of a FitResult for `depth_regime`."""

    names: tuple[str, ...]
    alpha_l: Estimate | None = None

    def estimate(self, name: str) -> Estimate:
        assert name == "alpha_l"
        return self.alpha_l


def _regime(lo: float, hi: float, value: float | None = None, stderr: float | None = None) -> str:
    value = (lo + hi) / 2 if value is None else value
    stderr = (hi - lo) / 4 if stderr is None else stderr
    est = Estimate("alpha_l", value, stderr, (lo, hi))
    sentence = depth_regime(_Result(("c_m", "alpha_m", "c_l", "alpha_l", "L0"), est))
    assert sentence is not None
    return sentence


@pytest.mark.parametrize(("lo", "hi"), [(0.76, 1.89), (0.5, 1.0), (1.0, 2.9), (0.95, 1.05)])
def test_an_interval_around_one_is_ensemble_averaging(lo, hi):
    sentence = _regime(lo, hi)
    assert "consistent with layers averaging like an ensemble" in sentence
    assert "excludes smooth refinement" in sentence
    # printed to the place of its value ± error, like every interval (error (hi - lo) / 4 here)
    assert format_interval(lo, hi, (hi - lo) / 4, value=(lo + hi) / 2) in sentence


@pytest.mark.parametrize(("lo", "hi"), [(0.5, 3.5), (1.0, 3.0), (-0.2, 8.0)])
def test_an_interval_covering_one_and_three_is_undecided(lo, hi):
    sentence = _regime(lo, hi)
    assert "too uncertain to tell ensemble averaging (≈ 1) from smooth refinement (≥ 3)" in sentence
    assert "consistent with" not in sentence


@pytest.mark.parametrize(("lo", "hi"), [(3.0, 4.0), (3.2, 6.1)])
def test_an_interval_at_or_above_three_is_refinement(lo, hi):
    sentence = _regime(lo, hi)
    assert "consistent with smooth refinement (alpha_l ≥ 3), not with ensemble averaging" in sentence


def test_a_tight_interval_just_above_one_is_near_the_ensemble_regime():
    sentence = _regime(1.187, 1.219)
    assert "close to ensemble averaging (alpha_l ≈ 1), though 1 itself lies below the interval" in sentence
    assert "excludes smooth refinement" in sentence


def test_an_interval_between_the_regimes():
    sentence = _regime(1.2, 2.5)
    assert "above ensemble averaging (≈ 1) and below smooth refinement (≥ 3)" in sentence


def test_an_interval_above_one_reaching_three():
    sentence = _regime(1.5, 3.5)
    assert "above 1; cannot exclude smooth refinement (≥ 3)" in sentence


def test_an_interval_below_one():
    sentence = _regime(0.2, 0.8)
    assert "below 1, shallower than ensemble averaging; excludes smooth refinement" in sentence


def test_no_interval_claims_nothing():
    est = Estimate("alpha_l", 0.128, NAN, (NAN, NAN), "cannot be determined")
    sentence = depth_regime(_Result(("c_l", "alpha_l"), est))
    assert sentence.startswith("alpha_l = 0.128 ± n/a")
    assert "interval is not available (cannot be determined)" in sentence
    assert "cannot place depth scaling in a regime" in sentence
    for claim in ("consistent with", "excludes"):
        assert claim not in sentence


def test_the_sentence_shows_the_rounded_value():
    sentence = _regime(0.7593, 1.8909, value=1.3251, stderr=0.2869)
    assert sentence.startswith("alpha_l = 1.33 ± 0.29 (95% interval [0.76, 1.89])")


def test_forms_without_alpha_l_get_no_sentence():
    assert depth_regime(_Result(("E", "A", "alpha", "B", "beta"))) is None


# ---------------------------------------------------------------- reports at 80 and 120 columns

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "example_runs.csv"


def _run_at(width: int, *args: str) -> str:
    """`scalefit ARGS` in-process with a terminal `width` columns wide; returns stdout."""
    from typer.testing import CliRunner

    from scaling_cli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _fits_in(text: str, width: int) -> None:
    lines = text.splitlines()
    too_long = [line for line in lines if len(line) > width]
    assert not too_long, f"{len(too_long)} lines longer than {width}: {too_long[:2]}"
    assert "…" not in text  # rich's sign that a cell was cut


@pytest.mark.parametrize("width", [80, 120])
def test_fit_report_fits_the_terminal_with_every_digit(width):
    """The formula breaks between terms, numbers never wrap or get cut, a derived quantity's note
    folds instead of splitting the `value ± standard error` header."""
    from scaling_cli.fitting import fit
    from scaling_cli.forms import shipped_form_path
    from scaling_cli.io import load_runs
    from scaling_cli.report import formula_lines
    from scaling_cli.spec import load_form

    form = load_form(shipped_form_path("chinchilla"))
    out = _run_at(width, "fit", EXAMPLE, "--config", "chinchilla")
    _fits_in(out, width)
    assert "value ± standard error" in out
    result = fit(load_runs(EXAMPLE, require=form.required_columns()), form)
    for e in result.estimates + result.derived:
        row = next(line for line in out.splitlines() if line.startswith(f"│ {e.name} "))
        assert format_value_error(e.value, e.stderr) in row, row
        assert format_interval(*e.ci95, e.stderr, value=e.value) in row, row
    for line in formula_lines(form.name, form.describe(), width):
        assert line in out.splitlines()


@pytest.mark.parametrize("width", [80, 120])
def test_bootstrap_report_fits_the_terminal_with_every_digit(width):
    out = _run_at(width, "bootstrap", EXAMPLE, "--config", "chinchilla", "--n", "40")
    _fits_in(out, width)
    body = [line for line in out.splitlines() if line.startswith("│ ")]
    assert [line.split()[1] for line in body] == ["E", "A", "alpha", "B", "beta", "a"]
    for line in body:  # every cell whole on its row: the value ± error and both intervals
        assert line.count("±") == 1 and line.count("[") == 2 and line.count("]") == 2, line


@pytest.mark.parametrize("width", [80, 120])
def test_compare_report_keeps_tiny_akaike_weights_whole(width):
    from scaling_cli.compare import compare_forms

    forms = ["decomposed", "chinchilla", "width_free", "depth_free"]
    out = _run_at(width, "compare", EXAMPLE, *forms, "--folds", "2")
    _fits_in(out, width)
    result = compare_forms(EXAMPLE, forms, folds=2)
    weights = [e.akaike_weight for e in result.ranked]
    assert min(weights) < 1e-100  # the case that was cut to `4.54e-1…`
    for e in result.ranked:
        row = next(line for line in out.splitlines() if f" {e.name} " in line and line.strip()[0].isdigit())
        assert f"{e.akaike_weight:.3g}" in row.split(), row


def test_results_have_short_reprs_and_notebook_tables():
    """Printing a Runs, FitResult or BootstrapResult gives one line, not every array."""
    from scaling_cli.bootstrap import bootstrap
    from scaling_cli.fitting import fit
    from scaling_cli.io import load_runs

    runs = load_runs(EXAMPLE, exclude_top_loss=6)
    result = fit(runs)
    boot = bootstrap(runs, fit_result=result, n=20, seed=0)
    for obj, head in ((runs, "<Runs 250 rows from example_runs.csv (6 dropped); width=d_model"),
                      (result, "<FitResult decomposed, log-ls, 250 rows, converged: c_m="),
                      (boot, "<BootstrapResult decomposed, 20 case resamples (0 failed), percentile 95%: "
                             "c_m=")):
        text = repr(obj)
        assert text.startswith(head), text
        assert "\n" not in text and len(text) < 250 and "array" not in text
        html = obj._repr_html_()
        assert html.count("<table") == 1 and "<td>" in html
    alpha_l = result.estimate("alpha_l")
    assert f"alpha_l={format_value_error(alpha_l.value, alpha_l.stderr).replace(' ± ', '±')}" in repr(result)


@pytest.mark.parametrize("width", [80, 120])
def test_a_long_parameter_name_folds_and_the_numbers_stay_whole(width):
    """The interaction form's derived `depth_over_width` made the bootstrap table cut its numbers."""
    from scaling_cli.bootstrap import bootstrap
    from scaling_cli.forms import shipped_form_path
    from scaling_cli.io import load_runs
    from scaling_cli.spec import load_form

    out = _run_at(width, "bootstrap", EXAMPLE, "--config", "interaction", "--n", "30")
    _fits_in(out, width)
    form = load_form(shipped_form_path("interaction"))
    with pytest.warns(ScalefitWarning, match="c_ml = 0 is at its bound 0"):  # in the report too
        boot = bootstrap(load_runs(EXAMPLE, form=form), form, n=30, seed=0)
    for e in boot.estimates + boot.derived:
        assert format_value_error(e.value, e.se) in out, e.name
        assert format_interval(*e.ci, e.se, value=e.value) in out, e.name
