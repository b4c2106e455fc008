"""`scalefit optimize` speed: one budget, a 50-budget frontier over 2,000 bootstrap draws, and the
obvious alternative (scipy SLSQP for every draw and budget) in the same run.

    .venv/bin/python benchmarks/bench_optimize.py [--draws 2000] [--budgets 50] [--slsqp 300]

The fit and the bootstrap of the paper's table (`chinchilla_width_depth.csv`, top 40 losses dropped)
are made first and not timed. Then, in-process:
1. one budget (C = 5.76e23, widths multiples of 128): the optimum and the exact search for the best
   shape; median of 21 runs (target < 50 ms);
2. the frontier: 50 log-spaced budgets 1e20..1e25 with percentile intervals from every draw; median of
   5 runs (target < 2 s);
3. scipy's SLSQP (analytic gradients, in log m, log l, log D, budget as an equality constraint, started
   at the geometric centre of the fitted data, ftol 1e-12) on `--slsqp` random (draw, budget) pairs;
   its time per solve times draws x budgets against the frontier (target: scalefit >= 20x faster), and
   the largest relative difference in the loss at the optimum (and how often SLSQP is lower).
Exit 1 if SLSQP finds a lower loss than scalefit by more than 1e-12 relative; 2 if ../shared is missing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import numpy as np  # noqa: E402
from common import SHARED, load_note, require_shared  # sets BLAS to one thread

TABLE = SHARED / "data" / "chinchilla_width_depth.csv"
ONE_BUDGET_TARGET_S = 0.05
FRONTIER_TARGET_S = 2.0
SPEEDUP_TARGET = 20.0


def slsqp(theta: np.ndarray, C: float, start: np.ndarray):
    """Minimize the decomposed law over z = (log m, log l, log D) with 72 l m^2 D = C (as logs)."""
    from scipy.optimize import minimize

    c_m, a_m, c_l, a_l, c_D, a_D, L0 = theta
    logC72 = np.log(C / 72)

    def fun(z):
        t = np.array([c_m * np.exp(-a_m * z[0]), c_l * np.exp(-a_l * z[1]), c_D * np.exp(-a_D * z[2])])
        return L0 + t.sum(), np.array([-a_m * t[0], -a_l * t[1], -a_D * t[2]])

    constraint = {"type": "eq", "fun": lambda z: 2 * z[0] + z[1] + z[2] - logC72,
                  "jac": lambda z: np.array([2.0, 1.0, 1.0])}
    z0 = start.copy()
    z0[2] += logC72 - (2 * z0[0] + z0[1] + z0[2])  # start on the budget
    res = minimize(fun, z0, jac=True, method="SLSQP", constraints=[constraint],
                   options={"ftol": 1e-12, "maxiter": 500})
    return res.fun, res.x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--budgets", type=int, default=50)
    parser.add_argument("--slsqp", type=int, default=300, help="(draw, budget) pairs solved by SLSQP")
    parser.add_argument("--summary", help="write the measurements as JSON to this path")
    args = parser.parse_args(argv)
    require_shared(TABLE)
    from scaling_cli import load_runs
    from scaling_cli.bootstrap import bootstrap
    from scaling_cli.fitting import fit
    from scaling_cli.optimize import Constraints, decomposed_optimum, optimize

    print(load_note())
    runs = load_runs(TABLE, exclude_top_loss=40)
    result = fit(runs, "decomposed")
    boot = bootstrap(runs, "decomposed", n=args.draws, seed=0, fit_result=result)
    flops = np.geomspace(1e20, 1e25, args.budgets)
    shape = Constraints(width_multiple=128)

    times = []
    for _ in range(21):
        t0 = time.perf_counter()
        one = optimize(result, 5.76e23, constraints=shape)
        times.append(time.perf_counter() - t0)
    one_s = statistics.median(times)
    print(f"one budget (optimum + exact best shape): median {1e3 * one_s:.1f} ms "
          f"(target < {1e3 * ONE_BUDGET_TARGET_S:.0f} ms); shape {one.shape['width'][0]:.0f} x "
          f"{one.shape['depth'][0]:.0f}, penalty {one.shape['penalty'][0]:.2e}")

    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        frontier = optimize(boot, flops, constraints=shape)
        times.append(time.perf_counter() - t0)
    frontier_s = statistics.median(times)
    print(f"frontier: {args.budgets} budgets x {frontier.n_draws} draws with intervals and best shapes: "
          f"median {frontier_s:.3f} s (target < {FRONTIER_TARGET_S:g} s)")
    t0 = time.perf_counter()
    cloud = decomposed_optimum(boot.draws[boot.ok], flops)
    optima_s = time.perf_counter() - t0
    print(f"  of which the optima of every draw and budget ({cloud['loss'].size:,}): {1e3 * optima_s:.1f} ms")

    rng = np.random.default_rng(0)
    draws = boot.draws[boot.ok]
    start = np.array([np.log(np.sqrt(lo * hi)) for lo, hi in (result.ranges[s] for s in ("m", "l", "D"))])
    pairs = [(int(rng.integers(len(draws))), int(rng.integers(len(flops)))) for _ in range(args.slsqp)]
    worst, lower = 0.0, 0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solved = [slsqp(draws[k], flops[b], start) for k, b in pairs]
    per_solve = (time.perf_counter() - t0) / len(pairs)
    for (k, b), (value, _) in zip(pairs, solved, strict=True):
        ours = cloud["loss"][k, b]
        worst = max(worst, abs(value - ours) / ours)
        lower += value < ours * (1 - 1e-12)
    slsqp_total = per_solve * draws.shape[0] * len(flops)
    speedup = slsqp_total / frontier_s
    print(f"scipy SLSQP per draw per budget: {1e3 * per_solve:.2f} ms per solve, so "
          f"{draws.shape[0] * len(flops):,} solves ~ {slsqp_total:.1f} s; scalefit's frontier is "
          f"{speedup:.0f}x faster (target >= {SPEEDUP_TARGET:g}x), {speedup * frontier_s / optima_s:.0f}x "
          f"counting the optima alone")
    print(f"  same optimum: largest relative loss difference {worst:.1e} over {len(pairs)} pairs; "
          f"SLSQP lower on {lower}")
    rows = [
        {"name": "optimize, one budget in-process", "median_s": one_s, "target_s": ONE_BUDGET_TARGET_S,
         "ok": one_s < ONE_BUDGET_TARGET_S},
        {"name": f"optimize, {args.budgets}-budget frontier x {frontier.n_draws} draws",
         "median_s": frontier_s, "target_s": FRONTIER_TARGET_S, "ok": frontier_s < FRONTIER_TARGET_S},
        {"name": "optimize frontier vs scipy SLSQP per draw per budget", "speedup": speedup,
         "target_speedup": SPEEDUP_TARGET, "ok": speedup >= SPEEDUP_TARGET, "scipy_lower": lower,
         "max_rel_difference": worst, "agreement_ok": worst < 1e-6},
    ]
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)
    return 1 if lower else 0


if __name__ == "__main__":
    sys.exit(main())
