"""The ``moescale`` command line: parses arguments and calls the Python API.

Each command group lives in its own module with a ``register(subparsers)``
function; no logic lives only here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from scaling import __version__
from scaling.errors import MoescaleError

# Command groups, each a module of this package exposing register(subparsers).
GROUPS = ("db", "datasets", "fit", "plan", "optimum")


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """The one way a command names its store: --store, else $MOESCALE_STORE, else ./moescale.duckdb."""
    parser.add_argument(
        "--store",
        default=None,
        metavar="PATH",
        help="DuckDB store file (default: $MOESCALE_STORE or ./moescale.duckdb)",
    )


def open_store(args: argparse.Namespace):
    """Open the store a command's --store names (see add_store_argument)."""
    from scaling.store import Store

    return Store(args.store)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moescale",
        description="Find the optimal sparsity of Mixture-of-Experts language models.",
    )
    parser.add_argument("--version", action="version", version=f"moe-scaling {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(f"scaling.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MoescaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
