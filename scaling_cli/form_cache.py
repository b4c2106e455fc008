"""A cache on disk of compiled YAML forms, so that a process that loads a form compiled before (the
same spec, read from the same source) needs neither sympy's import (half a second) nor its algebra.

An entry is JSON (`CompiledForm.to_data`: names, constants, step function names from a fixed table),
never pickle, and is trusted only as far as it is checked: `Program.from_data` accepts only steps that
read constants, inputs and earlier results with their functions' number of arguments, and
`CompiledForm.fits` (in `spec.parse_form`) only programs, indices and names of the spec being read.
Anything refused is compiled afresh and written again. The key is a SHA-256 of everything the
compiled form depends on: the spec's values and source name, scalefit's version, the source of the
modules that compile (`formula`, `program`, `spec_form`, this one) and the installed sympy (its path
and `release.py`). An edited spec, an edited compiler or another sympy therefore gets its own entry.

Where: `$SCALEFIT_CACHE_DIR`, else `$XDG_CACHE_HOME/scalefit`, else `~/.cache/scalefit`; entries go
in its `forms/`. `SCALEFIT_CACHE_DIR=""` (empty) turns the cache off. The cache never decides a
result: a directory that cannot be read or written only means compiling every time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .spec_form import CompiledForm

ENV = "SCALEFIT_CACHE_DIR"
_COMPILER_MODULES = ("formula.py", "program.py", "spec_form.py", "form_cache.py")


def cache_dir() -> Path | None:
    """The directory of compiled forms, or None when the cache is off."""
    given = os.environ.get(ENV)
    if given is not None:
        return Path(given) / "forms" if given.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scalefit" / "forms"


def _sympy_identity() -> bytes:
    """The installed sympy, without importing it: its path and its release file (which holds its
    version)."""
    import importlib.util

    spec = importlib.util.find_spec("sympy")
    if spec is None or spec.origin is None:
        return b"no sympy"
    release = Path(spec.origin).with_name("release.py")
    try:
        return spec.origin.encode() + release.read_bytes()
    except OSError:
        return spec.origin.encode()


def key(spec: Any, source: str) -> str | None:
    """The cache key of a form spec (the values YAML gave) read from `source`; None when the cache is
    off or the spec's values cannot be written as JSON (then it is simply compiled)."""
    if cache_dir() is None:
        return None
    from . import __version__

    digest = hashlib.sha256()
    try:
        digest.update(json.dumps([spec, source, __version__], sort_keys=True, default=repr).encode())
    except (TypeError, ValueError):  # keys YAML allows and JSON does not (a number beside a string)
        return None
    compiler = _compiler_identity()
    if compiler is None:
        return None
    digest.update(compiler)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _compiler_identity() -> bytes | None:
    """What compiles a form, once per process: the compiling modules' source and the installed sympy."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in _COMPILER_MODULES:
        try:
            digest.update((here / name).read_bytes())
        except OSError:
            return None
    digest.update(_sympy_identity())
    return digest.digest()


def load(entry: str | None) -> CompiledForm | None:
    """The compiled form stored under `entry`, or None (no entry, unreadable, or refused)."""
    directory = cache_dir()
    if entry is None or directory is None:
        return None
    try:
        data = json.loads((directory / f"{entry}.json").read_text(encoding="utf-8"))
        return CompiledForm.from_data(data)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def store(entry: str | None, compiled: CompiledForm) -> None:
    """Write `compiled` under `entry`, atomically (a reader never sees half a file); failures are
    ignored: the cache only saves time."""
    directory = cache_dir()
    if entry is None or directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(compiled.to_data(), out, separators=(",", ":"))
            os.replace(tmp, directory / f"{entry}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except (OSError, TypeError, ValueError):
        return
