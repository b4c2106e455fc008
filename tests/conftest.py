"""Shared test helpers: where ../shared is, and running the CLI in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data"
NIST_DIR = SHARED / "nist"
SKIP_SHARED = "../shared (the published run tables and NIST problems) is not beside the repo"


@pytest.fixture(autouse=True, scope="session")
def _own_form_cache(tmp_path_factory):
    """Compiled forms go to a cache of this test session's own (CLI subprocesses inherit it), never to
    the user's ~/.cache/scalefit."""
    import os

    before = os.environ.get("SCALEFIT_CACHE_DIR")
    os.environ["SCALEFIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("scalefit-cache"))
    yield
    if before is None:
        os.environ.pop("SCALEFIT_CACHE_DIR", None)
    else:
        os.environ["SCALEFIT_CACHE_DIR"] = before


def shared_file(*parts: str) -> Path:
    """A file under ../shared, or skip the test saying why."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{SKIP_SHARED}: {path} is missing")
    return path


@pytest.fixture
def chinchilla_wd() -> Path:
    return shared_file("data", "chinchilla_width_depth.csv")


@pytest.fixture
def epoch_csv() -> Path:
    return shared_file("data", "epoch_chinchilla.csv")


@pytest.fixture
def cli():
    """Run `scalefit ARGS...` in-process; returns click's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from scaling_cli.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke
