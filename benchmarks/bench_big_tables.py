"""Big tables: whole-process wall time and peak memory of `scalefit fit` and `scalefit bootstrap` on
synthetic checkpoint tables of 10^2 to 10^6 rows, the subsampled grid against the exhaustive one in the
same run, and the other big-table targets of issue 10 (GPT-3 curves, `compare` of the shipped forms).

    .venv/bin/python benchmarks/bench_big_tables.py [--rows 100 1000 10000 100000 1000000]
                                                    [--boot-n 1000] [--boot-max-rows 100000] [--quick]
                                                    [--repeats 3]

Measures, in one run:
  1. for every row count: `scalefit fit TABLE --quiet` (targets: 10^5 rows < 2 s, 10^6 rows < 15 s and
     < 1.5 GiB) and `scalefit bootstrap TABLE --n 1000 --quiet` (target at 10^5 rows: < 30 s; the
     default --jobs 0 uses every CPU for work this big) as whole processes, wall time and peak RSS of
     that process (os.wait4); above --boot-max-rows the bootstrap runs 50 resamples, to measure its
     memory (target < 1.5 GiB at 10^6 rows);
  2. in-process on the 10^4-row table: the global search with the grid on a 512-row subsample against
     the exhaustive grid on every row (today's method until this change): both times, the ratio, and
     both objectives (they must agree to 1e-10 relative: exit code 1 otherwise);
  3. in-process on the 10^5-row table (10^4 with --quick), one process: a group bootstrap of 100 with
     the solver's power-sum kernel against the general Jacobian path, same draws (parameters must agree
     to 1e-6 relative: exit code 1 otherwise);
  4. in-process on GPT-3's joined curves, one process: a group bootstrap of 1,000 (200 with --quick) with
     steps that skip the runs a resample leaves out against plain blocks over every row, same draws
     (objectives must agree to 1e-9 relative: exit code 1 otherwise; parameters agree to 1e-6 except in
     flat valleys, where rounding moves where a solve stops);
  5. `scalefit fit` of GPT-3's joined curves (target < 1 s) and their group bootstrap of 1,000
     (target < 10 s), `scalefit compare` of the seven forms in configs/ on the Chinchilla table
     (target < 4 s), all whole processes, each the median of --repeats runs (the best beside it).
Tables are written to a temporary directory by `synthetic.py` (about sqrt(rows) runs, each logged at
rows / runs token counts). Timings are printed, not asserted; the machine is shared, so read absolute
times with the printed load average, and the ratios of item 2 as the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from common import ROOT, SHARED, USER_ENV, load_note, require_shared, scalefit_command  # sets BLAS
from synthetic import write_table

ROWS = (100, 1_000, 10_000, 100_000, 1_000_000)
FIT_TARGETS_S = {100_000: 2.0, 1_000_000: 15.0}
BOOT_TARGETS_S = {100_000: 30.0}
MEMORY_TARGET_MIB = 1.5 * 1024
GPT3_CURVES, GPT3_CONFIGS = SHARED / "data" / "gpt3_curves.csv", SHARED / "data" / "gpt3_configs.csv"
CHINCHILLA = SHARED / "data" / "chinchilla_width_depth.csv"
GPT3_ARGS = ["--configs", str(GPT3_CONFIGS), "--on", "model=model_name", "--drop-missing", "--column",
             "tokens=step"]
SAME_OPTIMUM_RTOL = 1e-10


def measure(args: list[str]) -> tuple[float, float, str]:
    """Wall time (s) and peak RSS (MiB) of one whole `scalefit` process, and its stderr; exits on failure."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen([*scalefit_command(), *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=err, env=USER_ENV)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - t0
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if process.returncode != 0:
        sys.exit(f"`scalefit {' '.join(args)}` failed with exit code {process.returncode}:\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024, stderr


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f" (target < {target:g}: {'meets' if value < target else 'MISSES'})"


def table_rows(rows: list[int], boot_n: int, boot_max_rows: int, tmp: Path) -> list[dict]:
    print(f"{'rows':>9}  {'fit wall':>9} {'fit peak':>9}   {'bootstrap':>26} {'peak':>9}")
    out = []
    for n in rows:
        path = write_table(n, tmp / f"runs_{n}.csv")
        fit_s, fit_mib, _ = measure(["fit", str(path), "--quiet"])
        resamples = boot_n if n <= boot_max_rows else 50
        boot_s, boot_mib, _ = measure(["bootstrap", str(path), "--n", str(resamples), "--quiet"])
        print(f"{n:>9,}  {fit_s:8.2f}s {fit_mib:7.0f}MiB   --n {resamples:<5} {boot_s:8.1f}s "
              f"{resamples / boot_s:6.0f} fits/s {boot_mib:7.0f}MiB"
              f"{verdict(fit_s, FIT_TARGETS_S.get(n))}{verdict(boot_s, BOOT_TARGETS_S.get(n))}"
              f"{verdict(max(fit_mib, boot_mib), MEMORY_TARGET_MIB if n >= 1_000_000 else None)}")
        out.append({"rows": n, "fit_s": fit_s, "fit_peak_mib": fit_mib, "bootstrap_n": resamples,
                    "bootstrap_s": boot_s, "bootstrap_peak_mib": boot_mib,
                    "fit_target_s": FIT_TARGETS_S.get(n), "bootstrap_target_s": BOOT_TARGETS_S.get(n)})
    return out


def subsample_against_exhaustive(path: Path) -> dict:
    """In-process: the global search as shipped (grid on a subsample) against the exhaustive grid."""
    import scaling_cli.search as search
    from scaling_cli import load_runs
    from scaling_cli.fitting import fit

    runs = load_runs(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(runs, "decomposed")  # warm-up
        t0 = time.perf_counter()
        fast = fit(runs, "decomposed")
        fast_s = time.perf_counter() - t0
        shipped = search.GRID_ROWS
        search.GRID_ROWS = 10 * len(runs)
        try:
            t0 = time.perf_counter()
            exhaustive = fit(runs, "decomposed")
            slow_s = time.perf_counter() - t0
        finally:
            search.GRID_ROWS = shipped
    rel = (fast.objective_value - exhaustive.objective_value) / exhaustive.objective_value
    ok = rel <= SAME_OPTIMUM_RTOL
    print(f"\nin-process fit of {len(runs):,} rows: grid on a {shipped}-row subsample {fast_s:.2f} s vs "
          f"exhaustive grid on every row {slow_s:.2f} s = {slow_s / fast_s:.1f}x faster\n"
          f"    objectives {fast.objective_value:.12e} vs {exhaustive.objective_value:.12e} "
          f"({rel:+.1e} relative; must be <= {SAME_OPTIMUM_RTOL:g}: {'ok' if ok else 'WORSE'})")
    return {"name": "subsampled vs exhaustive grid", "rows": len(runs), "ours_s": fast_s,
            "exhaustive_s": slow_s, "speedup": slow_s / fast_s, "relative_objective": rel, "ok": ok}


def shipped_and_replaced(runs, resamples: int, owner, name: str, replacement, **options):
    """A bootstrap of `runs` in one process as shipped, then with `owner.name` replaced by `replacement`
    (put back after), from the same fit and seed: (shipped result, its seconds, replaced, seconds)."""
    from scaling_cli.bootstrap import bootstrap
    from scaling_cli.fitting import fit

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(runs, "decomposed")
        shipped = getattr(owner, name)
        for replace in (False, True):
            if replace:
                setattr(owner, name, replacement)
            try:
                t0 = time.perf_counter()
                out += [bootstrap(runs, n=resamples, seed=0, jobs=1, fit_result=result, **options),
                        time.perf_counter() - t0]
            finally:
                setattr(owner, name, shipped)
    return tuple(out)


def kernel_against_general(path: Path, resamples: int) -> dict:
    """In-process, one process: a group bootstrap with the solver's power-sum kernel (every derivative
    from the powers, no Jacobian formed) against the general Jacobian path it replaced, same draws."""
    import numpy as np

    from scaling_cli import load_runs
    from scaling_cli.forms import Decomposed

    runs = load_runs(path)
    # percentile intervals: the solver alone (the studentized default adds each resample's CR2)
    fast, fast_s, general, slow_s = shipped_and_replaced(runs, resamples, Decomposed, "power_sum",
                                                         lambda self: None, ci="percentile")
    both = (fast.status == 0) & (general.status == 0)
    diff = float(np.max(np.abs(fast.draws[both] - general.draws[both])
                        / np.maximum(np.abs(general.draws[both]), 1e-12)))
    ok = diff <= 1e-6
    print(f"\nin-process group bootstrap of {resamples} on {len(runs):,} rows, one process: "
          f"power-sum kernel {fast_s:.2f} s vs general Jacobian path {slow_s:.2f} s = "
          f"{slow_s / fast_s:.1f}x faster\n    largest relative difference of a parameter over "
          f"{int(both.sum())} resamples both solved: {diff:.1e} "
          f"(must be <= 1e-6: {'ok' if ok else 'DIFFERENT'})")
    return {"name": "power-sum kernel vs general path", "rows": len(runs), "resamples": resamples,
            "ours_s": fast_s, "general_s": slow_s, "speedup": slow_s / fast_s, "max_rel_diff": diff,
            "ok": ok}


def pieces_against_plain(resamples: int) -> dict:
    """In-process, one process: GPT-3's group bootstrap with steps that skip the runs a resample leaves
    out (blocks cut at the runs) against plain blocks over every row, same draws."""
    import numpy as np

    from scaling_cli import load_runs
    from scaling_cli.solve import BatchSolver

    require_shared(GPT3_CURVES, GPT3_CONFIGS)
    runs = load_runs(GPT3_CURVES, configs=GPT3_CONFIGS, on="model=model_name", drop_missing=True,
                     columns={"tokens": "step"})
    # with the pieces never paying: plain blocks throughout
    fast, fast_s, plain, slow_s = shipped_and_replaced(runs, resamples, BatchSolver, "_pieces_may_pay",
                                                       lambda self, K: False, method="group")
    both = (fast.status == 0) & (plain.status == 0)
    value = float(np.max(np.abs(fast.values[both] - plain.values[both]) / plain.values[both]))
    rel = np.max(np.abs(fast.draws[both] - plain.draws[both]) / np.maximum(np.abs(plain.draws[both]), 1e-12),
                 axis=1)
    ok = value <= 1e-9
    print(f"\nin-process group bootstrap of {resamples} on GPT-3's curves, one process: steps skipping "
          f"left-out runs {fast_s:.2f} s vs plain blocks {slow_s:.2f} s = {slow_s / fast_s:.2f}x faster\n"
          f"    {int(both.sum())} resamples both solved: objectives within {value:.1e} relative (must be "
          f"<= 1e-9: {'ok' if ok else 'DIFFERENT'}); parameters within 1e-6 on {int((rel <= 1e-6).sum())}, "
          f"the rest in flat valleys, where rounding moves where a solve stops (largest {rel.max():.1e})")
    return {"name": "group blocks vs plain blocks (GPT-3)", "resamples": resamples, "ours_s": fast_s,
            "plain_s": slow_s, "speedup": slow_s / fast_s, "max_rel_objective": value, "ok": ok}


def published(quick: bool, repeats: int) -> list[dict]:
    require_shared(GPT3_CURVES, GPT3_CONFIGS, CHINCHILLA)
    checks = [("scalefit fit (GPT-3 curves, 6,506 rows)", ["fit", str(GPT3_CURVES), *GPT3_ARGS, "--quiet"],
               1.0),
              ("scalefit bootstrap --method group --n 1000 (GPT-3 curves)",
               ["bootstrap", str(GPT3_CURVES), *GPT3_ARGS, "--method", "group", "--group", "model",
                "--n", "1000", "--quiet"], 10.0)]
    forms = sorted(str(p) for p in (ROOT / "configs").glob("*.yaml"))
    checks.append((f"scalefit compare of the {len(forms)} forms in configs/ (Chinchilla, 203 rows)",
                   ["compare", str(CHINCHILLA), *forms, "--exclude-top-loss", "40", "--quiet"], 4.0))
    out = []
    print()
    for label, args, target in checks[:1] if quick else checks:
        # the machine is shared and these runs are short: the median of a few, with the best beside it
        runs = [measure(args) for _ in range(repeats)]
        seconds = statistics.median(r[0] for r in runs)
        best, mib = min(r[0] for r in runs), max(r[1] for r in runs)
        print(f"{label}: median {seconds:.2f} s of {repeats} (best {best:.2f} s), peak {mib:.0f} MiB"
              f"{verdict(seconds, target)}")
        out.append({"name": label, "seconds": seconds, "best_s": best, "repeats": repeats, "peak_mib": mib,
                    "target_s": target, "ok": seconds < target})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--boot-n", type=int, default=1000, help="resamples per bootstrap (default 1000)")
    parser.add_argument("--boot-max-rows", type=int, default=100_000,
                        help="bigger tables bootstrap 50 resamples, for memory (default 100000)")
    parser.add_argument("--quick", action="store_true", help="up to 10^4 rows, 200 resamples")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each GPT-3 and compare check, median reported (default 3)")
    parser.add_argument("--summary", type=Path, help="also write the measurements as JSON here")
    args = parser.parse_args()
    rows = [r for r in args.rows if r <= 10_000] if args.quick else args.rows
    boot_n = 200 if args.quick else args.boot_n
    print(f"synthetic checkpoint tables, decomposed law, whole processes; {load_note()}")
    with tempfile.TemporaryDirectory() as tmp:
        summary = table_rows(rows, boot_n, args.boot_max_rows, Path(tmp))
        compared = subsample_against_exhaustive(write_table(10_000, Path(tmp) / "runs_cmp.csv"))
        kernel = kernel_against_general(write_table(10_000 if args.quick else 100_000,
                                                    Path(tmp) / "runs_kernel.csv"), 50 if args.quick else 100)
    pieces = pieces_against_plain(200 if args.quick else 1000)
    summary = [*summary, compared, kernel, pieces, *published(args.quick, args.repeats)]
    if args.summary:
        args.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    sys.exit(0 if compared["ok"] and kernel["ok"] and pieces["ok"] else 1)


if __name__ == "__main__":
    main()
