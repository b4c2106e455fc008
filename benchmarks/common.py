"""What every benchmark shares: where the data are, one BLAS thread for in-process comparisons, the
machine's load, and the `scalefit` command. Import it before numpy (it sets the BLAS variables)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

USER_ENV = dict(os.environ)  # the environment a user runs `scalefit` in: whole-process timings use it
# One BLAS thread for the in-process comparisons: on a busy 2-core machine OpenBLAS's threads make the
# scipy loops 3-10x slower and erratic, which would flatter scalefit. scalefit's batched solver takes
# the same time either way (measured). Set before numpy is imported.
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
for _var in BLAS_THREAD_VARS:
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MISSING_SHARED = ("benchmark data not found: expected {path} (the published run tables live in ../shared "
                  "beside the repository)")


def require_shared(*paths: Path) -> None:
    """Exit with status 2 and a clear message when a benchmark table is missing."""
    for path in paths:
        if not path.exists():
            print(MISSING_SHARED.format(path=path), file=sys.stderr)
            sys.exit(2)


def load_note() -> str:
    """The load average, so that a reader can tell a busy machine from a slow program."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def scalefit_command() -> list[str]:
    """The `scalefit` console script of the running environment (or `python -m scaling_cli`)."""
    script = Path(sys.executable).parent / "scalefit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "scaling_cli"]
