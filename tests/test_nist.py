"""The NIST StRD nonlinear regression problems, through the YAML path: the fitter's proof of correctness.

Each model is written as a form spec (the same `parse_form` a YAML file goes through) and fitted with
`ls` from NIST's starting values only (no global search), with `strategy="robust"`. Certified parameters
must agree to 6 significant digits and certified standard deviations to 3, from both starts.
The problems are read from ../shared/nist and never copied into the repository.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import pytest
from conftest import shared_file

from scaling_cli.fitting import fit
from scaling_cli.io import Runs
from scaling_cli.spec import parse_form

PARAMETER_DIGITS = 6
STDERR_DIGITS = 3
RSS_DIGITS = 6

# The models as NIST states them (square brackets become parentheses); x is the predictor.
MODELS = {
    "Bennett5": "b1 * (b2 + x)**(-1/b3)",
    "BoxBOD": "b1 * (1 - exp(-b2*x))",
    "Chwirut1": "exp(-b1*x) / (b2 + b3*x)",
    "Chwirut2": "exp(-b1*x) / (b2 + b3*x)",
    "DanWood": "b1 * x**b2",
    "ENSO": "b1 + b2*cos(2*pi*x/12) + b3*sin(2*pi*x/12) + b5*cos(2*pi*x/b4) + b6*sin(2*pi*x/b4)"
            " + b8*cos(2*pi*x/b7) + b9*sin(2*pi*x/b7)",
    "Eckerle4": "(b1/b2) * exp(-0.5*((x - b3)/b2)**2)",
    "Gauss1": "b1*exp(-b2*x) + b3*exp(-(x - b4)**2 / b5**2) + b6*exp(-(x - b7)**2 / b8**2)",
    "Gauss2": "b1*exp(-b2*x) + b3*exp(-(x - b4)**2 / b5**2) + b6*exp(-(x - b7)**2 / b8**2)",
    "Gauss3": "b1*exp(-b2*x) + b3*exp(-(x - b4)**2 / b5**2) + b6*exp(-(x - b7)**2 / b8**2)",
    "Hahn1": "(b1 + b2*x + b3*x**2 + b4*x**3) / (1 + b5*x + b6*x**2 + b7*x**3)",
    "Kirby2": "(b1 + b2*x + b3*x**2) / (1 + b4*x + b5*x**2)",
    "Lanczos1": "b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)",
    "Lanczos2": "b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)",
    "Lanczos3": "b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)",
    "MGH09": "b1 * (x**2 + x*b2) / (x**2 + x*b3 + b4)",
    "MGH10": "b1 * exp(b2 / (x + b3))",
    "MGH17": "b1 + b2*exp(-x*b4) + b3*exp(-x*b5)",
    "Misra1a": "b1 * (1 - exp(-b2*x))",
    "Misra1b": "b1 * (1 - (1 + b2*x/2)**(-2))",
    "Misra1c": "b1 * (1 - (1 + 2*b2*x)**(-.5))",
    "Misra1d": "b1*b2*x * ((1 + b2*x)**(-1))",
    "Nelson": "b1 - b2*x1 * exp(-b3*x2)",
    "Rat42": "b1 / (1 + exp(b2 - b3*x))",
    "Rat43": "b1 / ((1 + exp(b2 - b3*x))**(1/b4))",
    "Roszman1": "b1 - b2*x - arctan(b3/(x - b4))/pi",
    "Thurber": "(b1 + b2*x + b3*x**2 + b4*x**3) / (1 + b5*x + b6*x**2 + b7*x**3)",
}
# Lanczos1's certified RSS (1.4e-25) is below what float64 resolves at the printed parameters, so its
# standard deviations (which scale with the RSS) cannot be reproduced: parameters only (NIST README).
PARAMETERS_ONLY = {"Lanczos1"}
# Problems that fail from a start, with the reason (none at present; keep the mechanism for the README).
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def parse_nist(text: str) -> dict:
    """The starts, certified values and data of a NIST StRD .dat file."""
    lines = text.splitlines()
    first, last = map(int, re.search(r"Data\s+\(lines\s+(\d+)\s+to\s+(\d+)\)", text).groups())
    starts: tuple[dict, dict] = ({}, {})
    certified, stderr = {}, {}
    number = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    for line in lines[:first]:
        m = re.match(rf"^\s*(b\d+)\s*=\s*{number}\s+{number}\s+{number}\s+{number}\s*$", line)
        if m:
            name = m.group(1)
            starts[0][name], starts[1][name], certified[name], stderr[name] = map(float, m.groups()[1:])
    rss = float(re.search(rf"Residual Sum of Squares:\s*{number}", text).group(1))
    header = lines[first - 2].split()
    assert header[0] == "Data:", header
    columns = header[1:]
    rows = np.array([[float(v) for v in line.split()] for line in lines[first - 1:last]])
    return {"start1": starts[0], "start2": starts[1], "certified": certified, "stderr": stderr,
            "rss": rss, "data": dict(zip(columns, rows.T, strict=True))}


@cache
def problem(name: str):
    """The parsed file, its form (through the YAML path) and its runs."""
    nist = parse_nist(shared_file("nist", f"{name}.dat").read_text())
    predictors = [c for c in nist["data"] if c != "y"]
    spec = {
        "name": name,
        "expression": MODELS[name],
        "variables": {c: c for c in predictors},
        "response": "log(y)" if name == "Nelson" else "y",
        "parameters": {b: None for b in nist["certified"]},
        "objective": "ls",
        "reference": f"NIST StRD {name}",
    }
    form = parse_form(spec, f"<NIST {name}>")
    data = nist["data"]
    runs = Runs(path=f"{name}.dat", sha256=None, data=data, roles={}, n_total=len(data["y"]))
    return nist, form, runs


def digits(value: float, certified: float) -> float:
    """Log relative error: the number of significant digits that agree."""
    if value == certified:
        return 15.0
    return -np.log10(abs(value - certified) / abs(certified))


CASES = [pytest.param(name, start, id=f"{name}-{start}",
                      marks=[pytest.mark.xfail(reason=KNOWN_FAILURES[(name, start)], strict=True)]
                      if (name, start) in KNOWN_FAILURES else [])
         for name in MODELS for start in ("start1", "start2")]


@pytest.mark.parametrize(("name", "start"), CASES)
def test_certified_values(name, start):
    nist, form, runs = problem(name)
    result = fit(runs, form, starts=[nist[start]], global_search=False, strategy="robust")
    assert result.converged
    for b, certified in nist["certified"].items():
        assert digits(result[b], certified) >= PARAMETER_DIGITS, (b, result[b], certified)
    if name in PARAMETERS_ONLY:
        return
    for b, certified in nist["stderr"].items():
        se = result.estimate(b).stderr
        assert digits(se, certified) >= STDERR_DIGITS, (b, se, certified)
    assert digits(result.stats.rss, nist["rss"]) >= RSS_DIGITS


def test_every_file_has_a_model():
    names = sorted(p.stem for p in shared_file("nist").glob("*.dat"))
    assert names == sorted(MODELS)


def test_models_follow_the_files():
    """The expressions above are NIST's own model lines, up to brackets and spacing."""
    for name, expression in MODELS.items():
        text = shared_file("nist", f"{name}.dat").read_text()
        stated = re.search(r"Model:.*?\n(.*?)(?:Starting [Vv]alues)", text, re.S).group(1)
        stated = re.sub(r"\s|\+\s*e\b", "", stated.replace("[", "(").replace("]", ")"))
        stated = re.sub(r"\+e$", "", stated.split("y=")[-1].split("log(y)=")[-1])
        mine = re.sub(r"\s", "", expression)
        # parameters and operators in the same order (NIST writes 1/(1+b2*x) as ((1+b2*x)**(-1)) etc.)
        assert re.findall(r"b\d", stated) == re.findall(r"b\d", mine), name


def test_linear_parameters_are_found():
    """Variable projection uses the parameters each model is linear in."""
    expected = {"ENSO": ("b1", "b2", "b3", "b5", "b6", "b8", "b9"), "Lanczos1": ("b1", "b3", "b5"),
                "MGH17": ("b1", "b2", "b3"), "Hahn1": ("b1", "b2", "b3", "b4"), "Nelson": ("b1", "b2"),
                "Chwirut1": (), "Misra1d": ("b1",), "Roszman1": ("b1", "b2")}
    for name, linear in expected.items():
        _, form, _ = problem(name)
        assert form.linear == linear, name


# ---------------------------------------------------------------- the CLI's default path
#
# What a new user runs: the model as a form file whose `init` is NIST's start, `scalefit fit DATA
# --config FORM.yaml`, no options. The default strategy polishes that start, and escalates whatever
# stops short to the robust strategy. All 54 (27 problems x 2 starts) are run by
# `benchmarks/nist_cli.py`; here the cases the Newton-LM alone got wrong (issue 9), through the CLI.
CLI_CASES = [("ENSO", "start1"), ("Lanczos1", "start1"), ("MGH10", "start1"), ("Rat43", "start1"),
             ("Bennett5", "start2"), ("Eckerle4", "start2")]
# Without any init, these miss the certified optimum (a local minimum 20x higher): their five
# unbounded nonlinear parameters get 5 grid values each, spanning 1e-3..1e3 of both signs, too
# coarse to find two narrow peaks; an init or bounds on the peak positions fix it.
NO_INIT_MISSES = {"Gauss2", "Gauss3"}


def write_problem(name: str, start: str | None, folder) -> tuple:
    """The problem as a CSV table and a form file with `init` = the start (none when start is None)."""
    import csv

    import yaml

    nist, _, _ = problem(name)
    columns = list(nist["data"])
    data = folder / f"{name}.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*(nist["data"][c].tolist() for c in columns), strict=True))
    spec = {"name": name, "expression": MODELS[name],
            "variables": {c: c for c in columns if c != "y"},
            "response": "log(y)" if name == "Nelson" else "y",
            "parameters": {b: ({"init": nist[start][b]} if start else None) for b in nist["certified"]},
            "objective": "ls"}
    form = folder / f"{name}.yaml"
    form.write_text(yaml.safe_dump(spec))
    return nist, data, form


def same_optimum(doc: dict, nist: dict, name: str) -> bool:
    """The certified optimum, up to the model's symmetries: the RSS to 6 digits (not for Lanczos1,
    whose RSS is rounding) and the parameters' magnitudes as a set (ENSO's two periods, Gauss1's two
    peaks, Lanczos's three decays may come in another order; Eckerle4's b1, b2 with both signs
    flipped)."""
    ours = sorted(abs(v["value"]) for v in doc["params"].values())
    theirs = sorted(abs(v) for v in nist["certified"].values())
    rss_ok = name in PARAMETERS_ONLY or digits(doc["stats"]["rss"], nist["rss"]) >= RSS_DIGITS
    return rss_ok and all(digits(a, b) >= PARAMETER_DIGITS for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize(("name", "start"), CLI_CASES, ids=[f"{n}-{s}" for n, s in CLI_CASES])
def test_cli_default_from_the_nist_start(name, start, cli, tmp_path):
    import json

    nist, data, form = write_problem(name, start, tmp_path)
    out = tmp_path / "fit.json"
    result = cli("fit", data, "--config", form, "--json", out, "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["converged"] is True
    for b, certified in nist["certified"].items():
        assert digits(doc["params"][b]["value"], certified) >= PARAMETER_DIGITS, (b, certified)
    if name not in PARAMETERS_ONLY:
        for b, certified in nist["stderr"].items():
            assert digits(doc["params"][b]["stderr"], certified) >= STDERR_DIGITS, (b, certified)


@pytest.mark.parametrize("name", ["Lanczos1", "MGH10", "Eckerle4"])
def test_cli_default_without_any_init(name, cli, tmp_path):
    import json

    nist, data, form = write_problem(name, None, tmp_path)
    out = tmp_path / "fit.json"
    result = cli("fit", data, "--config", form, "--json", out, "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["converged"] is True and same_optimum(doc, nist, name)
