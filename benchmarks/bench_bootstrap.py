"""How fast `scalefit bootstrap` refits resamples, and how that compares with a loop of scipy fits.

    .venv/bin/python benchmarks/bench_bootstrap.py [--n 10000] [--scipy 500] [--repeats 3] [--no-memory]

On the paper's 203-row table (`../shared/data/chinchilla_width_depth.csv --exclude-top-loss 40`, the
default `decomposed` log-ls fit), measures in one run:
  1. in-process wall time of `bootstrap(n=10000, method="case")` with 1 and 2 worker processes, the
     full-data fit included (target < 5 s), best and median of `--repeats`;
  2. whole-process wall time of `scalefit bootstrap ... --n 10000 --jobs 2 --quiet` (what a user waits);
  3. a plain loop of `scipy.optimize.least_squares(method="lm")` (MINPACK's lmder, the strongest
     obvious alternative: 2-3x faster per fit than the default "trf"; analytic Jacobian, warm-started
     at the full-data optimum) on the first `--scipy` of the same resamples: fits per second and the
     ratio to scalefit's (target >= 10x). MINPACK takes no bounds: a resample whose optimum lies on a
     bound (L0 = 0, say) is left out of the agreement, as its minimum is not the same. Two loops:
     scipy's default tolerances (which stop early) and tight ones (ftol = xtol = gtol = 1e-15,
     x_scale='jac'), which reach the same optima as scalefit;
  4. per-resample agreement with the tight loop wherever both reach the same minimum (objectives within
     1e-9 relative): the largest relative parameter difference (target <= 1e-6);
  5. peak memory (RSS) of a 100,000-resample run in a fresh process (target <= 1 GiB); skip with
     --no-memory.
Timings are printed, not asserted: the exit code is 1 when scipy reaches a lower objective than scalefit
on a resample or the agreement target is missed, 2 when ../shared is missing.
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
from common import MISSING_SHARED, ROOT, SHARED, load_note  # sets BLAS to one thread

TABLE = SHARED / "data" / "chinchilla_width_depth.csv"
EXCLUDE_TOP_LOSS = 40
SEED = 0
WALL_TARGET_S = 5.0
SPEEDUP_TARGET = 10.0
AGREEMENT_TARGET = 1e-6
SAME_MINIMUM_RTOL = 1e-9
MEMORY_TARGET_MIB = 1024
MEMORY_N = 100_000
TIGHT = {"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15, "x_scale": "jac"}
SCIPY_METHOD = "lm"  # MINPACK: faster than the default "trf" on these small problems; no bounds
MEMORY_SCRIPT = """
import resource, sys
from scaling_cli import load_runs
from scaling_cli.bootstrap import bootstrap
runs = load_runs(sys.argv[1], exclude_top_loss=int(sys.argv[2]))
result = bootstrap(runs, "decomposed", n=int(sys.argv[3]), seed=0, jobs=1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, result.n_failed, result.seconds)
"""


def time_bootstrap(runs, n: int, jobs: int, repeats: int):
    """Best and median wall time of `bootstrap` (full-data fit included), and the last result."""
    from scaling_cli.bootstrap import bootstrap

    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = bootstrap(runs, "decomposed", n=n, seed=SEED, jobs=jobs)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), result


def cli_wall(n: int, jobs: int) -> float:
    script = Path(sys.executable).parent / "scalefit"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "scaling_cli"]
    args = [*command, "bootstrap", str(TABLE), "--exclude-top-loss", str(EXCLUDE_TOP_LOSS), "--n", str(n),
            "--jobs", str(jobs), "--quiet"]
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"`{' '.join(args)}` failed ({done.returncode}): {done.stderr}")
    return elapsed


def scipy_loop(runs, result, count: int, options: dict) -> dict:
    """`least_squares(method="lm")` on the first `count` resamples of `result`, warm-started at the
    full-data optimum (MINPACK takes no bounds)."""
    from scipy.optimize import least_squares

    m, ell, D = (np.asarray(runs.column(r), float) for r in ("width", "depth", "tokens"))
    log_m, log_l, log_D = np.log(m), np.log(ell), np.log(D)
    log_y = np.log(np.asarray(runs.column("loss"), float))
    theta0 = result.fit.values

    def model(theta):
        c_m, a_m, c_l, a_l, c_D, a_D, L0 = theta
        pm, pl, pD = m ** -a_m, ell ** -a_l, D ** -a_D
        f = c_m * pm + c_l * pl + c_D * pD + L0
        J = np.column_stack([pm, -c_m * pm * log_m, pl, -c_l * pl * log_l, pD, -c_D * pD * log_D,
                             np.ones_like(f)])
        return f, J

    thetas, values = np.full((count, 7), np.nan), np.full(count, np.inf)
    weights = [np.sqrt(result.resample(k)[0]) for k in range(count)]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for k in range(count):
            root_w = weights[k]
            sol = least_squares(lambda t, w=root_w: w * (log_y - np.log(model(t)[0])), theta0,
                                jac=lambda t, w=root_w: -(w / model(t)[0])[:, None] * model(t)[1],
                                method=SCIPY_METHOD, **options)
            thetas[k], values[k] = sol.x, 2 * sol.cost
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "fits_per_s": count / seconds, "theta": thetas, "value": values}


def agreement(result, theirs: dict, count: int) -> dict:
    """Where both reach the same minimum, how far apart the parameters are; `scipy_lower` counts
    resamples where MINPACK found a lower objective *inside the bounds* (outside them, an unbounded
    solver can always go lower: `outside` counts those)."""
    ours_theta, ours_value = result.draws[:count], result.values[:count]
    lo, hi = result.fit.form.bounds()
    inside = np.all((theirs["theta"] >= lo) & (theirs["theta"] <= hi), axis=1)
    same = inside & (np.abs(theirs["value"] - ours_value) <= SAME_MINIMUM_RTOL * np.abs(ours_value))
    lower = inside & (theirs["value"] < ours_value * (1 - SAME_MINIMUM_RTOL))
    scale = np.maximum(np.abs(ours_theta), 1e-12)
    rel = np.max(np.abs(theirs["theta"] - ours_theta) / scale, axis=1)
    worst = float(rel[same].max()) if same.any() else float("nan")
    return {"same": int(same.sum()), "scipy_lower": int(lower.sum()), "outside": int((~inside).sum()),
            "max_rel": worst,
            "median_rel": float(np.median(rel[same])) if same.any() else float("nan")}


def peak_memory(n: int) -> tuple[float, int, float]:
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(TABLE), str(EXCLUDE_TOP_LOSS), str(n)],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"memory run failed: {done.stderr}")
    kib, failed, seconds = done.stdout.split()
    return int(kib) / 1024, int(failed), float(seconds)


def run(n: int, n_scipy: int, repeats: int, memory: bool) -> tuple[int, list[dict]]:
    from scaling_cli import load_runs

    runs = load_runs(TABLE, exclude_top_loss=EXCLUDE_TOP_LOSS)
    print(f"bootstrap of the decomposed log-ls fit on {len(runs)} rows; {load_note()}")
    rows, code = [], 0
    time_bootstrap(runs, 200, 1, 1)  # warm-up: imports, caches
    for jobs in (1, 2):
        best, median, result = time_bootstrap(runs, n, jobs, repeats)
        rate = n / median
        processes = "processes" if jobs > 1 else "process  "
        print(f"  in-process, {jobs} {processes}: {n} resamples in best {best:.2f} s, "
              f"median {median:.2f} s of {repeats} ({rate:.0f} fits/s; {result.n_failed} failed); "
              f"median / {WALL_TARGET_S:g} s target = {median / WALL_TARGET_S:.2f}")
        rows.append({"name": f"bootstrap {n} case resamples, jobs={jobs}", "best_s": best, "median_s": median,
                     "target_s": WALL_TARGET_S, "ratio": median / WALL_TARGET_S, "fits_per_s": rate,
                     "ok": median < WALL_TARGET_S})
    ours_rate = rows[0]["fits_per_s"]
    wall = cli_wall(n, 2)
    print(f"  whole process `scalefit bootstrap ... --n {n} --jobs 2 --quiet`: {wall:.2f} s; "
          f"/ target = {wall / WALL_TARGET_S:.2f}")
    rows.append({"name": f"scalefit bootstrap --n {n} --jobs 2 (whole process)", "median_s": wall,
                 "target_s": WALL_TARGET_S, "ratio": wall / WALL_TARGET_S, "ok": wall < WALL_TARGET_S})

    print(f"\n  scipy.optimize.least_squares loop (method='lm': MINPACK, analytic Jacobian, warm start) "
          f"on the first "
          f"{n_scipy} resamples; scalefit 1 process: {ours_rate:.0f} fits/s")
    for label, options in (("default tolerances", {}), ("tight tolerances", TIGHT)):
        theirs = scipy_loop(runs, result, n_scipy, options)
        agree = agreement(result, theirs, n_scipy)
        speedup = ours_rate / theirs["fits_per_s"]
        print(f"    {label:<19} {theirs['fits_per_s']:7.1f} fits/s; scalefit / scipy = {speedup:.0f}x "
              f"(target >= {SPEEDUP_TARGET:g}x); same minimum on {agree['same']} of {n_scipy}, scipy lower "
              f"on {agree['scipy_lower']}, outside the bounds on {agree['outside']}; parameters differ by "
              f"at most {agree['max_rel']:.1e} relative "
              f"(median {agree['median_rel']:.1e})")
        row = {"name": f"scalefit vs scipy least_squares loop ({label})",
               "scipy_fits_per_s": theirs["fits_per_s"],
               "ours_fits_per_s": ours_rate, "speedup": speedup, "target_speedup": SPEEDUP_TARGET,
               "same_minimum": agree["same"], "scipy_lower": agree["scipy_lower"],
               "max_rel_difference": agree["max_rel"], "ok": speedup >= SPEEDUP_TARGET}
        if agree["scipy_lower"]:
            code = 1
        if options is TIGHT:
            row["agreement_ok"] = agree["max_rel"] <= AGREEMENT_TARGET
            print(f"    agreement with the tight loop: {agree['max_rel']:.1e} / {AGREEMENT_TARGET:g} "
                  f"target = {agree['max_rel'] / AGREEMENT_TARGET:.2f}")
            if not row["agreement_ok"]:
                code = 1
        rows.append(row)

    if memory:
        mib, failed, seconds = peak_memory(MEMORY_N)
        print(f"\n  {MEMORY_N} resamples in a fresh process (1 worker): peak RSS {mib:.0f} MiB "
              f"(/ {MEMORY_TARGET_MIB} MiB target = {mib / MEMORY_TARGET_MIB:.2f}), {seconds:.1f} s, "
              f"{failed} failed")
        rows.append({"name": f"peak memory of {MEMORY_N} resamples", "peak_mib": mib,
                     "target_mib": MEMORY_TARGET_MIB, "ok": mib <= MEMORY_TARGET_MIB})
    return code, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="resamples timed (default 10000)")
    parser.add_argument("--scipy", type=int, default=500, help="resamples for the scipy loops (default 500)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each bootstrap")
    parser.add_argument("--no-memory", action="store_true", help="skip the 100,000-resample memory run")
    parser.add_argument("--summary", type=Path, help="also write the measurements as JSON here")
    args = parser.parse_args()
    if not TABLE.exists():
        print(MISSING_SHARED.format(path=TABLE), file=sys.stderr)
        sys.exit(2)
    code, rows = run(args.n, args.scipy, args.repeats, not args.no_memory)
    if args.summary:
        args.summary.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    sys.exit(code)


if __name__ == "__main__":
    main()
