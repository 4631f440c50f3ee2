"""`moescale optimum`: compute-optimal N and D of a chinchilla fit (Hoffmann et al. 2022, Approach 3).

The fit comes from a JSON file written by `moescale fit ... --json OUT`, or from
parameters given directly (--param E=1.8172 --param A=477.84 ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scaling.errors import MoescaleError


def register(sub) -> None:
    p = sub.add_parser("optimum", help="compute-optimal model size and tokens from a chinchilla fit",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fit", metavar="JSON", help="a fit saved with `moescale fit --law chinchilla --json OUT`")
    src.add_argument("--param", action="append", metavar="NAME=V", help="a parameter: E, A, B (or e, a, b), alpha, beta")
    p.add_argument("--compute", nargs="+", required=True, metavar="C", help="compute budgets in FLOPs")
    p.add_argument("--flops-per-param-token", type=float, default=6.0, help="k in C = k N D (default 6)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the table as JSON records ('-' for stdout)")
    p.set_defaults(func=handle)


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise MoescaleError(f"{what}: {text!r} is not a number") from None


def _params(args) -> dict[str, float]:
    if args.fit:
        path = Path(args.fit)
        try:
            payload = json.loads(path.read_text())
        except OSError as exc:
            raise MoescaleError(f"cannot read {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise MoescaleError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("params"), dict):
            raise MoescaleError(f"{path}: no 'params' object; write it with `moescale fit ... --json OUT`")
        if payload.get("law") not in (None, "chinchilla"):
            raise MoescaleError(f"{path}: law is {payload['law']!r}; the closed-form optimum needs a chinchilla fit")
        return payload["params"]
    out = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise MoescaleError(f"--param {item!r} is not NAME=VALUE")
        out[name.strip()] = _number(value, f"--param {name.strip()}")
    return out


def handle(args) -> int:
    from scaling.allocation import chinchilla_optimum

    compute = [_number(c, "--compute") for c in args.compute]
    table = chinchilla_optimum(_params(args), compute, flops_per_param_token=args.flops_per_param_token)
    if args.json:
        records = table.to_dict(orient="records")
        if args.json == "-":
            json.dump(records, sys.stdout, indent=2)
            print()
            return 0
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
