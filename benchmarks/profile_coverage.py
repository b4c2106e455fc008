"""Do profile-likelihood intervals cover the truth 95% of the time? Beside the Jacobian intervals, on
the simulated Chinchilla design of `benchmarks/coverage.py` (same truth, design and noise).

    .venv/bin/python benchmarks/profile_coverage.py [--datasets 400] [--jobs 2] [--seed 0]

For each simulated table the decomposed law is refitted (global search) and both intervals computed:
the Jacobian t interval and the profile-likelihood interval (`scaling_cli.profile`, F threshold). It
prints per parameter the fraction of intervals containing the true value, and the time the profiles
took against lmfit's `conf_interval` on the paper's table (same threshold: sigmas=[2] is a level of
0.9545), measured in the same run. `simulate(...)` is what tests/test_profile.py runs on a few tables.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LEVEL = 0.95
TARGET = (0.93, 0.97)
KINDS = ("jacobian", "profile")


def _coverage_module():
    """benchmarks/coverage.py (its design and simulated tables), loaded once by path."""
    if "coverage_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("coverage_bench", ROOT / "benchmarks" / "coverage.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["coverage_bench"] = module  # dataclasses (and pickling to workers) look it up there
        spec.loader.exec_module(module)
    return sys.modules["coverage_bench"]


def one_table(design, index: int, seed: int) -> dict[str, np.ndarray]:
    from scaling_cli import fit

    runs = _coverage_module().simulated_runs(design, index, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a simulated fit may put a parameter on a bound
        result = fit(runs, "decomposed").with_profile(LEVEL)
    truth = design.truth
    jac = np.array([e.ci95 for e in result.estimates])
    prof = np.array([result.profile[name].interval for name in result.names])
    return {"jacobian": (jac[:, 0] <= truth) & (truth <= jac[:, 1]),
            "profile": (prof[:, 0] <= truth) & (truth <= prof[:, 1]),
            "seconds": np.array([result.profile.seconds])}


def simulate(datasets: int, seed: int = 0, jobs: int = 1, design=None) -> dict[str, np.ndarray]:
    """Coverage per interval kind and parameter (each (P,)) over `datasets` tables, and the profile
    seconds per table."""
    design = design or _coverage_module().chinchilla_design()
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(one_table, [design] * datasets, range(datasets), [seed] * datasets,
                                    chunksize=4))
    else:
        results = [one_table(design, i, seed) for i in range(datasets)]
    out = {kind: np.mean([r[kind] for r in results], axis=0) for kind in KINDS}
    out["seconds"] = np.array([r["seconds"][0] for r in results])
    return out


def lmfit_minimizer(result):
    """An lmfit Minimizer of the same log residuals as `result` (a decomposed fit), every parameter >= 0,
    started at its optimum: the reference that profiles are checked against."""
    import lmfit

    X, y = result.inputs, result.observed

    def residuals(params):
        theta = np.array([params[n].value for n in result.names])
        return np.log(y) - np.log(result.form.predict(theta[None], X)[0])

    params = lmfit.Parameters()
    for name, value in zip(result.names, result.values, strict=True):
        params.add(name, value=value, min=0)
    return lmfit.Minimizer(residuals, params)


def paper_timing() -> tuple[float, float, tuple[float, float], tuple[float, float]]:
    """Seconds for all 7 profiles of the paper fit (ours, best of 3) and for lmfit's conf_interval on
    the same 7 parameters; alpha_l's interval from each at level 0.9545."""
    import lmfit

    from scaling_cli import fit, load_runs
    from scaling_cli.profile import profile_intervals

    runs = load_runs(_coverage_module().TABLE, exclude_top_loss=40)
    result = fit(runs, "decomposed")
    level = math.erf(2 / math.sqrt(2))
    ours = min(_timed(lambda: profile_intervals(result, level))[1] for _ in range(3))
    ours_alpha = profile_intervals(result, level)["alpha_l"].interval
    minimizer = lmfit_minimizer(result)
    best = minimizer.minimize(method="leastsq")
    ci, theirs = _timed(lambda: lmfit.conf_interval(minimizer, best, sigmas=[2]))
    theirs_alpha = (ci["alpha_l"][0][1], ci["alpha_l"][-1][1])
    return ours, theirs, ours_alpha, theirs_alpha


def _timed(call):
    t0 = time.perf_counter()
    out = call()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=400, help="simulated tables (default 400)")
    parser.add_argument("--jobs", type=int, default=2, help="processes (tables are shared out)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    module = _coverage_module()
    if not module.TABLE.exists():
        print(f"data not found: expected {module.TABLE} (../shared beside the repository)", file=sys.stderr)
        sys.exit(2)
    ours, theirs, ours_alpha, theirs_alpha = paper_timing()
    print(f"paper fit, all 7 profiles: scalefit {ours:.3f} s, lmfit conf_interval {theirs:.3f} s "
          f"(ratio {theirs / ours:.1f}x); alpha_l at 2 sigma: scalefit [{ours_alpha[0]:.4f}, "
          f"{ours_alpha[1]:.4f}], lmfit [{theirs_alpha[0]:.4f}, {theirs_alpha[1]:.4f}]")
    design = module.chinchilla_design()
    t0 = time.perf_counter()
    coverage = simulate(args.datasets, args.seed, args.jobs, design)
    se = math.sqrt(LEVEL * (1 - LEVEL) / args.datasets)
    print(f"coverage of {100 * LEVEL:g}% intervals over {args.datasets} simulated tables "
          f"({time.perf_counter() - t0:.0f} s; profiles {np.median(coverage['seconds']):.3f} s per table, "
          f"median); target {TARGET[0]}-{TARGET[1]}, one binomial standard error {se:.3f}; * outside")
    print(f"{'parameter':<10} {'truth':>10} {'jacobian':>10} {'profile':>10}")
    for i, name in enumerate(design.names):
        cells = "".join(f" {coverage[k][i]:>9.3f}{'' if TARGET[0] <= coverage[k][i] <= TARGET[1] else '*'}"
                        for k in KINDS)
        print(f"{name:<10} {design.truth[i]:>10.4g}{cells}")


if __name__ == "__main__":
    main()
