"""The experiment store: one DuckDB file holding runs, metrics, evals and fits.

Tables (see ``schema.sql``): ``runs`` (one row per run, config JSON plus typed columns),
``metrics`` (run_id, step, tokens, name, value), ``evals`` (run_id, step, tokens, task,
task_kind, metric, value, n_examples), ``fits`` and ``meta`` (schema version). The view
``final`` has one row per finished run and is what fits and figures read::

    >>> from scaling.store import Store
    >>> from scaling.ingest import ingest
    >>> with Store("moescale.duckdb") as store:
    ...     ingest(store, ["runs/r1", "runs/r2"])
    ...     df = store.sql("SELECT n_total, sparsity, tpp, val_loss FROM final")
    ...     store.import_table("chinchilla_epoch", name="chinchilla")

``final`` columns: the run's typed config columns, ``sparsity = n_experts / top_k``,
``density = top_k / n_experts``, ``tokens`` (of the last metrics row, else
tokens_planned), ``tpp = tokens / n_total`` (tokens per parameter), ``active_flops =
flops_per_token * tokens``, ``val_loss`` (last logged), and one ``<task>_<metric>``
column per evaluation holding its last value.

Queries are read-only unless asked: ``Store.sql`` runs one SELECT on a read-only
connection, and ``Store.sql(..., write=True)`` (``moescale db sql --write``) anything.
Imports are strict (see :mod:`scaling.tables`). A path that exists but is not a DuckDB
file, or is a DuckDB database without this project's tables, is refused rather than
opened as a store; ``Store(path, create=False)`` refuses a missing file instead of
creating it (what every reading command uses). A store whose derived view ``final``
was dropped says so, and :meth:`Store.rebuild_views` recreates it.

Layering: this module reads files only through :mod:`scaling.tables` and
:mod:`scaling.datasets` (below it); :mod:`scaling.ingest` and :mod:`scaling.fitting`
sit above it and are never imported here.

Concurrency: every operation takes an inter-process file lock (``<store>.lock``) and
opens the DuckDB file only for its own duration, retrying with backoff while another
process (say, a DuckDB shell) holds the file. So several ``moescale ingest`` processes
can race on one store, and a notebook holding a ``Store`` does not block them between
queries. ``Store(":memory:")`` keeps one in-process database instead.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd
from filelock import FileLock, Timeout

from scaling import datasets, tables
from scaling.errors import MoescaleError

SCHEMA_VERSION = 1
DEFAULT_STORE = "moescale.duckdb"
CORE_TABLES = ("meta", "runs", "metrics", "evals", "fits")
DERIVED_VIEWS = ("final",)
RESERVED_NAMES = frozenset(CORE_TABLES + DERIVED_VIEWS)
#: The first bytes of a DuckDB database file: an 8-byte checksum, then the magic "DUCK".
DUCKDB_MAGIC_OFFSET, DUCKDB_MAGIC = 8, b"DUCK"
#: Statement types a read-only query may be.
READ_ONLY_STATEMENTS = ("SELECT",)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Columns of ``runs`` that ``final`` carries over, in order.
RUN_COLUMNS = (
    "run_id", "sweep", "status", "created_at", "code_version", "config",
    "d_model", "n_layers", "n_heads", "d_ff", "n_experts", "top_k", "vocab_size", "seq_len",
    "n_total", "n_active", "n_total_nonembed", "n_active_nonembed", "flops_per_token",
    "tokens_planned", "seed",
)  # fmt: skip
DERIVED_COLUMNS = ("sparsity", "density", "tokens", "tpp", "active_flops", "val_loss")


def default_path() -> str:
    """$MOESCALE_STORE, else ./moescale.duckdb."""
    return os.environ.get("MOESCALE_STORE") or DEFAULT_STORE


def quote(identifier: str) -> str:
    """A DuckDB quoted identifier: ``"name"`` with inner quotes doubled."""
    return '"' + str(identifier).replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
        raise MoescaleError(f"SQL error: {_first_line(exc)}") from None
    if write:
        return
    if len(statements) != 1:
        raise MoescaleError(
            f"SQL error: {len(statements)} statements; a read-only query is one statement (--write to run several)"
        )
    kind = statements[0].type.name
    if kind not in READ_ONLY_STATEMENTS:
        raise MoescaleError(f"SQL error: {kind} statement refused: queries are read-only unless given --write (write=True)")


# ----------------------------------------------------------------------------- migrations


def _migrate_0_to_1(con) -> None:
    """Version 0 (stores written before versioning): no ``meta`` table and no ingest
    bookkeeping columns on ``runs``. Add them; the next ingest of each run refreshes it."""
    for column, kind in (("content_hash", "VARCHAR"), ("source_dir", "VARCHAR"), ("ingested_at", "TIMESTAMP")):
        con.execute(f"ALTER TABLE runs ADD COLUMN IF NOT EXISTS {column} {kind}")


#: MIGRATIONS[v] upgrades a store at schema version v to version v + 1, in place.
MIGRATIONS = {0: _migrate_0_to_1}


def schema_sql() -> str:
    """The text of ``scaling/schema.sql`` (the current schema, all ``IF NOT EXISTS``)."""
    return resources.files("scaling").joinpath("schema.sql").read_text()


def _table_names(con) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {r[0] for r in rows}


def schema_version(con) -> int | None:
    """Schema version of an open store: meta.schema_version, 0 for a pre-versioning store
    (a ``runs`` table but no ``meta``), None for a store without the project's tables."""
    names = _table_names(con)
    if "meta" in names:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            return 0
        try:
            return int(row[0])
        except ValueError:
            raise MoescaleError(f"meta.schema_version is {row[0]!r}, not an integer") from None
    return 0 if "runs" in names else None


# ----------------------------------------------------------------------------- the final view


def eval_column_names(pairs, taken=()) -> list[str]:
    """Column names ``<task>_<metric>`` for (task, metric) pairs, as lowercase SQL
    identifiers (other characters become ``_``), made unique against ``taken`` and each other."""
    used = {t.lower() for t in taken}
    names = []
    for task, metric in pairs:
        base = re.sub(r"[^0-9a-z_]+", "_", f"{task}_{metric}".lower()).strip("_") or "eval"
        if base[0].isdigit():
            base = "e_" + base
        name, n = base, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        names.append(name)
    return names


def final_view_sql(pairs) -> str:
    """CREATE OR REPLACE VIEW final for the given distinct (task, metric) pairs of ``evals``.

    DuckDB cannot define a view over a data-dependent PIVOT, so the eval columns are
    spelled out as ``max(value) FILTER (WHERE task = .. AND metric = ..)`` and the view is
    rebuilt after every ingest.
    """
    pairs = list(pairs)
    columns = eval_column_names(pairs, taken=RUN_COLUMNS + DERIVED_COLUMNS)
    tokens = "coalesce(last_row.tokens, r.tokens_planned)"
    select = [f"r.{c}" for c in RUN_COLUMNS] + [
        "r.n_experts::DOUBLE / r.top_k AS sparsity",
        "r.top_k::DOUBLE / r.n_experts AS density",
        f"{tokens} AS tokens",
        f"{tokens}::DOUBLE / r.n_total AS tpp",
        f"r.flops_per_token * {tokens} AS active_flops",
        "last_val.val_loss",
    ]
    ctes = [
        "last_row AS (SELECT run_id, arg_max(tokens, step) AS tokens FROM metrics GROUP BY run_id)",
        "last_val AS (SELECT run_id, arg_max_null(value, step) AS val_loss FROM metrics "
        "WHERE name = 'val_loss' GROUP BY run_id)",
    ]
    joins = ["LEFT JOIN last_row USING (run_id)", "LEFT JOIN last_val USING (run_id)"]
    if pairs:
        filters = ",\n        ".join(
            f"max(value) FILTER (WHERE task = {_literal(t)} AND metric = {_literal(m)}) AS {quote(c)}"
            for (t, m), c in zip(pairs, columns)
        )
        ctes.append(
            "last_eval AS (SELECT run_id, task, metric, arg_max_null(value, step) AS value "
            "FROM evals GROUP BY run_id, task, metric)"
        )
        ctes.append(f"eval_wide AS (SELECT run_id,\n        {filters}\n    FROM last_eval GROUP BY run_id)")
        joins.append("LEFT JOIN eval_wide USING (run_id)")
        select += [f"eval_wide.{quote(c)}" for c in columns]
    return (
        "CREATE OR REPLACE VIEW final AS\nWITH "
        + ",\n".join(ctes)
        + "\nSELECT "
        + ",\n    ".join(select)
        + "\nFROM runs r\n"
        + "\n".join(joins)
        + "\nWHERE r.status = 'finished'\nORDER BY r.run_id"
    )


def refresh_final(con) -> None:
    """(Re)create the ``final`` view from the (task, metric) pairs now in ``evals``."""
    pairs = con.execute("SELECT DISTINCT task, metric FROM evals ORDER BY task, metric").fetchall()
    con.execute(final_view_sql(pairs))


def _json_safe(obj):
    """JSON-ready copy: tuples to lists, numpy scalars to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ----------------------------------------------------------------------------- the store


class Store:
    """A DuckDB experiment store (default ``$MOESCALE_STORE`` or ``./moescale.duckdb``).

    ``timeout`` bounds how long an operation waits for another process holding the store.

    >>> store = Store()                         # or Store("path.duckdb"), Store(":memory:")
    >>> store.sql("SELECT * FROM final WHERE sparsity > 1")
    >>> store.tables()
    ['evals', 'final', 'fits', 'meta', 'metrics', 'runs']
    """

    def __init__(self, path: str | Path | None = None, timeout: float = 300.0, *, create: bool = True):
        self.path = str(path) if path is not None else default_path()
        self.timeout = timeout
        self._memory = self.path == ":memory:"
        self._con = duckdb.connect(":memory:") if self._memory else None
        if not self._memory:
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise MoescaleError(f"{self.path}: folder {parent} does not exist")
            self.path = str(Path(self.path).expanduser())
            check_store_file(self.path, create=create)
            self._lock = FileLock(self.path + ".lock", timeout=timeout)
        self._checked = False
        self._active = None
        with self.connect():  # create or migrate now, so errors surface at open
            pass

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the in-memory database, if any (file stores hold nothing between calls)."""
        if self._con is not None:
            self._con.close()
            self._con = None

    # -- connections

    def _open(self, read_only: bool = False):
        deadline = time.monotonic() + self.timeout
        delay = 0.02
        while True:
            try:
                return duckdb.connect(self.path, read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise MoescaleError(f"{self.path}: cannot open store: {_first_line(exc)}") from None
            except duckdb.Error as exc:
                raise MoescaleError(f"{self.path}: cannot open store: {_first_line(exc)}") from None
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)

    @contextmanager
    def connect(self, read_only: bool = False):
        """A DuckDB connection to the store, held under the store's inter-process lock.

        Calls nest: inside a ``with store.connect():`` block every Store method reuses
        the one connection, which saves reopening the file for a batch of queries (other
        processes wait meanwhile). ``read_only`` opens a read-only connection (file
        stores, outermost call only; an in-memory store has one connection).

        >>> with store.connect() as con:
        ...     con.sql("SELECT count(*) FROM runs").fetchall()
        ...     store.sql("SELECT * FROM final")      # same connection
        """
        if self._memory:
            if self._con is None:
                raise MoescaleError("this in-memory store is closed")
            if not self._checked:
                self._ensure_schema(self._con)
            yield self._con
            return
        if self._active is not None:
            yield self._active
            return
        try:
            self._lock.acquire()
        except Timeout:
            raise MoescaleError(
                f"{self.path}: store is busy: could not take {self.path}.lock within {self.timeout:g} s"
            ) from None
        try:
            if read_only and not self._checked:
                with self.connect():  # create or migrate first, on a writable connection
                    pass
            con = self._open(read_only=read_only)
            try:
                if not self._checked:
                    self._ensure_schema(con)
                self._active = con
                yield con
            finally:
                self._active = None
                con.close()
        finally:
            self._lock.release()

    def _ensure_schema(self, con) -> None:
        version = schema_version(con)
        if version is None and _table_names(con):
            raise MoescaleError(
                f"{self.path}: is a DuckDB database without the store's tables (it has "
                f"{', '.join(sorted(_table_names(con))[:5])}); not opened as a store"
            )
        if version is not None and version > SCHEMA_VERSION:
            raise MoescaleError(
                f"{self.path}: store schema version {version} is newer than this moe-scaling "
                f"supports (version {SCHEMA_VERSION}); upgrade moe-scaling to open it"
            )
        if version != SCHEMA_VERSION:
            con.execute("BEGIN TRANSACTION")
            try:
                if version is not None:
                    for v in range(version, SCHEMA_VERSION):
                        if v not in MIGRATIONS:
                            raise MoescaleError(
                                f"{self.path}: no migration from store schema version {v} to {v + 1}; "
                                "re-ingest the run directories into a new store"
                            )
                        MIGRATIONS[v](con)
                con.execute(schema_sql())
                con.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
                )
                refresh_final(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        missing = [t for t in CORE_TABLES if t not in _table_names(con)]
        if missing:
            raise MoescaleError(
                f"{self.path}: core table(s) {', '.join(missing)} missing: the store was altered outside "
                "moe-scaling and its data is lost; re-ingest the run directories into a new store"
            )
        self._checked = True

    def missing_views(self) -> list[str]:
        """The derived views (``final``) that are missing from the store."""
        with self.connect() as con:
            names = _table_names(con)
        return [v for v in DERIVED_VIEWS if v not in names]

    def rebuild_views(self) -> list[str]:
        """Recreate the derived views (``final``) from the core tables; returns their names."""
        with self.connect() as con:
            refresh_final(con)
        return list(DERIVED_VIEWS)

    # -- reading

    def sql(self, query: str, params=None, *, write: bool = False) -> pd.DataFrame:
        """Run SQL and return the result as a DataFrame (empty for statements without one).

        Read-only unless ``write``: one SELECT statement (see :func:`check_statement`), run
        on a read-only connection for a file store. ``write=True`` runs any statements
        (several: the last one's result).

        >>> Store().sql("SELECT sparsity, avg(val_loss) FROM final GROUP BY ALL")
        >>> Store().sql("DELETE FROM runs WHERE status = 'failed'", write=True)
        """
        check_statement(query, write)
        with self.connect(read_only=not write) as con:
            try:
                con.execute(query, params)
                if con.description is None:
                    return pd.DataFrame()
                return con.df()
            except duckdb.Error as exc:
                message = f"SQL error: {_first_line(exc)}"
                missing = [v for v in DERIVED_VIEWS if v not in _table_names(con)]
                if missing:
                    message += f" (view {', '.join(missing)} is missing: rebuild it with `moescale db rebuild`)"
                raise MoescaleError(message) from None

    def tables(self) -> list[str]:
        """Names of the tables and views in the store, sorted."""
        with self.connect() as con:
            return sorted(_table_names(con))

    def table(self, name: str) -> pd.DataFrame:
        """A whole table or view as a DataFrame; MoescaleError naming the known ones otherwise."""
        self._require(name)
        return self.sql(f"SELECT * FROM {quote(name)}")

    def _require(self, name: str) -> None:
        names = self.tables()
        if name not in names:
            hint = " (a derived view: rebuild it with `moescale db rebuild`)" if name in DERIVED_VIEWS else ""
            raise MoescaleError(f"no table or view {name!r} in {self.path}{hint}; it has {', '.join(names)}")

    def fit_record(self, fit_id: str) -> dict:
        """The ``fits`` row of ``fit_id`` with its JSON columns decoded (spec, params, ci).

        ``scaling.fitting.load_fit(store, fit_id)`` turns it back into a FitResult.
        """
        df = self.sql("SELECT * FROM fits WHERE fit_id = ?", [str(fit_id)])
        if df.empty:
            known = self.sql("SELECT fit_id FROM fits ORDER BY created_at DESC LIMIT 5")["fit_id"].tolist()
            raise MoescaleError(f"no fit {fit_id!r} in {self.path}" + (f"; latest: {', '.join(known)}" if known else "; it has none"))
        row = df.iloc[0].to_dict()
        for key in ("spec", "params", "ci"):
            row[key] = json.loads(row[key]) if row[key] is not None else {}
        return row

    # -- writing

    def import_table(self, source, name: str, replace: bool = False) -> int:
        """Import a file (.csv, .csv.gz, .parquet, .json, .jsonl), a registered dataset name
        or a DataFrame as table ``name``; returns its row count. The store is unchanged on error.

        >>> store.import_table("chinchilla_epoch", "chinchilla")
        245
        """
        check_table_name(name)
        frame, shape = None, None
        if isinstance(source, pd.DataFrame):
            frame, what = source, "DataFrame"
        else:
            text = str(source)
            if text in datasets.REGISTRY and not Path(text).exists():
                source = datasets.path(text)
            what = str(source)
            shape = tables.check_file(source)  # strict structural pass: file:line of what is wrong
            expression = tables.reader_sql(source)
        with self.connect() as con:
            if not replace and name in _table_names(con):
                raise MoescaleError(f"table {name!r} already exists in {self.path}; pass replace=True (--replace)")
            con.execute("BEGIN TRANSACTION")
            try:
                if frame is not None:
                    con.register("_import_frame", frame)
                    expression = "_import_frame"
                con.execute(f"CREATE OR REPLACE TABLE {quote(name)} AS SELECT * FROM {expression}")
                count = con.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()[0]
                if shape is not None:
                    columns = [r[0] for r in con.execute(f"DESCRIBE {quote(name)}").fetchall()]
                    tables.verify_read(what, shape, columns, count)
                con.execute("COMMIT")
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise MoescaleError(f"{what}: cannot import: {_first_line(exc)}") from None
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                if frame is not None:
                    con.unregister("_import_frame")
        return int(count)

    def export(self, name: str, out: str | Path) -> int:
        """Write table or view ``name`` to ``out`` (format by suffix, as for import); returns rows.

        >>> store.export("final", "final.parquet")
        """
        out = Path(out)
        fmt = tables.table_format(out)
        options = {
            ".csv": "FORMAT csv, HEADER true",
            ".csv.gz": "FORMAT csv, HEADER true, COMPRESSION gzip",
            ".parquet": "FORMAT parquet",
            ".json": "FORMAT json, ARRAY true",
            ".jsonl": "FORMAT json",
            ".ndjson": "FORMAT json",
        }[fmt]
        if not out.parent.is_dir():
            raise MoescaleError(f"{out}: folder {out.parent} does not exist")
        self._require(name)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
        with self.connect() as con:
            try:
                con.execute(f"COPY (SELECT * FROM {quote(name)}) TO {_literal(tmp)} ({options})")
                count = con.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()[0]
                os.replace(tmp, out)
            except duckdb.Error as exc:
                raise MoescaleError(f"{out}: cannot export {name!r}: {_first_line(exc)}") from None
            finally:
                tmp.unlink(missing_ok=True)
        return int(count)

    def add_fit(
        self,
        law: str,
        spec: dict,
        params: dict,
        ci: dict,
        objective: float,
        n_points: int,
        fingerprint: str,
    ) -> str:
        """Record a fit in ``fits`` and return its new ``fit_id``.

        ``spec`` says what was fitted (data, variables, where, loss); ``ci`` maps a
        parameter to (lo, hi). Non-finite numbers are stored as JSON null.
        """
        fit_id = uuid.uuid4().hex[:16]
        row = [
            fit_id,
            str(law),
            datetime.now(timezone.utc).replace(tzinfo=None),
            json.dumps(_json_safe(spec or {})),
            json.dumps(_json_safe(params or {})),
            json.dumps(_json_safe(ci or {})),
            _json_safe(float(objective)) if objective is not None else None,
            int(n_points) if n_points is not None else None,
            fingerprint,
        ]
        with self.connect() as con:
            con.execute("INSERT INTO fits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        return fit_id

