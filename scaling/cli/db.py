"""`moescale ingest DIR...` and `moescale db import|tables|sql|export|rebuild`: thin wrappers over scaling.store.

`db sql` is read-only unless --write (one SELECT, read-only connection: read-only stores work).
Only `ingest` and `db import` create a store; `ingest --replace` lets a run go backwards.
"""

from __future__ import annotations

import json
import sys
import warnings

from scaling.cli import add_store_argument, open_store


def register(sub) -> None:
    p = sub.add_parser("ingest", help="load run directories into the store (one transaction, idempotent)")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run directory, or a folder of run directories")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--replace", action="store_true",
                   help="replace a stored run even by a copy that goes backwards (fewer steps, finished -> running)")
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
    from scaling.store import Store

    find_run_dirs(args.dirs)  # a missing directory is refused before a store is created
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the summary lists them once, below
        with Store.create_on_success(args.store) as store:
            summary = ingest(store, args.dirs, progress=not args.quiet, replace=args.replace)
    for message in summary.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(f"added {len(summary.added)}, replaced {len(summary.replaced)}, unchanged {len(summary.unchanged)} runs")
    return 0


def cmd_import(args) -> int:
    from scaling.datasets import REGISTRY
    from scaling.store import Store, check_table_name
    from scaling.tables import check_file

    check_table_name(args.name)  # bad input is refused before a store is created
    if args.file not in REGISTRY:
        check_file(args.file)
    with Store.create_on_success(args.store) as store:
        rows = store.import_table(args.file, args.name, replace=args.replace)
    print(f"imported {rows} rows into {args.name}")
    return 0


def cmd_tables(args) -> int:
    print(open_store(args).table_counts().to_string(index=False))
    return 0


def cmd_sql(args) -> int:
    from scaling.store import check_statement, json_records

    check_statement(args.query, write=args.write)  # before the store is opened
    df = open_store(args).sql(args.query, write=args.write)
    if args.csv:
        df.to_csv(sys.stdout, index=False)
    elif args.json:
        print(json.dumps(json_records(df), default=str))
    elif df.empty and not len(df.columns):
        print("ok")
    else:
        print(df.to_string(index=False))
    return 0


def cmd_export(args) -> int:
    from scaling.store import check_export_path

    check_export_path(args.out)  # before the store is opened
    rows = open_store(args).export(args.name, args.out)
    print(f"wrote {rows} rows of {args.name} to {args.out}")
    return 0


def cmd_rebuild(args) -> int:
    store = open_store(args)
    missing = store.missing_views()
    rebuilt = store.rebuild_views()
    print(f"rebuilt {', '.join(rebuilt)}" + (f" (missing before: {', '.join(missing)})" if missing else ""))
    return 0
