"""Extrapolation backtest of `scalefit predict`: fit on the runs below the top 20% by compute, then
count how many of the held-out larger runs fall inside their 95% prediction intervals.

    .venv/bin/python benchmarks/backtest_extrapolation.py [--draws 1000] [--holdout-top 0.2]

Tables (from ../shared/data), each with the law and protocol published for it:
- Chinchilla width/depth (Liu et al. 2026): decomposed law, log-ls, the 40 highest losses dropped;
- Epoch AI's Chinchilla points (Besiroglu et al. 2024): Chinchilla's law, Huber (delta 1e-3) on log
  loss, the 5 highest losses dropped;
- Gemstones `hot.jsonl` (McLeish et al. 2025): decomposed law on the checkpoints, log-ls.
Runs are ordered by FLOP (6 N D when the table has none), as `scalefit compare` does, and the top 20%
held out. For each held-out run: inside the delta-method 95% prediction interval? inside the one from a
case bootstrap (`--draws`; the group bootstrap by run for Gemstones)? The figures are reported as they
come out: nothing is tuned to them. A prediction interval assumes the law still holds beyond the data,
and the residual scale measured inside the data; a shortfall here is the law failing to extrapolate (or
correlated errors), not noise the interval forgot.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np  # noqa: E402
from common import SHARED, require_shared  # sets BLAS to one thread

DATA = SHARED / "data"
TABLES = (
    ("Chinchilla width/depth", DATA / "chinchilla_width_depth.csv", "decomposed", "log-ls", 40, None),
    ("Epoch Chinchilla", DATA / "epoch_chinchilla.csv", "chinchilla", "huber", 5, None),
    ("Gemstones hot", DATA / "gemstones" / "hot.jsonl", "decomposed", "log-ls", 0, "group"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--holdout-top", type=float, default=0.2)
    args = parser.parse_args(argv)
    require_shared(*(t[1] for t in TABLES))
    from scaling_cli import load_runs
    from scaling_cli.bootstrap import bootstrap
    from scaling_cli.compare import holdout_key, holdout_mask, subset
    from scaling_cli.fitting import fit
    from scaling_cli.forms import get_form

    print(f"{'table':<24}{'law':<12}{'train':>6}{'test':>6}{'in 95% PI':>11}{'boot PI':>9}"
          f"{'in 95% CI':>11}{'max beyond':>12}")
    for name, path, form_name, objective, exclude, method in TABLES:
        form = get_form(form_name)
        runs = load_runs(path, require=form.required_columns(), exclude_top_loss=exclude)
        key, _ = holdout_key(runs, "flops")
        test_mask = holdout_mask(key, args.holdout_top)
        train, test = subset(runs, ~test_mask), subset(runs, test_mask)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit(train, form, objective)
            boot = bootstrap(train, form, objective, n=args.draws, seed=0, fit_result=result,
                             method=method or "case")
        observed = form.observed(test)
        delta, perc = result.predict(test), boot.predict(test)
        inside = (delta.pi[:, 0] <= observed) & (observed <= delta.pi[:, 1])
        inside_boot = (perc.pi[:, 0] <= observed) & (observed <= perc.pi[:, 1])
        inside_ci = (delta.ci[:, 0] <= observed) & (observed <= delta.ci[:, 1])
        beyond = max(float(np.max(np.abs(v))) for v in delta.beyond.values())
        n = len(observed)
        print(f"{name:<24}{form_name:<12}{len(train):>6}{n:>6}{f'{inside.sum()} ({inside.mean():.0%})':>11}"
              f"{f'{inside_boot.mean():.0%}':>9}{f'{inside_ci.sum()} ({inside_ci.mean():.0%})':>11}"
              f"{beyond:>10.2f} d")
        rel = (observed - delta.predicted) / observed
        print(f"{'':<24}median relative error of the held-out runs {np.median(rel):+.2%} "
              f"(observed above the prediction when +); residual scale {delta.residual_scale:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
