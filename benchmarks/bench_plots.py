"""What a fit's figures cost, beside the fit itself and beside the same plots drawn the plain matplotlib way.

    .venv/bin/python benchmarks/bench_plots.py [--repeats 7] [--format png|pdf|svg] [--no-process]

Measures, in one run (CPU seconds, so that other processes on a busy machine count less):
  1. the in-process fit of the paper's table (decomposed, `chinchilla_width_depth.csv`) and of Epoch's
     table (chinchilla, Huber, `epoch_chinchilla.csv`);
  2. for each of their figures, building it and saving it (`save_figures`, PNG at 200 dpi by default)
     against a plain matplotlib version of the same plot: pyplot, the same artists, labels, titles and
     legends, matplotlib's default tick labels, `tight_layout()` and `savefig` at the same dpi. Each
     repeat draws scalefit's figure and the baseline back to back; the medians and their ratio are
     printed (below 1: scalefit's figure is cheaper than the plain one);
  3. the whole process, as a user sees it: the CPU time of `scalefit fit TABLE --plot-dir DIR` minus that
     of `scalefit fit TABLE` (the figures with matplotlib's import), median of `--repeats`.
Timings are printed, not asserted: the exit code is 2 when ../shared is missing, else 0.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np  # noqa: E402
from common import ROOT, SHARED, USER_ENV, load_note, require_shared, scalefit_command  # sets BLAS

PAPER = SHARED / "data" / "chinchilla_width_depth.csv"
EPOCH = SHARED / "data" / "epoch_chinchilla.csv"
DPI = 200


def cpu() -> float:
    return time.process_time()


# ---------------------------------------------------------------- plain matplotlib baselines
# The same plots, written the way a user would write them from the fit's arrays: pyplot, default
# formatters, tight_layout. The arrays are computed before the clock starts, like scalefit's figures
# which compute theirs inside the builder (a few milliseconds).


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def baseline_observed_vs_predicted(result, path: Path) -> None:
    plt = _plt()
    obs, pred = np.asarray(result.observed, float), np.asarray(result.predicted, float)
    lo, hi = min(obs.min(), pred.min()) / 1.04, max(obs.max(), pred.max()) * 1.04
    line = np.geomspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    ax.fill_between(line, line * 0.99, line * 1.01, color="0.6", alpha=0.35, lw=0, label="±1%")
    ax.plot(line, line, color="0.25", lw=1, label="observed = predicted")
    ax.scatter(pred, obs, s=14, alpha=0.7, edgecolors="none", label=f"runs (n = {len(obs)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(r"predicted loss $L_{\rm pred}$")
    ax.set_ylabel(r"observed loss $L_{\rm obs}$")
    ax.set_title(f"{result.form.name} fit, objective {result.objective.name}")
    ax.legend(loc="upper left", title=f"RMSE(log) = {result.stats.rmse_log:.2g}")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def baseline_residuals(result, path: Path) -> None:
    plt = _plt()
    r = np.log(np.asarray(result.observed, float)) - np.log(np.asarray(result.predicted, float))
    symbols = [s for s in result.form.variables if s in result.inputs]
    fig, axes = plt.subplots(1, len(symbols), figsize=(3.8 * len(symbols) + 0.6, 3.8), sharey=True)
    for ax, symbol in zip(np.atleast_1d(axes), symbols, strict=True):
        if result.objective.name == "huber":
            ax.axhspan(-result.objective.delta, result.objective.delta, color="0.85", lw=0)
        ax.axhline(0, color="0.25", lw=1)
        ax.scatter(result.inputs[symbol], r, s=12, alpha=0.6, edgecolors="none")
        ax.set_xscale("log")
        ax.set_xlabel(f"{result.form.variables[symbol]} ${symbol}$")
    np.atleast_1d(axes)[0].set_ylabel(r"log residual  $\log L_{\rm obs} - \log L_{\rm pred}$")
    fig.suptitle(f"Residuals of the {result.form.name} fit ({result.objective.name} objective)")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def baseline_partial_terms(result, path: Path) -> None:
    from scaling_cli.plot.fit import _group_means, power_law_band

    plt = _plt()
    theta, cov = np.asarray(result.values, float), np.asarray(result.covariance, float)
    names = list(result.names)
    obs, pred = np.asarray(result.observed, float), np.asarray(result.predicted, float)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.9))
    for ax, (c_name, a_name, symbol) in zip(axes, (("c_m", "alpha_m", "m"), ("c_l", "alpha_l", "l"),
                                                   ("c_D", "alpha_D", "D")), strict=True):
        ic, ia = names.index(c_name), names.index(a_name)
        c, alpha = theta[ic], theta[ia]
        x = np.asarray(result.inputs[symbol], float)
        partial = obs - pred + c * x**-alpha
        shown = partial > 0
        grid = np.geomspace(x.min(), x.max(), 200)
        xs, means, errs = _group_means(x, partial)
        ax.scatter(x[shown], partial[shown], s=12, alpha=0.35, edgecolors="none", label="runs")
        band = power_law_band(c, alpha, cov[np.ix_([ic, ia], [ic, ia])], grid)
        if band is not None:
            ax.fill_between(grid, band[0], band[1], color="C3", alpha=0.2, lw=0, label=r"fit $\pm1\sigma$")
        ax.plot(grid, c * grid**-alpha, color="C3", lw=2, label=f"fit ${c_name}\\,{symbol}^{{-\\{a_name}}}$")
        keep = means > 0
        ax.errorbar(xs[keep], means[keep], yerr=errs[keep], fmt="D", ms=4.5, color="black", capsize=2,
                    label="mean ± s.e.")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"${symbol}$")
        ax.set_ylabel(r"$L_{\rm obs} - L_0 - $ other terms")
        ax.set_title(f"$\\{a_name}$ = {alpha:.3g} ± {math.sqrt(cov[ia, ia]):.2g}")
        ax.legend(loc="lower left")
    fig.suptitle("Decomposed law, one axis at a time: loss minus the other fitted terms")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def baseline_loss_vs_compute(result, path: Path) -> None:
    import matplotlib
    from matplotlib.colors import LogNorm

    plt = _plt()
    N, D = np.asarray(result.inputs["N"], float), np.asarray(result.inputs["D"], float)
    obs, C = np.asarray(result.observed, float), 6 * N * D
    theta = np.asarray(result.values, float)[None, :]
    norm, cmap = LogNorm(vmin=N.min(), vmax=N.max()), matplotlib.colormaps["viridis"]
    c_grid = np.geomspace(C.min(), C.max(), 300)
    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    points = ax.scatter(C, obs, c=N, cmap=cmap, norm=norm, s=16, alpha=0.8, edgecolors="none", label="runs")
    for n_value in np.geomspace(N.min(), N.max(), 5):
        grid = {"N": np.full_like(c_grid, n_value), "D": c_grid / (6 * n_value)}
        curve = result.form.predict(theta, grid)[0]
        ax.plot(c_grid, curve, color=cmap(norm(n_value)), lw=1, ls=":")
        ax.plot(c_grid, curve, color=cmap(norm(n_value)), lw=2, label=f"fit, $N$ = {n_value:.2g}")
    ax.set_xscale("log")
    ax.set_ylim(obs.min() - 0.1, obs.max() + 0.1)
    ax.set_xlabel(r"training compute $C = 6\,N D$ (FLOP)")
    ax.set_ylabel("loss $L$")
    ax.set_title("Chinchilla fit: loss against compute")
    fig.colorbar(points, ax=ax).set_label("parameters $N$")
    fig.legend(loc="lower center", ncols=4)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


BASELINES = {"observed_vs_predicted": baseline_observed_vs_predicted, "residuals": baseline_residuals,
             "partial_terms": baseline_partial_terms, "loss_vs_compute": baseline_loss_vs_compute}


# ---------------------------------------------------------------- measurements


def fit_case(name: str, table: Path, form: str, objective: str | None, repeats: int) -> dict:
    """Fit one table; time the fit, then each figure against its baseline, back to back."""
    from scaling_cli import fit, load_runs
    from scaling_cli.plot import fit_figures, save_figures
    from scaling_cli.plot.fit import loss_vs_compute, observed_vs_predicted, partial_terms, residuals

    builders = {"observed_vs_predicted": observed_vs_predicted, "residuals": residuals,
                "partial_terms": partial_terms, "loss_vs_compute": loss_vs_compute}
    runs = load_runs(table, form=form)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the paper table's collinearity warning
        fit_times = []
        for _ in range(repeats):
            t0 = cpu()
            result = fit(runs, form, objective)
            fit_times.append(cpu() - t0)
    figures = list(fit_figures(result))
    save_figures(fit_figures(result), tempfile.gettempdir() + "/scalefit_bench_warmup", "png")  # warm-up
    ours: dict[str, list[float]] = {f: [] for f in figures}
    plain: dict[str, list[float]] = {f: [] for f in figures}
    with tempfile.TemporaryDirectory() as out:
        for f in figures:
            BASELINES[f](result, Path(out) / f"warm_{f}.png")
        for _ in range(repeats):
            for f in figures:
                t0 = cpu()
                save_figures({f: builders[f](result, labels=None)}, out, ARGS.format)
                ours[f].append(cpu() - t0)
                t0 = cpu()
                BASELINES[f](result, Path(out) / f"plain_{f}.{ARGS.format}")
                plain[f].append(cpu() - t0)
    fit_s = statistics.median(fit_times)
    print(f"\n{name}: {table.name}, {form}, {result.objective.name} ({result.n_points} rows)")
    print(f"  fit (in-process, median of {repeats}):  {fit_s:.3f} s CPU")
    print(f"  {'figure':<24}{'scalefit':>10}{'plain mpl':>11}{'ratio':>8}   (median s CPU, {ARGS.format})")
    rows = []
    for f in figures:
        ours_s, plain_s = statistics.median(ours[f]), statistics.median(plain[f])
        print(f"  {f:<24}{ours_s:>10.3f}{plain_s:>11.3f}{ours_s / plain_s:>8.2f}")
        rows.append({"case": name, "figure": f, "scalefit_s": ours_s, "plain_s": plain_s,
                     "ratio": ours_s / plain_s})
    total_ours, total_plain = sum(r["scalefit_s"] for r in rows), sum(r["plain_s"] for r in rows)
    print(f"  {'all figures':<24}{total_ours:>10.3f}{total_plain:>11.3f}{total_ours / total_plain:>8.2f}"
          f"   = {total_ours / fit_s:.1f}x the fit")
    rows.append({"case": name, "figure": "all", "scalefit_s": total_ours, "plain_s": total_plain,
                 "ratio": total_ours / total_plain, "fit_s": fit_s})
    return {"rows": rows}


def child_cpu(args: list[str]) -> float:
    """CPU seconds (user + system) of one run of `args`, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=USER_ENV)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"`{' '.join(args)}` failed with exit code {done.returncode}:\n{done.stderr}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_process(repeats: int) -> dict:
    command = [*scalefit_command(), "fit", str(PAPER), "--quiet"]
    with tempfile.TemporaryDirectory() as out:
        plots = [*command, "--plot-dir", out, "--plot-format", ARGS.format]
        child_cpu(command), child_cpu(plots)  # warm-up (disk caches, font cache)
        bare, with_plots = [], []
        for _ in range(repeats):
            bare.append(child_cpu(command))
            with_plots.append(child_cpu(plots))
    bare_s, plots_s = statistics.median(bare), statistics.median(with_plots)
    print(f"\nwhole process, `scalefit fit {PAPER.name}` (median of {repeats}, s CPU):")
    print(f"  without --plot-dir {bare_s:.3f}, with --plot-dir {plots_s:.3f}: the figures add "
          f"{plots_s - bare_s:.3f} s (matplotlib's import included)")
    return {"case": "whole process", "figure": "all", "bare_s": bare_s, "with_plots_s": plots_s,
            "figures_s": plots_s - bare_s}


def main(argv: list[str] | None = None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each (default 7)")
    parser.add_argument("--format", default="png", choices=("png", "pdf", "svg"), help="file format")
    parser.add_argument("--no-process", action="store_true", help="skip the whole-process measurement")
    parser.add_argument("--summary", type=Path, help="also write the measurements as JSON to this file")
    ARGS = parser.parse_args(argv)
    require_shared(PAPER, EPOCH)
    print(load_note())
    rows = fit_case("paper table", PAPER, "decomposed", None, ARGS.repeats)["rows"]
    rows += fit_case("Epoch's table", EPOCH, "chinchilla", "huber", ARGS.repeats)["rows"]
    if not ARGS.no_process:
        rows.append(whole_process(ARGS.repeats))
    if ARGS.summary is not None:
        ARGS.summary.write_text(json.dumps(rows, indent=2, default=float) + "\n", encoding="utf-8")
    return 0


ARGS = argparse.Namespace(format="png")

if __name__ == "__main__":
    sys.exit(main())
