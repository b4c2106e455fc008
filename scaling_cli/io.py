"""Tables in: read a file, find the columns by the names people use, validate the rows.

Only the standard library and numpy are imported here, so that `scalefit fit` starts fast;
pyarrow (Parquet) and pandas (`Runs.to_frame`) are imported where they are needed.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io as _io
import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import DataError

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
    "group": ("group", "run", "run_name", "run_id"),
}

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
               ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}
_SUFFIXES = {"": 0, "k": 3, "m": 6, "b": 9, "g": 9, "t": 12}  # powers of ten
_NUMBER = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([kKmMbBgGtT]?)$")
_MISSING = {"", "na", "n/a", "null", "none"}
TOKENS_FROM_FLOPS_NOTE = "tokens were not in the table: computed as flops / (6 * params)"
MAX_LISTED = 5
# A compressed table is decompressed in chunks and refused beyond this size (a table of runs is far
# smaller; a "zip bomb" of 300 MB expands without end).
MAX_DECOMPRESSED_BYTES = 512 * 2**20
DECOMPRESS_CHUNK = 2**20


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
class Table:
    """A raw table: column names in file order and the cells as read (strings or JSON values)."""

    path: str
    names: tuple[str, ...]
    cells: Mapping[str, tuple[Any, ...]]
    sha256: str | None = None

    def __len__(self) -> int:
        return len(self.cells[self.names[0]]) if self.names else 0


@dataclass(frozen=True)
class Runs:
    """A validated table of training runs.

    `data` maps column names to numpy arrays (float for numeric columns, object for text);
    `roles` maps a role (width, depth, tokens, loss, params, flops, group) to the column that plays it.
    """

    path: str
    sha256: str | None
    data: Mapping[str, np.ndarray]
    roles: Mapping[str, str]
    n_total: int
    n_excluded: int = 0
    notes: tuple[str, ...] = ()
    kept_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    def column(self, key: str) -> np.ndarray:
        """The array for a role name or a column name."""
        if key in self.roles:
            return self.data[self.roles[key]]
        if key in self.data:
            return self.data[key]
        raise DataError(f"{self.path}: no column or role '{key}'")

    def has(self, key: str) -> bool:
        return key in self.roles or key in self.data

    def to_frame(self):
        """The rows as a pandas DataFrame (imports pandas)."""
        import pandas as pd

        return pd.DataFrame({name: values for name, values in self.data.items()})


# ---------------------------------------------------------------- reading files


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise DataError(f"unknown format '{fmt}': use one of {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower()
    if suffix in _COMPRESSED:
        suffix = Path(path.stem).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise DataError(f"{path}: cannot tell the format from the extension '{path.suffix}': "
                        f"pass --format ({', '.join(FORMATS)})")
    return _EXTENSIONS[suffix]


def read_table(path: str | Path, fmt: str | None = None) -> Table:
    """Read CSV, TSV, JSON lines, JSON records or Parquet into a raw `Table`."""
    path = Path(path)
    # existence first: "no such file" is the useful message even when the extension is unknown
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a table")
    fmt = detect_format(path, fmt)
    try:
        return _read_table(path, fmt)
    except MemoryError:
        size = path.stat().st_size
        raise DataError(f"{path}: out of memory reading the table ({size / 2**20:.0f} MiB on disk); "
                        f"it is too large for this machine") from None


def _read_table(path: Path, fmt: str) -> Table:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    raw = _decompress(path, raw)
    if fmt == "parquet":
        names, rows = _read_parquet(path)
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(f"{path}: not a text file (not UTF-8); is the format right? "
                            f"pass --format") from None
        if "\x00" in text:
            raise DataError(f"{path}: not a text file (contains NUL bytes)")
        if fmt in ("csv", "tsv"):
            names, rows = _read_delimited(path, text, "," if fmt == "csv" else "\t")
        elif fmt == "jsonl":
            names, rows = _read_jsonl(path, text)
        else:
            names, rows = _read_json(path, text)
    if not names:
        raise DataError(f"{path}: the table is empty (no columns)")
    if not rows:
        raise DataError(f"{path}: the table is empty (a header but no rows)")
    cells = {name: tuple(row.get(name) for row in rows) for name in names}
    return Table(str(path), tuple(names), cells, digest)


def _decompress(path: Path, raw: bytes) -> bytes:
    """The bytes of `runs.csv.gz` (or .bz2, .xz), which `detect_format` reads through."""
    suffix = path.suffix.lower()
    if suffix not in _COMPRESSED:
        return raw
    import importlib

    module = importlib.import_module(_COMPRESSED[suffix])
    chunks, size = [], 0
    try:
        # streamed, so that a small file that expands without end (a "zip bomb") is stopped at the limit
        source = _io.BytesIO(raw)
        stream = (module.GzipFile(fileobj=source) if _COMPRESSED[suffix] == "gzip"
                  else getattr(module, {"bz2": "BZ2File", "lzma": "LZMAFile"}[_COMPRESSED[suffix]])(source))
        with stream:
            while chunk := stream.read(DECOMPRESS_CHUNK):
                size += len(chunk)
                if size > MAX_DECOMPRESSED_BYTES:
                    limit = MAX_DECOMPRESSED_BYTES // 2**20
                    raise DataError(f"{path}: decompresses to more than {limit} MiB, the limit for a "
                                    f"table; decompress it yourself if it really is one")
                chunks.append(chunk)
    except DataError:
        raise
    except Exception as exc:  # gzip, bz2 and lzma each raise their own error types
        raise DataError(f"{path}: cannot decompress ({exc})") from None
    return b"".join(chunks)


def _check_duplicates(path: Path, names: Sequence[str]) -> None:
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    dups = [name for name, count in seen.items() if count > 1]
    if dups:
        raise DataError(f"{path}: duplicate column names: {', '.join(repr(d) for d in dups)}")


def _read_delimited(path: Path, text: str, delimiter: str) -> tuple[list[str], list[dict]]:
    reader = csv.reader(_io.StringIO(text), delimiter=delimiter)
    try:
        # keep the file's line numbers: blank lines are skipped but still counted in messages
        lines = [(reader.line_num, line) for line in reader if line and any(cell.strip() for cell in line)]
    except csv.Error as exc:
        raise DataError(f"{path}: malformed {'CSV' if delimiter == ',' else 'TSV'}: {exc}") from None
    if not lines:
        raise DataError(f"{path}: the table is empty")
    names = [name.strip() for name in lines[0][1]]
    if any(not name for name in names):
        raise DataError(f"{path}: the header has an empty column name (column "
                        f"{[i + 1 for i, n in enumerate(names) if not n][0]})")
    _check_duplicates(path, names)
    rows = []
    for number, line in lines[1:]:
        if len(line) != len(names):
            raise DataError(f"{path}: line {number} has {len(line)} fields, the header has "
                            f"{len(names)}")
        rows.append(dict(zip(names, line, strict=False)))
    return names, rows


def _collect_names(path: Path, records: Iterable[dict]) -> list[str]:
    names: list[str] = []
    seen = set()
    for record in records:
        for key in record:
            if key not in seen:
                seen.add(key)
                names.append(key)
    return names


def _read_jsonl(path: Path, text: str) -> tuple[list[str], list[dict]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        except (RecursionError, ValueError) as exc:
            raise DataError(f"{path}: line {number}: {_json_limit_message(exc)}") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number} is not a JSON object")
        rows.append(record)
    return _collect_names(path, rows), rows


def _json_limit_message(exc: Exception) -> str:
    """Python's JSON reader stops at arrays or objects nested past its recursion limit and at integers
    of more than 4300 digits; neither is a table of runs."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply to be a table of runs (arrays or objects inside each other)"
    return f"a JSON value scalefit cannot read ({exc})"


def _read_json(path: Path, text: str) -> tuple[list[str], list[dict]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (RecursionError, ValueError) as exc:
        raise DataError(f"{path}: {_json_limit_message(exc)}") from None
    # {"runs": [{...}, ...]} is records under a wrapper key, not one column of objects
    if isinstance(doc, dict) and len(doc) == 1:
        (only,) = doc.values()
        if isinstance(only, list) and only and all(isinstance(r, dict) for r in only):
            doc = only
    if isinstance(doc, dict) and all(isinstance(v, list) for v in doc.values()) and doc:
        lengths = {len(v) for v in doc.values()}
        if len(lengths) != 1:
            raise DataError(f"{path}: JSON columns have different lengths {sorted(lengths)}")
        names = list(doc)
        rows = [dict(zip(names, values, strict=False)) for values in zip(*doc.values(), strict=False)]
        return names, rows
    if isinstance(doc, dict):
        for key in ("records", "data", "runs", "rows"):
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise DataError(f"{path}: JSON must be a list of records (objects) or an object of "
                        f"columns")
    return _collect_names(path, doc), doc


def _read_parquet(path: Path) -> tuple[list[str], list[dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install 'scaling-cli[parquet]'"
                        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types for a broken file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    names = list(table.column_names)
    _check_duplicates(path, names)
    return names, table.to_pylist()


# ---------------------------------------------------------------- columns and roles


def closest(name: str, options: Iterable[str], n: int = 3) -> list[str]:
    options = list(options)
    by_norm = {normalize_name(o): o for o in options}
    hits = difflib.get_close_matches(normalize_name(name), list(by_norm), n=n, cutoff=0.4)
    return [by_norm[h] for h in hits]


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    near = closest(name, options)
    return f" (closest: {', '.join(repr(c) for c in near)})" if near else ""


def parse_column_overrides(items: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Turn `--column ROLE=NAME` items into a dict, checking the roles."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            if "=" not in item:
                raise DataError(f"--column '{item}': expected ROLE=NAME, e.g. --column width=d_model")
            role, name = item.split("=", 1)
            pairs.append((role.strip(), name.strip()))
    out = {}
    for role, name in pairs:
        if role not in ROLES:
            raise DataError(f"--column '{role}={name}': unknown role '{role}'; roles are "
                            f"{', '.join(ROLES)}")
        if not name:
            raise DataError(f"--column '{role}=': the column name is empty")
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
        raise DataError(f"{path}: --column {role}={wanted}: no such column{_did_you_mean(wanted, names)}")
    aliases = {normalize_name(a) for a in ROLE_ALIASES[role]}
    taken = set(overrides.values())
    hits = [n for n in names if normalize_name(n) in aliases and n not in taken]
    if len(hits) > 1:
        raise DataError(f"{path}: two columns could be the {role}: {', '.join(repr(h) for h in hits)}; "
                        f"choose one with --column {role}=NAME")
    return hits[0] if hits else None


def _format_rows(rows: Sequence[int]) -> str:
    """`row 5` or `rows 4, 9, 17` (the first few, then how many in all)."""
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED])
    more = f", ... ({len(rows)} in all)" if len(rows) > MAX_LISTED else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def numeric_column(path: str, name: str, cells: Sequence[Any], *, positive: bool = True,
                   row_numbers: Sequence[int] | None = None) -> np.ndarray:
    """Parse one column to floats; raise a DataError naming rows and values that are not usable.

    Row numbers are 1-based data rows (the header is not counted).
    """
    rows = list(row_numbers) if row_numbers is not None else list(range(1, len(cells) + 1))
    values = np.empty(len(cells))
    bad: list[tuple[int, Any]] = []
    missing: list[int] = []
    for i, cell in enumerate(cells):
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
                        f"fill them or pass --drop-missing")
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
        raise DataError("--configs needs --on KEY or --on LEFT=RIGHT (the column that names the "
                        "model in each table)")
    left_key, right_key = (on.split("=", 1) + [None])[:2] if "=" in on else (on, on)
    left_key, right_key = left_key.strip(), right_key.strip()
    if left_key not in left.names:
        raise DataError(f"{left.path}: --on: no column '{left_key}'{_did_you_mean(left_key, left.names)}")
    if right_key not in right.names:
        raise DataError(f"{right.path}: --on: no column '{right_key}'"
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


def load_runs(path: str | Path, *, require: Sequence[str] = ("width", "depth", "tokens", "loss"),
              format: str | None = None, columns: Sequence[str] | Mapping[str, str] | None = None,
              configs: str | Path | None = None, on: str | None = None, exclude_top_loss: int = 0,
              drop_missing: bool = False, response: str = "loss",
              positive: Sequence[str] | None = None) -> Runs:
    """Read a table of runs, resolve the columns `require`d (roles or column names), validate them,
    and drop the highest-loss rows.

    `exclude_top_loss=K` keeps rows whose `response` column is strictly below its K-th highest value
    (ties drop more rows), the rule Liu et al. and Epoch AI used. `positive` lists the columns that
    must hold positive values (default: every column used).
    """
    if exclude_top_loss < 0:
        raise DataError(f"--exclude-top-loss must be 0 or more, not {exclude_top_loss}")
    overrides = parse_column_overrides(columns)
    table = read_table(path, format)
    notes: list[str] = []
    if configs is not None:
        table, note = join_configs(table, read_table(configs), on)
        notes.append(note)
    elif on:
        raise DataError("--on is only used with --configs FILE")
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

    wanted = list(dict.fromkeys(list(require) + ([response] if response not in require else [])))
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
            notes.append(f"{n_total - int(keep.sum())} rows with empty cells dropped (--drop-missing)")
    idx = np.flatnonzero(keep)
    # powers and logs need positive values; a form may say which of its columns need them
    must_be_positive = set(used_columns) if positive is None else {
        roles.get(k, k) for k in positive} | ({roles["flops"], roles["params"]} if derive_tokens else set())
    data: dict[str, np.ndarray] = {}
    for name in used_columns:
        cells = [table.cells[name][i] for i in idx]
        data[name] = numeric_column(table.path, name, cells, row_numbers=row_numbers[idx],
                                    positive=name in must_be_positive)
    if "group" in roles and roles["group"] not in data:
        data[roles["group"]] = np.array([str(table.cells[roles["group"]][i]) for i in idx], dtype=object)
    for name in names:  # other numeric columns ride along for YAML forms and plots
        if name in data:
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

    response_col = data[roles.get(response, response)]
    n_excluded = 0
    mask = np.ones(len(idx), dtype=bool)
    if exclude_top_loss:
        if exclude_top_loss > len(response_col):
            raise DataError(f"{table.path}: --exclude-top-loss {exclude_top_loss} is more than the "
                            f"{len(response_col)} rows")
        threshold = np.sort(response_col)[::-1][exclude_top_loss - 1]
        mask = response_col < threshold
        n_excluded = int((~mask).sum())
        notes.append(f"excluded {n_excluded} rows with {roles.get(response, response)} >= "
                     f"{threshold:.6g} (the {exclude_top_loss}-th highest)")
        if not mask.any():
            raise DataError(f"{table.path}: no rows left after --exclude-top-loss {exclude_top_loss}")
    data = {k: v[mask] for k, v in data.items()}
    return Runs(path=table.path, sha256=table.sha256, data=data, roles=roles, n_total=n_total,
                n_excluded=n_excluded + n_missing, notes=tuple(notes), kept_rows=idx[mask])


def _is_missing(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and cell.strip().lower() in _MISSING) or (
        isinstance(cell, float) and math.isnan(cell))


def _missing_message(table: Table, role: str, overrides: Mapping[str, str]) -> str:
    aliases = ", ".join(ROLE_ALIASES.get(role, ()))
    extra = ""
    if role == "tokens":
        extra = " (or both flops and params, to compute tokens = flops / (6 * params))"
    return (f"{table.path}: no column for {role}{extra}; looked for {aliases}; the table has "
            f"{', '.join(repr(n) for n in table.names)}; name one with --column {role}=NAME")
