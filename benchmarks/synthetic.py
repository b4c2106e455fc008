"""Synthetic checkpoint tables for the big-table benchmarks: runs of the decomposed law, each logged at
many token counts, with log-normal noise.

    .venv/bin/python benchmarks/synthetic.py 100000 /tmp/runs_1e5.csv [--seed 0]

A table of `rows` rows has about sqrt(rows) runs (at least 8), each with a width and a depth drawn from
the values people use and `rows / runs` checkpoints log-spaced over its own token range. Columns:
run, d_model, n_layers, num_tokens, loss (the names `scalefit` detects by itself).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

TRUTH = {"c_m": 275.0, "alpha_m": 0.98, "c_l": 6.7, "alpha_l": 1.2, "c_D": 530.0, "alpha_D": 0.30,
         "L0": 1.75}
WIDTHS = (256, 384, 512, 640, 768, 1024, 1280, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192)
DEPTHS = (4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80)
NOISE_SIGMA = 0.005


def make_table(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The columns of a synthetic checkpoint table with exactly `rows` rows."""
    rng = np.random.default_rng(seed)
    runs = max(8, int(math.sqrt(rows)))
    per_run = np.full(runs, rows // runs)
    per_run[: rows - per_run.sum()] += 1
    width = rng.choice(np.array(WIDTHS, dtype=float), size=runs)
    depth = rng.choice(np.array(DEPTHS, dtype=float), size=runs)
    final = 10 ** rng.uniform(10, 12, size=runs)  # each run's last checkpoint
    run = np.repeat(np.arange(runs), per_run)
    # checkpoints log-spaced from 1/100 of the run's tokens to all of them
    position = np.concatenate([np.linspace(0.0, 1.0, k) if k > 1 else np.ones(1) for k in per_run])
    tokens = final[run] * 10 ** (2 * (position - 1))
    m, ell = width[run], depth[run]
    t = TRUTH
    law = (t["c_m"] * m ** -t["alpha_m"] + t["c_l"] * ell ** -t["alpha_l"]
           + t["c_D"] * tokens ** -t["alpha_D"] + t["L0"])
    loss = law * np.exp(rng.normal(0.0, NOISE_SIGMA, size=rows))
    return {"run": run, "d_model": m, "n_layers": ell, "num_tokens": tokens, "loss": loss}


def write_table(rows: int, path: Path, seed: int = 0) -> Path:
    """Write `make_table(rows, seed)` as CSV to `path` (full precision)."""
    columns = make_table(rows, seed)
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        out.write(",".join(columns) + "\n")
        data = np.column_stack([np.asarray(c, dtype=float) for c in columns.values()])
        np.savetxt(out, data, delimiter=",", fmt=["%d", "%d", "%d", "%.10e", "%.10g"])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("path", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_table(args.rows, args.path, args.seed)


if __name__ == "__main__":
    sys.exit(main())
