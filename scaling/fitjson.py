"""Results as JSON: a JSON-ready copy of any result's values, and a saved fit's parameters read back.

``jsonable`` is what every result's ``to_json()`` (claims, accuracy, optimum, analysis) runs
its values through: DataFrames become lists of records, numpy scalars and arrays Python
numbers and lists, NaN and infinities None (JSON has no NaN). ``read_chinchilla_fit`` reads the
parameters of a chinchilla fit saved with ``moescale fit ... --json OUT``
(``scaling.fitting.FitResult.to_json``), checked, for the closed-form optimum
(``scaling.allocation.chinchilla_optimum``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError

__all__ = ["jsonable", "check_chinchilla_params", "params_from_items", "read_chinchilla_fit", "CHINCHILLA_PARAMS"]

#: The parameter names of a chinchilla fit: E, A, B directly or as logs e, a, b.
CHINCHILLA_PARAMS = ("E", "A", "B", "e", "a", "b", "alpha", "beta")


def jsonable(obj):
    """A JSON-ready copy of ``obj``: DataFrames as lists of records (one dict per row, in column
    order), dicts with string keys, tuples and arrays as lists, numpy scalars as Python, NaN/inf as None."""
    if isinstance(obj, pd.DataFrame):
        return [jsonable(r) for r in obj.to_dict(orient="records")]
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def check_chinchilla_params(params: Mapping, where: str) -> dict[str, float]:
    """The parameters of a chinchilla fit as finite floats; ``where`` (a file or an option) starts each error."""
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


def read_chinchilla_fit(path) -> dict[str, float]:
    """The checked parameters of a chinchilla fit saved as JSON (``FitResult.to_json()``: an object
    with ``params`` and ``law``). Raises MoescaleError for an unreadable file, not JSON, no
    ``params`` object, another law, or a parameter that is unknown, not a number or not finite."""
    path = Path(path)
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
    return check_chinchilla_params(payload["params"], str(path))


def params_from_items(items, where: str = "--param") -> dict[str, float]:
    """chinchilla parameters from ``NAME=VALUE`` strings (E, A, B or e, a, b, alpha, beta), checked as
    ``check_chinchilla_params`` does; one-line MoescaleError naming ``where`` and the item otherwise."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise MoescaleError(f"{where} {item!r} is not NAME=VALUE")
        if name.strip() in out:
            raise MoescaleError(f"{where} {name.strip()} given twice")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise MoescaleError(f"{where} {name.strip()}: {value!r} is not a number") from None
    return check_chinchilla_params(out, where)
