"""The store's schema: its tables and version, the migrations, and the SQL of the ``final`` view.

The tables are created by ``scaling/schema.sql`` (all ``IF NOT EXISTS``); ``meta`` holds
the schema version, and :data:`MIGRATIONS` upgrade an older store in place. The view
``final`` has one row per finished run and is rebuilt from the core tables after every
ingest (:func:`refresh_final`), because its eval columns depend on the data. This module
only writes SQL text and runs it on a connection it is given; :mod:`scaling.store` opens
the file and decides when. It also turns values into what the store's JSON columns and
``db sql --json`` hold (:func:`json_safe`, :func:`json_records`).
"""

from __future__ import annotations

import math
import re
from importlib import resources

import duckdb

from scaling.errors import MoescaleError

SCHEMA_VERSION = 1
CORE_TABLES = ("meta", "runs", "metrics", "evals", "fits")
DERIVED_VIEWS = ("final",)
RESERVED_NAMES = frozenset(CORE_TABLES + DERIVED_VIEWS)

#: Columns of ``runs`` that ``final`` carries over, in order.
RUN_COLUMNS = (
    "run_id", "sweep", "status", "created_at", "code_version", "config",
    "d_model", "n_layers", "n_heads", "d_ff", "n_experts", "top_k", "vocab_size", "seq_len",
    "n_total", "n_active", "n_total_nonembed", "n_active_nonembed", "flops_per_token",
    "tokens_planned", "seed",
)  # fmt: skip
DERIVED_COLUMNS = ("sparsity", "density", "tokens", "tpp", "active_flops", "val_loss", "slice")


def quote(identifier: str) -> str:
    """A DuckDB quoted identifier: ``"name"`` with inner quotes doubled."""
    return '"' + str(identifier).replace('"', '""') + '"'


def sql_literal(text) -> str:
    """A DuckDB string literal: ``'text'`` with inner single quotes doubled (for SQL that
    cannot take a ``?`` parameter, such as a view definition or a COPY target)."""
    return "'" + str(text).replace("'", "''") + "'"


# ----------------------------------------------------------------------------- version and migrations


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


def table_names(con) -> set[str]:
    """Names of the tables and views of an open DuckDB connection's main schema."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    return {r[0] for r in rows}


def is_current(con) -> bool:
    """Whether the store behind ``con`` has this version's schema (nothing to create or migrate)."""
    try:
        return schema_version(con) == SCHEMA_VERSION
    except (duckdb.Error, MoescaleError):
        return False


def schema_version(con) -> int | None:
    """Schema version of an open store: meta.schema_version, 0 for a pre-versioning store
    (a ``runs`` table but no ``meta``), None for a store without the project's tables."""
    names = table_names(con)
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
        "json_extract_string(r.config, '$.slice') AS slice",
    ]
    ctes = [
        "last_row AS (SELECT run_id, arg_max(tokens, step) AS tokens FROM metrics GROUP BY run_id)",
        "last_val AS (SELECT run_id, arg_max_null(value, step) AS val_loss FROM metrics "
        "WHERE name = 'val_loss' GROUP BY run_id)",
    ]
    joins = ["LEFT JOIN last_row USING (run_id)", "LEFT JOIN last_val USING (run_id)"]
    if pairs:
        filters = ",\n        ".join(
            f"max(value) FILTER (WHERE task = {sql_literal(t)} AND metric = {sql_literal(m)}) AS {quote(c)}"
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


# ----------------------------------------------------------------------------- values as JSON


def json_safe(obj):
    """JSON-ready copy: tuples to lists, numpy scalars to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_records(df) -> list[dict]:
    """The rows of a query result as JSON-ready dicts (what ``moescale db sql --json`` prints).

    Floats stay exact (pandas' ``to_json`` rounds to 10 digits), NaN, NA and inf become
    null, and times are ISO 8601 text.
    """
    return [{k: json_value(v) for k, v in row.items()} for row in df.to_dict("records")]


def json_value(value):
    """One query-result value as JSON: ISO text for times, None for NaN, NA and inf."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        if value is not None and not isinstance(value, (str, list, dict)) and value != value:
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") else value
