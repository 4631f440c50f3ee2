"""Read a table from a file, a registered dataset or a store into pandas.

One entry point, :func:`read_table`, used by fits, figures and ``moescale db import``:

    >>> read_table("runs.csv")                  # a file, format by suffix
    >>> read_table("chinchilla_epoch")          # a registered dataset (scaling.datasets)
    >>> read_table("final", store=Store())      # a table or view in a store
    >>> read_table(df)                          # a DataFrame passes through (copied)

Files are parsed by DuckDB's readers (``read_csv``, ``read_parquet``, ``read_json``)
with strict options, and never on the strength of DuckDB's sniffer alone: a structural
pass (:func:`check_file`) first reads every record with Python's ``csv`` module in strict
mode (or ``json`` for JSON), and the table DuckDB returns must have exactly the header's
columns and one row per record. Refused, with ``file:line``: an empty file, a header
with an empty or duplicated column name, a record with more or fewer fields than the
header, an unterminated quote, malformed or truncated JSON, a JSON value that is not an
object, a duplicated JSON key, a number padded with spaces (`` 2.5``). Blank lines are skipped (except in a one-column CSV,
where a blank line would be a missing value and is refused).

This module sits below the store: it reads files and datasets, and reads a store's
tables only through a ``Store`` object handed to it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from scaling import datasets
from scaling.errors import MoescaleError, first_line

#: Accepted file suffixes and the DuckDB reader for each.
READERS = {
    ".csv": "read_csv",
    ".csv.gz": "read_csv",
    ".parquet": "read_parquet",
    ".json": "read_json",
    ".jsonl": "read_json",
    ".ndjson": "read_json",
}

#: DuckDB reading options per format: the dialect is fixed (no guessing of header,
#: delimiter, quoting or skipped lines), types are inferred from every row.
_OPTIONS = {
    ".csv": "header = true, skip = 0, delim = ',', quote = '\"', escape = '\"', comment = '', "
    "strict_mode = true, null_padding = false, ignore_errors = false, sample_size = -1, "
    "auto_detect = true",
    ".json": "format = 'array', sample_size = -1",
    ".jsonl": "format = 'newline_delimited', sample_size = -1",
}
_OPTIONS[".csv.gz"] = _OPTIONS[".csv"] + ", compression = 'gzip'"
_OPTIONS[".ndjson"] = _OPTIONS[".jsonl"]


def table_format(file: str | Path) -> str:
    """The format suffix of ``file`` among :data:`READERS`, or MoescaleError naming the accepted ones."""
    name = Path(file).name.lower()
    for suffix in sorted(READERS, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    suffix = "".join(Path(file).suffixes) or "(none)"
    raise MoescaleError(
        f"{file}: unknown table format {suffix!r}; accepted: {', '.join(READERS)}"
    )


def reader_sql(file: str | Path) -> str:
    """A DuckDB table expression reading ``file`` strictly (e.g. ``read_csv('x.csv', header = true, ...)``)."""
    fmt = table_format(file)
    quoted = str(file).replace("'", "''")
    options = _OPTIONS.get(fmt)
    return f"{READERS[fmt]}('{quoted}'" + (f", {options})" if options else ")")


@dataclass(frozen=True)
class FileShape:
    """What the structural pass found in a table file: its column names and data row count
    (None for Parquet, whose structure DuckDB reads from the file's own metadata)."""

    columns: tuple[str, ...] | None
    rows: int | None


def _check_header(file, columns, line: int = 1) -> None:
    seen = set()
    for i, name in enumerate(columns):
        if not str(name).strip():
            raise MoescaleError(f"{file}:{line}: column {i + 1} has an empty name")
        if name in seen:
            raise MoescaleError(f"{file}:{line}: duplicate column name {name!r}")
        seen.add(name)


def _check_csv(file: Path, fmt: str) -> FileShape:
    opener = gzip.open if fmt == ".csv.gz" else open
    try:
        with opener(file, "rt", encoding="utf-8", newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise MoescaleError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, EOFError) as exc:
        raise MoescaleError(f"{file}: cannot read: {first_line(exc)}") from None
    if text.startswith("\ufeff"):
        raise MoescaleError(f"{file}:1: starts with a byte-order mark; save it as UTF-8 without BOM")
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise MoescaleError(f"{file}:{line}: contains a NUL byte; not a text CSV file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header, rows, start = None, 0, 1
    try:
        for record in reader:
            if header is None:
                if not record:
                    raise MoescaleError(f"{file}:{start}: blank first line; the first line must be the header")
                header = record
                _check_header(file, header, start)
            elif not record:
                if len(header) == 1:
                    raise MoescaleError(
                        f"{file}:{start}: blank line in a one-column table (a missing value must be quoted: \"\")"
                    )
            elif len(record) != len(header):
                raise MoescaleError(
                    f"{file}:{start}: {len(record)} fields, but the header on line 1 has {len(header)}"
                )
            else:
                _check_padding(file, start, header, record)
                rows += 1
            start = reader.line_num + 1
    except csv.Error as exc:
        raise MoescaleError(f"{file}:{reader.line_num}: malformed CSV: {exc}") from None
    if header is None:
        raise MoescaleError(f"{file}: empty file; a CSV table needs at least a header line")
    return FileShape(tuple(header), rows)


def _check_padding(file, line: int, header, record) -> None:
    """Refuse a number padded with spaces (' 2.5'): readers disagree on whether it is a
    number or text, so the table would depend on which one reads it."""
    for name, field in zip(header, record):
        if field != field.strip() and field.strip():
            try:
                float(field)
            except ValueError:
                continue
            raise MoescaleError(f"{file}:{line}: column {name!r}: number {field!r} is padded with spaces; remove them")


def _no_duplicates(where: str):
    def hook(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise MoescaleError(f"{where}: duplicate key {dup!r}")
        return dict(pairs)

    return hook


def _check_json(file: Path, fmt: str) -> FileShape:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MoescaleError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise MoescaleError(f"{file}: empty file")
    if fmt == ".json":
        try:
            records = json.loads(text, object_pairs_hook=_no_duplicates(str(file)))
        except json.JSONDecodeError as exc:
            raise MoescaleError(f"{file}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(records, list):
            raise MoescaleError(f"{file}:1: expected a JSON array of objects, got a {type(records).__name__}")
        numbered = [(None, r) for r in records]
    else:
        numbered = []
        for i, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((i, json.loads(line, object_pairs_hook=_no_duplicates(f"{file}:{i}"))))
            except json.JSONDecodeError as exc:
                raise MoescaleError(f"{file}:{i}: malformed JSON line: {exc.msg} (column {exc.colno})") from None
    if not numbered:
        raise MoescaleError(f"{file}: no records (an empty table)")
    columns: dict[str, None] = {}
    for i, (line, record) in enumerate(numbered):
        where = f"{file}:{line}" if line is not None else f"{file}: record {i + 1}"
        if not isinstance(record, dict):
            raise MoescaleError(f"{where}: expected a JSON object, got {json.dumps(record)[:40]}")
        for key, value in record.items():
            if isinstance(value, (dict, list)):
                raise MoescaleError(f"{where}: key {key!r} holds a nested {type(value).__name__}; tables hold scalars")
            columns.setdefault(key)
    _check_header(file, list(columns))
    return FileShape(tuple(columns), len(numbered))


def check_file(file: str | Path) -> FileShape:
    """The structural pass over a table file; MoescaleError naming ``file:line`` for what is wrong.

    See the module docstring for what is refused. Returns the header's columns and the
    number of data records, against which the table DuckDB reads is checked.
    """
    file = Path(file)
    fmt = table_format(file)  # format error before existence: both are the caller's fault
    if not file.is_file():
        raise MoescaleError(f"{file}: file not found")
    if fmt in (".csv", ".csv.gz"):
        return _check_csv(file, fmt)
    if fmt == ".parquet":
        if file.stat().st_size == 0:
            raise MoescaleError(f"{file}: empty file")
        return FileShape(None, None)
    return _check_json(file, fmt)


def verify_read(file, shape: FileShape, columns, rows: int) -> None:
    """Raise MoescaleError unless DuckDB read exactly the columns and rows the structural pass found."""
    columns = [str(c) for c in columns]
    if shape.columns is None:
        _check_header(file, columns)
        return
    if list(shape.columns) != columns:
        raise MoescaleError(
            f"{file}: DuckDB read columns {', '.join(columns)} but the header has {', '.join(shape.columns)}"
        )
    if shape.rows != rows:
        raise MoescaleError(f"{file}: DuckDB read {rows} rows but the file holds {shape.rows} records")


def read_file(file: str | Path) -> pd.DataFrame:
    """Read one file (.csv, .csv.gz, .parquet, .json, .jsonl) strictly into a DataFrame with DuckDB.

    The structural pass (:func:`check_file`) runs first; MoescaleError naming the file
    (and line, where there is one) for anything the module docstring lists as refused.
    """
    file = Path(file)
    shape = check_file(file)
    con = duckdb.connect()
    try:
        df = con.sql(f"SELECT * FROM {reader_sql(file)}").df()
    except duckdb.Error as exc:
        raise MoescaleError(f"{file}: cannot read as {table_format(file)}: {first_line(exc)}") from None
    finally:
        con.close()
    verify_read(file, shape, df.columns, len(df))
    return df


def is_file_or_dataset(source) -> bool:
    """True when ``source`` is an existing path or a registered dataset name: readable without a store."""
    return Path(str(source)).exists() or str(source) in datasets.REGISTRY


def read_table(source, store=None) -> pd.DataFrame:
    """Read ``source`` into a DataFrame.

    ``source`` is a DataFrame (copied), a file path with a known suffix (see
    :data:`READERS`), a registered dataset name (``scaling.datasets.names()``) or, when
    ``store`` is given (an open ``scaling.Store``), a table or view in that store.
    Anything else raises MoescaleError saying what was tried.
    """
    if isinstance(source, pd.DataFrame):
        return source.copy()
    if not isinstance(source, (str, Path)):
        raise MoescaleError(f"cannot read a table from {type(source).__name__}: pass a path, dataset name or DataFrame")
    if store is not None and not (hasattr(store, "tables") and hasattr(store, "table")):
        raise MoescaleError(f"store= takes an open scaling.Store, got {type(store).__name__}: use Store({str(store)!r})")
    text = str(source)
    lowered = text.lower()
    if isinstance(source, Path) or any(lowered.endswith(s) for s in READERS) or Path(text).exists():
        return read_file(source)
    if text in datasets.REGISTRY:
        return read_file(datasets.path(text))
    if store is not None and text in store.tables():
        return store.table(text)
    if Path(text).suffix or "/" in text:
        return read_file(source)  # raises naming the unknown suffix or the missing file
    tried = "a file with a known suffix, a dataset name (" + ", ".join(datasets.names()) + ")"
    tried += ", or a table in the store" if store is not None else " (or a store table: pass store=)"
    raise MoescaleError(f"{text!r} is neither {tried}")


def check_numeric(df: pd.DataFrame, columns, source: str = "table") -> None:
    """Raise MoescaleError unless every named column exists and holds finite numbers.

    The message names ``source``, the 1-based data row and the column of the first
    offending value, e.g. ``runs.csv: row 12, column 'loss': value 'abc' is not a number``.
    """
    for column in columns:
        if column not in df.columns:
            raise MoescaleError(
                f"{source}: missing column {column!r}; columns are {', '.join(map(str, df.columns))}"
            )
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() & df[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise MoescaleError(
                f"{source}: row {row + 1}, column {column!r}: value {df[column].iloc[row]!r} is not a number"
            )
        arr = values.to_numpy(dtype=float, na_value=np.nan)
        nonfinite = ~np.isfinite(arr)
        if nonfinite.any():
            row = int(np.flatnonzero(nonfinite)[0])
            raise MoescaleError(
                f"{source}: row {row + 1}, column {column!r}: value {arr[row]} is not a finite number"
            )
