"""Value parsing and result printing shared by the commands: argparse types for counts and fractions
(`plan`), numbers checked with one error line naming the option, and `--json OUT` written atomically
(`optimum`, `analyze`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from scaling.architecture import parse_count
from scaling.errors import MoescaleError
from scaling.files import atomic_write

__all__ = ["count_value", "fraction", "positive_float", "non_negative_float", "parse_number", "positive_number", "print_result"]


def parse_number(text: str, what: str, minimum: int | None = None) -> float | int:
    """``text`` as a finite count (1e14, 5M; ``scaling.architecture.parse_count``), or with
    ``minimum`` as an integer >= minimum; MoescaleError naming the option ``what`` otherwise."""
    try:
        value = parse_count(text) if minimum is None else int(text)
    except (MoescaleError, ValueError):
        raise MoescaleError(f"{what}: {text!r} is not {'a number' if minimum is None else 'an integer'}") from None
    if minimum is None and not math.isfinite(value):
        raise MoescaleError(f"{what}: {text!r} is not finite")
    if minimum is not None and value < minimum:
        raise MoescaleError(f"{what}: {value} must be >= {minimum}")
    return value


def positive_number(text: str, what: str) -> float:
    """A cap such as --memory 5e7 or 5M: a finite number > 0; MoescaleError naming the option otherwise."""
    value = parse_number(text.strip().lstrip("-"), what)
    if text.strip().startswith("-") or not value > 0:
        raise MoescaleError(f"{what}: {text} must be > 0")
    return value


def print_result(args, payload, text: str) -> int:
    """Write ``payload`` as JSON to --json (atomically; '-' for stdout, then nothing else), and print ``text``."""
    if args.json:
        out = json.dumps(payload, indent=2) + "\n"
        if args.json == "-":
            sys.stdout.write(out)
            return 0
        atomic_write(Path(args.json).expanduser(), out)
    print(text)
    return 0


def count_value(text: str) -> float:
    """argparse type: a positive count written as 670M, 1.3B, 1e18 or 300000."""
    try:
        value = parse_count(text)
    except (MoescaleError, ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite count")
    return value


def _checked_float(text: str, ok, requirement: str) -> float:
    """``text`` as a float for which ``ok(value)`` holds; argparse's one-line error otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be {requirement}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    return _checked_float(text, lambda v: 0 < v <= 1, "in (0, 1]")


def positive_float(text: str) -> float:
    """argparse type: a positive finite number."""
    return _checked_float(text, lambda v: 0 < v < math.inf, "a positive finite number")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _checked_float(text, lambda v: 0 <= v < math.inf, "a finite number >= 0")
