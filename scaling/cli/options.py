"""Value parsing and result printing shared by the commands that take numbers and write JSON
(`optimum`, `analyze`): one error line naming the option, and `--json OUT` written atomically."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from scaling.errors import MoescaleError
from scaling.files import atomic_write

__all__ = ["parse_number", "positive_number", "print_result"]


def parse_number(text: str, what: str, minimum: int | None = None) -> float | int:
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
