"""One error hierarchy; the CLI turns each kind into its exit code."""

from __future__ import annotations

import pytest

import scaling_cli
from scaling_cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FIT_FAILED,
    DataError,
    FitError,
    ScalefitError,
    ScalefitWarning,
    SpecError,
)


@pytest.mark.parametrize(("cls", "code"), [(DataError, 2), (SpecError, 2), (FitError, 1), (ScalefitError, 2)])
def test_every_error_is_a_scalefit_error_with_its_exit_code(cls, code):
    assert issubclass(cls, ScalefitError)
    assert issubclass(cls, Exception)
    assert cls.exit_code == code
    assert cls("what went wrong").exit_code == code
    assert str(cls("what went wrong")) == "what went wrong"


def test_the_exit_codes():
    assert EXIT_BAD_INPUT == 2
    assert EXIT_FIT_FAILED == 1


def test_the_three_kinds_are_distinct():
    assert not issubclass(DataError, SpecError) and not issubclass(SpecError, DataError)
    assert not issubclass(FitError, (DataError, SpecError))


def test_a_fit_error_carries_what_was_found():
    partial = {"alpha_l": 1.2}
    err = FitError("did not converge", partial=partial)
    assert err.partial is partial
    assert FitError("no start").partial is None
    with pytest.raises(ScalefitError, match="did not converge"):
        raise err


def test_soft_problems_are_a_user_warning():
    assert issubclass(ScalefitWarning, UserWarning)
    assert not issubclass(ScalefitWarning, ScalefitError)


def test_the_package_exports_the_hierarchy():
    for name in ("ScalefitError", "DataError", "SpecError", "FitError", "ScalefitWarning"):
        assert getattr(scaling_cli, name) is globals()[name]


@pytest.mark.parametrize(("cls", "code"), [(DataError, 2), (SpecError, 2), (FitError, 1)])
def test_the_cli_prints_one_line_with_the_exit_code(cls, code, cli, tmp_path, monkeypatch):
    import scaling_cli.fitting

    def raising(*args, **kwargs):
        raise cls("first line\n  second line")

    monkeypatch.setattr(scaling_cli.fitting, "fit", raising)
    table = tmp_path / "runs.csv"
    table.write_text("d_model,n_layers,tokens,loss\n" + "".join(f"{64 * i},{i},{1e9 * i},{3 - 0.1 * i}\n"
                                                              for i in range(1, 11)))
    result = cli("fit", table)
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr == "Error: first line second line\n"


def test_the_library_raises_and_prints_nothing(tmp_path, capsys):
    with pytest.raises(DataError):
        scaling_cli.load_runs(tmp_path / "missing.csv")
    assert capsys.readouterr() == ("", "")
