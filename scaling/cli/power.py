"""`moescale plan power SWEEP.yaml`: can a planned sweep answer the questions, before it is trained?

Simulates the sweep ``--n-sim`` times from a truth (the ``moe`` law's documented defaults, a moe
fit from ``moescale fit --json``, or the moe law fitted to a store's runs) with a seed noise
sigma, analyses each simulated sweep as the real one will be analysed, and prints per question
(gamma, lam, the TPP peaks, the optimum per budget) the median 95% half-width, P(decided) and
P(identified) (``scaling.power.power``).

Examples:
  moescale plan grid --preset cpu-tiny --out cpu-tiny.yaml
  moescale plan power cpu-tiny.yaml
  moescale plan power cpu-tiny.yaml --store moescale.duckdb --n-sim 100
  moescale plan power cpu-tiny.yaml --truth fit.json --noise 0.01 --json power.json
"""

from __future__ import annotations

import argparse
import json
import sys

from scaling.cli import non_negative_int, positive_int
from scaling.cli.options import non_negative_float


def _bootstrap(text: str) -> int:
    """argparse type: resamples per simulated sweep, an integer >= 10 (``scaling.power.MIN_REFITS``)."""
    from scaling.power import MIN_REFITS

    value = positive_int(text)
    if value < MIN_REFITS:
        raise argparse.ArgumentTypeError(f"{value} must be >= {MIN_REFITS}")
    return value


def register(plan_sub) -> None:
    p = plan_sub.add_parser("power", help="simulate a planned sweep: can it decide the claims and the optimum?",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", metavar="SWEEP.yaml", help="a sweep written by `moescale plan grid --out`")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--truth", metavar="FIT.json", help="a moe fit (`moescale fit --law moe --json OUT`) to simulate from")
    src.add_argument("--store", metavar="PATH", help="fit the truth to this store's runs and measure its seed noise")
    p.add_argument("--noise", type=non_negative_float, default=None, metavar="SIGMA",
                   help="relative seed noise of the final loss (default: the store's, else 0.004)")
    p.add_argument("--n-sim", type=positive_int, default=200, help="simulated sweeps (default 200)")
    p.add_argument("--bootstrap", type=_bootstrap, default=100, metavar="B",
                   help="bootstrap resamples per simulated sweep (default 100)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the simulation (default 0)")
    p.add_argument("--tasks", action="store_true",
                   help="also simulate the default accuracy tasks (reasoning peaks at TPP 20): the TPP-peak rows")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the table as JSON ('-' for stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from scaling.files import atomic_write, check_output_path
    from scaling.power import power, power_json, power_report
    from scaling.progress import progress_bar

    if args.json and args.json != "-":
        check_output_path(args.json, "--json")
    with progress_bar(args.n_sim, "simulated sweeps", enabled=not args.quiet and sys.stderr.isatty()) as update:
        df = power(args.sweep, truth=args.truth, store=args.store, noise=args.noise, n_sim=args.n_sim,
                   bootstrap=args.bootstrap, seed=args.seed, tasks=args.tasks, progress=update)
    text = json.dumps(power_json(df), indent=1)
    if args.json == "-":
        print(text)
        return 0
    print(power_report(df))
    if args.json:
        atomic_write(args.json, text + "\n")
        print(f"wrote {args.json}")
    return 0
