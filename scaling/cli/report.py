"""`moescale report`: report.md and a self-contained report.html of a store.

Runs the analysis (claims, accuracy GLMs, isoFLOP minima, the optimum per budget and
objective; --bootstrap resamples of runs), draws the figures into DIR/figures and writes
DIR/report.md (figures beside it) and DIR/report.html (figures embedded), with the runs
table, the fits with CIs, the claims with verdicts, the seed papers' claims set against the
runs, the command and the data fingerprint.

Example:
  moescale report --store demo/moescale.duckdb --out demo/report
"""

from __future__ import annotations

import argparse
import sys

from scaling.cli import non_negative_int
from scaling.errors import MoescaleError


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md and report.html of a store", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, metavar="PATH", help="the DuckDB store")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report and its figures")
    p.add_argument("--bootstrap", type=non_negative_int, default=200, metavar="B", help="bootstrap resamples of runs (default 200)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-public", action="store_true", help="skip the public-dataset figures")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=handle)


def handle(args) -> int:
    from pathlib import Path

    if not Path(args.store).is_file():
        raise MoescaleError(f"{args.store}: no such store file")
    from figures.report import write_report  # lazy: matplotlib and the analysis load only for this command

    say = None if args.quiet or not sys.stderr.isatty() else (lambda m: print(f"... {m}", file=sys.stderr))
    command = " ".join(["moescale", "report", "--store", args.store, "--out", args.out, "--bootstrap",
                        str(args.bootstrap), "--seed", str(args.seed)] + (["--no-public"] if args.no_public else []))
    result = write_report(args.store, args.out, bootstrap=args.bootstrap, seed=args.seed, public=not args.no_public,
                          commands=[command], say=say)
    print(result.summary())
    if result.draw.skipped:
        print("skipped figures: " + "; ".join(f"{k} ({v})" for k, v in result.draw.skipped.items()))
    return 0
