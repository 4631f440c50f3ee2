"""`moescale analyze`: the analysis of a store alone (claims, accuracy and the optimum as one table).

Runs ``scaling.analysis.analyze`` on the store's finished runs (one set of bootstrap resamples
shared by every part) and prints ``Analysis.table()``: each seed-paper claim with its estimate,
interval and verdict, the accuracy regimes' verdicts, and the optimal sparsity per budget and
objective where the data decide it (else ``undetermined`` and why); then the headline and the
notes. No figures, no report.

Examples:
  moescale analyze --store s.duckdb
  moescale analyze --store s.duckdb --compute 1e14 3e14 --bootstrap 400 --json analysis.json
  moescale analyze --store s.duckdb --where "json_extract_string(config, '$.lr') = '0.003'"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scaling.errors import MoescaleError
from scaling.files import check_output_path


def register(sub) -> None:
    from scaling.cli import non_negative_int

    p = sub.add_parser("analyze", help="claims, accuracy and the optimum of a store as one table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--store", required=True, metavar="PATH", help="the DuckDB store")
    p.add_argument("--compute", nargs="+", default=None, metavar="C",
                   help="compute budgets in FLOPs (default: the store's own budgets)")
    p.add_argument("--where", default=None, metavar="SQL", help="select runs (SQL over the final view)")
    p.add_argument("--sweep", default=None, metavar="NAME", help="select the runs of one sweep")
    p.add_argument("--memory", default=None, metavar="N_TOTAL_MAX", help="cap on total parameters")
    p.add_argument("--active", default=None, metavar="N_ACTIVE_MAX", help="cap on active parameters")
    p.add_argument("--bootstrap", type=non_negative_int, default=200, metavar="B",
                   help="bootstrap resamples of runs (default 200)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the analysis as JSON ('-' for stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=handle)


def handle(args) -> int:
    from scaling.analysis import analyze
    from scaling.cli import analysis_progress
    from scaling.cli.options import parse_number, positive_number, print_result

    compute = [parse_number(c, "--compute") for c in args.compute or []]
    if any(c <= 0 for c in compute):
        raise MoescaleError(f"--compute: budgets must be > 0, got {', '.join(args.compute)}")
    caps = {k: positive_number(getattr(args, k), f"--{k}") if getattr(args, k) is not None else None
            for k in ("memory", "active")}
    if args.bootstrap > 100_000:
        raise MoescaleError(f"--bootstrap: {args.bootstrap} is more than 100000 resamples")
    if args.json and args.json != "-":
        check_output_path(args.json, "--json")
    if not Path(args.store).is_file():
        raise MoescaleError(f"--store {args.store}: no such store file")
    say = analysis_progress(args)
    result = analyze(args.store, compute or None, **caps, bootstrap=args.bootstrap, seed=args.seed,
                     where=args.where, sweep=args.sweep, progress=say and (lambda stage: say(stage)))
    table = result.table().to_string(index=False, float_format=lambda v: f"{v:.4g}", max_colwidth=90)
    text = "\n".join([table, "", "headline:", *(f"  {h}" for h in result.headline()), *result.notes])
    if not args.quiet and not args.json and sys.stdout.isatty():
        text += f"\n({len(result.runs)} runs, {args.bootstrap} resamples, seed {args.seed})"
    return print_result(args, result.to_json(), text)
