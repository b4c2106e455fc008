"""Which law describes the runs, and which extrapolates: fit several forms to the same rows and rank them.

For every form: the fit on all rows (parameters, objective, AIC, BIC, Akaike weight), a k-fold
cross-validated error (folds grouped by the `group` role, so the rows of one run stay together), and an
extrapolation error: fit on the runs below a quantile of compute (or parameters, or tokens) and predict the
held-out largest runs. Every form sees exactly the same rows: a table is loaded once, with the union of the
columns all forms need.

A form that cannot be fitted (a column only it needs is missing, a `FitError`, a different response) is
listed with the reason, and the others are still ranked.

Deriving the holdout key when a column is absent (documented, and said in the result's notes):
flops = 6 · params · tokens (the Chinchilla convention), and params = 12 · depth · width² (the
non-embedding parameter count of a transformer, Kaplan et al. 2020). Only the ordering of the runs depends
on it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .errors import DataError, FitError, ScalefitError, ScalefitWarning, SpecError, column_option, option
from .fitting import prediction_errors
from .forms import BUILTIN_FORMS, Form, get_form
from .io import Runs, load_runs
from .objectives import Objective

if TYPE_CHECKING:
    from rich.console import Console

    from .fitting import FitResult

RANK_BY = ("extrapolation", "cv", "aic", "bic")
HOLDOUT_BY = ("flops", "params", "tokens")
DEFAULT_FOLDS = 5
DEFAULT_HOLDOUT_TOP = 0.2
DEFAULT_BY = "flops"
DEFAULT_SEED = 0
DEFAULT_RANK_BY = "extrapolation"
FORM_FILE_SUFFIXES = (".yaml", ".yml")
SPEC_KEYS = ("data", "forms", "objective", "delta", "exclude_top_loss", "holdout_top", "by", "folds",
             "seed", "rank_by", "columns", "format")
FLOPS_NOTE = "the table has no flops: runs are ordered for the holdout by 6 * params * tokens"
PARAMS_NOTE = ("the table has no params: runs are ordered for the holdout by 12 * depth * width^2 "
               "(non-embedding parameters, Kaplan et al. 2020)")
FLOPS_FROM_SHAPE_NOTE = ("the table has no flops or params: runs are ordered for the holdout by "
                         "6 * (12 * depth * width^2) * tokens (non-embedding parameters, Kaplan et al. 2020)")
TOKENS_NOTE = "the table has no tokens: runs are ordered for the holdout by flops / (6 * params)"
# A held-out fit (a cross-validation fold, the extrapolation's training rows) starts from the distinct
# local minima the search on all rows converged to, at most WARM_STARTS of them: its rows are most of
# those rows, so its minima lie next to theirs. A start that the Newton-LM has not brought to a strict
# minimum within WARM_MAX_ITER steps goes to the robust strategy; when the best point is still not a
# verified minimum, the held-out fit runs the full global search instead.
WARM_STARTS = 8
WARM_MAX_ITER = 20
SAME_MINIMUM_RTOL = 1e-6  # two end points closer than this (relative, every parameter) are one minimum
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


# ---------------------------------------------------------------- rows: subsets, folds, holdout


def subset(runs: Runs, mask: np.ndarray) -> Runs:
    """The rows of `runs` where `mask` (boolean, or integer indices) selects; the rest count as excluded."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        index = mask
        mask = np.zeros(len(runs), dtype=bool)
        mask[index] = True
    if mask.shape != (len(runs),):
        raise ValueError(f"mask has shape {mask.shape}, the runs have {len(runs)} rows")
    kept = runs.kept_rows[mask] if len(runs.kept_rows) == len(runs) else runs.kept_rows
    return replace(runs, data={name: values[mask] for name, values in runs.data.items()},
                   n_excluded=runs.n_excluded + int((~mask).sum()), kept_rows=kept)


def group_labels(runs: Runs) -> np.ndarray | None:
    """The `group` role's values (rows of one run share them), or None when the table has no group."""
    if "group" not in runs.roles:
        return None
    return np.asarray(runs.column("group")).astype(str)


def fold_labels(n: int, folds: int, groups: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """A fold number in 0..folds-1 for each of `n` rows. Rows of one group share a fold; folds are
    balanced in rows (groups shuffled with `seed`, then the largest first into the smallest fold)."""
    if groups is None:
        inverse = np.arange(n)
    else:
        _, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if n else 0
    if n_groups < folds:
        what = f"{n_groups} groups (runs)" if groups is not None else f"{n} rows"
        raise DataError(f"{what} cannot be split into {folds} folds: pass "
                        f"{option('folds', max(n_groups, 2))} or fewer")
    sizes = np.bincount(inverse, minlength=n_groups)
    order = np.random.default_rng(seed).permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(folds, dtype=int)
    assign = np.empty(n_groups, dtype=int)
    for g in order:
        f = int(np.argmin(load))
        assign[g] = f
        load[f] += sizes[g]
    return assign[inverse]


def holdout_key(runs: Runs, by: str) -> tuple[np.ndarray, str | None]:
    """The per-row value that orders runs for the holdout, and a note when it had to be derived."""
    if by not in HOLDOUT_BY:
        raise SpecError(f"{option('by')} must be one of {', '.join(HOLDOUT_BY)}, not {by!r}")

    def column(role: str) -> np.ndarray:
        name = runs.roles.get(role, role)
        values = runs.data[name]
        if values.dtype.kind != "f" or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise DataError(f"{runs.path}: column '{name}' ({role}, used to order runs for "
                            f"{option('by', by)}) must hold positive numbers in every row")
        return values

    def params() -> tuple[np.ndarray, str | None]:
        if "params" in runs.roles:
            return column("params"), None
        if "width" in runs.roles and "depth" in runs.roles:
            return 12.0 * column("depth") * column("width") ** 2, PARAMS_NOTE
        raise DataError(f"{runs.path}: {option('by', by)} needs a params column (or width and depth, for "
                        f"12 * depth * width^2); name it with {column_option('params')}")

    def tokens() -> tuple[np.ndarray, str | None]:
        if "tokens" in runs.roles:
            return column("tokens"), None
        if "flops" in runs.roles and "params" in runs.roles:
            return column("flops") / (6.0 * column("params")), TOKENS_NOTE
        raise DataError(f"{runs.path}: {option('by', by)} needs a tokens column (or flops and params); "
                        f"name it with {column_option('tokens')}")

    if by == "params":
        return params()
    if by == "tokens":
        return tokens()
    if "flops" in runs.roles:
        return column("flops"), None
    try:
        n_params, _ = params()
        n_tokens, _ = tokens()
    except DataError:
        raise DataError(f"{runs.path}: {option('by', 'flops')} needs a flops column, or params (or width and "
                        f"depth) and tokens to compute 6 * params * tokens; name it with "
                        f"{column_option('flops')}"
                        ) from None
    return 6.0 * n_params * n_tokens, FLOPS_NOTE if "params" in runs.roles else FLOPS_FROM_SHAPE_NOTE


def holdout_mask(key: np.ndarray, top: float) -> np.ndarray:
    """True for the held-out rows: the top `top` fraction by `key` (at least one row). Rows tied with the
    smallest held-out value are held out too, so that no training run is as large as a held-out one."""
    key = np.asarray(key, dtype=float)
    n_top = max(1, math.ceil(top * len(key) - 1e-9))
    threshold = np.sort(key)[::-1][n_top - 1]
    mask = key >= threshold
    if mask.all():
        raise DataError(f"every row ties at the holdout threshold {threshold:.6g}: nothing is left to fit "
                        f"on; choose another {option('by')}")
    return mask


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class HeldOutError:
    """How well fits predicted rows they did not see: relative errors |y - f| / |y| and log residuals."""

    n_train: int
    n_test: int
    mean_abs_rel_error: float
    max_abs_rel_error: float
    rmse_log: float
    observed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failed: str | None = None  # why a fit on the training rows did not succeed

    def to_dict(self) -> dict:
        return {"n_train": self.n_train, "n_test": self.n_test,
                "mean_abs_rel_error": self.mean_abs_rel_error,
                "max_abs_rel_error": self.max_abs_rel_error, "rmse_log": self.rmse_log,
                "failed": self.failed}


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
            "versions": versions(),
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


def held_out_error(form: Form, fit: FitResult, test: Runs, n_train: int) -> HeldOutError:
    """Errors of `fit` on the rows of `test`."""
    return _predicted_errors(form, fit.values, test, n_train)


def _predicted_errors(form: Form, values: np.ndarray, test: Runs, n_train: int) -> HeldOutError:
    observed = form.observed(test)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        predicted = form.predict(values[None, :], form.inputs(test))[0]
    return _errors(observed, predicted, n_train)


def _errors(observed: np.ndarray, predicted: np.ndarray, n_train: int, failed: str | None = None
            ) -> HeldOutError:
    rel, rmse_log = prediction_errors(observed, predicted)
    finite = bool(len(rel)) and bool(np.all(np.isfinite(rel)))
    return HeldOutError(
        n_train=n_train, n_test=len(observed),
        mean_abs_rel_error=float(rel.mean()) if finite else math.nan,
        max_abs_rel_error=float(rel.max()) if finite else math.nan,
        rmse_log=rmse_log, observed=observed, predicted=predicted, failed=failed)


def _quiet_fit(runs: Runs, form: Form, objective: Objective, strategy: str = "auto") -> FitResult:
    from .fitting import fit

    with warnings.catch_warnings():
        # the fit's soft problems are kept on its result; repeating them per fold would only be noise
        warnings.simplefilter("ignore", ScalefitWarning)
        return fit(runs, form, objective, strategy=strategy)


def distinct_minima(minima: np.ndarray, rtol: float = SAME_MINIMUM_RTOL) -> np.ndarray:
    """The rows of `minima` (best first) that are not the same point as an earlier row: every parameter
    within `rtol` of it, relative to the larger of the two."""
    kept: list[np.ndarray] = []
    for theta in np.asarray(minima, dtype=float):
        if not np.all(np.isfinite(theta)):
            continue
        if not any(np.all(np.abs(theta - k) <= rtol * np.maximum(np.abs(theta), np.abs(k)) + 1e-300)
                   for k in kept):
            kept.append(theta)
    return np.array(kept).reshape(len(kept), np.shape(minima)[-1] if np.ndim(minima) == 2 else 0)


def warm_fit(runs: Runs, form: Form, objective: Objective, minima: np.ndarray) -> np.ndarray | None:
    """The parameters of `form` fitted to `runs` from the starts `minima` (the local minima that a
    search on a larger table converged to, best first), or None when the best point found is not a
    verified minimum (converged, not at a saddle) and the full global search should decide.

    The Newton-LM polishes every start; starts it does not bring to a strict minimum within
    WARM_MAX_ITER steps are solved again by `solve.robust_minimize`, as `fit`'s escalation does. Of
    points whose objectives tie (to rounding) the earliest start's is kept."""
    from .solve import (
        ESCALATE_AFTER,
        Problem,
        Solution,
        levenberg_marquardt,
        robust_minimize,
        stopped_short,
        tie_tolerance,
    )

    starts = distinct_minima(minima)[:WARM_STARTS]
    if not len(starts) or starts.shape[1] != len(form.params):
        return None
    y = form.observed(runs)
    if objective.log_space and np.any(y <= 0):
        return None  # the global search raises the error that says so
    problem = Problem.build(form, form.inputs(runs), y, objective)
    if problem.n <= int(problem.free.sum()):
        return None
    try:
        max_iter = min(WARM_MAX_ITER, ESCALATE_AFTER) if objective.least_squares else None
        sol = levenberg_marquardt(problem, starts, max_iter=max_iter)
        short = stopped_short(problem, sol)
        if short.any():
            rescued = robust_minimize(problem, starts[short], polish_start=False)
            sol = Solution(*(np.concatenate([getattr(sol, f)[~short], getattr(rescued, f)])
                             for f in ("theta", "value", "converged", "iterations")))
        value = np.where(np.isfinite(sol.value), sol.value, np.inf)
        best = float(value.min())
        if not np.isfinite(best):
            return None
        pick = int(np.flatnonzero(value <= best + tie_tolerance(problem, best))[0])
        chosen = Solution(sol.theta[pick:pick + 1], sol.value[pick:pick + 1], sol.converged[pick:pick + 1],
                          sol.iterations[pick:pick + 1])
        return None if stopped_short(problem, chosen)[0] else chosen.theta[0]
    except np.linalg.LinAlgError:
        return None


def _held_out_fit(runs: Runs, form: Form, objective: Objective, full: FitResult | None) -> np.ndarray:
    """Parameters fitted to held-out training rows: warm-started from the fit on all rows (`full`) when
    that converged, else (or when the warm start cannot be verified) by the full global search."""
    if full is not None and full.converged and len(full.minima):
        theta = warm_fit(runs, form, objective, full.minima)
        if theta is not None:
            return theta
    return _quiet_fit(runs, form, objective).values


def cross_validate(runs: Runs, form: Form, objective: Objective, labels: np.ndarray,
                   full: FitResult | None = None) -> HeldOutError:
    """Fit on all folds but one and predict that one, for every fold; errors over all rows. With
    `full` (the fit on all rows) the fold fits start from its minima (`warm_fit`); without it each runs
    the full global search."""
    observed = form.observed(runs)
    predicted = np.full(len(runs), np.nan)
    n_folds = int(labels.max()) + 1
    n_train = len(runs) - int(np.bincount(labels, minlength=n_folds).max())  # the smallest training set
    for fold in range(n_folds):
        test = labels == fold
        try:
            values = _held_out_fit(subset(runs, ~test), form, objective, full)
        except ScalefitError as exc:
            return _errors(observed, np.full(len(runs), np.nan), n_train, failed=f"fold {fold + 1}: {exc}")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            predicted[test] = form.predict(values[None, :], form.inputs(subset(runs, test)))[0]
    return _errors(observed, predicted, n_train)


def extrapolate(runs: Runs, form: Form, objective: Objective, held_out: np.ndarray,
                full: FitResult | None = None) -> HeldOutError:
    """Fit on the rows not `held_out` and predict the held-out ones (from `full`'s minima when given,
    as in `cross_validate`)."""
    n_train = int((~held_out).sum())
    test = subset(runs, held_out)
    try:
        values = _held_out_fit(subset(runs, ~held_out), form, objective, full)
    except ScalefitError as exc:
        return _errors(form.observed(test), np.full(len(test), np.nan), n_train, failed=str(exc))
    return _predicted_errors(form, values, test, n_train)


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

    The held-out fits (cross-validation folds, extrapolation) start from the minima of each form's fit
    on all rows and fall back to the full global search when that start cannot be verified
    (`warm_fit`); `exhaustive=True` runs the full global search for every one of them (slower; the
    reference the tests compare with).

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
            result = _quiet_fit(runs, form, the_objective, "auto" if exhaustive else "best")
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


def rank_entries(entries: Sequence[FormComparison], rank_by: str) -> tuple[FormComparison, ...]:
    """Forms that fitted, best first by `rank_by` (those without the metric after, by AIC), numbered
    from 1; then the forms that failed, in their order."""
    ok = [e for e in entries if e.ok]
    ok.sort(key=lambda e: (not np.isfinite(e.metric(rank_by)), np.nan_to_num(e.metric(rank_by), nan=0.0),
                           np.nan_to_num(e.fit.stats.aic, nan=np.inf)))
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
