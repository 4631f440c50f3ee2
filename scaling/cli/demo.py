"""`moescale demo`: the whole path on 2 CPU cores, offline: plan, train, ingest, fit, claims, optimum,
figures, report.

Plans the cpu-study-demo sweep (the cpu-study's top-1 sparsity runs at its two larger budgets,
scaling.presets), trains it on the synthetic corpus
with the sweep runner (runner.sweep.run_sweep, which ingests each finished run into the store),
runs the analysis (scaling.analysis.analyze: the claims of Liew et al. 2026, the accuracy regimes
of Nakamura et al. 2025, isoFLOP minima, the optimum per budget and objective with bootstrap
uncertainty), draws the figures and writes the report (figures.report.write_report), then prints
where everything is and the headline answers. The public-dataset reproductions (the Chinchilla fit
on Epoch AI's data, Clark et al.'s expert-count figure) join only when their files are found
(MOESCALE_DATA; nothing is downloaded). Then it writes the report of the cpu-study shipped with
the project (data/studies/cpu-study/runs, ingested into DIR/study/, no training) and prints its
headline. Rerunning reuses finished runs. The Python form is scaling.demo.run_demo.

Examples:
  moescale demo                      # into demo/, 2 workers
  moescale demo --out /tmp/d --workers 1 --bootstrap 100
"""

from __future__ import annotations

import argparse
import sys

from scaling.cli import non_negative_int
from scaling.errors import MoescaleError


def register(sub) -> None:
    p = sub.add_parser("demo", help="plan, train, analyse and report part of the cpu-study end to end (offline)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo", metavar="DIR", help="folder for everything (default: demo)")
    p.add_argument("--workers", type=int, default=2, help="training worker processes (default 2)")
    p.add_argument("--preset", default="cpu-study-demo",
                   help="the sweep preset to plan (default cpu-study-demo: 12 runs of the cpu-study that learn)")
    p.add_argument("--bootstrap", type=non_negative_int, default=200, metavar="B",
                   help="bootstrap resamples of runs in the analysis (default 200)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed, >= 0 (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=handle)


def handle(args) -> int:
    if args.workers < 1:
        raise MoescaleError(f"--workers {args.workers}: must be at least 1")
    from scaling.demo import run_demo

    say = None if args.quiet else (lambda m: print(f"demo: {m}", file=sys.stderr, flush=True))
    result = run_demo(args.out, workers=args.workers, preset=args.preset, seed=args.seed, bootstrap=args.bootstrap,
                      quiet=args.quiet, progress=say)
    print(result.summary())
    return 0
