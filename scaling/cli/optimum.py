"""`moescale optimum`: the compute-optimal model, from a store's runs or from a chinchilla fit.

Two sources, one command:

  --store PATH   the best real MoE architecture per compute budget from a store's finished runs
                 (the moe law and the accuracy models fitted to them; scaling.optimum.find_optimum),
                 with bootstrap uncertainty, edge and extrapolation flags;
  --fit JSON / --param NAME=V
                 the closed-form optimum N_opt, D_opt of a chinchilla fit (Hoffmann et al. 2022,
                 Approach 3), from `moescale fit ... --json OUT` or parameters given directly.

Examples:
  moescale optimum --store s.duckdb --compute 1e14 3e14 --objective loss reasoning
  moescale optimum --store s.duckdb --where "json_extract_string(config, '$.lr') = '0.003'"
  moescale optimum --store s.duckdb --compute 1e15 --memory 5e7 --n-experts 64 --json best.json
  moescale optimum --param E=1.82 --param A=482 --param B=2085 --param alpha=0.35 --param beta=0.37 --compute 1e21
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from scaling.errors import MoescaleError
from scaling.cli.options import parse_number, positive_number, print_result
from scaling.files import check_output_path

AXES = ("n_experts", "top_k", "d_model", "n_layers")


def register(sub) -> None:
    p = sub.add_parser("optimum", help="compute-optimal architecture from a store, or N and D from a chinchilla fit",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", metavar="PATH", help="a store with finished runs: the best real architecture per budget")
    src.add_argument("--fit", metavar="JSON", help="a fit saved with `moescale fit --law chinchilla --json OUT`")
    src.add_argument("--param", action="append", metavar="NAME=V", help="a parameter: E, A, B (or e, a, b), alpha, beta")
    p.add_argument("--compute", nargs="+", default=None, metavar="C",
                   help="compute budgets in FLOPs (--store: default the store's own budgets)")
    p.add_argument("--where", default=None, metavar="SQL", help="--store: select runs (SQL over the final view)")
    p.add_argument("--sweep", default=None, metavar="NAME", help="--store: select the runs of one sweep")
    p.add_argument("--memory", default=None, metavar="N_TOTAL_MAX", help="--store: cap on total parameters")
    p.add_argument("--active", default=None, metavar="N_ACTIVE_MAX", help="--store: cap on active parameters")
    p.add_argument("--objective", nargs="+", default=["loss"], choices=("loss", "memorization", "reasoning"),
                   help="--store: what to optimize (default loss)")
    p.add_argument("--bootstrap", default="200", metavar="B", help="--store: bootstrap resamples of runs (default 200)")
    p.add_argument("--seed", default="0", help="--store: bootstrap seed (default 0)")
    for axis in AXES:
        p.add_argument(f"--{axis.replace('_', '-')}", nargs="+", default=None, metavar="V",
                       help=f"--store: add {axis} values to the sweep's grid space")
    p.add_argument("--flops-per-param-token", type=float, default=6.0, help="--fit: k in C = k N D (default 6)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the result as JSON ('-' for stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=handle)


def _params(args) -> dict[str, float]:
    from scaling.fitjson import params_from_items, read_chinchilla_fit

    return read_chinchilla_fit(args.fit) if args.fit else params_from_items(args.param, "--param")


def handle(args) -> int:
    compute = [parse_number(c, "--compute") for c in args.compute or []]
    if any(c <= 0 for c in compute):
        raise MoescaleError(f"--compute: budgets must be > 0, got {', '.join(args.compute)}")
    if args.json and args.json != "-":
        check_output_path(args.json, "--json")
    if args.store:
        return _from_store(args, compute or None)
    if args.memory or args.active or args.where or args.sweep or any(getattr(args, axis) for axis in AXES):
        raise MoescaleError("--memory, --active, --where, --sweep and the grid options need --store")
    if not compute:
        raise MoescaleError("--compute is required with --fit or --param")
    k = args.flops_per_param_token
    if not (math.isfinite(k) and k > 0):
        raise MoescaleError(f"--flops-per-param-token: {k:g} must be finite and > 0")
    from scaling.allocation import chinchilla_optimum
    from scaling.fitjson import jsonable

    table = chinchilla_optimum(_params(args), compute, flops_per_param_token=k)
    return print_result(args, jsonable(table), table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _from_store(args, compute) -> int:
    from scaling.budgets import store_budgets
    from scaling.final import load_final
    from scaling.optimum import find_optimum

    caps = {}
    for name in ("memory", "active"):
        text = getattr(args, name)
        caps[name] = positive_number(text, f"--{name}") if text is not None else None
    bootstrap = parse_number(args.bootstrap, "--bootstrap", 0)
    if bootstrap > 100_000:
        raise MoescaleError(f"--bootstrap: {bootstrap} is more than 100000 resamples")
    seed = parse_number(args.seed, "--seed", 0)
    widen = {axis: [parse_number(v, f"--{axis.replace('_', '-')}", 1) for v in getattr(args, axis)]
             for axis in AXES if getattr(args, axis)}
    if not Path(args.store).is_file():
        raise MoescaleError(f"--store {args.store}: no such store file")
    if not args.quiet and sys.stderr.isatty():
        print(f"fitting the moe law and {bootstrap} bootstrap resamples...", file=sys.stderr)
    runs = load_final(args.store, where=args.where, sweep=args.sweep)
    result = find_optimum(runs, compute if compute else store_budgets(runs), **caps,
                          objective=list(dict.fromkeys(args.objective)), widen=widen or None, bootstrap=bootstrap,
                          seed=seed)
    return print_result(args, result.to_json(), result.summary())
