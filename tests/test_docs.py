"""The documentation runs: every docstring example (doctest) and the README's library example."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest
from conftest import ROOT, SHARED_DATA

DOCTESTED = ("errors", "report", "fitting", "distributions", "forms", "io", "spec", "bootstrap",
             "bootstrap_result", "intervals", "resample", "cluster", "compare", "objectives",
             "predict", "optimize", "profile", "results", "plot.style", "plot.layout", "plot.save",
             "plot.fit", "plot.bootstrap", "plot.compare", "plot.optimize")
# The library's names (`from scaling_cli import ...`): each has a docstring with a short example. The
# error classes share ScalefitError's; a CompareResult is what compare_forms' example returns (a
# second comparison would add seconds to the suite).
SHARED_EXAMPLES = {"DataError", "SpecError", "FitError", "ResultError", "ScalefitWarning", "CompareResult"}
ENTRY_POINTS = tuple(n for n in __import__("scaling_cli").__all__
                     if not n.startswith("__") and n not in SHARED_EXAMPLES)


@pytest.mark.parametrize("module", DOCTESTED)
def test_docstring_examples_run(module, monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples read data/example_runs.csv
    mod = importlib.import_module(f"scaling_cli.{module}")
    try:
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")  # the figure examples leave their figures open, as a notebook would
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module}"


@pytest.mark.parametrize("name", ENTRY_POINTS + ("bootstrap", "predict", "optimize"))
def test_entry_points_have_an_example(name):
    import scaling_cli
    from scaling_cli import bootstrap, optimize, predict

    modules = {"bootstrap": bootstrap, "predict": predict, "optimize": optimize}
    func = getattr(modules[name], name) if name in modules else getattr(scaling_cli, name)
    doc = inspect.getdoc(func) or ""
    assert ">>> " in doc, f"{name} has no example in its docstring"


def test_readme_library_example_runs(monkeypatch):
    """The code block under `## Library` in README.md, run as written (it reads ../shared/data)."""
    if not (SHARED_DATA / "chinchilla_width_depth.csv").exists():
        pytest.skip("../shared/data is not beside the repo")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Library\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(code, "README.md (Library)", "exec"), namespace)  # our own README, not user input
    assert namespace["result"].converged
    assert namespace["ranking"].best is not None
    assert 0 < namespace["boot"]["alpha_l"].se < 1
