"""Table files in: CSV, TSV, JSON lines, JSON and Parquet (with pyarrow), optionally gzip-, bz2- or
xz-compressed, read into a raw `Table` of column names and cells. `io` finds the columns and checks
the values.

Only the standard library and numpy are imported here; pyarrow where a Parquet file is read.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io as _io
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import DataError, option

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
               ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}
# A compressed table is decompressed in chunks and refused beyond this size (a table of runs is far
# smaller; a "zip bomb" of 300 MB expands without end).
MAX_DECOMPRESSED_BYTES = 512 * 2**20
DECOMPRESS_CHUNK = 2**20


@dataclass(frozen=True)
class Table:
    """A raw table: column names in file order and the cells as read (strings or JSON values)."""

    path: str
    names: tuple[str, ...]
    cells: Mapping[str, tuple[Any, ...]]
    sha256: str | None = None

    def __len__(self) -> int:
        return len(self.cells[self.names[0]]) if self.names else 0



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
                        f"pass {option('format')} ({', '.join(FORMATS)})")
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
                            f"pass {option('format')}") from None
        if "\x00" in text:
            raise DataError(f"{path}: not a text file (contains NUL bytes)")
        if fmt in ("csv", "tsv"):
            with _paused_gc():
                names, columns = _read_delimited(path, text, "," if fmt == "csv" else "\t")
            return Table(str(path), tuple(names), columns, digest)
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


@contextmanager
def _paused_gc():
    """No cyclic garbage collection while millions of cells are created: none of them can form a
    cycle, and the collector's passes over them tripled the time to read a million-row table."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[np.frombuffer(b" \t\n\v\f", dtype=np.uint8)] = True


def _split_plain(text: str, delimiter: str) -> tuple[list[str], dict[str, tuple]] | None:
    """A table without quotes, carriage returns or blank lines, whose lines all have as many fields as
    the header, split at C speed (what the csv module would return, cell for cell); None for any
    other text, which the csv module then reads and reports on."""
    body = text[:-1] if text.endswith("\n") else text
    if not body or '"' in body or "\r" in body:
        return None
    raw = np.frombuffer(body.encode("utf-8"), dtype=np.uint8)
    ends = np.flatnonzero(raw == 10)
    if np.any(np.diff(np.concatenate([[-1], ends, [raw.size]])) <= 1):  # an empty line
        return None
    starts = np.concatenate([[0], ends + 1])
    fields = np.add.reduceat(raw == ord(delimiter), starts, dtype=np.int64)
    content = np.add.reduceat(~_WHITESPACE[raw] & (raw != ord(delimiter)), starts, dtype=np.int64)
    if np.any(fields != fields[0]) or np.any(content == 0):
        return None
    width = int(fields[0]) + 1
    cells = body.replace("\n", delimiter).split(delimiter)
    names = [name.strip() for name in cells[:width]]
    if len(cells) == width or not all(names) or len(set(names)) < width:
        return None
    return names, {name: tuple(cells[width + j::width]) for j, name in enumerate(names)}


def _read_delimited(path: Path, text: str, delimiter: str) -> tuple[list[str], dict[str, tuple]]:
    """Column names and the cells of each column (a table of a million rows reads in seconds: the
    rows are never turned into dicts)."""
    plain = _split_plain(text, delimiter)
    if plain is not None:
        return plain
    reader = csv.reader(_io.StringIO(text), delimiter=delimiter)
    try:
        # keep the file's line numbers: blank lines are skipped but still counted in messages
        lines = [(reader.line_num, line) for line in reader
                 if line and (line[0].strip() or any(cell.strip() for cell in line))]
    except csv.Error as exc:
        raise DataError(f"{path}: malformed {'CSV' if delimiter == ',' else 'TSV'}: {exc}") from None
    if not lines:
        raise DataError(f"{path}: the table is empty")
    names = [name.strip() for name in lines[0][1]]
    if any(not name for name in names):
        raise DataError(f"{path}: the header has an empty column name (column "
                        f"{[i + 1 for i, n in enumerate(names) if not n][0]})")
    _check_duplicates(path, names)
    width = len(names)
    ragged = next(((number, line) for number, line in lines[1:] if len(line) != width), None)
    if ragged is not None:
        number, line = ragged
        raise DataError(f"{path}: line {number} has {len(line)} fields, the header has "
                        f"{len(names)}")
    if len(lines) < 2:
        raise DataError(f"{path}: the table is empty (a header but no rows)")
    columns = zip(*(line for _, line in lines[1:]), strict=True)
    return names, dict(zip(names, columns, strict=True))


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
