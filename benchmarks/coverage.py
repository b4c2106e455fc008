"""Do scalefit's 95% intervals cover the truth 95% of the time? A simulation on the Chinchilla design.

    .venv/bin/python benchmarks/coverage.py [--datasets 400] [--resamples 1000] [--jobs 2] [--seed 0]

The truth is the decomposed law fitted to the paper's 203-row table (`../shared/data/
chinchilla_width_depth.csv --exclude-top-loss 40`); the design is those rows' widths, depths and tokens;
the noise is log-normal with the fit's residual standard deviation, sqrt(RSS / (n - p)). For each
simulated table the law is refitted (global search) and bootstrapped (case and residual resampling,
`--resamples` each); the script prints, per parameter, the fraction of 95% intervals that contain the
true value: the Jacobian (t) interval, and the bootstrap's percentile, basic and BCa intervals. With
400 tables a true coverage of 0.95 is measured to about +-0.011 (one binomial standard error).

`simulate(...)` is also what tests/test_bootstrap.py runs, on a few tables.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "chinchilla_width_depth.csv"
EXCLUDE_TOP_LOSS = 40
LEVEL = 0.95
TARGET = (0.92, 0.98)
METHODS = ("case", "residual")
INTERVALS = ("jacobian", "case percentile", "case basic", "case bca", "residual percentile")


@dataclass(frozen=True)
class Design:
    """The inputs of the simulated tables and the law that generates their losses."""

    X: dict
    truth: np.ndarray  # (P,)
    names: tuple[str, ...]
    sigma: float  # standard deviation of the log noise


def chinchilla_design(table: Path = TABLE) -> Design:
    """The 203 rows' widths, depths and tokens; the full-data fit as the truth; its residual SD."""
    from scaling_cli import fit, load_runs

    runs = load_runs(table, exclude_top_loss=EXCLUDE_TOP_LOSS)
    result = fit(runs, "decomposed")
    sigma = math.sqrt(result.stats.rss / result.stats.dof)
    return Design(dict(result.inputs), result.values.copy(), result.names, sigma)


def simulated_runs(design: Design, index: int, seed: int):
    """Simulated table number `index`: the true law times log-normal noise, as a `Runs`."""
    from scaling_cli import get_form
    from scaling_cli.io import Runs

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    form = get_form("decomposed")
    loss = form.predict(design.truth[None, :], design.X)[0] * np.exp(rng.normal(0.0, design.sigma,
                                                                                len(design.X["m"])))
    data = {"width": design.X["m"], "depth": design.X["l"], "tokens": design.X["D"], "loss": loss}
    roles = {role: role for role in data}
    return Runs(path=f"<simulated table {index}>", sha256=None, data=data, roles=roles, n_total=len(loss))


def one_table(design: Design, index: int, seed: int, resamples: int) -> dict[str, np.ndarray]:
    """Whether each interval of each parameter covers the truth, on simulated table `index`."""
    from scaling_cli import fit
    from scaling_cli.bootstrap import basic_interval, bootstrap, percentile_interval

    runs = simulated_runs(design, index, seed)
    truth = design.truth
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a simulated fit may put a parameter on a bound
        result = fit(runs, "decomposed")
        case = bootstrap(runs, "decomposed", n=resamples, seed=index, ci="bca", fit_result=result)
        residual = bootstrap(runs, "decomposed", n=resamples, seed=index, method="residual",
                             fit_result=result)
    good = case.draws[case.ok]
    intervals = {
        "jacobian": np.array([e.ci95 for e in result.estimates]),
        "case percentile": percentile_interval(good, LEVEL),
        "case basic": basic_interval(good, result.values, LEVEL),
        "case bca": np.array([e.ci for e in case.estimates]),
        "residual percentile": np.array([e.ci for e in residual.estimates]),
    }
    out = {name: (iv[:, 0] <= truth) & (truth <= iv[:, 1]) for name, iv in intervals.items()}
    out["failed"] = np.array([case.n_failed + residual.n_failed])
    return out


def simulate(datasets: int, resamples: int, seed: int = 0, jobs: int = 1,
             design: Design | None = None) -> dict[str, np.ndarray]:
    """Coverage fraction per interval kind and parameter (each (P,)), over `datasets` tables."""
    design = design or chinchilla_design()
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(one_table, [design] * datasets, range(datasets), [seed] * datasets,
                                    [resamples] * datasets, chunksize=4))
    else:
        results = [one_table(design, i, seed, resamples) for i in range(datasets)]
    coverage = {name: np.mean([r[name] for r in results], axis=0) for name in INTERVALS}
    coverage["failed"] = np.array([sum(int(r["failed"][0]) for r in results)])
    return coverage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=400, help="simulated tables (default 400)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per table")
    parser.add_argument("--jobs", type=int, default=2, help="processes (tables are shared out)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not TABLE.exists():
        print(f"coverage data not found: expected {TABLE} (../shared beside the repository)", file=sys.stderr)
        sys.exit(2)
    design = chinchilla_design()
    t0 = time.perf_counter()
    coverage = simulate(args.datasets, args.resamples, args.seed, args.jobs, design)
    seconds = time.perf_counter() - t0
    se = math.sqrt(LEVEL * (1 - LEVEL) / args.datasets)
    print(f"coverage of {100 * LEVEL:g}% intervals over {args.datasets} simulated tables on the Chinchilla "
          f"design ({len(design.X['m'])} rows; log noise sd {design.sigma:.5f}; {args.resamples} resamples "
          f"per bootstrap; {int(coverage['failed'][0])} failed resamples in all; {seconds:.0f} s)")
    print(f"target {TARGET[0]}-{TARGET[1]}; one binomial standard error at 0.95 is {se:.3f}; "
          f"* marks a value outside the target")
    header = f"{'parameter':<10} {'truth':>10}" + "".join(f" {name:>20}" for name in INTERVALS)
    print(header)
    for i, name in enumerate(design.names):
        cells = []
        for kind in INTERVALS:
            value = coverage[kind][i]
            flag = "" if TARGET[0] <= value <= TARGET[1] else "*"
            cells.append(f" {value:>19.3f}{flag or ' '}")
        print(f"{name:<10} {design.truth[i]:>10.4g}" + "".join(cells))


if __name__ == "__main__":
    main()
