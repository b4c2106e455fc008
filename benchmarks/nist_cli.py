"""NIST StRD through the CLI's default path, as a new user would run it (issue 9's acceptance).

    .venv/bin/python benchmarks/nist_cli.py [NAME ...]

Each of the 27 problems is written as a CSV table and a form file (`objective: ls`; `init` = NIST's
Start 1, Start 2, or no init at all) and run as `scalefit fit DATA.csv --config FORM.yaml --json OUT`
with no other option (in-process, through the same click entry point). A start passes when the fit
says converged, the certified parameters agree to 6 significant digits and the certified standard
deviations to 3 (Lanczos1: parameters only). Without init, the parameters are compared up to the
model's symmetries (terms in another order, Eckerle4's signs), as `tests/test_nist.py` does.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main(names: list[str]) -> int:
    from test_nist import (
        MODELS,
        PARAMETER_DIGITS,
        PARAMETERS_ONLY,
        STDERR_DIGITS,
        digits,
        same_optimum,
        write_problem,
    )
    from typer.testing import CliRunner

    from scaling_cli.cli import app

    runner = CliRunner()
    names = names or list(MODELS)
    passed = {"start1": 0, "start2": 0, None: 0}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for start in ("start1", "start2", None):
            for name in names:
                nist, data, form = write_problem(name, start, folder)
                out = folder / "fit.json"
                t0 = time.perf_counter()
                args = ["fit", str(data), "--config", str(form), "--json", str(out), "-q"]
                result = runner.invoke(app, args)
                seconds = time.perf_counter() - t0
                if result.exit_code != 0:
                    print(f"{name:10s} {start!s:7s} FAIL exit {result.exit_code}: {result.output.strip()}")
                    continue
                doc = json.loads(out.read_text())
                if start is None:
                    ok = doc["converged"] and same_optimum(doc, nist, name)
                else:
                    ok = doc["converged"] and all(digits(doc["params"][b]["value"], c) >= PARAMETER_DIGITS
                                                  for b, c in nist["certified"].items())
                    if name not in PARAMETERS_ONLY:
                        ok = ok and all(digits(doc["params"][b]["stderr"], c) >= STDERR_DIGITS
                                        for b, c in nist["stderr"].items())
                passed[start] += bool(ok)
                print(f"{name:10s} {start!s:7s} {'ok  ' if ok else 'MISS'} rss {doc['stats']['rss']:.6g} "
                      f"(certified {nist['rss']:.6g}) {seconds:.2f} s", flush=True)
    n = len(names)
    print(f"Start 1: {passed['start1']}/{n}, Start 2: {passed['start2']}/{n}, no init: {passed[None]}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
