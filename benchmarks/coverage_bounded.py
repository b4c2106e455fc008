"""Which Jacobian interval for a parameter bounded below by 0: cut at the bound, or on the log scale?

    .venv/bin/python benchmarks/coverage_bounded.py [--datasets 400] [--seed 0]

The same simulation as benchmarks/coverage.py (the decomposed law fitted to the paper's 203 rows as the
truth, its design, log-normal noise at the fit's residual SD), without the bootstrap: each simulated table
is refitted and three 95% intervals of every parameter are checked against the truth:
- symmetric: value ± t·se (can reach below 0);
- cut: the symmetric one cut at the lower bound (what `fit` reports, `fitting.interval_for`); it covers
  the truth exactly when the symmetric one does, since the truth respects the bound;
- log-scale: lower + (value − lower)·exp(±t·se/(value − lower)) where the symmetric one crosses the bound.
With 400 tables one coverage is measured to about ±0.011. Measured (400 tables, seed 0): c_m 0.888
symmetric and cut, 0.865 log-scale; c_l 0.880 and 0.900; the other parameters identical.
"""

from __future__ import annotations

import argparse
import math
import warnings

import common  # noqa: F401  (one BLAS thread; before numpy)
import numpy as np
from common import require_shared
from coverage import TABLE, chinchilla_design, simulated_runs


def log_scale(value: float, se: float, t: float, lower: float) -> tuple[float, float]:
    if not math.isfinite(se):
        return math.nan, math.nan
    if math.isfinite(lower) and value - t * se < lower < value:
        factor = math.exp(min(t * se / (value - lower), 700.0))
        return lower + (value - lower) / factor, lower + (value - lower) * factor
    return value - t * se, value + t * se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    require_shared(TABLE)
    from scaling_cli import fit, get_form
    from scaling_cli.fitting import t_quantile

    design = chinchilla_design()
    lower = np.array([get_form("decomposed").lower.get(p, -math.inf) for p in design.names])
    hits = {"symmetric": [], "cut": [], "log-scale": []}
    for i in range(args.datasets):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a simulated fit may put a parameter on a bound
            result = fit(simulated_runs(design, i, args.seed), "decomposed")
        t = t_quantile(0.975, result.stats.dof)
        est = result.estimates
        intervals = {
            "symmetric": [(e.value - t * e.stderr, e.value + t * e.stderr) for e in est],
            "cut": [e.ci95 for e in est],
            "log-scale": [log_scale(e.value, e.stderr, t, lo) for e, lo in zip(est, lower, strict=True)],
        }
        for kind, iv in intervals.items():
            iv = np.array(iv)
            hits[kind].append((iv[:, 0] <= design.truth) & (design.truth <= iv[:, 1]))
    print(f"coverage of 95% Jacobian intervals over {args.datasets} simulated tables")
    print(f"{'parameter':10s}" + "".join(f"{k:>12s}" for k in hits))
    for j, name in enumerate(design.names):
        print(f"{name:10s}" + "".join(f"{np.mean(h, axis=0)[j]:12.3f}" for h in hits.values()))


if __name__ == "__main__":
    main()
