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
    from scaling.fitting import fit, save_fit

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
        _check_output(args.json)
    # A store is opened when named, or when DATA is a store table/view; the fit is then saved to it.
    store = None
    if args.store is not None or not _is_file_or_dataset(args.data):
        from scaling.cli import open_store

        try:
            store = open_store(args)
        except MoescaleError as exc:
            if args.store is not None:
                raise
            from scaling.datasets import names

            raise MoescaleError(f"{args.data!r} is neither a file, a dataset ({', '.join(names())}) nor a store "
                                f"table: {exc}") from None
    try:
        # a progress bar only on a terminal (quiet in pipes and logs)
        progress = _progress(args.bootstrap) if args.bootstrap and args.json != "-" and sys.stderr.isatty() else None
        with progress or _null():
            result = fit(args.data, args.law, x=x, y=args.y, where=args.where, loss=args.loss, delta=args.delta,
                         bootstrap=args.bootstrap, seed=args.seed, store=store, fix=fix, save=False,
                         starts=starts, bounds=bounds, progress=progress.update if progress else None)
        payload = result.to_json()
        if args.json not in (None, "-"):
            _write_json(args.json, payload)
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


def _check_output(out: str) -> None:
    from pathlib import Path

    path = Path(out)
    if not path.parent.is_dir():
        raise MoescaleError(f"--json {out}: folder {path.parent} does not exist")
    if path.is_dir():
        raise MoescaleError(f"--json {out}: is a folder")


def _write_json(out: str, payload: dict) -> None:
    """Write atomically: a temp file beside ``out``, then os.replace."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _is_file_or_dataset(source: str) -> bool:
    from pathlib import Path

    if Path(source).exists():
        return True
    try:
        from scaling.datasets import names

        return source in names()
    except ImportError:
        return False


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _progress:
    """A rich progress bar for the bootstrap refits, on stderr."""

    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task("bootstrap refits", total=total)

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc):
        self.bar.stop()
        return False

    def update(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done)
