"""Write the example table `data/example_runs.csv` and its truth `data/example_truth.json`.

The runs follow the decomposed width / depth / data law of Liu, Kangaslahti, Liu & Gore (2026),

    L(m, l, D) = c_m m^-alpha_m + c_l l^-alpha_l + c_D D^-alpha_D + L0,

with the paper's exponents and coefficients near its fit to the Chinchilla runs, times log-normal noise
(loss = law * exp(N(0, sigma))). Widths and depths are drawn independently from the values people
use, and tokens log-uniformly, so that every exponent is pinned by a wide lever arm.

    python scripts/make_example.py                 # the committed files (default seed)
    python scripts/make_example.py --seed 7 --out-dir /tmp/example
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = ROOT / "data"
RUNS_FILE = "example_runs.csv"
TRUTH_FILE = "example_truth.json"
DEFAULT_SEED = 2026
DEFAULT_ROWS = 256
NOISE_SIGMA = 0.005  # log-normal: about 0.5% relative noise on the loss

# The paper's exponents; coefficients and L0 near its Chinchilla fit.
TRUTH = {"c_m": 275.0, "alpha_m": 0.98, "c_l": 6.7, "alpha_l": 1.2, "c_D": 530.0, "alpha_D": 0.30,
         "L0": 1.75}

# Typical transformer widths (d_model) and depths (n_layers), from 256 to 8192 and from 4 to 80.
WIDTHS = (256, 384, 512, 640, 768, 1024, 1280, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192)
DEPTHS = (4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80)
TOKENS_RANGE = (1e9, 1e12)  # drawn log-uniformly

COLUMNS = ("d_model", "n_layers", "num_tokens", "params", "flops", "loss")
DESCRIPTION = ("loss = (c_m d_model^-alpha_m + c_l n_layers^-alpha_l + c_D num_tokens^-alpha_D + L0) "
               "* exp(N(0, noise_sigma)); d_model and n_layers drawn independently and uniformly from "
               "the listed values, num_tokens log-uniform on the range; params = 12 n_layers d_model^2 "
               "(non-embedding), flops = 6 params num_tokens")


def law(width: np.ndarray, depth: np.ndarray, tokens: np.ndarray, truth: dict[str, float] = TRUTH
        ) -> np.ndarray:
    """The noise-free loss of the decomposed law at the given widths, depths and token counts."""
    return (truth["c_m"] * width ** -truth["alpha_m"] + truth["c_l"] * depth ** -truth["alpha_l"]
            + truth["c_D"] * tokens ** -truth["alpha_D"] + truth["L0"])


def make_runs(seed: int = DEFAULT_SEED, rows: int = DEFAULT_ROWS) -> dict[str, np.ndarray]:
    """Draw the design and the noisy losses; returns the table's columns as arrays."""
    rng = np.random.default_rng(seed)
    width = rng.choice(np.array(WIDTHS, dtype=float), size=rows)
    depth = rng.choice(np.array(DEPTHS, dtype=float), size=rows)
    log_lo, log_hi = np.log(TOKENS_RANGE)
    tokens = np.round(np.exp(rng.uniform(log_lo, log_hi, size=rows)))
    loss = law(width, depth, tokens) * np.exp(rng.normal(0.0, NOISE_SIGMA, size=rows))
    params = 12.0 * depth * width**2
    return {"d_model": width, "n_layers": depth, "num_tokens": tokens, "params": params,
            "flops": 6.0 * params * tokens, "loss": loss}


def command(seed: int, rows: int) -> str:
    """The command that regenerates the files (the output directory aside)."""
    return f"python scripts/make_example.py --seed {seed} --rows {rows}"


def truth_document(seed: int = DEFAULT_SEED, rows: int = DEFAULT_ROWS) -> dict:
    """What `example_truth.json` holds."""
    return {
        "form": "decomposed",
        "params": dict(TRUTH),
        "noise": {"kind": "log-normal", "sigma": NOISE_SIGMA},
        "seed": seed,
        "n_rows": rows,
        "design": {"d_model": list(WIDTHS), "n_layers": list(DEPTHS), "num_tokens": list(TOKENS_RANGE)},
        "description": DESCRIPTION,
        "command": command(seed, rows),
    }


def write(out_dir: Path, seed: int = DEFAULT_SEED, rows: int = DEFAULT_ROWS) -> tuple[Path, Path]:
    """Write the table and its truth into `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = make_runs(seed, rows)
    runs_path, truth_path = out_dir / RUNS_FILE, out_dir / TRUTH_FILE
    # Fixed formats, so that the same seed gives the same bytes on every platform.
    formats = {"d_model": "{:.0f}", "n_layers": "{:.0f}", "num_tokens": "{:.0f}", "params": "{:.0f}",
               "flops": "{:.6e}", "loss": "{:.6f}"}
    with open(runs_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(rows):
            writer.writerow([formats[c].format(runs[c][i]) for c in COLUMNS])
    truth_path.write_text(json.dumps(truth_document(seed, rows), indent=2) + "\n", encoding="utf-8")
    return runs_path, truth_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"default {DEFAULT_SEED}")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"default {DEFAULT_ROWS}")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="default: data/")
    args = parser.parse_args(argv)
    if args.rows < 8:
        parser.error("--rows must be at least 8 (the law has 7 parameters)")
    runs_path, truth_path = write(args.out_dir, args.seed, args.rows)
    print(f"wrote {runs_path} ({args.rows} runs) and {truth_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
