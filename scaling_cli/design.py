"""What a table's design can and cannot pin down: levels and ranges of each variable, how width and
depth move together, how rows fall into runs (groups), and which parameters vary only between runs.

A fit's uncertainty is only as good as the design behind it. Two facts matter most on real tables:
- On a checkpoint table (every run logged at many token counts) the rows of one run share that run's
  noise, so the number of runs, not the number of rows, limits what is known about every parameter
  whose Jacobian column is constant within a run (the width and depth terms, and the offset L0).
- When log width and log depth move together (Chinchilla: slope 0.6), their exponents trade against
  each other and depth scaling is weakly determined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_LEVELS = 3  # fewer distinct values of a variable cannot pin a power law's coefficient and exponent
COLLINEAR = 0.9  # |correlation| of log width and log depth above which the report warns
GROUPS_PER_PARAMETER = 3  # fewer groups than this many per free parameter: intervals are unreliable
# A table "looks like curves" (checkpoints of runs rather than independent runs) when an architecture
# repeats this many times on the median, or when this share of rows have a token count shared by several
# architectures.
CURVE_MEDIAN_ROWS = 8
CURVE_SHARED_TOKENS = 0.5
WITHIN_SHARE = 1e-8  # a Jacobian column with less than this share of its energy within groups is between


@dataclass(frozen=True)
class VariableDesign:
    """One variable of the form: the column it came from, its distinct values and its range."""

    symbol: str
    column: str
    levels: int
    min: float
    max: float

    @property
    def decades(self) -> float:
        return math.log10(self.max / self.min) if self.min > 0 and self.max > 0 else math.nan


@dataclass(frozen=True)
class Design:
    """The design of a fitted table. `width_depth_correlation` is the correlation of log width with
    log depth over the rows (None when the form has no width and depth), `width_depth_slope` the
    least-squares slope of log depth on log width."""

    variables: tuple[VariableDesign, ...]
    width_depth_correlation: float | None = None
    width_depth_slope: float | None = None
    warnings: tuple[str, ...] = ()

    def variable(self, role_or_symbol: str) -> VariableDesign | None:
        for v in self.variables:
            if role_or_symbol in (v.symbol, v.column):
                return v
        return None

    def to_dict(self) -> dict:
        return {
            "variables": {v.symbol: {"column": v.column, "levels": v.levels, "min": v.min, "max": v.max,
                                     "decades": v.decades} for v in self.variables},
            "width_depth_correlation": self.width_depth_correlation,
            "width_depth_slope": self.width_depth_slope,
            "warnings": list(self.warnings),
        }


def design_from_dict(doc: dict) -> Design:
    """The `Design` of `Design.to_dict()` (a saved fit's `design`)."""
    variables = tuple(VariableDesign(symbol, v["column"], int(v["levels"]), float(v["min"]), float(v["max"]))
                      for symbol, v in doc.get("variables", {}).items())
    return Design(variables, doc.get("width_depth_correlation"), doc.get("width_depth_slope"),
                  tuple(doc.get("warnings", ())))


@dataclass(frozen=True)
class Groups:
    """How rows fall into runs: the group column, each row's group index, and how many groups."""

    column: str
    index: np.ndarray  # (n,) 0..count-1
    count: int

    @property
    def trivial(self) -> bool:
        """Every group has one row: rows are independent runs and clustering changes nothing."""
        return self.count == len(self.index)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.index, minlength=self.count)


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted: np.unique's, without the numpy.ma import it makes (15-20 ms of a
    command's start)."""
    ordered = np.sort(np.asarray(values))
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if ordered.size else ordered


def _levels(values: np.ndarray) -> int:
    """The number of distinct values."""
    return int(distinct(values).size)


def describe_design(form, runs, X: dict[str, np.ndarray]) -> Design:
    """Levels, ranges and the width-depth correlation of the form's variables on the fitted rows."""
    variables = []
    for symbol, key in form.variables.items():
        values = np.asarray(X[symbol], dtype=float)
        column = runs.roles.get(key, key)
        variables.append(VariableDesign(symbol, column, _levels(values), float(values.min()),
                                        float(values.max())))
    warnings = [f"{v.column} has only {v.levels} distinct value{'s' if v.levels != 1 else ''}: fewer than "
                f"{MIN_LEVELS} cannot pin a power law in it" for v in variables if v.levels < MIN_LEVELS]
    r = slope = None
    roles = {key: symbol for symbol, key in form.variables.items()}
    if "width" in roles and "depth" in roles:
        lw, ld = np.log(X[roles["width"]]), np.log(X[roles["depth"]])
        if lw.std() > 0 and ld.std() > 0:
            r = float(np.corrcoef(lw, ld)[0, 1])
            slope = float(np.cov(lw, ld)[0, 1] / lw.var(ddof=1))
            if abs(r) > COLLINEAR:
                warnings.append(f"log width and log depth are nearly collinear (r = {r:.2f}): their "
                                f"exponents trade against each other and are weakly determined")
    return Design(tuple(variables), r, slope, tuple(warnings))


def groups_of(runs) -> Groups | None:
    """The table's groups (the `group` role), or None without a group column."""
    found = runs.group_index()
    if found is None:
        return None
    index, count = found
    return Groups(runs.group_column, index, count)


def between_group(J: np.ndarray, groups: Groups) -> np.ndarray:
    """Mask of the columns of J (n, k) that are constant within every group: parameters that only the
    differences between runs can pin (L0 always; width and depth terms when those are fixed per run)."""
    sums = np.zeros((groups.count, J.shape[1]))
    np.add.at(sums, groups.index, J)
    means = sums / groups.sizes()[:, None]
    within = np.sum((J - means[groups.index]) ** 2, axis=0)
    total = np.sum(J**2, axis=0)
    return within <= WITHIN_SHARE * np.where(total > 0, total, 1.0)


def looks_like_curves(form, runs, X: dict[str, np.ndarray]) -> str | None:
    """On a table without a group column: a sentence suggesting --group when rows repeat an
    architecture at several token counts and the table looks like training curves (many rows per
    architecture, or token counts shared across architectures, as checkpoints are); else None."""
    roles = {key: symbol for symbol, key in form.variables.items()}
    arch = [roles[r] for r in ("width", "depth", "params") if r in roles]
    if not arch or "tokens" not in roles or runs.group_column is not None:
        return None
    keys = np.stack([X[s] for s in arch], axis=1)
    _, arch_index, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    arch_index = arch_index.ravel()
    if counts.size < 2 or np.median(counts) < 2:
        return None
    tokens = X[roles["tokens"]]
    # (return_counts, unused, spares numpy's plain unique its numpy.ma import: 10-20 ms of every fit)
    pairs, _ = np.unique(np.stack([tokens, arch_index.astype(float)], axis=1), axis=0, return_counts=True)
    token_values, archs_per_token = np.unique(pairs[:, 0], return_counts=True)
    shared = np.isin(tokens, token_values[archs_per_token >= MIN_LEVELS]).mean()
    if np.median(counts) < CURVE_MEDIAN_ROWS and shared < CURVE_SHARED_TOKENS:
        return None
    columns = ",".join(runs.roles.get(form.variables[s], s) for s in arch)
    return (f"rows repeat each of {counts.size} architectures at several token counts (median "
            f"{int(np.median(counts))} rows each), like checkpoints of training runs: if the rows of an "
            f"architecture come from one run they are correlated and the intervals are too narrow; "
            f"name the run with --group COLUMN (e.g. --group {columns})")
