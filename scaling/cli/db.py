"""`moescale ingest DIR...` and `moescale db import|tables|sql|export`: thin wrappers over scaling.store."""

from __future__ import annotations

import json
import math
import sys
import warnings

from scaling.cli import add_store_argument, open_store


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

    p = dbsub.add_parser("sql", help='run SQL, e.g. db sql "SELECT * FROM final"')
    p.add_argument("query", metavar="SQL")
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


def cmd_ingest(args) -> int:
    store = open_store(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the summary lists them once, below
        summary = store.ingest(args.dirs, progress=not args.quiet)
    for message in summary.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(f"added {len(summary.added)}, replaced {len(summary.replaced)}, unchanged {len(summary.unchanged)} runs")
    return 0


def cmd_import(args) -> int:
    rows = open_store(args).import_table(args.file, args.name, replace=args.replace)
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


def cmd_sql(args) -> int:
    df = open_store(args).sql(args.query)
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
    rows = open_store(args).export(args.name, args.out)
    print(f"wrote {rows} rows of {args.name} to {args.out}")
    return 0
