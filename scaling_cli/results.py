"""Saved results: the JSON documents of `fit --json` and `bootstrap --json`, and loading them back.

A saved fit is complete: the form (a built-in name, or a YAML form's full text), how the table was read
(the role -> column mapping and the load options), the parameters with their covariance, the
statistics, and the range of every variable fitted (for extrapolation distances). A saved bootstrap adds
every draw and its status, inline or in the `--draws` file written beside it. `load_result(path)`
rebuilds a `FitResult` or `BootstrapResult` whose predictions equal the original's bit for bit (floats
are written with repr, which round-trips exactly).

Loading never executes anything: the document is plain JSON, a built-in form is looked up by name and a
YAML form's text goes through the same allow-list parser as `--config`. A document from a newer
scalefit (a larger `schema_version`) is refused with a `ResultError`.

This module holds the serialization that `fitting`, `bootstrap` and `report` share, so that the
computing and the reporting code import it rather than each other.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from .design import design_from_dict
from .errors import ResultError, ScalefitError

if TYPE_CHECKING:
    from .bootstrap import BootstrapResult
    from .fitting import FitResult
    from .forms import Form

SCHEMA_VERSION = 1
MAX_RESULT_BYTES = 2 * 1024**3  # a saved bootstrap of 100,000 draws is tens of MB; refuse nonsense
NOT_A_RESULT = ("{path}: not a saved scalefit fit (no schema_version); write one with "
                "`scalefit fit --json` or `scalefit bootstrap --json`")


# ---------------------------------------------------------------- plain values


def jsonable(value: Any) -> Any:
    """Plain Python values for JSON: numpy scalars to floats/ints, NaN and inf to None.

    >>> import numpy as np
    >>> jsonable({"a": np.float64(1.5), "b": np.nan, "c": [np.int64(2), np.inf]})
    {'a': 1.5, 'b': None, 'c': [2, None]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def versions(extra: Iterable[str] = (), forms: Iterable[Any] = ()) -> dict[str, str]:
    """Versions of scalefit, Python and the numerical libraries that were imported, and the sympy that
    compiled any of `forms` (a form from the cache of compiled forms is used without importing it)."""
    from . import __version__

    out = {"scalefit": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for name in ("scipy", "lmfit", "pandas", "matplotlib", "sympy", *extra):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "__version__"):
            out[name] = module.__version__
    compiled_by = sorted({f.compiled.sympy for f in forms if hasattr(f, "compiled")})
    if compiled_by:
        out["sympy"] = ", ".join(compiled_by)
    return out


def _float(value: Any, missing: float = math.nan) -> float:
    return missing if value is None else float(value)


def _floats(values: Any, missing: float = math.nan) -> np.ndarray:
    """A JSON list (of lists) of numbers with None for NaN, as a float array."""
    arr = np.array(values if values is not None else [], dtype=object)
    return np.where(arr == None, missing, arr).astype(float)  # noqa: E711 (elementwise)


# ---------------------------------------------------------------- forms


def form_to_dict(form: Form) -> dict:
    """How to rebuild `form`: a built-in name, or a YAML form's text (and where it came from)."""
    from .forms import BUILTIN_FORMS

    text = getattr(form, "text", None)
    if text is None and form.name in BUILTIN_FORMS and type(form) is type(BUILTIN_FORMS[form.name]()):
        return {"builtin": form.name}
    return {"yaml": text, "name": form.name, "source": getattr(form, "source", None)}


def form_from_dict(spec: Mapping[str, Any], where: str) -> Form:
    """The form a `form_spec` describes; a YAML text is parsed by the allow-list parser, never run."""
    from .forms import get_form
    from .spec import parse_form_text

    if not isinstance(spec, Mapping):
        raise ResultError(f"{where}: form_spec must be an object")
    if "builtin" in spec:
        return get_form(str(spec["builtin"]))
    text = spec.get("yaml")
    if not isinstance(text, str):
        raise ResultError(f"{where}: the form '{spec.get('name')}' was saved without its YAML text, so it "
                          f"cannot be rebuilt")
    return parse_form_text(text, str(spec.get("source") or f"{where} (saved form)"))


# ---------------------------------------------------------------- fits


def fit_to_dict(result: FitResult) -> dict:
    """The JSON document of a fit: the documented keys, and what `load_result` needs to rebuild it."""
    doc = {
        "schema_version": SCHEMA_VERSION,
        "form": result.form.name,
        "objective": result.objective.to_dict(result.objective_value),
        "n_points": result.n_points,
        "n_excluded": result.n_excluded,
        "params": {e.name: {"value": e.value, "stderr": e.stderr, "stderr_iid": iid, "ci95": list(e.ci95)}
                   for e, iid in zip(result.estimates, _iid(result), strict=True)},
        "covariance": {"type": result.covariance_type, "ci_dof": result.ci_dof, "names": list(result.names),
                       "matrix": result.covariance,
                       # CR2: each parameter's Bell-McCaffrey degrees of freedom (null: no error)
                       **({"ci_dof_by_param": dict(zip(result.names, result.param_dof, strict=True))}
                          if len(result.param_dof) else {})},
        "groups": ({"column": result.group_column, "count": result.n_groups, "between": list(result.between)}
                   if result.group_column is not None else None),
        "columns": dict(result.columns),
        "design": result.design.to_dict() if result.design is not None else None,
        "stats": {
            "rss": result.stats.rss,
            "rmse_log": result.stats.rmse_log,
            "mean_abs_rel_error": result.stats.mean_abs_rel_error,
            "r2": result.stats.r2,
            "aic": result.stats.aic,
            "bic": result.stats.bic,
            "dof": result.stats.dof,
        },
        "converged": result.converged,
        "at_bound": list(result.at_bound),
        "undetermined": list(result.undetermined),
        "convergence": result.convergence or ("converged" if result.converged else "did not converge"),
        "warnings": list(result.warnings),
        "versions": versions(forms=[result.form]),
        "input": {"path": result.input_path, "sha256": result.input_sha256},
        "form_spec": form_to_dict(result.form),
        "data": {
            "variables": dict(result.form.variables),
            "response": result.form.response,
            "roles": dict(result.roles),
            "load_options": dict(result.load_options),
            "ranges": {symbol: list(bounds) for symbol, bounds in result.ranges.items()},
        },
        "details": {
            "notes": {e.name: e.note for e in result.estimates if e.note},
            "at_bound": list(result.at_bound),
            "undetermined": list(result.undetermined),
            "n_grid": result.n_grid,
            "n_starts": result.n_starts,
            "seconds": result.seconds,
            "table_notes": list(result.notes),
            "covariance_iid": result.covariance_iid,
            "regime_withheld": result.regime_withheld,
            "n_escalated": result.n_escalated,
        },
    }
    if result.profile is not None:
        doc["profile"] = result.profile.to_dict()
    if result.fixed_by_user:
        doc["fixed"] = dict(result.fixed_by_user)
    if result.bounds_by_user:
        doc["bounds"] = {name: [lo, hi] for name, lo, hi in result.bounds_by_user}
    if result.derived:
        doc["derived"] = {e.name: {"value": e.value, "stderr": e.stderr, "ci95": list(e.ci95)}
                          for e in result.derived}
    return jsonable(doc)


def _iid(result: FitResult) -> np.ndarray:
    """The iid standard errors (a result built without them reports its own errors as iid)."""
    return result.stderr_iid if len(result.stderr_iid) == len(result.names) else result.stderr


def fit_from_dict(doc: Mapping[str, Any], where: str = "<dict>") -> FitResult:
    """Rebuild the `FitResult` of a document written by `fit_to_dict`. Optional keys may be missing
    (and unknown keys are ignored), so documents with more or fewer details load alike."""
    from .fitting import Estimate, FitResult, FitStats
    from .objectives import Objective

    _check_version(doc, where)
    try:
        form = form_from_dict(doc["form_spec"], where)
        names = tuple(doc["covariance"]["names"])
        if names != tuple(form.params):
            raise ResultError(f"{where}: the saved parameters {', '.join(names)} are not those of form "
                              f"'{form.name}' ({', '.join(form.params)})")
        params = doc["params"]
        details = doc.get("details", {})
        notes = details.get("notes", {})
        values = np.array([float(params[p]["value"]) for p in names])
        stderr = np.array([_float(params[p].get("stderr")) for p in names])
        covariance = _floats(doc["covariance"]["matrix"]).reshape(len(names), len(names))
        estimates = tuple(Estimate(p, float(values[i]), float(stderr[i]),
                                   tuple(_floats(params[p].get("ci95", [None, None])).tolist()),
                                   str(notes.get(p, ""))) for i, p in enumerate(names))
        descriptions = {d.name: d.description for d in form.derived}
        derived = tuple(Estimate(name, _float(e.get("value")), _float(e.get("stderr")),
                                 tuple(_floats(e.get("ci95", [None, None])).tolist()),
                                 descriptions.get(name, ""))
                        for name, e in doc.get("derived", {}).items())
        s = doc["stats"]
        stats = FitStats(rss=_float(s.get("rss")), rmse_log=_float(s.get("rmse_log")),
                         mean_abs_rel_error=_float(s.get("mean_abs_rel_error")), r2=_float(s.get("r2")),
                         aic=_float(s.get("aic")), bic=_float(s.get("bic")), dof=int(s["dof"]))
        objective = Objective(doc["objective"]["name"], doc["objective"].get("delta"))
        data = doc.get("data", {})
        source = doc.get("input", {})
        covariance_doc = doc["covariance"]
        groups = doc.get("groups") or {}
        return FitResult(
            form=form, objective=objective, objective_value=_float(doc["objective"].get("value")),
            names=names, values=values, stderr=stderr, covariance=covariance, estimates=estimates,
            stats=stats, n_points=int(doc["n_points"]), n_excluded=int(doc.get("n_excluded", 0)),
            converged=bool(doc.get("converged", True)), at_bound=tuple(details.get("at_bound", ())),
            undetermined=tuple(details.get("undetermined", ())), warnings=tuple(doc.get("warnings", ())),
            n_grid=int(details.get("n_grid", 0)), n_starts=int(details.get("n_starts", 0)),
            seconds=_float(details.get("seconds"), 0.0), notes=tuple(details.get("table_notes", ())),
            input_path=source.get("path"), input_sha256=source.get("sha256"), derived=derived,
            roles=dict(data.get("roles", {})), load_options=dict(data.get("load_options", {})),
            ranges={k: (_float(v[0]), _float(v[1])) for k, v in data.get("ranges", {}).items()},
            covariance_type=str(covariance_doc.get("type", "iid")),
            stderr_iid=np.array([_float(params[p].get("stderr_iid", params[p].get("stderr")))
                                 for p in names]),
            covariance_iid=(_floats(details["covariance_iid"]).reshape(len(names), len(names))
                            if "covariance_iid" in details else covariance),
            ci_dof=int(covariance_doc.get("ci_dof", s["dof"])),
            param_dof=(np.array([_float(covariance_doc["ci_dof_by_param"].get(p)) for p in names])
                       if "ci_dof_by_param" in covariance_doc else np.zeros(0)),
            group_column=groups.get("column"), n_groups=groups.get("count"),
            between=tuple(groups.get("between", ())),
            design=design_from_dict(doc["design"]) if doc.get("design") else None,
            columns=dict(doc.get("columns") or {}),
            regime_withheld=str(details.get("regime_withheld", "")),
            convergence="" if doc.get("converged", True) else str(doc.get("convergence", "")),
            n_escalated=int(details.get("n_escalated", 0)),
            fixed_by_user=tuple((k, float(v)) for k, v in (doc.get("fixed") or {}).items()),
            bounds_by_user=tuple((k, float(v[0]), float(v[1])) for k, v in (doc.get("bounds") or {}).items()))
    except ScalefitError as exc:
        if isinstance(exc, ResultError):
            raise
        raise ResultError(f"{where}: the saved form cannot be rebuilt: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ResultError(f"{where}: a damaged saved fit ({type(exc).__name__}: {exc}); write it again "
                          f"with `scalefit fit --json`") from None


def _check_version(doc: Any, where: str) -> None:
    if not isinstance(doc, Mapping):
        raise ResultError(f"{where}: a saved fit is a JSON object, not {type(doc).__name__}")
    version = doc.get("schema_version")
    if version is None:
        if "forms" in doc and "ranking" in doc:
            raise ResultError(f"{where}: this is a `scalefit compare` result; predict and optimize need "
                              f"the JSON of `scalefit fit` or `scalefit bootstrap`")
        raise ResultError(NOT_A_RESULT.format(path=where))
    if not isinstance(version, int) or isinstance(version, bool):
        raise ResultError(f"{where}: schema_version must be an integer, not {version!r}")
    if version > SCHEMA_VERSION:
        raise ResultError(f"{where}: written by a newer scalefit (schema_version {version}); this "
                          f"version reads schema_version {SCHEMA_VERSION} and older: upgrade scalefit")


# ---------------------------------------------------------------- bootstraps


def bootstrap_to_dict(result: BootstrapResult) -> dict:
    """The fit's document with a `bootstrap` section: the intervals, and every draw with its status
    (inline, or the path of the `--draws` file relative to the JSON document when one was written)."""
    from .bootstrap import STATUS

    doc = fit_to_dict(result.fit)
    doc["warnings"] = list(doc.get("warnings", [])) + list(result.warnings)
    section = {
        "n": result.n,
        "n_failed": result.n_failed,
        "seed": result.seed,
        "method": result.method,
        "ci": result.ci,
        "level": result.level,
        "params": {e.name: {"se": e.se, "ci": list(e.ci)} for e in result.estimates},
        **({"derived": {e.name: {"se": e.se, "ci": list(e.ci)} for e in result.derived}}
           if result.derived else {}),
        "seconds": result.seconds,
        "jacobian": {e.name: {"se": e.jacobian_se, "ci": list(e.jacobian_ci)}
                     for e in result.estimates + result.derived},
        "warnings": list(result.warnings),
        "notes": list(result.notes),
        "group": result.group,
        "jobs": result.jobs,
        "chunk_size": result.resampler.chunk_size,
        "starts": result.starts,
        "status_names": list(STATUS),
    }
    if result.bias is not None:
        section["bca"] = {"bias": result.bias, "acceleration": result.acceleration}
    if result.draws_file is not None:
        section["draws_file"] = result.draws_file
    else:
        section["draws"] = {"names": list(result.names), "matrix": result.draws,
                            "status": result.status.astype(int), "objective": result.values,
                            "iterations": result.iterations, "start_used": result.start_used}
    doc["bootstrap"] = section
    return jsonable(doc)


def bootstrap_from_dict(doc: Mapping[str, Any], where: str = "<dict>",
                        base_dir: str | Path | None = None) -> BootstrapResult:
    """Rebuild the `BootstrapResult` of a document written by `bootstrap_to_dict`. A `draws_file` is
    read relative to `base_dir` (the directory of the JSON document). The rebuilt result cannot
    redraw its resamples (`resample(k)`) for the group and residual methods: the table is not saved."""
    from .bootstrap import STATUS, BootstrapEstimate, BootstrapResult, Resampler, _with_derived

    fit = fit_from_dict(doc, where)
    try:
        b = doc["bootstrap"]
        names = fit.names
        P = len(names)
        n = int(b["n"])
        if "draws" in b:
            d = b["draws"]
            if tuple(d["names"]) != names:
                raise ResultError(f"{where}: the saved draws are of {', '.join(d['names'])}, not of "
                                  f"{', '.join(names)}")
            draws = _floats(d["matrix"]).reshape(n, P)
            status = np.asarray(d["status"], dtype=np.int8)
            values = _floats(d["objective"], math.inf)
            iterations = np.asarray(d.get("iterations", np.zeros(n)), dtype=int)
            start_used = np.asarray(d.get("start_used", np.zeros(n)), dtype=int)
        elif "draws_file" in b:
            draws, status, values, iterations = _read_draws(
                b["draws_file"], names, b.get("status_names", STATUS), where, base_dir)
            start_used = np.full(n, -1)
            if len(draws) != n:
                raise ResultError(f"{where}: the draws file has {len(draws)} resamples, the result {n}")
        else:
            raise ResultError(f"{where}: the bootstrap section has neither draws nor a draws_file")
        hat = _with_derived(fit.form, fit.values[None, :])[0]
        jac = b.get("jacobian", {})
        rows = []
        for i, name in enumerate(list(names) + [e.name for e in fit.derived]):
            section = b["params"] if i < P else b.get("derived", {})
            entry, jentry = section.get(name, {}), jac.get(name, {})
            rows.append(BootstrapEstimate(
                name, float(hat[i]) if i < len(hat) else math.nan, _float(entry.get("se")),
                tuple(_floats(entry.get("ci", [None, None])).tolist()), _float(jentry.get("se")),
                tuple(_floats(jentry.get("ci", [None, None])).tolist())))
        starts = _floats(b.get("starts", [fit.values.tolist()])).reshape(-1, P)
        bca = b.get("bca") or {}
        resampler = Resampler(b["method"], int(b["seed"]), int(b.get("chunk_size", n)), fit.n_points,
                              log_space=fit.objective.log_space)
        return BootstrapResult(
            fit=fit, method=b["method"], ci=b["ci"], level=float(b["level"]), n=n, seed=int(b["seed"]),
            names=names, estimates=tuple(rows[:P]), derived=tuple(rows[P:]), draws=draws, values=values,
            status=status, iterations=iterations, start_used=start_used, starts=starts,
            n_failed=int(b.get("n_failed", int((status != 0).sum()))), seconds=_float(b.get("seconds"), 0.0),
            jobs=int(b.get("jobs", 1)), resampler=resampler, warnings=tuple(b.get("warnings", ())),
            notes=tuple(b.get("notes", ())), group=b.get("group"),
            bias=_floats(bca["bias"]) if "bias" in bca else None,
            acceleration=_floats(bca["acceleration"]) if "acceleration" in bca else None,
            draws_file=b.get("draws_file"))
    except ResultError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ResultError(f"{where}: a damaged saved bootstrap ({type(exc).__name__}: {exc}); write it "
                          f"again with `scalefit bootstrap --json`") from None


def _read_draws(path: str, names: tuple[str, ...], status_names, where: str, base_dir) -> tuple:
    """Draws, status codes, objectives and iterations from a `--draws` file (CSV or Parquet)."""
    full = Path(path) if base_dir is None or Path(path).is_absolute() else Path(base_dir) / path
    try:
        if full.suffix.lower() in (".parquet", ".pq"):
            import pandas as pd

            frame = pd.read_parquet(full)
            columns = {c: frame[c].tolist() for c in frame.columns}
        else:
            import csv

            with open(full, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
            header, body = rows[0], rows[1:]
            columns = {name: [row[j] for row in body] for j, name in enumerate(header)}
    except (OSError, ValueError, ImportError, IndexError) as exc:
        raise ResultError(f"{where}: cannot read the draws file {full}: {exc}") from None
    missing = [c for c in ("status", *names) if c not in columns]
    if missing:
        raise ResultError(f"{where}: the draws file {full} lacks columns {', '.join(missing)}")

    def numbers(name: str, missing: float) -> np.ndarray:
        return np.array([missing if v in ("", None) else float(v) for v in columns[name]], dtype=float)

    codes = {s: i for i, s in enumerate(status_names)}
    status = np.array([codes.get(s, len(codes)) for s in columns["status"]], dtype=np.int8)
    draws = np.column_stack([numbers(name, math.nan) for name in names])
    values = numbers("objective", math.inf) if "objective" in columns else np.full(len(status), math.inf)
    values = np.where(np.isnan(values), math.inf, values)
    iterations = (numbers("iterations", 0).astype(int) if "iterations" in columns
                  else np.zeros(len(status), dtype=int))
    return draws, status, values, iterations


# ---------------------------------------------------------------- files


def load_result(path: str | Path) -> FitResult | BootstrapResult:
    """Load a saved fit or bootstrap (the JSON of `fit --json` / `bootstrap --json`). Raises
    `ResultError` for a file that is not one, is damaged, or comes from a newer scalefit.

    >>> import json, pathlib, tempfile
    >>> from scaling_cli import fit, load_runs
    >>> result = fit(load_runs("data/example_runs.csv"))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fit.json"
    >>> _ = path.write_text(json.dumps(result.to_dict()))
    >>> again = load_result(path)
    >>> type(again).__name__, again["alpha_l"] == result["alpha_l"]
    ('FitResult', True)
    """
    path = Path(path)
    where = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_RESULT_BYTES:
            raise ResultError(f"{where}: {size:,} bytes is too large for a saved fit")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultError(f"cannot read {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ResultError(f"{where}: not UTF-8 text; a saved fit is JSON") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"{where}: not valid JSON (line {exc.lineno}: {exc.msg}); a saved fit is the "
                          f"JSON of `scalefit fit --json`") from None
    _check_version(doc, where)
    if "bootstrap" in doc:
        return bootstrap_from_dict(doc, where, base_dir=path.parent)
    return fit_from_dict(doc, where)


def relative_to(path: str | Path, start: str | Path) -> str:
    """`path` relative to the directory `start` when it can be, else absolute (for a draws file named
    in a JSON document)."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(start).resolve())
    except ValueError:  # another drive on Windows
        return str(Path(path).resolve())
