"""Checks of what the store is given, before DuckDB sees it: a store file, a table name, SQL.

Each raises MoescaleError with a message a user can act on; the CLI runs them before it
opens (or creates) a store, so bad input leaves nothing behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from scaling import tables
from scaling.errors import MoescaleError, first_line
from scaling.schema import RESERVED_NAMES

#: The first bytes of a DuckDB database file: an 8-byte checksum, then the magic "DUCK".
DUCKDB_MAGIC_OFFSET, DUCKDB_MAGIC = 8, b"DUCK"
#: Statement types a read-only query may be.
READ_ONLY_STATEMENTS = ("SELECT",)
#: Words of DuckDB IO errors that mean the file itself is cut short or corrupt.
_DAMAGED = ("could not read enough bytes", "corrupt", "checksum", "truncated", "invalid block")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_store_file(path: str | Path, create: bool = True) -> None:
    """Refuse a store path that is not a DuckDB database file, before DuckDB opens it.

    A missing file is fine when ``create`` (a new store), else MoescaleError. An
    existing file must start with DuckDB's header (magic ``DUCK`` at byte 8); a path
    with a table suffix (.csv, .parquet, ...) is refused even when missing.
    """
    path = Path(path)
    try:
        tables.table_format(path)
    except MoescaleError:
        pass
    else:
        raise MoescaleError(f"{path}: is a table file name, not a store; import it with `moescale db import {path} --name NAME`")
    if not path.exists():
        if not create:
            raise MoescaleError(f"{path}: no store there (give --store PATH or set MOESCALE_STORE)")
        return
    if not path.is_file():
        raise MoescaleError(f"{path}: is not a file, so not a store")
    with open(path, "rb") as fh:
        head = fh.read(DUCKDB_MAGIC_OFFSET + len(DUCKDB_MAGIC))
    if len(head) == 0 and create:
        raise MoescaleError(f"{path}: is an empty file, not a DuckDB store; remove it or choose another path")
    if head[DUCKDB_MAGIC_OFFSET:] != DUCKDB_MAGIC:
        raise MoescaleError(f"{path}: is not a DuckDB store (no DuckDB header)")


def check_table_name(name) -> None:
    """MoescaleError unless ``name`` can be an imported table: an identifier, not a reserved name."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise MoescaleError(f"table name {name!r} is not an identifier (letters, digits, _; not starting with a digit)")
    if name.lower() in RESERVED_NAMES:
        raise MoescaleError(f"table name {name!r} is reserved for the store ({', '.join(sorted(RESERVED_NAMES))})")


def check_statement(query: str, write: bool = False) -> None:
    """MoescaleError unless ``query`` is SQL that :meth:`Store.sql` may run.

    Read-only (``write=False``): exactly one statement, of a type in
    :data:`READ_ONLY_STATEMENTS`. With ``write``: any statements that parse.
    """
    if not isinstance(query, str) or not query.strip():
        raise MoescaleError("SQL error: empty query")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise MoescaleError(f"SQL error: {first_line(exc)}") from None
    if write:
        return
    if len(statements) != 1:
        raise MoescaleError(
            f"SQL error: {len(statements)} statements; a read-only query is one statement (--write to run several)"
        )
    kind = statements[0].type.name
    if kind not in READ_ONLY_STATEMENTS:
        raise MoescaleError(f"SQL error: {kind} statement refused: queries are read-only unless given --write (write=True)")


def check_export_path(out: str | Path) -> str:
    """MoescaleError unless ``out`` can receive an export: a table file name (format by
    suffix, see :func:`scaling.tables.table_format`) in a folder that exists. Returns the format."""
    fmt = tables.table_format(out)
    if not Path(out).parent.is_dir():
        raise MoescaleError(f"{out}: folder {Path(out).parent} does not exist")
    return fmt


def store_error(path, exc: BaseException, doing: str = "") -> MoescaleError:
    """One-line MoescaleError for a DuckDB error that reading or writing the store file raised.

    A full disk says "no space left on device"; an IO error (a file cut short, an unreadable
    block) says the store is damaged or truncated; anything else names the store and DuckDB's
    first line. ``doing`` prefixes what failed ("ingest failed, store unchanged").
    """
    text = first_line(exc)
    head = f"{path}: " + (f"{doing}: " if doing else "")
    if "no space left" in str(exc).lower() or getattr(exc, "errno", None) == 28:
        return MoescaleError(f"{head}no space left on device ({text})")
    if isinstance(exc, duckdb.IOException) and any(k in str(exc).lower() for k in _DAMAGED):
        return MoescaleError(f"{head}cannot read the store: the file is damaged or truncated ({text})")
    if isinstance(exc, duckdb.IOException):
        return MoescaleError(f"{head}cannot read or write the store file ({text})")
    return MoescaleError(f"{head}{text}")
