"""Read a table from a file, a registered dataset or a store into pandas.

One entry point, :func:`read_table`, used by fits, figures and ``moescale db import``:

    >>> read_table("runs.csv")                  # a file, format by suffix
    >>> read_table("chinchilla_epoch")          # a registered dataset (scaling.datasets)
    >>> read_table("final", store=Store())      # a table or view in a store
    >>> read_table(df)                          # a DataFrame passes through (copied)

Files are parsed by DuckDB's readers (``read_csv``, ``read_parquet``, ``read_json``).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from scaling.errors import MoescaleError

#: Accepted file suffixes and the DuckDB reader for each.
READERS = {
    ".csv": "read_csv",
    ".csv.gz": "read_csv",
    ".parquet": "read_parquet",
    ".json": "read_json",
    ".jsonl": "read_json",
    ".ndjson": "read_json",
}


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
    """A DuckDB table expression reading ``file`` (e.g. ``read_csv('x.csv')``), format by suffix."""
    reader = READERS[table_format(file)]
    quoted = str(file).replace("'", "''")
    return f"{reader}('{quoted}')"


def read_file(file: str | Path) -> pd.DataFrame:
    """Read one file (.csv, .csv.gz, .parquet, .json, .jsonl) into a DataFrame with DuckDB."""
    file = Path(file)
    sql = reader_sql(file)  # format error before existence: both are the caller's fault
    if not file.is_file():
        raise MoescaleError(f"{file}: file not found")
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT * FROM {sql}").df()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MoescaleError(f"{file}: cannot read as {table_format(file)}: {first}") from None
    finally:
        con.close()


def read_table(source, store=None) -> pd.DataFrame:
    """Read ``source`` into a DataFrame.

    ``source`` is a DataFrame (copied), a file path with a known suffix (see
    :data:`READERS`), a registered dataset name (``scaling.datasets.names()``) or, when
    ``store`` is given (a ``Store`` or a store path), a table or view in that store.
    Anything else raises MoescaleError saying what was tried.
    """
    if isinstance(source, pd.DataFrame):
        return source.copy()
    if not isinstance(source, (str, Path)):
        raise MoescaleError(f"cannot read a table from {type(source).__name__}: pass a path, dataset name or DataFrame")
    text = str(source)
    lowered = text.lower()
    if isinstance(source, Path) or any(lowered.endswith(s) for s in READERS) or Path(text).exists():
        return read_file(source)

    from scaling import datasets

    if text in datasets.REGISTRY:
        return datasets.load(text)
    if store is not None:
        from scaling.store import Store

        if isinstance(store, Store):
            if text in store.tables():
                return store.table(text)
        else:
            with Store(store) as opened:
                if text in opened.tables():
                    return opened.table(text)
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
