"""Tables in: read a file (`readers`), find the columns by the names people use, validate the rows.

Only the standard library and numpy are imported here, so that `scalefit fit` starts fast;
pyarrow (Parquet) and pandas (`Runs.to_frame`) are imported where they are needed.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import DataError, column_option, from_cli, option
from .readers import (  # noqa: F401  (re-exported: reading files lived here)
    FORMATS,
    MAX_DECOMPRESSED_BYTES,
    Table,
    _check_duplicates,
    detect_format,
    read_table,
)

ROLES = ("width", "depth", "tokens", "loss", "params", "flops", "group")
NUMERIC_ROLES = ("width", "depth", "tokens", "loss", "params", "flops")

# Names people really write, compared after lower-casing and dropping spaces and punctuation.
ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    "width": ("d_model", "hidden_size", "n_embd", "width", "dim"),
    "depth": ("n_layers", "num_layers", "n_layer", "layers", "depth"),
    "tokens": ("tokens", "num_tokens", "training_tokens", "n_tokens", "D"),
    "loss": ("loss", "final_loss", "val_loss", "eval_loss"),
    "params": ("params", "n_params", "num_params", "model_size", "Model Size", "N",
               "params_active_precise"),
    "flops": ("flops", "FLOP", "Training FLOP", "compute", "C"),
    "group": ("group", "run", "run_name", "run_id", "model", "model_name"),
}

_SUFFIXES = {"": 0, "k": 3, "m": 6, "b": 9, "g": 9, "t": 12}  # powers of ten
_NUMBER = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([kKmMbBgGtT]?)$")
_MISSING = {"", "na", "n/a", "null", "none"}
TOKENS_FROM_FLOPS_NOTE = "tokens were not in the table: computed as flops / (6 * params)"
MAX_LISTED = 5


def ordinal(n: int) -> str:
    """`1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`, `40th`."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def normalize_name(name: str) -> str:
    """Lower-case a column name and drop everything but letters and digits."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def parse_number(text: Any) -> float | None:
    """Parse `1.3B`, `70M`, `300B`, `1e9`, `1,000`; None for a missing cell; raise ValueError otherwise."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise ValueError(text)
    if isinstance(text, (int, np.integer)):
        try:
            return float(text)
        except OverflowError:  # a JSON integer of hundreds of digits
            return math.inf if text > 0 else -math.inf
    if isinstance(text, (float, np.floating)):
        return float(text)
    s = str(text).strip()
    if s.lower() in _MISSING:
        return None
    if s.lower() in ("nan", "+nan", "-nan"):
        return math.nan
    if s.lower() in ("inf", "+inf", "infinity", "+infinity"):
        return math.inf
    if s.lower() in ("-inf", "-infinity"):
        return -math.inf
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?", s):
        s = s.replace(",", "")
    match = _NUMBER.match(s)
    if not match:
        raise ValueError(text)
    # scale in decimal, then round once: 2.01k is 2010.0, not 2.01 * 1e3 = 2009.9999999999998
    try:
        return float(Decimal(match.group(1)).scaleb(_SUFFIXES[match.group(2).lower()]))
    except ArithmeticError:  # an exponent beyond Decimal's range (1e1000000): beyond float's too
        return float(match.group(1)) * 10.0 ** _SUFFIXES[match.group(2).lower()]


@dataclass(frozen=True)
class Runs:
    """A validated table of training runs.

    `data` maps column names to numpy arrays (float for numeric columns, object for text);
    `roles` maps a role (width, depth, tokens, loss, params, flops, group) to the column that plays it.

    >>> runs = load_runs("data/example_runs.csv")
    >>> len(runs), runs.roles["tokens"], runs.data["d_model"][:2]
    (256, 'num_tokens', array([5120.,  512.]))
    """

    path: str
    sha256: str | None
    data: Mapping[str, np.ndarray]
    roles: Mapping[str, str]
    n_total: int
    n_excluded: int = 0
    notes: tuple[str, ...] = ()
    kept_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    options: Mapping[str, Any] = field(default_factory=dict)  # how load_runs read it, to read it again

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    @property
    def group_column(self) -> str | None:
        """The column whose rows belong to one run (the `group` role), or None."""
        return self.roles.get("group")

    def group_index(self) -> tuple[np.ndarray, int] | None:
        """Each row's group as an index 0..G-1 (in order of first appearance) and G; None without a
        group column."""
        column = self.group_column
        if column is None or column not in self.data:
            return None
        values = np.asarray(self.data[column]).astype(str)
        _, first, index = np.unique(values, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))  # number groups by first appearance
        return order[index].astype(int), len(first)

    def column(self, key: str) -> np.ndarray:
        """The array for a role name or a column name."""
        if key in self.roles:
            return self.data[self.roles[key]]
        if key in self.data:
            return self.data[key]
        raise DataError(f"{self.path}: no column or role '{key}'")

    def has(self, key: str) -> bool:
        return key in self.roles or key in self.data

    def __repr__(self) -> str:
        """One line: `<Runs 203 rows from runs.csv (42 dropped); width=d_model, ..., loss=loss>`."""
        dropped = f" ({self.n_excluded} dropped)" if self.n_excluded else ""
        roles = ", ".join(f"{role}={column}" for role, column in self.roles.items())
        return f"<Runs {len(self)} rows from {Path(self.path).name}{dropped}; {roles}>"

    def _repr_html_(self) -> str:
        from .report import html_table

        frame = self.to_frame()
        return html_table(frame.head(10), repr(self)[1:-1] + (" (first 10 rows)" if len(frame) > 10 else ""))

    def to_frame(self):
        """The rows as a pandas DataFrame (imports pandas)."""
        import pandas as pd

        return pd.DataFrame({name: values for name, values in self.data.items()})


# ---------------------------------------------------------------- columns and roles


def closest(name: str, options: Iterable[str], n: int = 3) -> list[str]:
    options = list(options)
    by_norm = {normalize_name(o): o for o in options}
    hits = difflib.get_close_matches(normalize_name(name), list(by_norm), n=n, cutoff=0.4)
    return [by_norm[h] for h in hits]


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    near = closest(name, options)
    return f" (closest: {', '.join(repr(c) for c in near)})" if near else ""


def _pairs(items: Sequence[str] | Mapping[str, Any] | None, flag: str, expected: str, example: str
           ) -> list[tuple[str, Any]]:
    """`KEY=VALUE` items of a repeatable option (or a mapping, from the library) as (key, value) pairs."""
    if not items:
        return []
    if isinstance(items, Mapping):
        return list(items.items())
    pairs = []
    for item in items:
        if "=" not in item:
            raise DataError(f"{flag} '{item}': expected {expected}, e.g. {example}")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value.strip()))
    return pairs


def parse_column_overrides(items: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Turn `--column ROLE=NAME` items into a dict, checking the roles."""
    pairs = _pairs(items, option("columns"), "ROLE=NAME", option("columns", "width=d_model"))
    out = {}
    for role, name in pairs:
        if role not in ROLES:
            raise DataError(f"{option('columns')} '{role}={name}': unknown role '{role}'; roles are "
                            f"{', '.join(ROLES)}")
        if not name:
            raise DataError(f"{option('columns')} '{role}=': the column name is empty")
        out[role] = name
    return out


def resolve_role(path: str, names: Sequence[str], role: str,
                 overrides: Mapping[str, str]) -> str | None:
    """The column that plays `role`, or None when no column does. Two candidates is an error."""
    if role in overrides:
        wanted = overrides[role]
        if wanted in names:
            return wanted
        by_norm = [n for n in names if normalize_name(n) == normalize_name(wanted)]
        if len(by_norm) == 1:
            return by_norm[0]
        raise DataError(f"{path}: {option('columns')} {role}={wanted}: no such column"
                        f"{_did_you_mean(wanted, names)}")
    aliases = {normalize_name(a) for a in ROLE_ALIASES[role]}
    taken = set(overrides.values())
    hits = [n for n in names if normalize_name(n) in aliases and n not in taken]
    if len(hits) > 1:
        raise DataError(f"{path}: two columns could be the {role}: {', '.join(repr(h) for h in hits)}; "
                        f"choose one with {column_option(role)}")
    return hits[0] if hits else None


def _format_rows(rows: Sequence[int]) -> str:
    """`row 5` or `rows 4, 9, 17` (the first few, then how many in all)."""
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED])
    more = f", ... ({len(rows)} in all)" if len(rows) > MAX_LISTED else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


_PLAIN_CHARACTERS = np.zeros(256, dtype=bool)
_PLAIN_CHARACTERS[np.frombuffer(b"0123456789.eE+-\n", dtype=np.uint8)] = True


def _plain_numbers(cells: Sequence[Any]) -> np.ndarray | None:
    """The cells as floats when every one is a plain decimal number such as `-1.5e+09` (no suffix, no
    thousands separator, no blank), else None. Python's float() accepts exactly these strings from
    that alphabet, and rounds them as `parse_number` does, so a big table skips the per-cell parser."""
    try:
        joined = "\n".join(cells).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return None
    if not _PLAIN_CHARACTERS[np.frombuffer(joined, dtype=np.uint8)].all():
        return None
    try:
        return np.array(cells, dtype=float)
    except ValueError:  # "", "1e", "1.2.3", ...: the per-cell parser says which row is wrong
        return None


def numeric_column(path: str, name: str, cells: Sequence[Any], *, positive: bool = True,
                   row_numbers: Sequence[int] | None = None) -> np.ndarray:
    """Parse one column to floats; raise a DataError naming rows and values that are not usable.

    Row numbers are 1-based data rows (the header is not counted).
    """
    rows = list(row_numbers) if row_numbers is not None else list(range(1, len(cells) + 1))
    plain = _plain_numbers(cells)
    values = np.empty(len(cells)) if plain is None else plain
    bad: list[tuple[int, Any]] = []
    missing: list[int] = []
    for i, cell in enumerate(cells if plain is None else ()):
        try:
            v = parse_number(cell)
        except ValueError:
            bad.append((rows[i], cell))
            continue
        if v is None:
            missing.append(rows[i])
            v = math.nan
        values[i] = v
    if bad:
        examples = ", ".join(repr(str(v)) for _, v in bad[:3])
        raise DataError(f"{path}: column '{name}' has {len(bad)} non-numeric value"
                        f"{'s' if len(bad) > 1 else ''} ({_format_rows([r for r, _ in bad])}): "
                        f"{examples}")
    if missing:
        raise DataError(f"{path}: column '{name}' has {len(missing)} empty cell"
                        f"{'s' if len(missing) > 1 else ''} ({_format_rows(missing)}); "
                        f"fill them or pass {option('drop_missing')}")
    nan_rows = [rows[i] for i in np.flatnonzero(np.isnan(values))]
    if nan_rows:
        raise DataError(f"{path}: column '{name}' has NaN in {_format_rows(nan_rows)}")
    inf_rows = [rows[i] for i in np.flatnonzero(np.isinf(values))]
    if inf_rows:
        raise DataError(f"{path}: column '{name}' has infinite values in {_format_rows(inf_rows)}")
    if positive:
        bad_rows = np.flatnonzero(values <= 0)
        if len(bad_rows):
            examples = ", ".join(f"{values[i]:g}" for i in bad_rows[:3])
            raise DataError(f"{path}: column '{name}' must be positive (powers and logs of it are "
                            f"taken) but {_format_rows([rows[i] for i in bad_rows])} "
                            f"hold{'s' if len(bad_rows) == 1 else ''} "
                            f"{examples}")
    return values


# ---------------------------------------------------------------- joining an architecture table


def _parse_on(on: str | None, left: Table, right: Table) -> tuple[str, str]:
    if not on:
        shared = [n for n in left.names if n in right.names]
        if len(shared) == 1:
            return shared[0], shared[0]
        raise DataError(f"{option('configs')} needs {option('on', 'KEY')} or {option('on', 'LEFT=RIGHT')} "
                        f"(the column that names the model in each table)")
    left_key, right_key = (on.split("=", 1) + [None])[:2] if "=" in on else (on, on)
    left_key, right_key = left_key.strip(), right_key.strip()
    if left_key not in left.names:
        raise DataError(f"{left.path}: {option('on')}: no column '{left_key}'"
                        f"{_did_you_mean(left_key, left.names)}")
    if right_key not in right.names:
        raise DataError(f"{right.path}: {option('on')}: no column '{right_key}'"
                        f"{_did_you_mean(right_key, right.names)}")
    return left_key, right_key


def _match_keys(left_keys: Sequence[str], right_keys: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Map each left key to a right key: exactly, else ignoring case and punctuation, else a unique
    right key that ends with the left one (`small` -> `GPT-3 Small`)."""
    norm_right: dict[str, list[str]] = {}
    for key in right_keys:
        norm_right.setdefault(normalize_name(key), []).append(key)
    mapping, loose = {}, []
    for key in left_keys:
        if key in right_keys:
            mapping[key] = key
            continue
        nk = normalize_name(key)
        if nk in norm_right and len(norm_right[nk]) == 1:
            mapping[key] = norm_right[nk][0]
            continue
        ends = [r for n, rs in norm_right.items() for r in rs if nk and n.endswith(nk)]
        if len(ends) == 1:
            mapping[key] = ends[0]
            loose.append(f"'{key}' -> '{ends[0]}'")
    return mapping, loose


def join_configs(left: Table, right: Table, on: str | None) -> tuple[Table, str]:
    """Add the columns of an architecture table (`right`) to every row of `left` by a model key."""
    left_key, right_key = _parse_on(on, left, right)
    right_keys = [str(k) for k in right.cells[right_key]]
    dup = sorted({k for k in right_keys if right_keys.count(k) > 1})
    if dup:
        raise DataError(f"{right.path}: key column '{right_key}' repeats {', '.join(map(repr, dup))}")
    left_keys = [str(k) for k in left.cells[left_key]]
    unique_left = list(dict.fromkeys(left_keys))
    mapping, loose = _match_keys(unique_left, right_keys)
    unmatched = [k for k in unique_left if k not in mapping]
    if unmatched:
        parts = [f"'{k}'{_did_you_mean(k, right_keys)}" for k in unmatched[:MAX_LISTED]]
        several = len(unmatched) > 1
        raise DataError(f"{left.path}: {len(unmatched)} value{'s' if several else ''} of '{left_key}' "
                        f"{'have' if several else 'has'} no row in {right.path} ('{right_key}'): "
                        + "; ".join(parts))
    index = {k: i for i, k in enumerate(right_keys)}
    names = list(left.names)
    cells = dict(left.cells)
    for name in right.names:
        if name == right_key:
            continue
        target = name if name not in cells else f"{name}_config"
        column = right.cells[name]
        cells[target] = tuple(column[index[mapping[k]]] for k in left_keys)
        names.append(target)
    note = f"joined {right.path} on {left_key}={right_key}"
    if loose:
        note += " (loose key matches: " + ", ".join(loose) + ")"
    return Table(left.path, tuple(names), cells, left.sha256), note


# ---------------------------------------------------------------- the entry point


def load_runs(path: str | Path | Any, *, require: Sequence[str] | None = None,
              format: str | None = None, columns: Sequence[str] | Mapping[str, str] | None = None,
              configs: str | Path | Any | None = None, on: str | None = None, exclude_top_loss: int = 0,
              drop_missing: bool = False, response: str = "loss",
              positive: Sequence[str] | None = None, form: Any = None, group: str | None = None,
              scale: Sequence[str] | Mapping[str, float] | None = None,
              min_values: Sequence[str] | Mapping[str, float] | None = None,
              max_values: Sequence[str] | Mapping[str, float] | None = None,
              last_per_group: bool = False) -> Runs:
    """Read a table of runs, resolve the columns `require`d (roles or column names), validate them,
    and drop the highest-loss rows.

    `path` is a file (CSV, TSV, JSON lines, JSON, Parquet) or a pandas DataFrame (empty cells: NaN or
    None). `form` (a name such as "chinchilla", a shipped or YAML form, or a `Form`) says which columns
    are needed: its variables and response; without it, `require` does (default: width, depth, tokens
    and loss, what the decomposed law needs). `positive` lists the columns that must hold positive
    values (default: every column used). `configs` (a file or DataFrame) is an architecture table
    joined on the key `on`.

    Rows, in this order: rows with empty cells are dropped (`drop_missing`); columns are multiplied by
    `scale` ({role or column: factor}, e.g. GPT-3's `step` in billions of tokens: {"tokens": 1e9});
    rows outside `min_values` / `max_values` ({role or column: value}, inclusive) are dropped;
    `last_per_group` keeps each run's row with the most tokens (final losses only); last,
    `exclude_top_loss=K` keeps rows whose `response` column is strictly below its K-th highest value
    (ties drop more rows), the rule Liu et al. and Epoch AI used. `group` names the column whose
    rows belong to one run (or several columns, comma-separated, whose combination does); by default
    a column named group, run, run_name, run_id, model or model_name.

    >>> runs = load_runs("data/example_runs.csv", exclude_top_loss=10)
    >>> len(runs), runs.roles["width"], runs.n_excluded
    (246, 'd_model', 10)
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"N": [1e8, 4e8, 1.6e9], "D": [2e9, 8e9, 3.2e10], "loss": [3.1, 2.8, 2.5]})
    >>> load_runs(frame, form="chinchilla").roles
    {'tokens': 'D', 'loss': 'loss', 'params': 'N'}
    """
    if form is not None:
        the_form = _form_for(form)
        require = the_form.required_columns() if require is None else require
        response = the_form.response_columns()[0]
        positive = the_form.positive_columns() if positive is None else positive
    elif require is None:
        require = DEFAULT_REQUIRE
    if exclude_top_loss < 0:
        raise DataError(f"{option('exclude_top_loss')} must be 0 or more, not {exclude_top_loss}")
    overrides = parse_column_overrides(columns)
    scales = parse_role_values(scale, option("scale"), positive=True)
    lows = parse_role_values(min_values, option("min_values"))
    highs = parse_role_values(max_values, option("max_values"))
    group_parts = [g.strip() for g in group.split(",")] if group else []
    if group_parts and (not all(group_parts)):
        raise DataError(f"{option('group', group)}: empty column name")
    table = _as_table(path, format)
    notes: list[str] = []
    if configs is not None:
        table, note = join_configs(table, _as_table(configs, None), on)
        notes.append(note)
    elif on:
        raise DataError(f"{option('on')} is only used with {option('configs', 'FILE')}")
    names = table.names
    roles: dict[str, str] = {}
    for role in ROLES:
        try:
            found = resolve_role(table.path, names, role, overrides)
        except DataError:
            if role in require or role in overrides:
                raise
            continue  # an ambiguous role nobody asked for does not matter
        if found is not None:
            roles[role] = found

    if group_parts:  # a column may be the group and play another role too (--group d_model)
        parts = [roles.get(g, g) for g in group_parts]
        for part, given in zip(parts, group_parts, strict=True):
            if part not in names:
                raise DataError(f"{table.path}: {option('group')}: no column '{given}'"
                                f"{_did_you_mean(given, names)}")
        roles["group"] = ",".join(parts)
    wanted = list(dict.fromkeys(list(require) + ([response] if response not in require else [])))
    filter_keys = list(dict.fromkeys(list(scales) + list(lows) + list(highs)))
    for key in filter_keys:
        if key not in ROLES and key not in names:
            raise DataError(f"{table.path}: no column or role '{key}' to scale or filter"
                            f"{_did_you_mean(key, names)}")
        if key in ROLES and key not in roles and not (key == "tokens" and "flops" in roles):
            raise DataError(_missing_message(table, key, overrides))
    wanted += [k for k in filter_keys if k not in wanted and k != "group"]
    if last_per_group:
        if "group" not in roles:
            raise DataError(f"{table.path}: {option('last_per_group')} needs a group column (group, run, "
                            f"run_name, run_id, model, model_name) or {option('group', 'COLUMN')}")
        if "tokens" not in wanted:
            wanted.append("tokens")
    derive_tokens = "tokens" in wanted and "tokens" not in roles
    if derive_tokens:
        if "flops" in roles and "params" in roles:
            wanted = [w for w in wanted if w != "tokens"] + ["flops", "params"]
        else:
            raise DataError(_missing_message(table, "tokens", overrides))
    for key in wanted:
        if key in ROLES and key not in roles:
            raise DataError(_missing_message(table, key, overrides))
        if key not in ROLES and key not in names:
            raise DataError(f"{table.path}: no column '{key}'{_did_you_mean(key, names)}")

    n_total = len(table)
    row_numbers = np.arange(1, n_total + 1)
    keep = np.ones(n_total, dtype=bool)
    used_columns = list(dict.fromkeys(roles.get(k, k) for k in wanted))
    if drop_missing:
        for name in used_columns:
            missing = np.array([_is_missing(c) for c in table.cells[name]])
            keep &= ~missing
        if keep.sum() < n_total:
            notes.append(f"{n_total - int(keep.sum())} rows with empty cells dropped "
                         f"({option('drop_missing')})")
    idx = np.flatnonzero(keep)
    # powers and logs need positive values; a form may say which of its columns need them
    must_be_positive = set(used_columns) if positive is None else {
        roles.get(k, k) for k in positive} | ({roles["flops"], roles["params"]} if derive_tokens else set())
    data: dict[str, np.ndarray] = {}
    for name in used_columns:
        cells = table.cells[name] if len(idx) == n_total else [table.cells[name][i] for i in idx]
        data[name] = numeric_column(table.path, name, cells, row_numbers=row_numbers[idx],
                                    positive=name in must_be_positive)
    if "group" in roles and roles["group"] not in names:  # several columns: their combination
        data[roles["group"]] = np.array(["|".join(str(table.cells[p][i]) for p in roles["group"].split(","))
                                         for i in idx], dtype=object)
    elif "group" in roles and roles["group"] not in data:
        group_cells = table.cells[roles["group"]]
        if len(idx) < n_total:
            group_cells = [group_cells[i] for i in idx]
        data[roles["group"]] = np.array(list(map(str, group_cells)), dtype=object)
    for name in names:  # other numeric columns ride along for YAML forms and plots
        if name in data:
            continue
        plain = _plain_numbers(table.cells[name] if len(idx) == n_total else
                               [table.cells[name][i] for i in idx])
        if plain is not None:
            data[name] = plain
            continue
        try:
            data[name] = np.array([parse_number(table.cells[name][i]) for i in idx], dtype=float)
        except (ValueError, TypeError):
            data[name] = np.array([table.cells[name][i] for i in idx], dtype=object)
    if derive_tokens:
        tokens = data[roles["flops"]] / (6.0 * data[roles["params"]])
        data["tokens"] = tokens
        roles["tokens"] = "tokens"
        notes.append(TOKENS_FROM_FLOPS_NOTE)
    n_missing = n_total - len(idx)

    for key, factor in scales.items():
        data[roles.get(key, key)] = data[roles.get(key, key)] * factor
        notes.append(f"{key} = column '{roles.get(key, key)}' × {factor:g} ({option('scale')})")
    mask = np.ones(len(idx), dtype=bool)
    for bounds, word, keep_if, name in ((lows, "below", np.greater_equal, "min_values"),
                                        (highs, "above", np.less_equal, "max_values")):
        for key, limit in bounds.items():
            inside = keep_if(data[roles.get(key, key)], limit)
            dropped = int((mask & ~inside).sum())
            mask &= inside
            notes.append(f"dropped {dropped} rows with {key} {word} {limit:g} ({option(name)})")
    if not mask.any():
        raise DataError(f"{table.path}: no rows left after {option('min_values')} / {option('max_values')}")
    if last_per_group:
        kept_before = int(mask.sum())
        mask &= _last_of_each_group(data[roles["group"]], data[roles["tokens"]], mask)
        notes.append(f"kept each run's last row (most tokens): {int(mask.sum())} of {kept_before} rows "
                     f"({option('last_per_group')})")
    n_filtered = int((~mask).sum())
    data = {k: v[mask] for k, v in data.items()}
    idx = idx[mask]

    response_col = data[roles.get(response, response)]
    n_excluded = 0
    mask = np.ones(len(idx), dtype=bool)
    if exclude_top_loss:
        if exclude_top_loss > len(response_col):
            raise DataError(f"{table.path}: {option('exclude_top_loss', exclude_top_loss)} is more than the "
                            f"{len(response_col)} rows")
        threshold = np.sort(response_col)[::-1][exclude_top_loss - 1]
        mask = response_col < threshold
        n_excluded = int((~mask).sum())
        notes.append(f"excluded {n_excluded} rows with {roles.get(response, response)} >= "
                     f"{threshold:.6g} (the {ordinal(exclude_top_loss)} highest)")
        if not mask.any():
            raise DataError(f"{table.path}: no rows left after "
                            f"{option('exclude_top_loss', exclude_top_loss)}")
    data = {k: v[mask] for k, v in data.items()}
    options = {"format": format, "columns": overrides, "configs": None if configs is None else str(configs),
               "on": on, "exclude_top_loss": exclude_top_loss, "drop_missing": drop_missing,
               "group": group, "scale": dict(scales), "min_values": dict(lows), "max_values": dict(highs),
               "last_per_group": last_per_group}
    return Runs(path=table.path, sha256=table.sha256, data=data, roles=roles, n_total=n_total,
                n_excluded=n_excluded + n_missing + n_filtered, notes=tuple(notes), kept_rows=idx[mask],
                options=options)


def parse_role_values(items: Sequence[str] | Mapping[str, float] | None, flag: str,
                      positive: bool = False) -> dict[str, float]:
    """`ROLE=VALUE` items (`--scale tokens=1e9`, `--min tokens=5B`) as {role or column: value}."""
    out = {}
    for key, value in _pairs(items, flag, "ROLE=VALUE", f"{flag} tokens=1e9"):
        try:
            number = parse_number(value)
        except ValueError:
            number = None
        if number is None or not math.isfinite(number) or (positive and number <= 0):
            kind = "a positive number" if positive else "a number"
            raise DataError(f"{flag} {key}={value}: the value must be {kind}")
        if not key:
            raise DataError(f"{flag} '={value}': the role or column is empty")
        out[key] = number
    return out


def _last_of_each_group(groups: np.ndarray, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A mask of each group's row with the most tokens among the rows in `mask` (the first on a tie)."""
    keep = np.zeros(len(groups), dtype=bool)
    rows = np.flatnonzero(mask)
    order = rows[np.lexsort((-tokens[rows], groups[rows].astype(str)))]
    labels = groups[order].astype(str)
    first = np.ones(len(order), dtype=bool)
    first[1:] = labels[1:] != labels[:-1]
    keep[order[first]] = True
    return keep


DEFAULT_REQUIRE = ("width", "depth", "tokens", "loss")
FRAME_PATH = "<DataFrame>"


def _form_for(form: Any):
    """A form from what `load_runs(form=...)` accepts: a `Form`, a built-in or shipped name, a YAML path."""
    from .forms import BUILTIN_FORMS, Form, get_form, shipped_form_path

    if isinstance(form, Form):
        return form
    text = str(form)
    if text in BUILTIN_FORMS:
        return get_form(text)
    from .spec import load_form

    shipped = shipped_form_path(text)
    return load_form(shipped if shipped is not None and not Path(text).is_file() else text)


def _as_table(source: Any, fmt: str | None) -> Table:
    """A raw `Table` from a file path, or from a pandas DataFrame (or a dict of columns), whose NaN
    and None cells count as empty."""
    if isinstance(source, (str, Path)):
        return read_table(source, fmt)
    if hasattr(source, "columns") and hasattr(source, "to_dict"):  # a pandas DataFrame, duck-typed
        names = [str(c) for c in source.columns]
        _check_duplicates(Path(FRAME_PATH), names)
        columns = {str(c): source[c].tolist() for c in source.columns}
    elif isinstance(source, Mapping):
        names = [str(c) for c in source]
        columns = {str(c): list(v) for c, v in source.items()}
    else:
        raise DataError(f"a table must be a file path or a pandas DataFrame, not {type(source).__name__}")
    if not names or not any(len(v) for v in columns.values()):
        raise DataError(f"{FRAME_PATH}: the table is empty")
    cells = {name: tuple(None if _is_missing(v) else v for v in columns[name]) for name in names}
    return Table(FRAME_PATH, tuple(names), cells, None)


def _is_missing(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and cell.strip().lower() in _MISSING) or (
        isinstance(cell, float) and math.isnan(cell))


def _missing_message(table: Table, role: str, overrides: Mapping[str, str]) -> str:
    aliases = ", ".join(ROLE_ALIASES.get(role, ()))
    extra = ""
    if role == "tokens":
        extra = " (or both flops and params, to compute tokens = flops / (6 * params))"
    law = "" if from_cli() else "; or pass form=... (e.g. form='chinchilla') to need only that law's columns"
    return (f"{table.path}: no column for {role}{extra}; looked for {aliases}; the table has "
            f"{', '.join(repr(n) for n in table.names)}; name one with {column_option(role)}{law}")
