"""Run every benchmark and print a summary of measured times against their targets (`make bench`).

    .venv/bin/python benchmarks/run_all.py            # full: the Epoch grid alone takes a minute or more
    .venv/bin/python benchmarks/run_all.py --quick    # the Epoch grid on 300 of its 4,500 starts, no
                                                      # 100,000-resample memory run

Each benchmark runs in its own process (each pins BLAS to one thread for its in-process comparisons and
times `scalefit` itself in the environment it was given). Timings are reported, not asserted: the exit
code is 1 when scalefit reaches a worse objective than a competitor, 2 when ../shared is missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_benchmark(script: str, args: list[str], summary_dir: Path) -> tuple[int, list[dict]]:
    """Run one benchmark script, its report going straight to the terminal; its exit code and summary."""
    summary = summary_dir / f"{Path(script).stem}.json"
    print("=" * 30, " ".join([script, *args]), "=" * 30, flush=True)
    code = subprocess.run([sys.executable, str(HERE / script), *args, "--summary", str(summary)]).returncode
    print(flush=True)
    rows = json.loads(summary.read_text(encoding="utf-8")) if summary.exists() else []
    return code, rows


def _verdict(ok: bool, failed: str = "MISSED") -> str:
    return "ok" if ok else failed


def bootstrap_lines(rows: list[dict]) -> list[str]:
    """The bootstrap benchmark's rows: each says what it measured and whether the target was met."""
    lines = []
    for row in rows:
        if "median_s" in row:
            lines.append(f"{row['name']}\n    median {row['median_s']:.2f} s; "
                         f"target < {row['target_s']:g} s: {_verdict(row['ok'])}")
        elif "speedup" in row:
            agree = (f"; agreement {row['max_rel_difference']:.1e}" if "agreement_ok" in row else "")
            lines.append(f"{row['name']}\n    {row['speedup']:.0f}x (target >= {row['target_speedup']:g}x: "
                         f"{_verdict(row['ok'])}); scipy lower on {row['scipy_lower']}{agree}")
        elif "peak_mib" in row:
            lines.append(f"{row['name']}\n    {row['peak_mib']:.0f} MiB; target <= {row['target_mib']} MiB: "
                         f"{_verdict(row['ok'])}")
    return lines


def big_table_lines(rows: list[dict]) -> list[str]:
    """The big-table benchmark's rows: fit and bootstrap per table size, the subsampled grid against the
    exhaustive one, and the published-table targets."""
    lines = []
    for row in rows:
        if "rows" in row and "fit_s" in row:
            targets = "".join(
                f"; {what} target < {row[key]:g} s: {_verdict(row[measured] < row[key])}"
                for what, key, measured in (("fit", "fit_target_s", "fit_s"),
                                            ("bootstrap", "bootstrap_target_s", "bootstrap_s"))
                if row.get(key) is not None)
            lines.append(f"{row['rows']:,} rows: fit {row['fit_s']:.2f} s / {row['fit_peak_mib']:.0f} MiB, "
                         f"bootstrap --n {row['bootstrap_n']} {row['bootstrap_s']:.1f} s / "
                         f"{row['bootstrap_peak_mib']:.0f} MiB{targets}")
        elif "exhaustive_s" in row:
            lines.append(f"{row['name']} ({row['rows']:,} rows)\n    {row['speedup']:.1f}x faster; objective "
                         f"{row['relative_objective']:+.1e} relative: {_verdict(row['ok'], 'WORSE')}")
        elif "general_s" in row:
            lines.append(f"{row['name']} ({row['rows']:,} rows)\n    {row['speedup']:.1f}x faster; "
                         f"parameters agree to {row['max_rel_diff']:.1e}: {_verdict(row['ok'], 'DIFFERENT')}")
        elif "target_s" in row:
            lines.append(f"{row['name']}\n    {row['seconds']:.2f} s; target < {row['target_s']:g} s: "
                         f"{_verdict(row['ok'])}")
    return lines


def plot_lines(rows: list[dict]) -> list[str]:
    """The figure benchmark's rows: each case's figures against plain matplotlib and its fit, and what
    the figures add to the whole process."""
    lines = []
    for row in rows:
        if row.get("figure") == "all" and "fit_s" in row:
            lines.append(f"figures of the {row['case']} fit\n    {row['scalefit_s']:.2f} s vs "
                         f"{row['plain_s']:.2f} s in plain matplotlib = {row['ratio']:.2f}x; "
                         f"{row['scalefit_s'] / row['fit_s']:.1f}x the fit's {row['fit_s']:.2f} s")
        elif "figures_s" in row:
            lines.append(f"figures in the whole process (matplotlib's import included)\n    "
                         f"{row['figures_s']:.2f} s CPU")
    return lines


def summary_lines(fit_rows: list[dict], epoch_rows: list[dict]) -> list[str]:
    """One entry per target: what was measured, the target, and whether it was met."""
    lines = []
    for row in fit_rows[:2]:
        lines.append(f"{row['name'].strip()}\n"
                     f"    best {row['best_s']:.3f} s, median {row['median_s']:.3f} s; "
                     f"target < {row['target_s']} s: best {_verdict(row['best_ok'])}, "
                     f"median {_verdict(row['ok'])}")
    for lsq in fit_rows[2:]:
        lines.append("in-process decomposed fit vs scipy least_squares multi-start\n"
                     f"    {lsq['ours_s']:.3f} s vs {lsq['theirs_s']:.2f} s = {lsq['speedup']:.0f}x faster; "
                     f"objective {lsq['ours_objective']:.10e} vs {lsq['theirs_objective']:.10e}: "
                     f"{_verdict(lsq['ok'], 'WORSE')}")
    for epoch in epoch_rows:
        lines.append(f"{epoch['name']}\n"
                     f"    {epoch['ours_s']:.3f} s vs {epoch['theirs_s']:.1f} s = {epoch['speedup']:.0f}x "
                     f"faster (target >= {epoch['target']:.0f}x: {_verdict(epoch['fast_enough'])}); "
                     f"whole process {epoch['ours_process_s']:.2f} s\n"
                     f"    objective {epoch['ours_objective']:.12e} vs {epoch['theirs_objective']:.12e}: "
                     f"{_verdict(epoch['ok'], 'WORSE')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="subsample the Epoch grid's starts")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fit_code, fit_rows = run_benchmark("bench_fit.py", [], Path(tmp))
        epoch_code, epoch_rows = run_benchmark("bench_epoch_huber.py", ["--quick"] if args.quick else [],
                                               Path(tmp))
        boot_code, boot_rows = run_benchmark("bench_bootstrap.py", ["--no-memory"] if args.quick else [],
                                             Path(tmp))
        opt_code, opt_rows = run_benchmark("bench_optimize.py", [], Path(tmp))
        big_code, big_rows = run_benchmark("bench_big_tables.py", ["--quick"] if args.quick else [],
                                           Path(tmp))
        plot_code, plot_rows = run_benchmark("bench_plots.py", ["--repeats", "3"] if args.quick else [],
                                             Path(tmp))
        cmp_code, cmp_rows = run_benchmark("bench_compare.py", ["--quick"] if args.quick else [], Path(tmp))
    codes = (fit_code, epoch_code, boot_code, opt_code, big_code, plot_code, cmp_code)
    if 2 in codes:
        return 2
    print("=" * 30, f"summary ({time.perf_counter() - t0:.0f} s)", "=" * 30)
    for line in (summary_lines(fit_rows, epoch_rows) + bootstrap_lines(boot_rows) + bootstrap_lines(opt_rows)
                 + big_table_lines(big_rows) + big_table_lines(cmp_rows) + plot_lines(plot_rows)):
        print(line)
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
