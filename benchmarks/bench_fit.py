"""How fast `scalefit fit` answers on the paper's 203-row table, and how that compares with the obvious
alternative: scipy's `least_squares` from many random starts.

    .venv/bin/python benchmarks/bench_fit.py [--repeats 7] [--starts 100]

Measures, in one run:
  1. whole-process wall time of `scalefit fit ../shared/data/chinchilla_width_depth.csv
     --exclude-top-loss 40` (target < 1 s) and of `scalefit --help` (target < 0.3 s): one warm-up run,
     then best and median of `--repeats` runs, each printed as measured / target;
  2. the in-process fit against a multi-start loop of `scipy.optimize.least_squares` (trust-region
     reflective, analytic Jacobian, the same bounds, `--starts` random starts): both objectives (sum of
     squared log errors), how many starts reach ours, and the speed ratio.
Timings are printed, not asserted: the exit code is 1 only when scipy reaches a lower objective than
scalefit, 2 when ../shared is missing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np  # noqa: E402
from common import ROOT, SHARED, USER_ENV, load_note, require_shared, scalefit_command  # sets BLAS

TABLE = SHARED / "data" / "chinchilla_width_depth.csv"
EXCLUDE_TOP_LOSS = 40
FIT_TARGET_S = 1.0
HELP_TARGET_S = 0.3
SEED = 0
PARAMS = ("c_m", "alpha_m", "c_l", "alpha_l", "c_D", "alpha_D", "L0")
# Random starts for the scipy loop: coefficients log-uniform, exponents uniform, L0 uniform.
START_RANGES = {"c_m": (1e-1, 1e4), "c_l": (1e-1, 1e4), "c_D": (1e-1, 1e4),
                "alpha_m": (0.05, 3.0), "alpha_l": (0.05, 3.0), "alpha_D": (0.03, 1.0)}
REACHED_RTOL = 1e-6  # a start "reaches" the optimum when its objective is this close, relatively


def wall_times(args: list[str], repeats: int) -> list[float]:
    """Whole-process wall times of `args` after one warm-up run; the command must succeed."""
    timings = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        done = subprocess.run(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=USER_ENV)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"`{' '.join(args)}` failed with exit code {done.returncode}:\n{done.stderr}")
        if i > 0:
            timings.append(elapsed)
    return timings


def print_timing(label: str, timings: list[float], target: float) -> dict:
    best, median = min(timings), statistics.median(timings)

    def verdict(seconds: float) -> str:
        return "meets" if seconds < target else "MISSES"

    print(f"{label}\n    best {best:.3f} s ({verdict(best)}), median {median:.3f} s ({verdict(median)}) of "
          f"{len(timings)} runs; target < {target} s: best / target = {best / target:.2f}, "
          f"median / target = {median / target:.2f}")
    return {"name": label, "best_s": best, "median_s": median, "target_s": target,
            "ratio": median / target, "best_ratio": best / target, "ok": median < target,
            "best_ok": best < target}


def _log_residuals(theta: np.ndarray, m, ell, D, log_y) -> tuple[np.ndarray, np.ndarray]:
    c_m, a_m, c_l, a_l, c_D, a_D, L0 = theta
    pm, pl, pD = m ** -a_m, ell ** -a_l, D ** -a_D
    f = c_m * pm + c_l * pl + c_D * pD + L0
    J = np.column_stack([pm, -c_m * pm * np.log(m), pl, -c_l * pl * np.log(ell), pD,
                         -c_D * pD * np.log(D), np.ones_like(f)])
    return log_y - np.log(f), -J / f[:, None]


def scipy_multistart(runs, lower: np.ndarray, upper: np.ndarray, n_starts: int, between=None,
                     n_chunks: int = 7) -> dict:
    """Best of `n_starts` bounded `least_squares` fits of the log residuals, from seeded random starts.

    The starts run in `n_chunks` chunks with `between()` called before each (outside the timing), so
    that a competitor timed there sees the same machine load."""
    from scipy.optimize import least_squares

    m, ell, D = (np.asarray(runs.column(r), float) for r in ("width", "depth", "tokens"))
    log_y = np.log(np.asarray(runs.column("loss"), float))
    rng = np.random.default_rng(SEED)
    starts = np.empty((n_starts, len(PARAMS)))
    for j, name in enumerate(PARAMS):
        if name == "L0":
            starts[:, j] = rng.uniform(0.0, np.exp(log_y).min(), n_starts)
        elif name.startswith("c_"):
            lo, hi = START_RANGES[name]
            starts[:, j] = np.exp(rng.uniform(np.log(lo), np.log(hi), n_starts))
        else:
            starts[:, j] = rng.uniform(*START_RANGES[name], n_starts)

    def residuals(theta):
        return _log_residuals(theta, m, ell, D, log_y)[0]

    def jacobian(theta):
        return _log_residuals(theta, m, ell, D, log_y)[1]

    values, thetas = np.full(n_starts, np.inf), np.full((n_starts, len(PARAMS)), np.nan)
    seconds = 0.0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for chunk in np.array_split(np.arange(n_starts), n_chunks):
            if between is not None:
                between()
            t0 = time.perf_counter()
            for i in chunk:
                try:
                    sol = least_squares(residuals, starts[i], jac=jacobian, bounds=(lower, upper),
                                        method="trf")
                except ValueError:  # a start whose residuals are not finite
                    continue
                if np.all(np.isfinite(sol.fun)):
                    values[i], thetas[i] = 2 * sol.cost, sol.x
            seconds += time.perf_counter() - t0
    best = int(np.argmin(values))
    return {"seconds": seconds, "value": float(values[best]), "theta": thetas[best], "values": values}


def in_process_comparison(n_starts: int, repeats: int) -> dict:
    from scaling_cli import fit, load_runs

    runs = load_runs(TABLE, exclude_top_loss=EXCLUDE_TOP_LOSS)
    ours_times, fits = [], []

    def time_ours() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            fits.append(fit(runs, "decomposed"))
            ours_times.append(time.perf_counter() - t0)

    time_ours()  # warm-up
    result = fits[0]
    theirs = scipy_multistart(runs, *result.form.bounds(), n_starts, between=time_ours, n_chunks=repeats)
    ours_s = statistics.median(ours_times[1:])
    ours_value = result.objective_value
    reached = int(np.sum(theirs["values"] <= ours_value * (1 + REACHED_RTOL)))
    print(f"\nin-process fit of the {len(runs)}-row table (objective: sum of squared log errors)")
    print(f"    scalefit fit:                 {ours_s:8.3f} s (median of {repeats})  objective "
          f"{ours_value:.10e}")
    print(f"    scipy least_squares x {n_starts:<4d}:   {theirs['seconds']:8.3f} s               objective "
          f"{theirs['value']:.10e}")
    print(f"    speed ratio (scipy / scalefit): {theirs['seconds'] / ours_s:.0f}x;  "
          f"{reached} of {n_starts} scipy starts reach scalefit's objective (within {REACHED_RTOL:g})")
    print(f"    objective difference (scipy - scalefit) / scalefit: "
          f"{(theirs['value'] - ours_value) / ours_value:+.2e}")
    print(f"    {'parameter':<10} {'scalefit':>14} {'scipy best':>14}")
    for j, name in enumerate(PARAMS):
        print(f"    {name:<10} {result[name]:14.6g} {theirs['theta'][j]:14.6g}")
    return {"name": "in-process fit vs scipy least_squares multi-start", "ours_s": ours_s,
            "theirs_s": theirs["seconds"], "speedup": theirs["seconds"] / ours_s,
            "ours_objective": ours_value, "theirs_objective": theirs["value"],
            "ok": ours_value <= theirs["value"] * (1 + 1e-12)}


def run(repeats: int = 7, n_starts: int = 100) -> list[dict]:
    """Run every measurement, print it, and return one summary row per measurement."""
    require_shared(TABLE)
    cmd = scalefit_command()
    fit_args = cmd + ["fit", str(TABLE), "--exclude-top-loss", str(EXCLUDE_TOP_LOSS)]
    print(f"whole-process wall time, 1 warm-up + {repeats} runs each (cwd {ROOT}; {load_note()})")
    rows = [print_timing(f"  scalefit fit ../shared/data/{TABLE.name} --exclude-top-loss "
                         f"{EXCLUDE_TOP_LOSS}", wall_times(fit_args, repeats), FIT_TARGET_S),
            print_timing("  scalefit --help", wall_times(cmd + ["--help"], repeats), HELP_TARGET_S)]
    rows.append(in_process_comparison(n_starts, repeats))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs after one warm-up (default 7)")
    parser.add_argument("--starts", type=int, default=100, help="random starts for scipy (default 100)")
    parser.add_argument("--summary", type=Path, help="also write the measurements as JSON to this file")
    args = parser.parse_args(argv)
    rows = run(args.repeats, args.starts)
    if args.summary is not None:
        args.summary.write_text(json.dumps(rows, indent=2, default=float) + "\n", encoding="utf-8")
    return 0 if rows[-1]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
