"""`scalefit compare` of the seven shipped forms on Chinchilla's table, and the whole-process paper fit:
how long each takes as a user runs it, against the alternatives measured in the same run.

    .venv/bin/python benchmarks/bench_compare.py [--repeats 3] [--fit-repeats 7] [--quick]

Measures, in one run:
  1. whole process: `scalefit compare ../shared/data/chinchilla_width_depth.csv configs/*.yaml
     --exclude-top-loss 40 --quiet` (203 rows, 7 forms, 5 folds + extrapolation: 49 fits; target < 4 s),
     one warm-up run then best and median wall time and CPU time of `--repeats` runs. The forms come
     from the cache of compiled forms (`scaling_cli/form_cache.py`), which the warm-up run fills, as
     every run after a user's first does; the same command with an empty cache each time (a user's
     very first run, sympy imported and the seven forms compiled) is timed too;
  2. in-process: `compare_forms` as shipped (held-out fits warm-started from the fits on all rows)
     against `compare_forms(..., exhaustive=True)` (the full global search for every one of the 49
     fits, the method before this change): both times, the ratio, and the agreement: the same ranking,
     and every form's objective, parameters, cross-validated and extrapolation errors within 1e-6
     relative (exit code 1 otherwise). `--quick` skips the exhaustive run;
  3. whole process: `scalefit fit ../shared/data/chinchilla_width_depth.csv --exclude-top-loss 40
     --quiet` (target < 0.5 s), best and median of `--fit-repeats`, against the same fit in-process
     (the ratio is what starting Python and importing cost), with `python -c pass` and the import of
     numpy, typer and rich measured the same way; and which heavy libraries a plain fit imports (none
     of scipy, pandas, matplotlib, lmfit, sympy should be).
Before timing, the package's bytecode is compiled once (`compileall`), so that an environment with
PYTHONDONTWRITEBYTECODE set times what an installed copy does, not a recompilation of every module.
Timings are printed, not asserted; the machine is shared, so read them with the printed load average.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

from common import ROOT, SHARED, USER_ENV, load_note, require_shared, scalefit_command  # sets BLAS

# isort: split
import numpy as np  # after common, which sets one BLAS thread

TABLE = SHARED / "data" / "chinchilla_width_depth.csv"
EXCLUDE_TOP_LOSS = 40
COMPARE_TARGET_S = 4.0
FIT_TARGET_S = 0.5
SAME_RTOL = 1e-6
HEAVY = ("scipy", "pandas", "matplotlib", "lmfit", "sympy")
IMPORTS_OF_A_FIT = """
import runpy, sys
sys.argv = ["scalefit", "fit", {table!r}, "--exclude-top-loss", "{k}", "--quiet"]
try:
    runpy.run_module("scaling_cli", run_name="__main__")
except SystemExit:
    pass
sys.stderr.write(" ".join(sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))))
"""


def run(args: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall time and CPU time (user + system, s) of one whole process; exits when it fails."""
    t0 = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=USER_ENV if env is None else env)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - t0
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"`{' '.join(args)}` failed:\n{stderr}")
    return elapsed, usage.ru_utime + usage.ru_stime


def timings(args: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU times of `repeats` runs after one warm-up run."""
    run(args)
    measured = [run(args) for _ in range(repeats)]
    return [w for w, _ in measured], [c for _, c in measured]


def line(label: str, wall: list[float], cpu: list[float], target: float | None = None) -> str:
    verdict = (f"; target < {target:g} s: {'meets' if min(wall) < target else 'MISSES'} (best), "
               f"{'meets' if statistics.median(wall) < target else 'MISSES'} (median)") if target else ""
    return (f"{label}: best {min(wall):.2f} s, median {statistics.median(wall):.2f} s wall "
            f"(CPU {statistics.median(cpu):.2f} s){verdict}")


def whole_compare(repeats: int) -> dict:
    forms = sorted(str(p) for p in (ROOT / "configs").glob("*.yaml"))
    args = [*scalefit_command(), "compare", str(TABLE), *forms, "--exclude-top-loss", str(EXCLUDE_TOP_LOSS),
            "--quiet"]
    wall, cpu = timings(args, repeats)
    label = f"scalefit compare of the {len(forms)} forms in configs/ (Chinchilla, 203 rows), whole process"
    print(line(label, wall, cpu, COMPARE_TARGET_S))
    cold = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as empty:
            cold.append(run(args, {**USER_ENV, "SCALEFIT_CACHE_DIR": empty}))
    print("    " + line("the same with an empty cache of compiled forms (a user's first run)",
                        [w for w, _ in cold], [c for _, c in cold]))
    return {"name": label, "seconds": min(wall), "median_s": statistics.median(wall),
            "cpu_s": statistics.median(cpu), "target_s": COMPARE_TARGET_S, "ok": min(wall) < COMPARE_TARGET_S,
            "empty_cache_median_s": statistics.median(w for w, _ in cold)}


def relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(np.abs(a), np.abs(b))
        d = np.where(scale > 0, np.abs(a - b) / np.where(scale > 0, scale, 1.0), 0.0)
    return float(np.max(d)) if d.size else 0.0


def in_process(quick: bool) -> dict | None:
    from scaling_cli.compare import compare_forms

    forms = sorted(str(p) for p in (ROOT / "configs").glob("*.yaml"))
    options = {"exclude_top_loss": EXCLUDE_TOP_LOSS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compare_forms(TABLE, forms[:1], load_options=options)  # sympy imported, one form compiled
        t0 = time.perf_counter()
        ours = compare_forms(TABLE, forms, load_options=options)
        ours_s = time.perf_counter() - t0
        if quick:
            print(f"\nin-process compare_forms of {len(forms)} forms: {ours_s:.2f} s "
                  f"(--quick: no exhaustive run)")
            return None
        t0 = time.perf_counter()
        exhaustive = compare_forms(TABLE, forms, load_options=options, exhaustive=True)
        slow_s = time.perf_counter() - t0
    same_rank = [e.name for e in ours.ranked] == [e.name for e in exhaustive.ranked]
    worst = 0.0
    print(f"\nin-process compare_forms of {len(forms)} forms: {ours_s:.2f} s, with every held-out fit a full "
          f"global search (exhaustive=True) {slow_s:.2f} s: {slow_s / ours_s:.1f}x faster")
    print(f"    {'form':12s} {'objective':>9s} {'params':>9s} {'CV pred.':>9s} {'extrap.':>9s}  "
          f"(largest relative difference to exhaustive)")
    for entry in ours.ranked:
        other = exhaustive[entry.name]
        diffs = (relative(entry.fit.objective_value, other.fit.objective_value),
                 relative(entry.fit.values, other.fit.values),
                 relative(entry.cv.predicted, other.cv.predicted),
                 relative(entry.extrapolation.predicted, other.extrapolation.predicted))
        worst = max(worst, *diffs)
        print(f"    {entry.name:12s} " + " ".join(f"{d:9.1e}" for d in diffs))
    ok = same_rank and worst <= SAME_RTOL
    print(f"    ranking {'the same' if same_rank else 'DIFFERENT'}; largest difference {worst:.1e} "
          f"(must be <= {SAME_RTOL:g}: {'ok' if ok else 'DIFFERENT'})")
    return {"name": "compare_forms warm-started vs exhaustive held-out fits", "rows": ours.n_points,
            "ours_s": ours_s, "exhaustive_s": slow_s, "speedup": slow_s / ours_s, "relative_objective": worst,
            "ok": ok}


def paper_fit(repeats: int) -> dict:
    from scaling_cli import fit, load_runs

    fit_args = ["fit", str(TABLE), "--exclude-top-loss", str(EXCLUDE_TOP_LOSS), "--quiet"]
    wall, cpu = timings([*scalefit_command(), *fit_args], repeats)
    label = "scalefit fit (paper table, 203 rows), whole process"
    print("\n" + line(label, wall, cpu, FIT_TARGET_S))
    runs = load_runs(TABLE, exclude_top_loss=EXCLUDE_TOP_LOSS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(runs, "decomposed")
        inside = []
        for _ in range(5):
            t0 = time.perf_counter()
            fit(runs, "decomposed")
            inside.append(time.perf_counter() - t0)
    python, _ = timings([sys.executable, "-c", "pass"], repeats)
    libraries, _ = timings([sys.executable, "-c", "import numpy, typer, rich"], repeats)
    fit_s = statistics.median(inside)
    print(f"    the same fit in-process {fit_s:.3f} s: the whole process takes {min(wall) / fit_s:.1f}x "
          f"that; "
          f"Python starts in {min(python):.3f} s, and importing numpy, typer and rich (what every command "
          f"pays) takes {min(libraries) - min(python):.3f} s more")
    done = subprocess.run([sys.executable, "-c", IMPORTS_OF_A_FIT.format(table=str(TABLE), k=EXCLUDE_TOP_LOSS,
                                                                         heavy=HEAVY)],
                          cwd=ROOT, capture_output=True, text=True, env=USER_ENV)
    heavy = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    print(f"    heavy libraries a plain fit imports: {heavy or 'none'} (of {', '.join(HEAVY)})")
    return {"name": label, "seconds": min(wall), "median_s": statistics.median(wall),
            "cpu_s": statistics.median(cpu), "in_process_s": fit_s, "target_s": FIT_TARGET_S,
            "ok": min(wall) < FIT_TARGET_S, "heavy_imports": heavy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed compare runs (default 3)")
    parser.add_argument("--fit-repeats", type=int, default=7, help="timed fit runs (default 7)")
    parser.add_argument("--quick", action="store_true", help="no exhaustive in-process run")
    parser.add_argument("--summary", help="also write the measurements as JSON here")
    args = parser.parse_args()
    require_shared(TABLE)
    compileall.compile_dir(str(ROOT / "scaling_cli"), quiet=1)
    print(f"compare and the paper fit, whole processes and in-process; {load_note()}")
    rows = [whole_compare(args.repeats)]
    compared = in_process(args.quick)
    rows += [compared] if compared else []
    rows.append(paper_fit(args.fit_repeats))
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)
    sys.exit(0 if compared is None or compared["ok"] else 1)


if __name__ == "__main__":
    main()
