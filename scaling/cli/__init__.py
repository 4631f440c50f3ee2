"""The ``moescale`` command line: parses arguments and calls the Python API.

Each command group lives in its own module with a ``register(subparsers)``
function; no logic lives only here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from scaling import __version__
from scaling.errors import MoescaleError

# Command groups, each a module of this package exposing register(subparsers).
GROUPS = ("db", "datasets", "fit", "plan", "optimum", "analyze", "sweep", "train", "figures", "report", "demo", "export")


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """The one way a command names its store: --store, else $MOESCALE_STORE, else ./moescale.duckdb."""
    parser.add_argument(
        "--store",
        default=None,
        metavar="PATH",
        help="DuckDB store file (default: $MOESCALE_STORE or ./moescale.duckdb)",
    )


def add_analysis_arguments(parser: argparse.ArgumentParser, *, out_help: str) -> None:
    """The arguments of the commands that analyse a store and draw it (``figures``, ``report``):
    --store (``add_store_argument``: else $MOESCALE_STORE, else ./moescale.duckdb), --out DIR, --bootstrap B,
    --seed (an integer >= 0), --no-public and --quiet."""
    add_store_argument(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help=out_help)
    parser.add_argument("--bootstrap", type=non_negative_int, default=200, metavar="B",
                        help="bootstrap resamples of runs (default 200)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap seed, >= 0 (default 0)")
    parser.add_argument("--no-public", action="store_true", help="skip the public-dataset figures")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")


def analysis_progress(args: argparse.Namespace):
    """The progress printer of an analysing command: ``... stage`` lines on a terminal's stderr, else None."""
    if args.quiet or not sys.stderr.isatty():
        return None
    return lambda msg: print(f"... {msg}", file=sys.stderr)


def open_store(args: argparse.Namespace, create: bool = False):
    """Open the store a command's --store names (see add_store_argument).

    A reading command never creates a store: with ``create=False`` a missing file is an
    error. Only commands that write data (ingest, db import) pass ``create=True``.
    """
    from scaling.store import Store

    return Store(args.store, create=create)


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``error: moescale fit: ...``, exit 2), like every other error."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} must be >= {minimum}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="moescale",
        description="Find the optimal sparsity of Mixture-of-Experts language models.",
    )
    parser.add_argument("--version", action="version", version=f"moe-scaling {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in GROUPS:
        importlib.import_module(f"scaling.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MoescaleError as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line, whatever it quotes
        return 2
    except BrokenPipeError:  # `moescale ... | head`: the reader has what it wanted; say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit's flush can't fail
        return 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)
    except OSError as exc:  # the file system refused (permissions, a full disk): the user's to fix
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
