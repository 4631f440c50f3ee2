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
  moescale optimum --store s.duckdb --compute 1e15 --memory 5e7 --n-experts 64 --json best.json
  moescale optimum --param E=1.82 --param A=482 --param B=2085 --param alpha=0.35 --param beta=0.37 --compute 1e21
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from scaling.errors import MoescaleError
from scaling.files import atomic_write, check_output_path

AXES = ("n_experts", "top_k", "d_model", "n_layers")


def register(sub) -> None:
    p = sub.add_parser("optimum", help="compute-optimal architecture from a store, or N and D from a chinchilla fit",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", metavar="PATH", help="a store with finished runs: the best real architecture per budget")
    src.add_argument("--fit", metavar="JSON", help="a fit saved with `moescale fit --law chinchilla --json OUT`")
    src.add_argument("--param", action="append", metavar="NAME=V", help="a parameter: E, A, B (or e, a, b), alpha, beta")
    p.add_argument("--compute", nargs="+", required=True, metavar="C", help="compute budgets in FLOPs")
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


def _number(text: str, what: str, minimum: int | None = None) -> float | int:
    """``text`` as a finite count (1e14, 5M; ``scaling.architecture.parse_count``), or with
    ``minimum`` as an integer >= minimum; MoescaleError naming the option ``what`` otherwise."""
    from scaling.architecture import parse_count

    try:
        value = parse_count(text) if minimum is None else int(text)
    except (MoescaleError, ValueError):
        raise MoescaleError(f"{what}: {text!r} is not {'a number' if minimum is None else 'an integer'}") from None
    if minimum is None and not math.isfinite(value):
        raise MoescaleError(f"{what}: {text!r} is not finite")
    if minimum is not None and value < minimum:
        raise MoescaleError(f"{what}: {value} must be >= {minimum}")
    return value


def _params(args) -> dict[str, float]:
    from scaling.fitjson import check_chinchilla_params, read_chinchilla_fit

    if args.fit:
        return read_chinchilla_fit(args.fit)
    out = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise MoescaleError(f"--param {item!r} is not NAME=VALUE")
        if name.strip() in out:
            raise MoescaleError(f"--param {name.strip()} given twice")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise MoescaleError(f"--param {name.strip()}: {value!r} is not a number") from None
    return check_chinchilla_params(out, "--param")


def _print(args, payload, text: str) -> int:
    """Write ``payload`` as JSON to --json (atomically; '-' for stdout, then nothing else), and print ``text``."""
    if args.json:
        out = json.dumps(payload, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(out)
            return 0
        atomic_write(Path(args.json).expanduser(), out)
    print(text)
    return 0


def handle(args) -> int:
    compute = [_number(c, "--compute") for c in args.compute]
    if any(c <= 0 for c in compute):
        raise MoescaleError(f"--compute: budgets must be > 0, got {', '.join(args.compute)}")
    if args.json and args.json != "-":
        check_output_path(args.json, "--json")
    if args.store:
        return _from_store(args, compute)
    if args.memory or args.active or any(getattr(args, axis) for axis in AXES):
        raise MoescaleError("--memory, --active and the grid options need --store")
    k = args.flops_per_param_token
    if not (math.isfinite(k) and k > 0):
        raise MoescaleError(f"--flops-per-param-token: {k:g} must be finite and > 0")
    from scaling.allocation import chinchilla_optimum
    from scaling.fitjson import jsonable

    table = chinchilla_optimum(_params(args), compute, flops_per_param_token=k)
    return _print(args, jsonable(table), table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _from_store(args, compute) -> int:
    from scaling.optimum import find_optimum

    caps = {}
    for name in ("memory", "active"):
        text = getattr(args, name)
        caps[name] = _number(text, f"--{name}") if text is not None else None
        if caps[name] is not None and caps[name] <= 0:
            raise MoescaleError(f"--{name}: {caps[name]:g} must be > 0")
    bootstrap = _number(args.bootstrap, "--bootstrap", 0)
    if bootstrap > 100_000:
        raise MoescaleError(f"--bootstrap: {bootstrap} is more than 100000 resamples")
    seed = _number(args.seed, "--seed", 0)
    widen = {axis: [_number(v, f"--{axis.replace('_', '-')}", 1) for v in getattr(args, axis)]
             for axis in AXES if getattr(args, axis)}
    if not Path(args.store).is_file():
        raise MoescaleError(f"--store {args.store}: no such store file")
    if not args.quiet and sys.stderr.isatty():
        print(f"fitting the moe law and {bootstrap} bootstrap resamples...", file=sys.stderr)
    result = find_optimum(args.store, compute, **caps, objective=list(dict.fromkeys(args.objective)),
                          widen=widen or None, bootstrap=bootstrap, seed=seed)
    return _print(args, result.to_json(), result.summary())
