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
import os
import sys
import tempfile
from pathlib import Path

from scaling.errors import MoescaleError

CHINCHILLA_PARAMS = ("E", "A", "B", "e", "a", "b", "alpha", "beta")


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
    for axis in ("n-experts", "top-k", "d-model", "n-layers"):
        p.add_argument(f"--{axis}", nargs="+", default=None, metavar="V",
                       help=f"--store: add {axis.replace('-', '_')} values to the sweep's grid space")
    p.add_argument("--flops-per-param-token", type=float, default=6.0, help="--fit: k in C = k N D (default 6)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the result as JSON ('-' for stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=handle)


def _number(text: str, what: str) -> float:
    from scaling.architecture import parse_count

    try:
        value = parse_count(text)
    except MoescaleError:
        raise MoescaleError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise MoescaleError(f"{what}: {text!r} is not finite")
    return value


def _integer(text: str, what: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise MoescaleError(f"{what}: {text!r} is not an integer") from None
    if value < minimum:
        raise MoescaleError(f"{what}: {value} must be >= {minimum}")
    return value


def _check_params(params: dict, where: str) -> dict[str, float]:
    out = {}
    for name, value in params.items():
        if name not in CHINCHILLA_PARAMS:
            raise MoescaleError(f"{where}: unknown parameter {name!r}; a chinchilla fit has {', '.join(CHINCHILLA_PARAMS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise MoescaleError(f"{where}: parameter {name} = {value!r} is not a number") from None
        if not math.isfinite(float(value)):
            raise MoescaleError(f"{where}: parameter {name} = {value!r} is not finite")
        out[name] = float(value)
    return out


def _params(args) -> dict[str, float]:
    if args.fit:
        path = Path(args.fit)
        try:
            payload = json.loads(path.read_text())
        except OSError as exc:
            raise MoescaleError(f"cannot read {path}: {exc.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MoescaleError(f"{path}: not JSON ({getattr(exc, 'msg', exc)})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("params"), dict):
            raise MoescaleError(f"{path}: no 'params' object; write it with `moescale fit ... --json OUT`")
        if payload.get("law") not in (None, "chinchilla"):
            raise MoescaleError(f"{path}: law is {payload['law']!r}; the closed-form optimum needs a chinchilla fit")
        return _check_params(payload["params"], str(path))
    out = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise MoescaleError(f"--param {item!r} is not NAME=VALUE")
        name = name.strip()
        if name in out:
            raise MoescaleError(f"--param {name} given twice")
        try:
            out[name] = float(value)
        except ValueError:
            raise MoescaleError(f"--param {name}: {value!r} is not a number") from None
    return _check_params(out, "--param")


def _check_out(target: str | None) -> None:
    if target and target != "-":
        parent = Path(target).expanduser().resolve().parent
        if not parent.is_dir():
            raise MoescaleError(f"--json {target}: folder {parent} does not exist")
        if Path(target).is_dir():
            raise MoescaleError(f"--json {target}: is a folder")


def _write(target: str, payload) -> None:
    text = json.dumps(payload, indent=2, default=_json_default) + "\n"
    if target == "-":
        sys.stdout.write(text)
        return
    path = Path(target).expanduser()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def _records(df):
    import numpy as np

    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


def handle(args) -> int:
    compute = [_number(c, "--compute") for c in args.compute]
    if any(c <= 0 for c in compute):
        raise MoescaleError(f"--compute: budgets must be > 0, got {', '.join(args.compute)}")
    _check_out(args.json)
    if args.store:
        return _from_store(args, compute)
    if args.memory or args.active or args.n_experts or args.top_k or args.d_model or args.n_layers:
        raise MoescaleError("--memory, --active and the grid options need --store")
    k = args.flops_per_param_token
    if not (math.isfinite(k) and k > 0):
        raise MoescaleError(f"--flops-per-param-token: {k:g} must be finite and > 0")
    from scaling.allocation import chinchilla_optimum

    table = chinchilla_optimum(_params(args), compute, flops_per_param_token=k)
    if args.json:
        _write(args.json, _records(table))
        if args.json == "-":
            return 0
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def _from_store(args, compute) -> int:
    from scaling.claims import open_store
    from scaling.optimum import find_optimum

    memory = _number(args.memory, "--memory") if args.memory is not None else None
    active = _number(args.active, "--active") if args.active is not None else None
    for name, v in (("--memory", memory), ("--active", active)):
        if v is not None and v <= 0:
            raise MoescaleError(f"{name}: {v:g} must be > 0")
    bootstrap = _integer(args.bootstrap, "--bootstrap", 0)
    if bootstrap > 100_000:
        raise MoescaleError(f"--bootstrap: {bootstrap} is more than 100000 resamples")
    seed = _integer(args.seed, "--seed", 0)
    widen = {}
    for axis in ("n_experts", "top_k", "d_model", "n_layers"):
        values = getattr(args, axis)
        if values:
            widen[axis] = [_integer(v, f"--{axis.replace('_', '-')}", 1) for v in values]
    if not Path(args.store).is_file():
        raise MoescaleError(f"--store {args.store}: no such store file")
    store = open_store(args.store)
    if not args.quiet and sys.stderr.isatty():
        print(f"fitting the moe law and {bootstrap} bootstrap resamples...", file=sys.stderr)
    result = find_optimum(store, compute, memory=memory, active=active, objective=list(dict.fromkeys(args.objective)),
                          widen=widen or None, bootstrap=bootstrap, seed=seed)
    payload = {"best": _records(result.best), "frequency": _records(result.frequency),
               "sparsity_frequency": _records(result.sparsity_frequency), "trend": _records(result.trend),
               "pareto": _records(result.pareto), "bootstrap": result.bootstrap, "seed": result.seed}
    if args.json:
        _write(args.json, payload)
        if args.json == "-":
            return 0
    print(result.summary())
    return 0
