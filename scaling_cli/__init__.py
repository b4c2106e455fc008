"""scalefit: fit decomposed width / depth / data scaling laws of neural networks.

Use it from a notebook without the CLI::

    from scaling_cli import load_runs, fit
    runs = load_runs("runs.csv", exclude_top_loss=40)
    result = fit(runs, "decomposed")
    result["alpha_l"], result.estimate("alpha_l").stderr

Names are loaded on first use (PEP 562), so that `scalefit --help` does not pay for numpy.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "DataError": "errors", "FitError": "errors", "ScalefitError": "errors",
    "ScalefitWarning": "errors", "SpecError": "errors",
    "Estimate": "fitting", "FitResult": "fitting", "FitStats": "fitting", "fit": "fitting",
    "Form": "forms", "get_form": "forms",
    "Runs": "io", "load_runs": "io",
    "Objective": "objectives",
    "CompareResult": "compare", "compare_forms": "compare",
    "load_form": "spec", "parse_form": "spec",
    "ResultError": "errors", "load_result": "results", "BootstrapResult": "bootstrap",
    "Prediction": "predict", "Constraints": "optimize", "OptimizeResult": "optimize",
    "ProfileResult": "profile", "profile_intervals": "profile",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scaling_cli' has no attribute '{name}'")


def __dir__() -> list[str]:
    return __all__
