"""`moescale report`: report.md and a self-contained report.html of a store.

Runs the analysis (claims, accuracy GLMs, isoFLOP minima, the optimum per budget and
objective; --bootstrap resamples of runs), draws the figures into DIR/figures and writes
DIR/report.md (figures beside it) and DIR/report.html (figures embedded), with the runs
table, the fits with CIs, the claims with verdicts, the seed papers' claims set against the
runs, the command and the data fingerprint.

Example:
  moescale report --store demo/moescale.duckdb --out demo/report
  MOESCALE_STORE=demo/moescale.duckdb moescale report --out demo/report
"""

from __future__ import annotations

import argparse
import shlex

from scaling.cli import add_analysis_arguments, analysis_progress


def register(sub) -> None:
    p = sub.add_parser("report", help="write report.md and report.html of a store", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_analysis_arguments(p, out_help="folder for the report and its figures")
    p.set_defaults(func=handle)


def handle(args) -> int:
    from scaling.demo import report_store  # lazy: matplotlib and the analysis load only for this command

    from scaling.store import default_path

    store = args.store or default_path()
    command = shlex.join(["moescale", "report", "--store", store, "--out", args.out, "--bootstrap",
                          str(args.bootstrap), "--seed", str(args.seed)] + (["--no-public"] if args.no_public else []))
    result = report_store(store, args.out, bootstrap=args.bootstrap, seed=args.seed, public=not args.no_public,
                          commands=[command], say=analysis_progress(args))
    print(result.summary())
    if result.draw.skipped:
        print("skipped figures: " + "; ".join(f"{k} ({v})" for k, v in result.draw.skipped.items()))
    return 0
