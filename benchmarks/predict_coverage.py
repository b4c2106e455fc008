"""Simulated coverage of `scalefit predict`'s intervals inside the design (the bigger version of the
test in tests/test_predict.py).

    .venv/bin/python benchmarks/predict_coverage.py [--tables 200] [--points 50] [--rows 150]
    .venv/bin/python benchmarks/predict_coverage.py --tables 100 --bootstrap 500   # and the bootstrap's

Each table: `--rows` runs drawn from a known decomposed law (exponents near the paper's) on a
log-uniform design (width 256-4096, depth 4-48, tokens 1e9-3e11) with 0.5% log-normal noise, fitted
with log-ls. At `--points` new points inside the fitted ranges it checks whether the 95% confidence
interval covers the true law and whether the 95% prediction interval covers a new noisy run. One
standard error of a coverage near 0.95 is printed beside it (it ignores the correlation of the points
of one table, so it is a lower bound).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import numpy as np  # noqa: E402
from common import load_note  # sets BLAS to one thread

TRUTH = np.array([300.0, 0.98, 8.0, 1.2, 500.0, 0.30, 1.75])
NOISE = 0.005


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--rows", type=int, default=150)
    parser.add_argument("--bootstrap", type=int, default=0,
                        help="also check the bootstrap's intervals, with this many case resamples per table")
    args = parser.parse_args(argv)
    from scaling_cli.bootstrap import bootstrap
    from scaling_cli.fitting import fit
    from scaling_cli.forms import get_form
    from scaling_cli.io import Runs

    print(load_note())
    form = get_form("decomposed")
    rng = np.random.default_rng(0)
    ci_hits = pi_hits = total = 0
    boot_ci = boot_pi = 0
    for _ in range(args.tables):
        n = args.rows
        X = {"m": np.exp(rng.uniform(np.log(256), np.log(4096), n)).round(),
             "l": np.exp(rng.uniform(np.log(4), np.log(48), n)).round(),
             "D": np.exp(rng.uniform(np.log(1e9), np.log(3e11), n))}
        loss = form.predict(TRUTH[None, :], X)[0] * np.exp(rng.normal(0, NOISE, n))
        data = {"width": X["m"], "depth": X["l"], "tokens": X["D"], "loss": loss}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit(Runs("<sim>", None, data, {k: k for k in data}, n), form)
        new = {s: np.exp(rng.uniform(np.log(lo), np.log(hi), args.points))
               for s, (lo, hi) in result.ranges.items()}
        truth = form.predict(TRUTH[None, :], new)[0]
        observed = truth * np.exp(rng.normal(0, NOISE, args.points))
        p = result.predict(new)
        ci_hits += int(np.sum((p.ci[:, 0] <= truth) & (truth <= p.ci[:, 1])))
        pi_hits += int(np.sum((p.pi[:, 0] <= observed) & (observed <= p.pi[:, 1])))
        total += args.points
        if args.bootstrap:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b = bootstrap(Runs("<sim>", None, data, {k: k for k in data}, n), form, n=args.bootstrap,
                              seed=total, fit_result=result).predict(new)
            boot_ci += int(np.sum((b.ci[:, 0] <= truth) & (truth <= b.ci[:, 1])))
            boot_pi += int(np.sum((b.pi[:, 0] <= observed) & (observed <= b.pi[:, 1])))
    se = math.sqrt(0.95 * 0.05 / total)
    print(f"{args.tables} tables x {args.points} points ({args.rows} rows each):")
    print(f"  95% confidence interval covers the true law: {ci_hits / total:.3f} (+- {se:.3f})")
    print(f"  95% prediction interval covers a new run:    {pi_hits / total:.3f} (+- {se:.3f})")
    if args.bootstrap:
        print(f"  bootstrap ({args.bootstrap} case resamples): CI {boot_ci / total:.3f}, "
              f"PI {boot_pi / total:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
