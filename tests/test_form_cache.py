"""The cache of compiled forms: a form read back from it computes exactly what a freshly compiled one
does, needs no sympy, and a damaged, foreign or unwritable cache only costs a compile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from scaling_cli import fit, form_cache, spec
from scaling_cli.results import versions

SHIPPED = sorted((ROOT / "scaling_cli" / "forms_yaml").glob("*.yaml"))
# Every function and a response formula, a derived quantity, a constant and a fixed parameter.
RICH = {"name": "rich", "expression": "L0 + c * exp(-a * m) + b * tanh(m / 7) + d * sqrt(m) * abs(m - 3) "
                                      "+ log10(m) * sin(a) * cos(b) + arctan(m) * e0 / pi",
        "variables": {"m": "width"}, "response": "log(loss) + 0",
        "parameters": {"L0": None, "c": None, "a": {"min": 0}, "b": None, "d": None,
                       "e0": {"value": 0.5, "fixed": True}},
        "derived": {"ratio": "c / a", "twice": "2 * b"}}
# A product of many functions: its symbolic Hessian is too large, so the Jacobian is differenced.
LARGE = {"name": "large", "expression": " * ".join(f"tanh(p{i} * m + {i + 1})" for i in range(20)),
         "variables": {"m": "width"}, "parameters": {f"p{i}": None for i in range(20)}}


def compile_form(source: str | dict, directory: Path | None, monkeypatch) -> spec.SpecForm:
    """A form compiled now (directory None: cache off) or read from the cache in `directory`, never
    from the process's own memo of loaded forms."""
    monkeypatch.setenv(form_cache.ENV, "" if directory is None else str(directory))
    spec._COMPILED.clear()
    if isinstance(source, dict):
        return spec.parse_form(source, f"<{source['name']}>")
    return spec.load_form(source)


def inputs(form, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = {v: rng.uniform(1.5, 900.0, 60) for v in form.variables}
    theta = rng.uniform(0.2, 1.4, (5, len(form.params)))
    return X, theta


def assert_same_numbers(a, b):
    X, theta = inputs(a)
    fa, Ja, Ha = a.predict_derivatives(theta, X, np.tanh)
    fb, Jb, Hb = b.predict_derivatives(theta, X, np.tanh)
    pairs = [(fa, fb), (Ja, Jb), (Ha, Hb), (a.predict(theta, X), b.predict(theta, X)),
             (a.jacobian(theta, X), b.jacobian(theta, X)),
             (a.second_order(theta, X, fa), b.second_order(theta, X, fa)),
             *zip(a.design(theta, X), b.design(theta, X), strict=True)]
    for x, y in pairs:
        np.testing.assert_array_equal(x, y)  # bit for bit, NaN where NaN
    assert [d.name for d in a.derived] == [d.name for d in b.derived]
    for da, db in zip(a.derived, b.derived, strict=True):
        np.testing.assert_array_equal(da.value(theta), db.value(theta))
        np.testing.assert_array_equal(da.gradient(theta), db.gradient(theta))
    assert (a.linear, a.params, a.analytic_second_order) == (b.linear, b.params, b.analytic_second_order)
    assert a.grid.keys() == b.grid.keys() and all(np.array_equal(a.grid[k], b.grid[k]) for k in a.grid)


@pytest.mark.parametrize("source", [*SHIPPED, RICH, LARGE],
                         ids=[p.stem for p in SHIPPED] + ["rich", "large"])
def test_a_cached_form_computes_what_a_fresh_one_does(source, tmp_path, monkeypatch):
    fresh = compile_form(source, None, monkeypatch)
    assert not list(tmp_path.iterdir())
    written = compile_form(source, tmp_path, monkeypatch)  # compiled, and stored
    assert len(list((tmp_path / "forms").glob("*.json"))) == 1
    cached = compile_form(source, tmp_path, monkeypatch)
    assert cached._symbolic is None and written._symbolic is not None  # read back, not compiled
    assert_same_numbers(fresh, cached)
    response = None if cached.compiled.response is None else list(cached._response_names)
    assert cached.compiled.fits(cached.params, list(cached.variables), response,
                                [d.name for d in cached.derived])
    assert not cached.compiled.fits(cached.params[:-1], list(cached.variables), response,
                                    [d.name for d in cached.derived])
    assert cached.symbolic == fresh.symbolic  # rebuilt on demand, for optimize
    if source is LARGE:
        assert not cached.analytic_second_order and cached.compiled.combined is None
    else:
        assert cached.analytic_second_order


def test_a_cached_form_fits_to_the_same_numbers_and_keeps_the_response(tmp_path, monkeypatch):
    from scaling_cli.io import Runs

    rng = np.random.default_rng(3)
    m = np.geomspace(10, 5000, 40)
    loss = np.exp(0.4 + 2.0 * np.exp(-0.01 * m) + 0.3 * np.tanh(m / 7) + rng.normal(0, 0.01, m.size))
    runs = Runs(path="<synthetic>", sha256=None, data={"width": m, "loss": loss}, roles={"width": "width"},
                n_total=m.size)
    simple = dict(RICH, expression="L0 + c * exp(-a * m) + b * tanh(m / 7)",
                  parameters={"L0": None, "c": None, "a": {"min": 0, "max": 1}, "b": None},
                  derived={"ratio": "c / a"}, objective="ls")
    fresh = fit(runs, compile_form(simple, None, monkeypatch))
    compile_form(simple, tmp_path, monkeypatch)
    cached_form = compile_form(simple, tmp_path, monkeypatch)
    cached = fit(runs, cached_form)
    assert cached_form._symbolic is None
    np.testing.assert_array_equal(cached_form.observed(runs), np.log(loss))
    assert cached.converged and fresh.converged
    np.testing.assert_array_equal(cached.values, fresh.values)
    assert [e.stderr for e in cached.estimates] == [e.stderr for e in fresh.estimates]
    assert versions(forms=[cached_form])["sympy"] == cached_form.compiled.sympy


@pytest.mark.parametrize("damage", [
    "not json {",
    json.dumps({"linear": []}),
    "steps",   # a step calling a function outside the table
    "register",  # a step reading a register the program does not have
    "pair",  # a second derivative of a parameter the form does not have
    "foreign",  # a sound entry of another form, under this form's key
])
def test_a_damaged_entry_is_compiled_again(damage, tmp_path, monkeypatch):
    path = SHIPPED[0]
    good = compile_form(path, tmp_path, monkeypatch)
    (entry,) = (tmp_path / "forms").glob("*.json")
    data = json.loads(entry.read_text())
    if damage == "steps":
        data["combined"]["steps"][0][0] = "system"
        text = json.dumps(data)
    elif damage == "register":
        data["predict"]["steps"][0][1] = 10**6
        text = json.dumps(data)
    elif damage == "pair":
        data["hessian_pairs"][0] = [0, 99]
        text = json.dumps(data)
    elif damage == "foreign":
        text = json.dumps(compile_form(SHIPPED[1], None, monkeypatch).compiled.to_data())
        monkeypatch.setenv(form_cache.ENV, str(tmp_path))
    else:
        text = damage
    entry.write_text(text)
    again = compile_form(path, tmp_path, monkeypatch)
    assert again._symbolic is not None  # refused and compiled, not read
    assert_same_numbers(good, again)
    assert json.loads(entry.read_text()) == good.compiled.to_data()  # and written again


def test_the_key_follows_the_spec_and_its_source(tmp_path, monkeypatch):
    monkeypatch.setenv(form_cache.ENV, str(tmp_path))
    base = form_cache.key(RICH, "a.yaml")
    assert base == form_cache.key(json.loads(json.dumps(RICH)), "a.yaml")
    assert base != form_cache.key(RICH, "b.yaml")  # a form's default name and messages come from there
    assert base != form_cache.key(dict(RICH, expression=RICH["expression"] + " + 0 * m"), "a.yaml")
    assert base != form_cache.key(dict(RICH, parameters={**RICH["parameters"], "L0": {"min": 0}}), "a.yaml")
    monkeypatch.setenv(form_cache.ENV, "")
    assert form_cache.key(RICH, "a.yaml") is None


def test_an_unusable_cache_directory_only_costs_a_compile(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a directory")
    first = compile_form(SHIPPED[0], blocker, monkeypatch)
    second = compile_form(SHIPPED[0], blocker, monkeypatch)
    assert first._symbolic is not None and second._symbolic is not None
    assert_same_numbers(first, second)


def test_a_warm_cache_fits_without_importing_sympy(tmp_path, chinchilla_wd):
    """The point of the cache: sympy's import and algebra are half a second of a short command."""
    code = ("import sys; from scaling_cli import fit, load_runs; from scaling_cli.spec import load_form; "
            f"form = load_form({str(SHIPPED[0])!r}); "
            f"fit(load_runs({str(chinchilla_wd)!r}, require=form.required_columns()), form); "
            "print('sympy' in sys.modules)")
    env = {"SCALEFIT_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    runs = [subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True,
                           text=True, cwd=ROOT, check=True).stdout.strip() for _ in range(2)]
    assert runs == ["True", "False"]
