"""Load run directories into the store: ``moescale ingest DIR...``.

All directories go in one transaction. Ingest is idempotent: a run whose files are
byte-identical to what was ingested before (same sha256 over run.json, metrics and
evals) is left alone; a run with the same run_id and config but new content (more
steps, a new status) has its rows replaced, unless it would go backwards (fewer metric
rows, an earlier last step, finished -> running: an older or partial copy), which is
refused unless ``replace=True`` (``--replace``); a run_id reused with a different config is
an error naming the directory and the differing keys, and nothing is written.

Metrics are parsed in three tiers, each vouching only for files it can check:

1. one DuckDB ``read_json`` over all clean ``metrics.jsonl`` files at once, with the
   columns given explicitly (DuckDB's auto-detection samples and would silently drop a
   key first seen late). A file is accepted only when byte-level counts agree with what
   DuckDB read: it ends in a newline, has no booleans or arrays, and twice
   (non-null cells + literal ``null``s) equals its number of ``"`` characters, so no key
   or string value went unread;
2. pyarrow's JSON reader, one file at a time (infers every key; parquet files too);
3. the careful line-by-line parse of :mod:`scaling.rundir`, which warns about a truncated
   last line and names ``file:line`` and column of anything malformed.

Concurrency: the whole ingest runs under the store's inter-process lock
(``<store>.lock``), so racing ingests serialize: nothing is lost and nothing doubled.

    >>> from scaling.ingest import ingest
    >>> ingest("moescale.duckdb", ["runs/r1", "runs/r2"])
    IngestSummary(added=['r1', 'r2'], replaced=[], unchanged=[], warnings=[])
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from scaling import rundir
from scaling.errors import MoescaleError
from scaling.progress import track
from scaling.store import Store, quote, refresh_final, sql_literal, store_error


@dataclass
class IngestSummary:
    """What an ingest did: run_ids added, replaced and unchanged, and warnings raised."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"added {len(self.added)}, replaced {len(self.replaced)}, unchanged {len(self.unchanged)} runs"
        if self.warnings:
            text += f"; {len(self.warnings)} warning(s):\n  " + "\n  ".join(self.warnings)
        return text


def find_run_dirs(paths) -> list[Path]:
    """Run directories named by ``paths``: each path is a run directory (it has run.json)
    or a folder whose immediate subfolders are run directories."""
    found = []
    for p in paths:
        p = Path(p)
        if (p / rundir.RUN_FILE).is_file():
            found.append(p)
        elif p.is_dir():
            children = sorted(c for c in p.iterdir() if (c / rundir.RUN_FILE).is_file())
            if not children:
                raise MoescaleError(f"{p}: not a run directory (no {rundir.RUN_FILE}) and holds none")
            found.extend(children)
        else:
            raise MoescaleError(f"{p}: no such run directory")
    return found


def scan_run_dir(dir: Path) -> dict:
    """Read what ingest needs before touching the store: the sha256 over the run
    directory's files (run.json, metrics, evals; names included) and, for
    metrics.jsonl, the byte counts that let the bulk reader vouch for the file."""
    digest = hashlib.sha256()
    scan = {"bulk": False}
    for name in (rundir.RUN_FILE, rundir.METRICS_FILE, rundir.METRICS_PARQUET, rundir.EVALS_FILE):
        file = dir / name
        if not file.is_file():
            continue
        data = file.read_bytes()
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        if name == rundir.METRICS_FILE and not (dir / rundir.METRICS_PARQUET).exists():
            scan = _bulk_scan(data)
    scan["hash"] = digest.hexdigest()
    return scan


def _bulk_scan(data: bytes) -> dict:
    if not data.endswith(b"\n") or b"[" in data or b"true" in data or b"false" in data:
        return {"bulk": False}
    newline = data.find(b"\n")
    try:
        first = json.loads(data[:newline])
    except ValueError:
        return {"bulk": False}
    if not isinstance(first, dict) or "filename" in first:
        return {"bulk": False}
    return {
        "bulk": True,
        "keys": list(first),
        "quotes": data.count(b'"'),
        "nulls": data.count(b":null") + data.count(b": null"),
    }


def content_hash(dir: Path) -> str:
    """sha256 over the run directory's files (run.json, metrics, evals), names included."""
    return scan_run_dir(Path(dir))["hash"]


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: obj}


def config_diff(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two configs (missing on one side counts)."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, ...) != b.get(k, ...))


def _normalized_config(config: dict) -> dict:
    return json.loads(json.dumps(config))


def _runs_table(entries) -> pa.Table:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    columns = {
        "run_id": pa.array([e["run"]["run_id"] for e in entries], pa.string()),
        "sweep": pa.array([e["run"].get("sweep") for e in entries], pa.string()),
        "status": pa.array([e["run"]["status"] for e in entries], pa.string()),
        "created_at": pa.array([e["run"].get("created_at") for e in entries], pa.timestamp("us")),
        "code_version": pa.array([e["run"].get("code_version") for e in entries], pa.string()),
        "config": pa.array([json.dumps(e["run"]["config"]) for e in entries], pa.string()),
    }
    for key in rundir.INT_COLUMNS:
        columns[key] = pa.array([e["run"][key] for e in entries], pa.int64())
    for key in rundir.FLOAT_COLUMNS:
        columns[key] = pa.array([e["run"][key] for e in entries], pa.float64())
    columns["content_hash"] = pa.array([e["hash"] for e in entries], pa.string())
    columns["source_dir"] = pa.array([str(e["dir"].resolve()) for e in entries], pa.string())
    columns["ingested_at"] = pa.array([now] * len(entries), pa.timestamp("us"))
    return pa.table(columns)


def _evals_table(columns_list) -> pa.Table:
    schema = {
        "run_id": pa.string(), "step": pa.int64(), "tokens": pa.int64(), "task": pa.string(),
        "task_kind": pa.string(), "metric": pa.string(), "value": pa.float64(), "n_examples": pa.int64(),
    }  # fmt: skip
    return pa.table({k: pa.array([v for c in columns_list for v in c[k]], t) for k, t in schema.items()})


def _metrics_long(entry, messages) -> pa.Table:
    """Tiers 2 and 3: pyarrow per file, else the careful parse (warns / raises file:line)."""
    wide = rundir.read_metrics_arrow(entry["dir"])
    run_id = entry["run"]["run_id"]
    if wide is not None:
        return rundir.arrow_wide_to_long(wide, run_id)
    df = rundir.read_metrics(entry["dir"], run_id, warn=False, messages=messages)
    return pa.table(
        {
            "run_id": pa.array(df["run_id"].astype(object).tolist(), pa.string()),
            "step": pa.array(df["step"].to_numpy(), pa.int64()),
            "tokens": pa.array(df["tokens"].to_numpy(), pa.int64()),
            "name": pa.array(df["name"].astype(object).tolist(), pa.string()),
            "value": pa.array(df["value"].to_numpy(dtype=float), pa.float64()),
        }
    )


def _bulk_metrics(con, entries) -> list:
    """Tier 1: read the clean metrics.jsonl of ``entries`` with one DuckDB read_json into
    the temp table ``_bulk_wide`` and prepare the temp view ``_bulk_long`` (run_id, step,
    tokens, name, value) over the files it vouches for; returns the entries it could not."""
    candidates = [e for e in entries if e["scan"]["bulk"]]
    rest = [e for e in entries if not e["scan"]["bulk"]]
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _bulk_long AS SELECT * FROM (VALUES (NULL::VARCHAR, NULL::BIGINT, "
        "NULL::BIGINT, NULL::VARCHAR, NULL::DOUBLE)) t(run_id, step, tokens, name, value) WHERE false"
    )
    if not candidates:
        return rest
    keys = list(dict.fromkeys(k for e in candidates for k in e["scan"]["keys"]))
    if "step" not in keys or "tokens" not in keys:
        return entries
    files = {str(e["dir"] / rundir.METRICS_FILE): e for e in candidates}
    columns = "{" + ", ".join(f"{sql_literal(k)}: 'DOUBLE'" for k in keys) + "}"
    file_list = "[" + ", ".join(sql_literal(f) for f in files) + "]"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _bulk_wide AS SELECT * FROM read_json({file_list}, "
            f"columns = {columns}, format = 'newline_delimited', filename = true)"
        )
    except duckdb.Error:
        return entries
    cells = " + ".join(f"count({quote(k)})" for k in keys)
    checks = con.execute(
        f"SELECT filename, count(*), {cells}, bool_and(step IS NOT NULL AND tokens IS NOT NULL "
        "AND isfinite(step) AND isfinite(tokens) AND step = trunc(step) AND tokens = trunc(tokens) "
        "AND step >= 0 AND tokens >= 0 AND step < 9.2e18 AND tokens < 9.2e18) "
        "FROM _bulk_wide GROUP BY filename"
    ).fetchall()
    vouched = {}
    for filename, rows, n_cells, ok in checks:
        scan = files[filename]["scan"]
        if ok and rows > 0 and 2 * (n_cells + scan["nulls"]) == scan["quotes"]:
            vouched[filename] = files[filename]["run"]["run_id"]
    for filename, entry in files.items():
        if filename not in vouched:
            rest.append(entry)
    value_columns = ", ".join(quote(k) for k in keys if k not in ("step", "tokens"))
    if vouched and value_columns:
        con.register("_bulk_map", pa.table({"filename": list(vouched), "run_id": list(vouched.values())}))
        con.execute("CREATE OR REPLACE TEMP TABLE _bulk_files AS SELECT * FROM _bulk_map")
        con.unregister("_bulk_map")
        con.execute(
            "CREATE OR REPLACE TEMP VIEW _bulk_long AS "
            "SELECT f.run_id, u.step::BIGINT AS step, u.tokens::BIGINT AS tokens, u.name, u.value "
            f"FROM (UNPIVOT _bulk_wide ON {value_columns} INTO NAME name VALUE value) u "
            "JOIN _bulk_files f USING (filename)"
        )
    return rest


def _write(con, to_write, summary: IngestSummary, show: bool, stored: dict, replace: bool, path: str) -> None:
    """Parse the runs to write, then replace/insert their rows in one transaction.

    ``stored``: run_id -> (status, metric rows, last step) of the runs already in the store;
    a replacement that would go backwards is refused unless ``replace`` (see
    :func:`_refuse_backwards`)."""
    # Parse everything before the transaction: a bad file raises with the store untouched.
    rest = _bulk_metrics(con, to_write)
    metric_parts, eval_columns = [], []
    for entry in track(rest, "parsing metrics", enabled=show and len(rest) >= 20):
        metric_parts.append(_metrics_long(entry, summary.warnings))
    for entry in to_write:
        eval_columns.append(
            rundir.read_evals_columns(entry["dir"], entry["run"]["run_id"], warn=False, messages=summary.warnings)
        )
    frames = {
        "_runs_new": _runs_table(to_write),
        "_metrics_new": pa.concat_tables(metric_parts) if metric_parts else _empty_long(),
        "_evals_new": _evals_table(eval_columns),
    }
    dirs = {e["run"]["run_id"]: e for e in to_write}
    _refuse_duplicate_metrics(con, frames["_metrics_new"], {k: e["dir"] for k, e in dirs.items()})
    if summary.replaced and not replace:
        _refuse_backwards(con, frames["_metrics_new"], {k: dirs[k] for k in summary.replaced}, stored)
    con.execute("BEGIN TRANSACTION")
    try:
        if summary.replaced:
            for table in ("metrics", "evals", "runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [summary.replaced])
        for name, frame in frames.items():
            con.register(name, frame)
        con.execute("INSERT INTO runs BY NAME SELECT * FROM _runs_new")
        con.execute("INSERT INTO metrics SELECT * FROM _bulk_long")
        con.execute("INSERT INTO metrics BY NAME SELECT * FROM _metrics_new")
        con.execute("INSERT INTO evals BY NAME SELECT * FROM _evals_new")
        refresh_final(con)
        con.execute("COMMIT")
    except duckdb.Error as exc:
        _rollback(con)
        raise store_error(path, exc, "ingest failed, store unchanged") from None
    except BaseException:
        _rollback(con)
        raise
    finally:
        for name in frames:
            try:
                con.unregister(name)
            except duckdb.Error:
                pass


def _rollback(con) -> None:
    """Roll back the open transaction; a failed COMMIT (a full disk) has already ended it."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass


#: Run statuses by how far a run got: a run never goes from a later one back to an earlier one.
STATUS_RANK = {"running": 0, "failed": 0, "finished": 1, "diverged": 1}


def _refuse_backwards(con, careful: pa.Table, entries: dict, stored: dict) -> None:
    """MoescaleError when a run that ended (finished or diverged) in the store would be replaced
    by an older copy: a status that goes back (-> running or failed), fewer metric rows or an
    earlier last step. Such a copy is usually a stale or partial copy of the run directory;
    ``replace=True`` (``moescale ingest --replace``) replaces it anyway. A stored run that has
    not ended (running, failed) is replaced by any copy: a restart from a checkpoint
    legitimately drops the steps logged after it."""
    con.register("_metrics_check", careful)
    try:
        rows = con.execute(
            "SELECT run_id, count(*), max(step) FROM (SELECT run_id, step FROM _bulk_long UNION ALL "
            "SELECT run_id, step FROM _metrics_check) GROUP BY run_id"
        ).fetchall()
    finally:
        con.unregister("_metrics_check")
    new = {r[0]: (int(r[1]), r[2]) for r in rows}
    for run_id, entry in entries.items():
        old_status, old_rows, old_last = stored[run_id]
        if STATUS_RANK.get(old_status, 0) == 0:
            continue
        status = entry["run"]["status"]
        rows, last = new.get(run_id, (0, None))
        went = []
        if STATUS_RANK.get(status, 0) < STATUS_RANK.get(old_status, 0):
            went.append(f"status {old_status} -> {status}")
        if rows < (old_rows or 0):
            went.append(f"{old_rows} -> {rows} metric rows")
        if old_last is not None and (last is None or last < old_last):
            went.append(f"last step {old_last} -> {last if last is not None else 'none'}")
        if went:
            raise MoescaleError(
                f"{entry['dir']}: run {run_id!r} would go backwards in the store ({', '.join(went)}): an older "
                "or partial copy of the run? Pass --replace (replace=True) to replace the stored run anyway"
            )


def _refuse_duplicate_metrics(con, careful: pa.Table, dirs: dict) -> None:
    """MoescaleError naming ``file:line`` when a run logs one metric twice at one step
    (``final`` would pick one of them arbitrarily); checked over every tier's rows at once."""
    con.register("_metrics_check", careful)
    try:
        row = con.execute(
            "SELECT run_id, step, name FROM (SELECT run_id, step, name FROM _bulk_long UNION ALL "
            "SELECT run_id, step, name FROM _metrics_check) GROUP BY ALL HAVING count(*) > 1 "
            "ORDER BY run_id, step, name LIMIT 1"
        ).fetchall()
    finally:
        con.unregister("_metrics_check")
    if row:
        run_id, step, name = row[0]
        raise MoescaleError(rundir.find_duplicate_metric(dirs[run_id], int(step), name))


def _empty_long() -> pa.Table:
    empty = pa.table({"step": pa.array([], pa.int64()), "tokens": pa.array([], pa.int64())})
    return rundir.arrow_wide_to_long(empty, "")


def ingest(store, dirs, progress: bool = True, replace: bool = False) -> IngestSummary:
    """Load run directories into ``store`` (a Store or a store path) in one transaction.

    ``dirs`` are run directories or folders of run directories. A run already in the store
    is replaced by a newer copy; one that would go backwards (fewer metric rows, an earlier
    last step, finished -> running) is refused unless ``replace``. Returns an
    :class:`IngestSummary`; raises MoescaleError (store unchanged) on bad input.
    """
    if not isinstance(store, Store):
        store = Store(store)
    paths = find_run_dirs(dirs)
    show = progress and len(paths) >= 20

    entries: dict[str, dict] = {}
    for d in track(paths, "reading run directories", enabled=show):
        run = rundir.read_run_json(d)
        run["config"] = _normalized_config(run["config"])
        scan = scan_run_dir(d)
        entry = {"dir": d, "run": run, "hash": scan["hash"], "scan": scan}
        seen = entries.get(run["run_id"])
        if seen is not None:
            if seen["hash"] != entry["hash"]:
                raise MoescaleError(
                    f"{d}: run_id {run['run_id']!r} also comes from {seen['dir']} with different content; "
                    "ingest one of them"
                )
            continue
        entries[run["run_id"]] = entry

    summary = IngestSummary()
    with store.connect() as con:
        ids = list(entries)
        existing, stored = {}, {}
        if ids:
            rows = con.execute(
                "SELECT r.run_id, r.content_hash, r.config, r.status, m.n, m.last FROM runs r LEFT JOIN "
                "(SELECT run_id, count(*) AS n, max(step) AS last FROM metrics GROUP BY run_id) m USING (run_id) "
                "WHERE r.run_id IN (SELECT unnest(?::VARCHAR[]))",
                [ids],
            ).fetchall()
            existing = {r[0]: (r[1], r[2]) for r in rows}
            stored = {r[0]: (r[3], r[4], r[5]) for r in rows}
        to_write = []
        for run_id, entry in entries.items():
            if run_id not in existing:
                summary.added.append(run_id)
                to_write.append(entry)
                continue
            old_hash, old_config = existing[run_id]
            # a store migrated from version 0 may hold no config: nothing to compare with
            differing = config_diff(json.loads(old_config), entry["run"]["config"]) if old_config else []
            if differing:
                shown = ", ".join(differing[:10]) + (" ..." if len(differing) > 10 else "")
                raise MoescaleError(
                    f"{entry['dir']}: run_id {run_id!r} is already in the store with a different config "
                    f"(keys differ: {shown}); give the run a new run_id"
                )
            if old_hash == entry["hash"]:
                summary.unchanged.append(run_id)
            else:
                summary.replaced.append(run_id)
                to_write.append(entry)

        if not to_write:
            return summary
        try:
            _write(con, to_write, summary, show, stored, replace, store.path)
        finally:
            for sql in ("DROP VIEW IF EXISTS _bulk_long", "DROP TABLE IF EXISTS _bulk_wide",
                        "DROP TABLE IF EXISTS _bulk_files"):  # fmt: skip
                con.execute(sql)
    for message in summary.warnings:
        warnings.warn(message, stacklevel=2)
    return summary
