r"""`moescale fit DATA --law NAME_OR_FORMULA --map VAR=SQL ... --y SQL`: fit a scaling law, print its summary.

The fit is saved to the store's `fits` table when --store is given or DATA is a store table/view
(the store must exist: a fit never creates one). Every argument is checked before the fit
runs, and outputs are written last: the --json file (atomically), then the store's row.

Example (Epoch AI's Chinchilla replication):
  moescale fit chinchilla_epoch --law chinchilla --map N='"Model Size"' \
    --map D='"Training FLOP"/(6*"Model Size")' --y loss \
    --where 'loss < (SELECT loss FROM data ORDER BY loss DESC LIMIT 1 OFFSET 4)' --bootstrap 4000
"""

from __future__ import annotations

import argparse
import json
import sys

from scaling.cli import add_store_argument, non_negative_int
from scaling.errors import MoescaleError
from scaling.files import atomic_write, check_output_path
from scaling.objectives import LOSSES


def _pairs(items, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise MoescaleError(f"{what} {item!r} is not NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MoescaleError(f"{what}: {text!r} is not a number") from None
    if value != value:
        raise MoescaleError(f"{what}: {text!r} is not a number")
    return value


def register(sub) -> None:
    p = sub.add_parser("fit", help="fit a scaling law to a table", description=__doc__.split("\n", 1)[1].strip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="a file, a registry dataset name, or a store table/view")
    p.add_argument("--law", required=True, help="a registered law (chinchilla, power, clark, moe, ...) or a formula")
    p.add_argument("--map", action="append", default=[], metavar="VAR=SQL", help="a law variable as a DuckDB expression over `data`")
    p.add_argument("--y", default="val_loss", metavar="SQL", help="the fitted quantity (default: val_loss)")
    p.add_argument("--where", default=None, metavar="SQL", help="row filter")
    p.add_argument("--loss", choices=LOSSES, default=None, help="objective (default: the law's)")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default 1e-3)")
    p.add_argument("--bootstrap", type=non_negative_int, default=0, metavar="B",
                   help="bootstrap resamples of runs for 95%% CIs (0, or 2 and more)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed (>= 0)")
    p.add_argument("--fix", action="append", default=[], metavar="NAME=V", help="hold a parameter fixed")
    p.add_argument("--start", action="append", default=[], metavar="NAME=V1,V2", help="start values of a parameter")
    p.add_argument("--bound", action="append", default=[], metavar="NAME=LO:HI", help="bounds of a parameter")
    p.add_argument("--json", default=None, metavar="OUT", help="write the result as JSON ('-' for stdout)")
    add_store_argument(p)
    p.set_defaults(func=handle)


def handle(args) -> int:
    from scaling.fitting import fit, open_fit_store, save_fit
    from scaling.progress import progress_bar

    x = _pairs(args.map, "--map")
    fix = {k: _float(v, f"--fix {k}") for k, v in _pairs(args.fix, "--fix").items()}
    starts = {k: [_float(s, f"--start {k}") for s in v.split(",")] for k, v in _pairs(args.start, "--start").items()}
    bounds = {}
    for k, v in _pairs(args.bound, "--bound").items():
        lo, sep, hi = v.partition(":")
        if not sep:
            raise MoescaleError(f"--bound {k}={v}: expected LO:HI")
        bounds[k] = (_float(lo or "-inf", f"--bound {k}"), _float(hi or "inf", f"--bound {k}"))
    if args.json not in (None, "-"):
        check_output_path(args.json, "--json")
    # A store is opened when named, or when DATA is a store table/view; the fit is then saved to it.
    store = open_fit_store(args.data, args.store)
    try:
        # a progress bar only on a terminal (quiet in pipes and logs)
        show = bool(args.bootstrap) and args.json != "-" and sys.stderr.isatty()
        with progress_bar(args.bootstrap, "bootstrap refits", enabled=show) as progress:
            result = fit(args.data, args.law, x=x, y=args.y, where=args.where, loss=args.loss, delta=args.delta,
                         bootstrap=args.bootstrap, seed=args.seed, store=store, fix=fix, save=False,
                         starts=starts, bounds=bounds, progress=progress)
        payload = result.to_json()
        if args.json not in (None, "-"):
            atomic_write(args.json, json.dumps(payload, indent=2) + "\n")
        if store is not None:
            save_fit(store, result)
    finally:
        if store is not None:
            store.close()
    if args.json == "-":
        json.dump(payload, sys.stdout, indent=2)
        print()
        return 0
    print(result.summary())
    if result.fit_id:
        print(f"saved fit {result.fit_id} to the store")
    if args.json:
        print(f"wrote {args.json}")
    return 0

