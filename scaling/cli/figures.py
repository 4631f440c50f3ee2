"""`moescale figures`: draw every figure a store (and the public datasets) has data for.

Writes PNG and PDF of each figure into --out and says which figures were skipped and why
(no evals, no routing metric, too few runs for the analysis, a public dataset not found).
The analysis (claims, accuracy GLMs, isoFLOP minima, optimum) runs once with --bootstrap
resamples of runs.

Examples:
  moescale figures --store demo/moescale.duckdb --out demo/figures
  moescale figures --store s.duckdb --out figs --bootstrap 0 --no-public --format png
"""

from __future__ import annotations

import argparse
import sys

from scaling.cli import non_negative_int
from scaling.errors import MoescaleError


def register(sub) -> None:
    p = sub.add_parser("figures", help="draw the figures a store has data for (PNG and PDF)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, metavar="PATH", help="the DuckDB store")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the figures")
    p.add_argument("--bootstrap", type=non_negative_int, default=200, metavar="B", help="bootstrap resamples of runs (default 200)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-public", action="store_true", help="skip the public-dataset figures")
    p.add_argument("--format", nargs="+", default=["png", "pdf"], choices=("png", "pdf", "svg"),
                   help="file formats (default: png pdf)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=handle)


def handle(args) -> int:
    from pathlib import Path

    if not Path(args.store).is_file():
        raise MoescaleError(f"{args.store}: no such store file")
    from figures.draw import draw_all  # lazy: matplotlib and the analysis load only for this command

    say = None if args.quiet or not sys.stderr.isatty() else (lambda m: print(f"... {m}", file=sys.stderr))
    result = draw_all(args.store, args.out, bootstrap=args.bootstrap, seed=args.seed, public=not args.no_public,
                      formats=tuple(dict.fromkeys(args.format)), say=say)
    print(result.summary())
    return 0
