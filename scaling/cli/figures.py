"""`moescale figures`: draw every figure a store (and the public datasets) has data for.

Writes PNG and PDF of each figure into --out and says which figures were skipped and why
(no evals, no routing metric, too few runs for the analysis, a public dataset not found).
The analysis (claims, accuracy GLMs, isoFLOP minima, optimum) runs once with --bootstrap
resamples of runs. The store is --store, else $MOESCALE_STORE, else ./moescale.duckdb; one
without finished runs is refused. Figure files of an earlier call into the same --out that this
call does not draw are removed (only the figure names this command writes), and it says so.

Examples:
  moescale figures --store demo/moescale.duckdb --out demo/figures
  moescale figures --store s.duckdb --out figs --bootstrap 0 --no-public --format png
"""

from __future__ import annotations

import argparse

from scaling.cli import add_analysis_arguments, analysis_progress


def register(sub) -> None:
    p = sub.add_parser("figures", help="draw the figures a store has data for (PNG and PDF)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_analysis_arguments(p, out_help="folder for the figures")
    p.add_argument("--format", nargs="+", default=["png", "pdf"], choices=("png", "pdf", "svg"),
                   help="file formats (default: png pdf)")
    p.set_defaults(func=handle)


def handle(args) -> int:
    from scaling.demo import draw_store  # lazy: matplotlib and the analysis load only for this command

    result = draw_store(args.store, args.out, bootstrap=args.bootstrap, seed=args.seed, public=not args.no_public,
                        formats=tuple(dict.fromkeys(args.format)), say=analysis_progress(args))
    print(result.summary())
    return 0
