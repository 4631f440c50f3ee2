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
sit above it and are never imported here. The schema, its migrations and the SQL of
``final`` live in :mod:`scaling.schema`, the checks of a store file, table name or query
in :mod:`scaling.store_checks`; both are re-exported here.

Concurrency: every operation takes an inter-process file lock (``<store>.lock``) and
opens the DuckDB file only for its own duration, retrying with backoff while another
process (say, a DuckDB shell) holds the file. So several ``moescale ingest`` processes
can race on one store, and a notebook holding a ``Store`` does not block them between
queries. ``Store(":memory:")`` keeps one in-process database instead. Reading needs no
write access: a store in a read-only folder, or a read-only store file, opens read-only
and is read without a lock file (``db sql``, ``db tables``, ``db export``, ``optimum``).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
from filelock import FileLock, Timeout

from scaling import datasets, tables
from scaling.errors import MoescaleError, first_line
from scaling.files import atomic_path
# Re-exported: the schema and the input checks are part of the store's API.
from scaling.schema import (  # noqa: F401
    CORE_TABLES, DERIVED_COLUMNS, DERIVED_VIEWS, MIGRATIONS, RESERVED_NAMES, RUN_COLUMNS, SCHEMA_VERSION,
    eval_column_names, final_view_sql, is_current, json_records, json_safe, quote, refresh_final, schema_sql,
    schema_version, sql_literal, table_names,
)  # fmt: skip
from scaling.store_checks import (  # noqa: F401
    DUCKDB_MAGIC, DUCKDB_MAGIC_OFFSET, READ_ONLY_STATEMENTS,
    check_export_path, check_statement, check_store_file, check_table_name, store_error,
)  # fmt: skip

DEFAULT_STORE = "moescale.duckdb"


def default_path() -> str:
    """$MOESCALE_STORE, else ./moescale.duckdb."""
    return os.environ.get("MOESCALE_STORE") or DEFAULT_STORE


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
        # check (create or migrate) now, so errors surface at open; an existing store is
        # looked at read-only first, so a read-only store opens for reading
        with self.connect(read_only=not self._memory and Path(self.path).exists()):
            pass

    @classmethod
    @contextmanager
    def create_on_success(cls, path: str | Path | None = None):
        """Yield the store at ``path`` for writing; a store that does not exist yet appears only
        if the block succeeds.

        A missing store is built under a temporary name beside it (under the store's own lock,
        so a racing command waits, then finds it) and renamed into place when the block ends
        without an error; a refused ingest or import leaves no new store behind. An existing
        store (or ``:memory:``) is opened as by ``Store(path)``. What ``moescale ingest`` and
        ``moescale db import`` write into.

        >>> with Store.create_on_success("new.duckdb") as store:
        ...     store.import_table("chinchilla_epoch", "chinchilla")
        """
        target = Path(path or default_path()).expanduser()
        if target.exists() or str(target) == ":memory:":
            yield cls(path, create=True)
            return
        check_store_file(target, create=True)
        if not target.resolve().parent.is_dir():
            raise MoescaleError(f"{target}: folder {target.resolve().parent} does not exist")
        with FileLock(str(target) + ".lock"):
            if not target.exists():
                with atomic_path(target) as tmp:
                    tmp.unlink()  # DuckDB creates the file: an empty one is not a store
                    try:
                        with cls(tmp) as store:
                            yield store
                    finally:
                        for leftover in (Path(f"{tmp}.lock"), Path(f"{tmp}.wal")):
                            leftover.unlink(missing_ok=True)
                return
        yield cls(path, create=True)

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
                    raise MoescaleError(f"{self.path}: cannot open store: {first_line(exc)}") from None
            except duckdb.Error as exc:
                raise MoescaleError(f"{self.path}: cannot open store: {first_line(exc)}") from None
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
        locked = self._take_lock(read_only)
        try:
            con = self._open(read_only=read_only)
            if read_only and not self._checked and not is_current(con):
                con.close()
                with self.connect():  # create or migrate first, on a writable connection
                    pass
                con = self._open(read_only=True)
            try:
                if not self._checked:
                    self._ensure_schema(con)
                self._active = con
                yield con
            except duckdb.Error as exc:  # a damaged file, a full disk: one line naming the store
                raise store_error(self.path, exc) from None
            finally:
                self._active = None
                con.close()
        finally:
            if locked:
                self._lock.release()

    def _take_lock(self, read_only: bool) -> bool:
        """Take the store's inter-process lock; True when taken. A read needs no lock file: where none
        can be made (a read-only folder), it goes ahead without (DuckDB's own lock keeps writers out)."""
        try:
            self._lock.acquire()
        except Timeout:
            raise MoescaleError(
                f"{self.path}: store is busy: could not take {self.path}.lock within {self.timeout:g} s"
            ) from None
        except OSError:
            if not read_only:
                raise
            return False
        return True

    def _ensure_schema(self, con) -> None:
        version = schema_version(con)
        if version is None and table_names(con):
            raise MoescaleError(
                f"{self.path}: is a DuckDB database without the store's tables (it has "
                f"{', '.join(sorted(table_names(con))[:5])}); not opened as a store"
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
        missing = [t for t in CORE_TABLES if t not in table_names(con)]
        if missing:
            raise MoescaleError(
                f"{self.path}: core table(s) {', '.join(missing)} missing: the store was altered outside "
                "moe-scaling and its data is lost; re-ingest the run directories into a new store"
            )
        self._checked = True

    def verify(self) -> None:
        """Read every column of every core table once; MoescaleError (one line) when the file
        cannot be read back (a store cut short or damaged), so a command that would spend
        hours before writing into it (``moescale sweep``) refuses it first."""
        with self.connect(read_only=True) as con:
            for table in CORE_TABLES:
                con.execute(f"SELECT max(hash(COLUMNS(*))) FROM {quote(table)}").fetchall()

    def missing_views(self) -> list[str]:
        """The derived views (``final``) that are missing from the store."""
        with self.connect(read_only=True) as con:
            names = table_names(con)
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
                message = f"SQL error: {first_line(exc)}"
                missing = [v for v in DERIVED_VIEWS if v not in table_names(con)]
                if missing:
                    message += f" (view {', '.join(missing)} is missing: rebuild it with `moescale db rebuild`)"
                raise MoescaleError(message) from None

    def tables(self) -> list[str]:
        """Names of the tables and views in the store, sorted."""
        with self.connect(read_only=True) as con:
            return sorted(table_names(con))

    def table_counts(self) -> pd.DataFrame:
        """The store's tables and views with their kind (table, view) and row count, by name.

        >>> Store().table_counts()
           name   kind  rows
          evals  table     0
        """
        with self.connect(read_only=True):  # one connection for all the counts
            df = self.sql(
                "SELECT table_name AS name, lower(table_type) AS kind FROM information_schema.tables "
                "WHERE table_schema = 'main' ORDER BY table_name"
            )
            df["kind"] = df["kind"].str.replace("base table", "table")
            df["rows"] = [int(self.sql(f"SELECT count(*) AS n FROM {quote(n)}")["n"].iloc[0]) for n in df["name"]]
        return df

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
            if not replace and name in table_names(con):
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
                raise MoescaleError(f"{what}: cannot import: {first_line(exc)}") from None
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
        fmt = check_export_path(out)
        options = {
            ".csv": "FORMAT csv, HEADER true",
            ".csv.gz": "FORMAT csv, HEADER true, COMPRESSION gzip",
            ".parquet": "FORMAT parquet",
            ".json": "FORMAT json, ARRAY true",
            ".jsonl": "FORMAT json",
            ".ndjson": "FORMAT json",
        }[fmt]
        self._require(name)
        with self.connect(read_only=True) as con:
            try:
                with atomic_path(out) as tmp:
                    con.execute(f"COPY (SELECT * FROM {quote(name)}) TO {sql_literal(tmp)} ({options})")
                    count = con.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()[0]
            except duckdb.Error as exc:
                raise MoescaleError(f"{out}: cannot export {name!r}: {first_line(exc)}") from None
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
            json.dumps(json_safe(spec or {})),
            json.dumps(json_safe(params or {})),
            json.dumps(json_safe(ci or {})),
            json_safe(float(objective)) if objective is not None else None,
            int(n_points) if n_points is not None else None,
            fingerprint,
        ]
        with self.connect() as con:
            con.execute("INSERT INTO fits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        return fit_id

