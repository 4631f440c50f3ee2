"""`moescale ingest DIR...` and `moescale db import|tables|sql|export|rebuild`: thin wrappers over scaling.store.

`db sql` is read-only unless given --write: one SELECT on a read-only connection. Only
`ingest` and `db import` create a missing store; every other command refuses one.
"""

from __future__ import annotations

import json
import math
import sys
import warnings

from scaling.cli import add_store_argument, open_store
from scaling.errors import MoescaleError


def register(sub) -> None:
    p = sub.add_parser("ingest", help="load run directories into the store (one transaction, idempotent)")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run directory, or a folder of run directories")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_store_argument(p)
    p.set_defaults(func=cmd_ingest)

    db = sub.add_parser("db", help="query and manage the experiment store")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")

    p = dbsub.add_parser("import", help="import a table file (.csv, .csv.gz, .parquet, .json, .jsonl) or dataset")
    p.add_argument("file", metavar="FILE", help="file path or registered dataset name")
    p.add_argument("--name", required=True, help="table name in the store")
    p.add_argument("--replace", action="store_true", help="replace an existing table of that name")
    add_store_argument(p)
    p.set_defaults(func=cmd_import)

    p = dbsub.add_parser("tables", help="list tables and views with their row counts")
    add_store_argument(p)
    p.set_defaults(func=cmd_tables)

    p = dbsub.add_parser("sql", help='run a read-only query, e.g. db sql "SELECT * FROM final"')
    p.add_argument("query", metavar="SQL")
    p.add_argument("--write", action="store_true",
                   help="allow statements that change the store (DELETE, UPDATE, CREATE, several statements)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    fmt.add_argument("--json", action="store_true", help="print JSON records")
    add_store_argument(p)
    p.set_defaults(func=cmd_sql)

    p = dbsub.add_parser("export", help="write a table or view to a file (format by suffix)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--out", required=True, metavar="FILE")
    add_store_argument(p)
    p.set_defaults(func=cmd_export)

    p = dbsub.add_parser("rebuild", help="recreate the derived views (final) from the core tables")
    add_store_argument(p)
    p.set_defaults(func=cmd_rebuild)


def cmd_ingest(args) -> int:
    from scaling.ingest import find_run_dirs, ingest

    find_run_dirs(args.dirs)  # a missing directory is refused before a store is created
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the summary lists them once, below
        summary = _into_store(args, lambda store: ingest(store, args.dirs, progress=not args.quiet))
    for message in summary.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(f"added {len(summary.added)}, replaced {len(summary.replaced)}, unchanged {len(summary.unchanged)} runs")
    return 0


def cmd_import(args) -> int:
    from scaling.store import check_table_name
    from scaling.tables import check_file

    check_table_name(args.name)  # bad input is refused before a store is created
    if args.file not in _dataset_names():
        check_file(args.file)
    rows = _into_store(args, lambda store: store.import_table(args.file, args.name, replace=args.replace))
    print(f"imported {rows} rows into {args.name}")
    return 0


def cmd_tables(args) -> int:
    from scaling.store import quote

    store = open_store(args)
    with store.connect():  # one connection for all the counts
        df = store.sql(
            "SELECT table_name AS name, lower(table_type) AS kind FROM information_schema.tables "
            "WHERE table_schema = 'main' ORDER BY table_name"
        )
        df["kind"] = df["kind"].str.replace("base table", "table")
        df["rows"] = [int(store.sql(f"SELECT count(*) AS n FROM {quote(n)}")["n"].iloc[0]) for n in df["name"]]
    print(df.to_string(index=False))
    return 0


def _into_store(args, write):
    """Run ``write(store)`` on the store --store names. A store that does not exist yet is
    built under a temporary name beside it and renamed into place only when ``write``
    succeeds, so a refused ingest or import leaves no new store behind."""
    import os
    import uuid
    from pathlib import Path

    from scaling.store import Store, check_store_file, default_path

    target = Path(args.store or default_path()).expanduser()
    if target.exists() or str(target) == ":memory:":
        return write(open_store(args, create=True))
    check_store_file(target, create=True)
    if not target.resolve().parent.is_dir():
        raise MoescaleError(f"{target}: folder {target.resolve().parent} does not exist")
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):  # the store's own lock: a racing command waits, then finds it
        if not target.exists():
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.new")
            try:
                with Store(tmp) as store:
                    result = write(store)
                os.replace(tmp, target)
                return result
            finally:
                for leftover in (tmp, Path(str(tmp) + ".lock"), Path(str(tmp) + ".wal")):
                    leftover.unlink(missing_ok=True)
    return write(open_store(args, create=True))


def _dataset_names():
    from scaling.datasets import REGISTRY

    return REGISTRY


def cmd_sql(args) -> int:
    from scaling.store import check_statement

    check_statement(args.query, write=args.write)  # before the store is opened
    df = open_store(args).sql(args.query, write=args.write)
    if args.csv:
        df.to_csv(sys.stdout, index=False)
    elif args.json:
        print(json.dumps([{k: _json_value(v) for k, v in row.items()} for row in df.to_dict("records")], default=str))
    elif df.empty and not len(df.columns):
        print("ok")
    else:
        print(df.to_string(index=False))
    return 0


def _json_value(value):
    """Exact floats (pandas' to_json rounds to 10 digits), null for NaN/NA/inf, ISO times."""
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


def cmd_export(args) -> int:
    from pathlib import Path

    from scaling.tables import table_format

    table_format(args.out)
    if not Path(args.out).parent.is_dir():
        raise MoescaleError(f"{args.out}: folder {Path(args.out).parent} does not exist")
    rows = open_store(args).export(args.name, args.out)
    print(f"wrote {rows} rows of {args.name} to {args.out}")
    return 0


def cmd_rebuild(args) -> int:
    store = open_store(args)
    missing = store.missing_views()
    rebuilt = store.rebuild_views()
    print(f"rebuilt {', '.join(rebuilt)}" + (f" (missing before: {', '.join(missing)})" if missing else ""))
    return 0
