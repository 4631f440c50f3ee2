"""The files of a run directory: their names and columns, and the readers of each one.

``run.json`` (:func:`read_run_json`), ``metrics.jsonl`` / ``metrics.parquet``
(:func:`read_metrics`, with the fast pyarrow path :func:`read_metrics_arrow`) and
``evals.jsonl`` (:func:`read_evals`); the layout and the rules for non-finite numbers
and truncated lines are described in :mod:`scaling.rundir`, which writes these files
(``RunWriter``) and reads a whole directory back (``read_run_dir``).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
METRICS_PARQUET = "metrics.parquet"
EVALS_FILE = "evals.jsonl"

STATUSES = ("running", "finished", "diverged", "failed")
TASK_KINDS = ("memorization", "reasoning", "other")

#: Typed columns of ``runs`` read from run.json (falling back to the same key in config).
INT_COLUMNS = (
    "d_model", "n_layers", "n_heads", "d_ff", "n_experts", "top_k", "vocab_size", "seq_len",
    "n_total", "n_active", "n_total_nonembed", "n_active_nonembed", "tokens_planned", "seed",
)  # fmt: skip
FLOAT_COLUMNS = ("flops_per_token",)
TYPED_COLUMNS = INT_COLUMNS + FLOAT_COLUMNS

METRIC_COLUMNS = ["run_id", "step", "tokens", "name", "value"]
EVAL_COLUMNS = ["run_id", "step", "tokens", "task", "task_kind", "metric", "value", "n_examples"]


RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


def check_run_id(run_id, where: str = "run_id") -> str:
    """The run id if it is path-safe (letters, digits, '.', '_', '-'; not '.' or '..'), else MoescaleError."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or run_id in (".", ".."):
        raise MoescaleError(
            f"{where}: run_id must be a non-empty string of letters, digits, '.', '_' and '-' "
            f"(it names a directory), got {run_id!r}"
        )
    return run_id


def read_jsonl_rows(file: Path, warn: bool = True, messages: list | None = None) -> list[tuple[int, dict]]:
    """Parse a JSON-lines file into (line number, object) pairs (``messages`` collects the warnings).

    Blank lines are skipped. An unparseable *last* line is a truncated write: it is
    dropped with a warning. An unparseable line elsewhere, or a line that is not a JSON
    object, raises MoescaleError naming ``file:line``.
    """
    if not file.exists():
        return []
    data = file.read_bytes()
    lines = data.split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    rows = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if i == last:
                message = f"{file}:{i + 1}: ignored a truncated last line ({exc})"
                if messages is not None:
                    messages.append(message)
                if warn:
                    warnings.warn(message, stacklevel=3)
                break
            raise MoescaleError(f"{file}:{i + 1}: malformed JSON line: {exc}") from None
        if not isinstance(obj, dict):
            raise MoescaleError(f"{file}:{i + 1}: expected a JSON object, got {type(obj).__name__}")
        rows.append((i + 1, obj))
    return rows


INT64_MAX = 2**63 - 1


def _integer(value, where: str, key: str, minimum: int | None = None) -> int:
    """The value as an int64; MoescaleError naming ``where`` and ``key`` for a non-integer,
    one beyond int64 or one below ``minimum``."""
    if isinstance(value, bool) or value is None:
        raise MoescaleError(f"{where}: column {key!r}: value {value!r} is not an integer")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise MoescaleError(f"{where}: column {key!r}: value {value!r} is not an integer")
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise MoescaleError(f"{where}: column {key!r}: value {value} is beyond the 64-bit integer range")
    if minimum is not None and value < minimum:
        raise MoescaleError(f"{where}: column {key!r}: value {value} must be >= {minimum}")
    return value


def _number(value, where: str, key: str) -> float:
    """The value as a float (NaN and inf kept); MoescaleError for anything but a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MoescaleError(f"{where}: column {key!r}: value {value!r} is not a number")
    return float(value)


def _wide_to_long(rows, file: Path, run_id: str) -> pd.DataFrame:
    steps, tokens, names, values, lines = [], [], [], [], []
    for lineno, obj in rows:
        where = f"{file}:{lineno}"
        for key in ("step", "tokens"):
            if key not in obj:
                raise MoescaleError(f"{where}: column {key!r} is missing")
        step = _integer(obj["step"], where, "step", minimum=0)
        tok = _integer(obj["tokens"], where, "tokens", minimum=0)
        for key, raw in obj.items():
            if key in ("step", "tokens") or raw is None:
                continue
            steps.append(step)
            tokens.append(tok)
            names.append(str(key))
            values.append(_number(raw, where, key))
            lines.append(lineno)
    _refuse_duplicates(file, lines, list(zip(steps, names)), "(step, metric)")
    return pd.DataFrame(
        {
            "run_id": pd.Series([run_id] * len(steps), dtype=object),
            "step": np.asarray(steps, dtype=np.int64),
            "tokens": np.asarray(tokens, dtype=np.int64),
            "name": pd.Series(names, dtype=object),
            "value": np.asarray(values, dtype=float),
        }
    )


def _ends_cleanly(file: Path) -> bool:
    """True when the file is empty or ends with a newline (no half-written last line)."""
    with open(file, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            return True
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def read_metrics_arrow(dir: str | Path):
    """Fast path: the wide metrics table of a run directory as a ``pyarrow.Table``, or None.

    Parses ``metrics.parquet`` or ``metrics.jsonl`` with pyarrow and returns it only when
    it is clean: step and tokens present as integers on every row, every other column
    numeric. Returns None whenever anything is off (a truncated last line, a string, an
    empty file), so the caller falls back to the careful line-by-line parse that warns or
    names ``file:line``.
    """
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    dir = Path(dir)
    try:
        if (dir / METRICS_PARQUET).exists():
            table = pq.read_table(dir / METRICS_PARQUET)
        else:
            file = dir / METRICS_FILE
            if not file.exists() or not _ends_cleanly(file):
                return None
            table = pj.read_json(file, read_options=pj.ReadOptions(use_threads=False))
    except (pa.ArrowInvalid, OSError):
        return None
    import pyarrow.compute as pc

    names = table.column_names
    if "step" not in names or "tokens" not in names or len(set(names)) != len(names):
        return None
    for name, column in zip(names, table.columns):
        kind = column.type
        if name in ("step", "tokens"):
            if not pa.types.is_integer(kind) or column.null_count:
                return None
            if len(column) and (pc.min(column).as_py() < 0 or (pa.types.is_unsigned_integer(kind) and pc.max(column).as_py() > INT64_MAX)):
                return None  # negative or beyond int64: the careful parse names file:line
        elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            return None
    return table


def arrow_wide_to_long(table, run_id: str):
    """Wide metrics (step, tokens, name...) to long ``pyarrow.Table`` rows
    (run_id, step, tokens, name, value); nulls (not measured) give no row, NaN/inf stay."""
    import pyarrow as pa
    import pyarrow.compute as pc

    step = table.column("step").cast(pa.int64())
    tokens = table.column("tokens").cast(pa.int64())
    parts = []
    for name in table.column_names:
        if name in ("step", "tokens"):
            continue
        column = table.column(name)
        if pa.types.is_null(column.type):
            continue
        valid = pc.is_valid(column)
        count = pc.sum(valid).as_py() or 0
        if count == 0:
            continue
        parts.append(
            pa.table(
                {
                    "run_id": pa.array([run_id] * count, pa.string()),
                    "step": pc.filter(step, valid),
                    "tokens": pc.filter(tokens, valid),
                    "name": pa.array([name] * count, pa.string()),
                    "value": pc.filter(column, valid).cast(pa.float64()),
                }
            )
        )
    if not parts:
        return pa.table(
            {"run_id": pa.array([], pa.string()), "step": pa.array([], pa.int64()),
             "tokens": pa.array([], pa.int64()), "name": pa.array([], pa.string()),
             "value": pa.array([], pa.float64())}
        )  # fmt: skip
    return pa.concat_tables(parts)


def read_metrics(dir: str | Path, run_id: str, warn: bool = True, messages: list | None = None) -> pd.DataFrame:
    """Metrics of a run directory in long format (run_id, step, tokens, name, value).

    Rows are ordered by step, then name. Reads ``metrics.parquet`` when present, else
    ``metrics.jsonl`` (fast pyarrow parse,
    falling back to a careful line-by-line parse that warns about a truncated last line
    and names ``file:line`` and column of anything malformed).
    """
    dir = Path(dir)
    return _sorted(_read_metrics_unsorted(dir, run_id, warn, messages))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["step", "name"], kind="stable").reset_index(drop=True)


def _read_metrics_unsorted(dir: Path, run_id: str, warn: bool, messages: list | None) -> pd.DataFrame:
    wide = read_metrics_arrow(dir)
    if wide is not None:
        return arrow_wide_to_long(wide, run_id).to_pandas()
    parquet = dir / METRICS_PARQUET
    if parquet.exists():
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(parquet).to_pylist()
        except Exception as exc:  # pyarrow raises several unrelated types
            raise MoescaleError(f"{parquet}: cannot read Parquet: {exc}") from None
        return _wide_to_long([(i + 1, r) for i, r in enumerate(records)], parquet, run_id)
    file = dir / METRICS_FILE
    return _wide_to_long(read_jsonl_rows(file, warn, messages), file, run_id)


def check_eval_row(obj: dict, where: str) -> dict | None:
    """One evaluation line validated as ingest reads it: step, tokens (integers >= 0), task and metric
    (non-empty strings), task_kind (``TASK_KINDS``, default other), value (a number; None: not
    measured, and None is returned), n_examples (an integer >= 0 or None). MoescaleError naming
    ``where`` and the column otherwise. ``RunWriter.log_eval`` checks each row with it before writing."""
    for key in ("step", "tokens", "task", "metric", "value"):
        if key not in obj:
            raise MoescaleError(f"{where}: column {key!r} is missing")
    for key in ("task", "metric"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise MoescaleError(f"{where}: column {key!r}: value {obj[key]!r} is not a non-empty string")
    kind = obj.get("task_kind", "other")
    if kind not in TASK_KINDS:
        raise MoescaleError(f"{where}: column 'task_kind': value {kind!r} is not one of {', '.join(TASK_KINDS)}")
    step = _integer(obj["step"], where, "step", minimum=0)
    tokens = _integer(obj["tokens"], where, "tokens", minimum=0)
    if obj["value"] is None:
        return None
    n_examples = obj.get("n_examples")
    return {
        "step": step, "tokens": tokens, "task": obj["task"], "task_kind": kind, "metric": obj["metric"],
        "value": _number(obj["value"], where, "value"),
        "n_examples": None if n_examples is None else _integer(n_examples, where, "n_examples", minimum=0),
    }  # fmt: skip


def read_evals_columns(dir: str | Path, run_id: str, warn: bool = True, messages: list | None = None) -> dict:
    """Evaluations of a run directory as a dict of column lists (see :func:`read_evals`)."""
    file = Path(dir) / EVALS_FILE
    out = {c: [] for c in EVAL_COLUMNS}
    out["_line"] = []
    for lineno, obj in read_jsonl_rows(file, warn, messages):
        row = check_eval_row(obj, f"{file}:{lineno}")
        if row is None:
            continue  # not measured, as in metrics
        out["run_id"].append(run_id)
        for key, value in row.items():
            out[key].append(value)
        out["_line"].append(lineno)
    _refuse_duplicates(file, out["_line"], list(zip(out["step"], out["task"], out["metric"])), "(step, task, metric)")
    del out["_line"]
    return out


def _refuse_duplicates(file: Path, lines, keys, what: str) -> None:
    """MoescaleError naming both lines when a key appears twice (``final`` would pick one at random)."""
    first = {}
    for line, key in zip(lines, keys):
        if key in first:
            raise MoescaleError(f"{file}:{line}: duplicated {what} {key!r}, first on line {first[key]}")
        first[key] = line


def find_duplicate_metric(dir: str | Path, step: int, name: str) -> str:
    """``file:line`` of the second line that logs metric ``name`` at ``step`` (for the ingest error)."""
    dir = Path(dir)
    file = dir / METRICS_FILE
    if (dir / METRICS_PARQUET).exists():
        return f"{dir / METRICS_PARQUET}: metric {name!r} twice at step {step}"
    seen = None
    for lineno, obj in read_jsonl_rows(file, warn=False):
        if obj.get("step") == step and obj.get(name) is not None:
            if seen is not None:
                return f"{file}:{lineno}: column {name!r}: duplicated (step, metric) ({step}, {name!r}), first on line {seen}"
            seen = lineno
    return f"{file}: column {name!r}: duplicated (step, metric) ({step}, {name!r})"


def read_evals(dir: str | Path, run_id: str, warn: bool = True, messages: list | None = None) -> pd.DataFrame:
    """Evaluations of a run directory (run_id, step, tokens, task, task_kind, metric, value, n_examples)."""
    out = read_evals_columns(dir, run_id, warn, messages)
    return pd.DataFrame(
        {
            "run_id": pd.Series(out["run_id"], dtype=object),
            "step": np.asarray(out["step"], dtype=np.int64),
            "tokens": np.asarray(out["tokens"], dtype=np.int64),
            "task": pd.Series(out["task"], dtype=object),
            "task_kind": pd.Series(out["task_kind"], dtype=object),
            "metric": pd.Series(out["metric"], dtype=object),
            "value": np.asarray(out["value"], dtype=float),
            "n_examples": pd.array(out["n_examples"], dtype="Int64"),
        }
    )


def read_run_json(dir: str | Path) -> dict:
    """run.json of a run directory, validated: the dict with typed columns filled from config.

    Raises MoescaleError naming the file and key when a field is missing or mistyped.
    """
    dir = Path(dir)
    file = dir / RUN_FILE
    if not dir.is_dir():
        raise MoescaleError(f"{dir}: not a directory")
    if not file.is_file():
        raise MoescaleError(f"{dir}: no {RUN_FILE}, so not a run directory")
    try:
        run = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MoescaleError(f"{file}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise MoescaleError(f"{file}: not UTF-8 text: {exc}") from None
    if not isinstance(run, dict):
        raise MoescaleError(f"{file}: expected a JSON object")
    if not isinstance(run.get("run_id"), str) or not run["run_id"]:
        raise MoescaleError(f"{file}: key 'run_id' must be a non-empty string, got {run.get('run_id')!r}")
    check_run_id(run["run_id"], f"{file}: key 'run_id'")  # path-safe: it names a directory
    if run.get("status") not in STATUSES:
        raise MoescaleError(f"{file}: key 'status': {run.get('status')!r} is not one of {', '.join(STATUSES)}")
    config = run.get("config")
    if not isinstance(config, dict):
        raise MoescaleError(f"{file}: key 'config' must be a JSON object, got {type(config).__name__}")
    for key in ("sweep", "code_version"):
        if run.get(key) is not None and not isinstance(run[key], str):
            raise MoescaleError(f"{file}: key {key!r}: {run[key]!r} is not a string")
    created = run.get("created_at")
    if created is not None:
        try:
            stamp = datetime.fromisoformat(str(created))
        except ValueError:
            raise MoescaleError(f"{file}: key 'created_at': {created!r} is not an ISO 8601 time") from None
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(timezone.utc).replace(tzinfo=None)
        run["created_at"] = stamp
    for key in TYPED_COLUMNS:
        value = run.get(key, config.get(key))
        if value is None:
            run[key] = None
        elif key in FLOAT_COLUMNS:
            number = _number(value, str(file), key)
            if not math.isfinite(number) or number < 0:
                raise MoescaleError(f"{file}: key {key!r}: {value!r} is not a finite number >= 0")
            run[key] = number
        else:
            run[key] = _integer(value, str(file), key, minimum=_MINIMUM.get(key))
    _check_shape(file, run)
    return run


#: The smallest value each typed integer column may hold (counts are never negative).
_MINIMUM = {
    "d_model": 1, "n_layers": 1, "n_heads": 1, "d_ff": 1, "n_experts": 1, "top_k": 1, "vocab_size": 1, "seq_len": 1,
    "n_total": 0, "n_active": 0, "n_total_nonembed": 0, "n_active_nonembed": 0, "tokens_planned": 0, "seed": 0,
}  # fmt: skip


def _check_shape(file: Path, run: dict) -> None:
    """Relations between typed columns that no real run breaks."""
    for small, large in (("top_k", "n_experts"), ("n_active", "n_total"), ("n_active_nonembed", "n_total_nonembed"),
                         ("n_total_nonembed", "n_total"), ("n_active_nonembed", "n_active")):
        if run.get(small) is not None and run.get(large) is not None and run[small] > run[large]:
            raise MoescaleError(f"{file}: key {small!r}: {run[small]} exceeds {large} = {run[large]}")
