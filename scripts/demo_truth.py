"""Print a fit beside the truth it should recover: `make demo` runs it after fitting the example table.

    python scripts/demo_truth.py out/demo/fit.json data/example_truth.json

Reads the fit's JSON (`scalefit fit --json`) and the truth of the synthetic table (`data/example_truth.json`,
written by `scripts/make_example.py`), and prints per parameter the truth, the fit's value ± standard error,
its 95% interval and whether the interval covers the truth. Exits 0 either way: about 1 interval in 20 is
expected to miss.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scaling_cli.report import format_interval, format_value_error  # noqa: E402


def coverage_rows(fit: dict, truth: dict) -> list[tuple[str, str, str, str, str]]:
    """(parameter, truth, value ± error, interval, covers) for every parameter of the truth."""
    rows = []
    for name, true_value in truth["params"].items():
        entry = fit["params"].get(name)
        if entry is None:
            rows.append((name, f"{true_value:g}", "not fitted", "", ""))
            continue
        value, se, (lo, hi) = entry["value"], entry["stderr"], entry["ci95"]
        if lo is None or hi is None:
            rows.append((name, f"{true_value:g}", format_value_error(value, se), "n/a", "n/a"))
            continue
        covers = "yes" if lo <= true_value <= hi else "NO"
        rows.append((name, f"{true_value:g}", format_value_error(value, se),
                     format_interval(lo, hi, se, value=value), covers))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fit_json", type=Path)
    parser.add_argument("truth_json", type=Path)
    args = parser.parse_args(argv)
    fit = json.loads(args.fit_json.read_text())
    truth = json.loads(args.truth_json.read_text())
    rows = coverage_rows(fit, truth)
    header = ("parameter", "truth", "fit ± standard error", "95% interval", "covers")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"the fit beside the truth of {args.truth_json.name} ({truth.get('form', '?')} law, "
          f"{truth.get('n_rows', '?')} rows)")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                        enumerate(zip(row, widths, strict=True))))
    covered = sum(r[4] == "yes" for r in rows)
    print(f"{covered} of {len(rows)} 95% intervals cover the truth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
