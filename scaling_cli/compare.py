"""Which law describes the runs, and which extrapolates: fit several forms to the same rows and rank them.

For every form: the fit on all rows (parameters, objective, AIC, BIC, Akaike weight), a k-fold
cross-validated error (folds grouped by the `group` role, so the rows of one run stay together), and an
extrapolation error: fit on the runs below a quantile of compute (or parameters, or tokens) and predict the
held-out largest runs. Every form sees exactly the same rows: a table is loaded once, with the union of the
columns all forms need.

A form that cannot be fitted (a column only it needs is missing, a `FitError`, a different response) is
listed with the reason, and the others are still ranked.

The held-out rows, the fits on the rest and their errors are in `heldout` (its names are importable
from here too).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .errors import DataError, FitError, ScalefitError, ScalefitWarning, SpecError, option
from .forms import BUILTIN_FORMS, Form, get_form
from .heldout import (  # noqa: F401  (re-exported: the held-out machinery lived here)
    HOLDOUT_BY,
    SAME_MINIMUM_RTOL,
    WARM_MAX_ITER,
    WARM_STARTS,
    HeldOutError,
    _quiet_fit,
    cross_validate,
    distinct_minima,
    extrapolate,
    fold_labels,
    group_labels,
    held_out_error,
    holdout_key,
    holdout_mask,
    subset,
    warm_fit,
)
from .io import Runs, load_runs
from .objectives import Objective

if TYPE_CHECKING:
    from rich.console import Console

    from .fitting import FitResult

RANK_BY = ("extrapolation", "cv", "aic", "bic")
RANK_DIGITS = 9  # metrics that agree to this many significant digits rank as a tie
DEFAULT_FOLDS = 5
DEFAULT_HOLDOUT_TOP = 0.2
DEFAULT_BY = "flops"
DEFAULT_SEED = 0
DEFAULT_RANK_BY = "extrapolation"
FORM_FILE_SUFFIXES = (".yaml", ".yml")
SPEC_KEYS = ("data", "forms", "objective", "delta", "exclude_top_loss", "holdout_top", "by", "folds",
             "seed", "rank_by", "columns", "format")
HUBER_AIC_NOTE = ("AIC and BIC use the Gaussian likelihood of the log residuals; under the Huber "
                  "objective they are indicative only")


# ---------------------------------------------------------------- checks


def check_options(folds: int, holdout_top: float, by: str, rank_by: str, seed: int,
                  where: Mapping[str, str] | None = None) -> None:
    """Raise a SpecError for an impossible setting. `where` names each setting for the message
    (default: the CLI flag from the command line, `--holdout-top`, else the argument, `holdout_top`)."""
    def name(key: str) -> str:
        return (where or {}).get(key, option(key))

    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise SpecError(f"{name('folds')} must be an integer of 2 or more, not {folds!r}")
    if (isinstance(holdout_top, bool) or not isinstance(holdout_top, (int, float))
            or not 0 < holdout_top < 1):
        raise SpecError(f"{name('holdout_top')} must be a fraction strictly between 0 and 1, "
                        f"not {holdout_top!r}")
    if by not in HOLDOUT_BY:
        raise SpecError(f"{name('by')} must be one of {', '.join(HOLDOUT_BY)}, not {by!r}")
    if rank_by not in RANK_BY:
        raise SpecError(f"{name('rank_by')} must be one of {', '.join(RANK_BY)}, not {rank_by!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError(f"{name('seed')} must be a non-negative integer, not {seed!r}")


def resolve_form(item: Form | str | Path, base: Path | None = None) -> tuple[Form, str]:
    """A form and where it came from, from a Form, a built-in name, or a YAML file (relative to `base`)."""
    if isinstance(item, Form):
        return item, "object"
    text = str(item)
    path = Path(text) if base is None or Path(text).is_absolute() else base / text
    if text in BUILTIN_FORMS and not path.is_file():
        return get_form(text), "built-in"
    if path.is_file() or path.suffix.lower() in FORM_FILE_SUFFIXES:
        if not path.is_file():
            raise SpecError(f"{path}: no such form file")
        try:
            from .spec import load_form
        except ImportError:  # pragma: no cover - while scaling_cli.spec is being written
            raise SpecError(f"{path}: YAML forms need scaling_cli.spec, which is not available") from None
        return load_form(path), str(path)
    from .forms import shipped_form_path

    shipped = shipped_form_path(text)
    if shipped is not None:
        from .spec import load_form

        return load_form(shipped), shipped.name
    raise SpecError(f"unknown form '{text}': give a built-in form ({', '.join(BUILTIN_FORMS)}), a "
                    f"shipped form (`scalefit forms` lists them) or a YAML file")


def resolve_objective(forms: Sequence[Form], objective: Objective | str | None,
                      delta: float | None) -> Objective:
    """One objective for every form: the one asked for, else the one the forms agree on."""
    if isinstance(objective, Objective):
        return objective
    if objective is None:
        declared = {(f.objective, f.delta if f.objective == "huber" else None) for f in forms}
        if len(declared) > 1:
            listed = ", ".join(f"'{f.name}' {f.objective}" for f in forms)
            raise SpecError(f"the forms declare different objectives ({listed}); AIC and BIC compare "
                            f"only fits of one objective: pass {option('objective')}")
        objective, form_delta = declared.pop() if declared else ("log-ls", None)
        delta = delta if delta is not None else form_delta
    return Objective(objective, delta)


@dataclass(frozen=True)
class FormComparison:
    """One form in a comparison: its fit on all rows and its held-out errors, or why it failed."""

    name: str
    source: str  # "built-in", "object", or the YAML file
    form: Form
    fit: FitResult | None = None
    error: str | None = None  # why the form could not be fitted; None when it was
    akaike_weight: float | None = None
    cv: HeldOutError | None = None
    extrapolation: HeldOutError | None = None
    rank: int | None = None

    @property
    def ok(self) -> bool:
        return self.fit is not None

    def metric(self, rank_by: str) -> float:
        """The number this form is ranked by (smaller is better; NaN when not available)."""
        if self.fit is None:
            return math.nan
        if rank_by == "aic":
            return self.fit.stats.aic
        if rank_by == "bic":
            return self.fit.stats.bic
        held = self.cv if rank_by == "cv" else self.extrapolation
        return held.mean_abs_rel_error if held is not None else math.nan

    def to_dict(self) -> dict:
        doc: dict[str, Any] = {"rank": self.rank, "name": self.name, "source": self.source,
                               "expression": self.form.describe(), "status": "ok" if self.ok else "failed",
                               "error": self.error}
        fit = self.fit
        if fit is None:
            return doc
        doc.update({
            "objective": fit.objective.to_dict(fit.objective_value),
            "n_free_params": fit.n_points - fit.stats.dof,
            "params": {e.name: {"value": e.value, "stderr": e.stderr, "ci95": list(e.ci95)}
                       for e in fit.estimates},
            "stats": {"rss": fit.stats.rss, "rmse_log": fit.stats.rmse_log,
                      "mean_abs_rel_error": fit.stats.mean_abs_rel_error, "r2": fit.stats.r2,
                      "aic": fit.stats.aic, "bic": fit.stats.bic, "dof": fit.stats.dof},
            "akaike_weight": self.akaike_weight,
            "cv": self.cv.to_dict() if self.cv is not None else None,
            "extrapolation": self.extrapolation.to_dict() if self.extrapolation is not None else None,
            "converged": fit.converged,
            "warnings": list(fit.warnings),
        })
        if fit.derived:
            doc["derived"] = {e.name: {"value": e.value, "stderr": e.stderr, "ci95": list(e.ci95)}
                              for e in fit.derived}
        return doc


@dataclass(frozen=True)
class CompareResult:
    """Forms ranked on the same rows (`entries`: ranked forms best first, then the failed ones)."""

    entries: tuple[FormComparison, ...]
    objective: Objective
    rank_by: str
    folds: int
    seed: int
    holdout_top: float
    by: str
    holdout_threshold: float
    n_holdout: int
    n_points: int
    n_excluded: int
    grouped_by: str | None = None  # the group column the folds kept together
    aic_comparable: bool = True
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    input_path: str | None = None
    input_sha256: str | None = None
    seconds: float = 0.0

    def __getitem__(self, name: str) -> FormComparison:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    @property
    def ranked(self) -> tuple[FormComparison, ...]:
        return tuple(e for e in self.entries if e.ok)

    @property
    def failed(self) -> tuple[FormComparison, ...]:
        return tuple(e for e in self.entries if not e.ok)

    @property
    def best(self) -> FormComparison | None:
        return self.ranked[0] if self.ranked else None

    def rerank(self, rank_by: str) -> CompareResult:
        """The same comparison ranked by another criterion (extrapolation, cv, aic or bic); no refits."""
        if rank_by not in RANK_BY:
            raise SpecError(f"{option('rank_by')} must be one of {', '.join(RANK_BY)}, not {rank_by!r}")
        if rank_by in ("aic", "bic") and not self.aic_comparable:
            raise SpecError(f"cannot rank by {rank_by}: the fits' AIC and BIC are not comparable")
        return replace(self, entries=rank_entries(self.entries, rank_by), rank_by=rank_by)

    def to_dict(self) -> dict:
        """The JSON document `scalefit compare --json` writes: plain floats, None for unknown."""
        from .report import jsonable, versions

        return jsonable({
            "rank_by": self.rank_by,
            "objective": {"name": self.objective.name, "delta": self.objective.delta},
            "n_points": self.n_points,
            "n_excluded": self.n_excluded,
            "cv": {"folds": self.folds, "seed": self.seed, "grouped_by": self.grouped_by},
            "holdout": {"top": self.holdout_top, "by": self.by, "threshold": self.holdout_threshold,
                        "n_test": self.n_holdout, "n_train": self.n_points - self.n_holdout},
            "aic_comparable": self.aic_comparable,
            "forms": [e.to_dict() for e in self.entries],
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "seed": self.seed,
            "versions": versions(forms=[e.form for e in self.entries]),
            "input": {"path": self.input_path, "sha256": self.input_sha256},
        })


# ---------------------------------------------------------------- the work


def akaike_weights(aic: Sequence[float]) -> np.ndarray:
    """exp(-ΔAIC/2) normalized over the finite AICs (NaN elsewhere)."""
    aic = np.asarray(aic, dtype=float)
    out = np.full(aic.shape, np.nan)
    ok = np.isfinite(aic)
    if ok.any():
        w = np.exp(-0.5 * (aic[ok] - aic[ok].min()))
        out[ok] = w / w.sum()
    return out


def _load_shared(path: str | Path, forms: Sequence[Form], load_options: Mapping[str, Any]
                 ) -> tuple[Runs, dict[int, str]]:
    """Load the table once for every form that can use it; the forms that cannot, with the reason."""
    def load(subset_forms: Sequence[Form]) -> Runs:
        require = list(dict.fromkeys(c for f in subset_forms for c in f.required_columns()))
        positive = list(dict.fromkeys(c for f in subset_forms for c in f.positive_columns()))
        return load_runs(path, require=require, response=subset_forms[0].response_columns()[0],
                         positive=positive, **load_options)

    try:
        return load(forms), {}
    except DataError as first_error:
        failures: dict[int, str] = {}
        for i, form in enumerate(forms):
            try:
                load([form])
            except DataError as exc:
                failures[i] = str(exc)
        usable = [f for i, f in enumerate(forms) if i not in failures]
        if not usable or not failures:
            raise first_error from None
        return load(usable), failures


def compare_forms(data: Runs | str | Path, forms: Sequence[Form | str | Path], *,
                  objective: Objective | str | None = None, delta: float | None = None,
                  folds: int = DEFAULT_FOLDS, holdout_top: float = DEFAULT_HOLDOUT_TOP,
                  by: str = DEFAULT_BY, seed: int = DEFAULT_SEED, rank_by: str = DEFAULT_RANK_BY,
                  load_options: Mapping[str, Any] | None = None, exhaustive: bool = False) -> CompareResult:
    """Fit every form to the same rows and rank them; see the module docstring for what is measured.

    `data` is a `Runs` table or a path (read once with the union of the forms' columns and
    `load_options`, the keywords of `load_runs` such as `exclude_top_loss`). `forms` are `Form`
    objects, built-in names or YAML files. Returns a `CompareResult`: ranked forms best first
    (smaller `rank_by` metric is better; forms without it last), then the forms that failed.
    Raises `FitError` when no form could be fitted, `SpecError` for impossible options.

    Under a least-squares objective the held-out fits (cross-validation folds, extrapolation) start
    from the minima of each form's fit on all rows and fall back to the full global search when that
    start cannot be verified (`heldout.warm_fit`); `exhaustive=True` runs the full global search for
    every one of them (slower; the reference the tests compare with), as Huber objectives always do.

    >>> ranking = compare_forms("data/example_runs.csv", ["decomposed", "depth_free"], folds=2)
    >>> ranking.best.name, [e.name for e in ranking.ranked]
    ('decomposed', ['decomposed', 'depth_free'])
    """
    import time

    t0 = time.perf_counter()
    check_options(folds, holdout_top, by, rank_by, seed)
    if not forms:
        raise SpecError("compare needs at least one form")
    resolved = [resolve_form(f) for f in forms]
    names = [form.name for form, _ in resolved]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SpecError(f"form {', '.join(map(repr, repeated))} is given more than once; forms are told "
                        f"apart by name")
    the_objective = resolve_objective([form for form, _ in resolved], objective, delta)

    failures: dict[int, str] = {}
    if isinstance(data, Runs):
        if load_options:
            raise SpecError("load_options apply only when data is a path")
        runs = data
    else:
        runs, failures = _load_shared(data, [form for form, _ in resolved], dict(load_options or {}))
    notes = list(runs.notes)
    key, key_note = holdout_key(runs, by)
    if key_note:
        notes.append(key_note)
    held_out = holdout_mask(key, holdout_top)
    groups = group_labels(runs)
    labels = fold_labels(len(runs), folds, groups, seed)
    if not the_objective.least_squares:
        notes.append(HUBER_AIC_NOTE)

    entries: list[FormComparison] = []
    reference: tuple[str, np.ndarray] | None = None
    for i, (form, source) in enumerate(resolved):
        if i in failures:
            entries.append(FormComparison(form.name, source, form, error=failures[i]))
            continue
        try:
            observed = np.asarray(form.observed(runs), dtype=float)
            if reference is None:
                reference = (form.name, observed)
            elif observed.shape != reference[1].shape or not np.array_equal(observed, reference[1]):
                raise SpecError(f"its response ({form.response}) differs from that of '{reference[0]}': "
                                f"forms are compared on one response")
            cheaper = the_objective.least_squares and not exhaustive  # see heldout's warm starts
            result = _quiet_fit(runs, form, the_objective, "best" if cheaper else "auto")
        except ScalefitError as exc:
            entries.append(FormComparison(form.name, source, form, error=str(exc)))
            continue
        entries.append(FormComparison(
            form.name, source, form, fit=result,
            cv=cross_validate(runs, form, the_objective, labels, None if exhaustive else result),
            extrapolation=extrapolate(runs, form, the_objective, held_out, None if exhaustive else result)))

    if not any(e.ok for e in entries):
        raise FitError("no form could be fitted: " + "; ".join(f"'{e.name}': {e.error}" for e in entries))
    messages = [f"form '{e.name}' could not be fitted: {e.error}" for e in entries if not e.ok]
    for e in entries:
        for what, held in (("cross-validation", e.cv), ("extrapolation", e.extrapolation)):
            if held is not None and held.failed:
                messages.append(f"form '{e.name}': {what} fit failed ({held.failed})")
    reason = _aic_incomparable([e.fit for e in entries if e.fit is not None])
    if reason:
        messages.append(f"AIC and BIC are not comparable between these fits ({reason}); no Akaike weights")
        if rank_by in ("aic", "bic"):
            raise SpecError(f"cannot rank by {rank_by}: {reason}")
    else:
        weights = akaike_weights([e.fit.stats.aic if e.fit is not None else math.nan for e in entries])
        entries = [replace(e, akaike_weight=float(w)) if e.ok and np.isfinite(w) else e
                   for e, w in zip(entries, weights, strict=True)]

    for message in messages:
        warnings.warn(message, ScalefitWarning, stacklevel=2)
    return CompareResult(
        entries=rank_entries(entries, rank_by), objective=the_objective,
        rank_by=rank_by, folds=folds, seed=seed, holdout_top=float(holdout_top), by=by,
        holdout_threshold=float(key[held_out].min()), n_holdout=int(held_out.sum()), n_points=len(runs),
        n_excluded=runs.n_excluded, grouped_by=runs.roles.get("group") if groups is not None else None,
        aic_comparable=not reason, notes=tuple(notes), warnings=tuple(messages), input_path=runs.path,
        input_sha256=runs.sha256, seconds=time.perf_counter() - t0)


def _rounded(value: float, nan: float) -> float:
    """`value` to RANK_DIGITS significant digits (`nan` for NaN), for ranking."""
    return nan if math.isnan(value) else float(f"{value:.{RANK_DIGITS}g}")


def rank_entries(entries: Sequence[FormComparison], rank_by: str) -> tuple[FormComparison, ...]:
    """Forms that fitted, best first by `rank_by` (those without the metric after, by AIC), numbered
    from 1; then the forms that failed, in their order."""
    ok = [e for e in entries if e.ok]
    # Metrics equal to RANK_DIGITS significant digits are a tie, broken by AIC and then by the order the
    # forms were given: two forms that reach the same fit (an interaction term at 0) must not be ordered
    # by the last bits of their errors, which any change of summation order moves.
    ok.sort(key=lambda e: (not np.isfinite(e.metric(rank_by)), _rounded(e.metric(rank_by), 0.0),
                           _rounded(e.fit.stats.aic, np.inf)))
    return tuple([replace(e, rank=r) for r, e in enumerate(ok, start=1)]
                 + [replace(e, rank=None) for e in entries if not e.ok])


def _aic_incomparable(fits: Sequence[FitResult]) -> str | None:
    """Why AIC/BIC of these fits cannot be compared (different rows, response or objective), or None."""
    if len(fits) < 2:
        return None
    first = fits[0]
    for other in fits[1:]:
        if other.n_points != first.n_points:
            return f"'{first.form.name}' used {first.n_points} rows, '{other.form.name}' {other.n_points}"
        if other.objective != first.objective:
            return (f"'{first.form.name}' minimized {first.objective.name}, "
                    f"'{other.form.name}' {other.objective.name}")
        if not np.array_equal(other.observed, first.observed):
            return f"'{first.form.name}' and '{other.form.name}' were fitted to different responses"
    return None


# ---------------------------------------------------------------- the compare file


@dataclass(frozen=True)
class CompareSpec:
    """A compare file: the data, the forms and shared options; None where the file is silent.
    Paths are resolved relative to the file."""

    path: str
    data: Path | None = None
    forms: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)


def load_compare_spec(path: str | Path) -> CompareSpec:
    """Read and check a compare file (YAML):

    data: runs.csv                  # relative to this file
    forms: [decomposed, chinchilla, configs/depth_free.yaml]
    objective: log-ls               # and delta, exclude_top_loss, holdout_top, by, folds, seed,
    rank_by: extrapolation          # columns {ROLE: NAME}, format
    """
    from .spec import read_yaml

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such compare file")
    doc = read_yaml(path)  # size limit, no anchors or aliases, no repeated keys
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: a compare file is a mapping with keys {', '.join(SPEC_KEYS)}")
    unknown = [str(k) for k in doc if k not in SPEC_KEYS]
    if unknown:
        raise SpecError(f"{path}: unknown key {', '.join(map(repr, unknown))}; the keys are "
                        f"{', '.join(SPEC_KEYS)}")
    base = path.parent

    def typed(key: str, types: tuple[type, ...], what: str) -> Any:
        value = doc.get(key)
        if value is not None and (isinstance(value, bool) and bool not in types
                                  or not isinstance(value, types)):
            raise SpecError(f"{path}: {key}: must be {what}, not {value!r}")
        return value

    data = typed("data", (str,), "a file name")
    forms = typed("forms", (list,), "a list of form names or YAML files")
    if forms is not None:
        for i, item in enumerate(forms):
            if not isinstance(item, str) or not item:
                raise SpecError(f"{path}: forms[{i}]: must be a form name or a YAML file, not {item!r}")
    columns = typed("columns", (dict,), "a mapping ROLE: COLUMN")
    if columns is not None:
        for role, name in columns.items():
            if not isinstance(role, str) or not isinstance(name, str):
                raise SpecError(f"{path}: columns.{role}: must be a column name, not {name!r}")
    settings = {
        "objective": typed("objective", (str,), "log-ls, ls or huber"),
        "delta": typed("delta", (int, float), "a number"),
        "exclude_top_loss": typed("exclude_top_loss", (int,), "an integer"),
        "holdout_top": typed("holdout_top", (int, float), "a number"),
        "by": typed("by", (str,), f"one of {', '.join(HOLDOUT_BY)}"),
        "folds": typed("folds", (int,), "an integer"),
        "seed": typed("seed", (int,), "an integer"),
        "rank_by": typed("rank_by", (str,), f"one of {', '.join(RANK_BY)}"),
        "columns": [f"{role}={name}" for role, name in columns.items()] if columns else None,
        "format": typed("format", (str,), "a table format"),
    }
    if settings["exclude_top_loss"] is not None and settings["exclude_top_loss"] < 0:
        raise SpecError(f"{path}: exclude_top_loss: must be 0 or more, not {settings['exclude_top_loss']}")
    given = {k: v for k, v in settings.items() if v is not None}
    where = {k: f"{path}: {k}:" for k in ("folds", "holdout_top", "by", "rank_by", "seed")}
    check_options(given.get("folds", DEFAULT_FOLDS), given.get("holdout_top", DEFAULT_HOLDOUT_TOP),
                  given.get("by", DEFAULT_BY), given.get("rank_by", DEFAULT_RANK_BY),
                  given.get("seed", DEFAULT_SEED), where)
    resolved_forms = tuple(item if item in BUILTIN_FORMS and not (base / item).is_file()
                           else str(base / item) for item in forms or ())
    return CompareSpec(path=str(path), data=base / data if data else None, forms=resolved_forms,
                       settings=given)


# ---------------------------------------------------------------- the report


def _pct(x: float | None, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%" if x is not None and math.isfinite(x) else "n/a"


def _num(x: float | None, fmt: str) -> str:
    return f"{x:{fmt}}" if x is not None and math.isfinite(x) else "n/a"


def compare_table(result: CompareResult):
    """The ranked table: one row per form that fitted. Narrow enough for an 80-column terminal."""
    from rich import box
    from rich.table import Table

    by_what = {"extrapolation": "extrapolation error", "cv": "cross-validated error", "aic": "AIC",
               "bic": "BIC"}[result.rank_by]
    grouped = f", grouped by {result.grouped_by}" if result.grouped_by else ""
    caption = (f"CV: {result.folds} folds (seed {result.seed}{grouped}), every row predicted once by a fit "
               f"that did not see it. Extrapolation: fit on {result.n_points - result.n_holdout} rows, "
               f"predict the top {100 * result.holdout_top:g}% by {result.by} ({result.n_holdout} rows, "
               f"{result.by} ≥ {result.holdout_threshold:.3g}). Errors: |relative error| (mean; max); "
               f"RMSE of log residuals.")
    table = Table(title=f"{len(result.ranked)} forms on {result.n_points} rows, objective "
                        f"{result.objective.name}, ranked by {by_what}",
                  caption=caption, title_justify="left", caption_justify="left", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False)
    for name in ("#", "form", "k", "ΔAIC", "ΔBIC", "Akaike\nweight", "CV\nerror", "CV RMSE\nlog",
                 "extrap.\nerror", "extrap.\nmax"):
        # numbers never wrap or get cut (an Akaike weight of 4.54e-159 stays whole); a long form name
        # folds instead
        table.add_column(name, justify="left" if name == "form" else "right",
                         style="bold" if name == "form" else None, no_wrap=name != "form",
                         overflow="fold" if name == "form" else "ellipsis")
    finite_aic = [e.fit.stats.aic for e in result.ranked if math.isfinite(e.fit.stats.aic)]
    finite_bic = [e.fit.stats.bic for e in result.ranked if math.isfinite(e.fit.stats.bic)]
    best_aic, best_bic = min(finite_aic, default=math.nan), min(finite_bic, default=math.nan)
    for e in result.ranked:
        s, cv, ex = e.fit.stats, e.cv, e.extrapolation
        table.add_row(str(e.rank), e.name, str(e.fit.n_points - s.dof), _num(s.aic - best_aic, ".1f"),
                      _num(s.bic - best_bic, ".1f"), _num(e.akaike_weight, ".3g"),
                      _pct(cv.mean_abs_rel_error if cv else None, 3),
                      _num(cv.rmse_log if cv else None, ".3g"),
                      _pct(ex.mean_abs_rel_error if ex else None, 3),
                      _pct(ex.max_abs_rel_error if ex else None, 2))
    return table


def params_summary(result: CompareResult):
    """Each ranked form's parameters (value ± standard error) and fit statistics on all rows."""
    from rich import box
    from rich.table import Table

    from .report import format_value_error

    table = Table(title="fits on all rows", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("form", style="bold", overflow="fold")
    table.add_column("parameters", overflow="fold")
    table.add_column("statistics", no_wrap=True)
    for e in result.ranked:
        fit = e.fit
        parts = [f"{est.name} = {format_value_error(est.value, est.stderr)}"
                 + (f" ({est.note})" if est.note else "") for est in fit.estimates]
        parts += [f"{est.name} = {format_value_error(est.value, est.stderr)} (derived)"
                  for est in fit.derived]
        stats = [f"objective {fit.objective_value:.5g}", f"AIC {_num(fit.stats.aic, '.2f')}",
                 f"BIC {_num(fit.stats.bic, '.2f')}", f"|rel. error| {_pct(fit.stats.mean_abs_rel_error, 3)}",
                 f"converged: {'yes' if fit.converged else 'NO'}"]
        table.add_row(e.name, "\n".join(parts), "\n".join(stats), end_section=True)
    return table


def render_compare(result: CompareResult, console: Console) -> None:
    """Print a comparison: the ranked table, the parameters, failed forms, notes and warnings."""
    if result.ranked:
        console.print(compare_table(result))
        console.print(params_summary(result))
    for e in result.failed:
        console.print(f"failed: {e.name} ({e.source}): {e.error}", style="red", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", style="dim", markup=False)
    shown = {f"form '{e.name}' could not be fitted: {e.error}" for e in result.failed}
    for message in result.warnings:
        if message not in shown:
            console.print(f"warning: {message}", style="yellow", markup=False)
    for e in result.ranked:
        for message in e.fit.warnings:
            console.print(f"warning: {e.name}: {message}", style="yellow", markup=False)
