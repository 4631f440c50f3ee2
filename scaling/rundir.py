"""Run directories: the append-only files a training run writes, and reading them back.

A training run never opens the DuckDB store. It writes a run directory::

    run.json        run_id, sweep, status, created_at, code_version, config and the typed
                    columns (d_model, n_layers, ..., n_total, flops_per_token, tokens_planned,
                    seed); rewritten atomically (temp file + rename) on every status change
    metrics.jsonl   one JSON object per line: {"step": 100, "tokens": 204800,
                    "train_loss": 3.2, "lr": 3e-4}; appended and flushed line by line
    metrics.parquet optional: the same wide table, written once when the run finishes
                    (readers prefer it over metrics.jsonl)
    evals.jsonl     one JSON object per line: {"step", "tokens", "task", "task_kind",
                    "metric", "value", "n_examples"}

and ``moescale ingest`` loads it into the store (see :mod:`scaling.ingest`).

Non-finite numbers: a diverging run legitimately produces loss = inf or NaN. They are
kept, not rejected: the writer logs them as ``NaN`` / ``Infinity`` / ``-Infinity`` (what
Python's json module writes; DuckDB and pyarrow read them too) and the store keeps them
as IEEE NaN/inf in DOUBLE columns, so a divergence stays visible. A JSON ``null`` means
"not measured at this step" and stores no row. Non-numeric values (strings, lists,
booleans) are errors naming ``file:line`` and the column; ``step`` and ``tokens`` must be
present integers on every line.

A killed run can leave a truncated last line: readers warn (``warnings.warn`` naming
file and line) and keep the lines before it. A malformed line anywhere else is an error
naming ``file:line``.

The file names, columns and per-file readers (``read_run_json``, ``read_metrics``,
``read_evals``, ...) live in :mod:`scaling.rundir_files` and are re-exported here; this
module holds the writer (:class:`RunWriter`) and the reader of a whole directory
(:func:`read_run_dir`).

Example::

    >>> with RunWriter("runs/r1", "r1", {"d_model": 256, "n_experts": 8, "top_k": 2}) as w:
    ...     w.log(step=100, tokens=204_800, train_loss=3.2, lr=3e-4)
    ...     w.log_eval(step=100, tokens=204_800, task="arith", metric="accuracy", value=0.41)
    >>> read_run_dir("runs/r1").metrics.shape
    (2, 5)
"""

from __future__ import annotations

import functools
import json
import numbers
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from scaling.errors import MoescaleError, first_line
from scaling.files import atomic_path, atomic_write
# Re-exported: the file names, columns and per-file readers are part of this module's API.
from scaling.rundir_files import (  # noqa: F401
    EVAL_COLUMNS, EVALS_FILE, FLOAT_COLUMNS, INT64_MAX, INT_COLUMNS, METRIC_COLUMNS, METRICS_FILE, METRICS_PARQUET,
    RUN_FILE, RUN_ID_PATTERN, STATUSES, TASK_KINDS, TYPED_COLUMNS, arrow_wide_to_long, check_eval_row, check_run_id,
    find_duplicate_metric, read_evals, read_evals_columns, read_jsonl_rows, read_metrics, read_metrics_arrow,
    read_run_json,
)  # fmt: skip

# ----------------------------------------------------------------------------- writing


def _float_or_none(value):
    return None if value is None else float(value)


def _float_like(value):
    """numpy and Python reals as float; anything else as it is (for the row check to name)."""
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value


def _int_like(value):
    """numpy and Python integers as int; anything else as it is (for the row check to name)."""
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value


def write_json_atomic(file: Path, obj) -> None:
    """Write ``obj`` to ``file`` as indented JSON (strict: no NaN) atomically, ending with a newline."""
    atomic_write(file, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def architecture_columns(architecture) -> dict:
    """The typed columns an ``Architecture`` determines: its shape fields, n_total, n_active,
    n_total_nonembed, n_active_nonembed and flops_per_token (see scaling.architecture)."""
    a = architecture
    cols = {k: getattr(a, k) for k in ("d_model", "n_layers", "n_heads", "d_ff", "n_experts", "top_k", "vocab_size", "seq_len")}
    for key in ("n_total", "n_active", "n_total_nonembed", "n_active_nonembed", "flops_per_token"):
        cols[key] = getattr(a, key)
    return cols


class RunWriter:
    """Write one run directory, append-only, so a crash at any moment leaves readable files.

    ``config`` is the full run configuration (JSON-serializable dict). The typed columns
    come, in order of precedence, from ``columns``, from ``architecture`` (a
    ``scaling.Architecture``, or the dict ``config["architecture"]`` when that key holds one:
    d_model ... seq_len, n_total, n_active, n_total_nonembed, n_active_nonembed,
    flops_per_token), from ``tokens_planned`` / ``seed``, else from the same key in
    ``config``. Used as a context manager
    the run ends ``finished`` on normal exit and ``failed`` on an exception.

    The run id names a directory, so it must be path-safe: letters, digits, '.', '_', '-'.
    :meth:`reopen` continues an existing run directory after a crash (for resuming from a
    checkpoint), dropping the lines logged after the checkpoint's step.

    >>> w = RunWriter("runs/r1", "r1", config, sweep="s1", architecture=arch, tokens_planned=10**6)
    >>> w.log(step=10, tokens=20480, train_loss=4.1)
    >>> w.finish()
    """

    def __init__(
        self,
        dir: str | Path,
        run_id: str,
        config: dict,
        *,
        sweep: str | None = None,
        code_version: str | None = None,
        columns: dict | None = None,
        architecture=None,
        tokens_planned: int | None = None,
        seed: int | None = None,
        metrics_parquet: bool = False,
        created_at: datetime | None = None,
    ):
        check_run_id(run_id, str(dir))
        self.dir = Path(dir)
        self.metrics_parquet = metrics_parquet
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = self.dir / RUN_FILE
        if existing.exists():
            raise MoescaleError(f"{existing}: run directory already holds a run; use a new directory")
        columns = {**self._derived_columns(config, architecture, tokens_planned, seed), **(columns or {})}
        created = created_at or datetime.now(timezone.utc)
        self.run = {
            "run_id": run_id,
            "sweep": sweep,
            "status": "running",
            "created_at": created.isoformat(),
            "code_version": code_version,
            "config": config,
        }
        for key in TYPED_COLUMNS:
            value = columns.get(key, config.get(key))
            self.run[key] = None if value is None else (float(value) if key in FLOAT_COLUMNS else int(value))
        write_json_atomic(existing, self.run)
        self._metrics = open(self.dir / METRICS_FILE, "a", encoding="utf-8")
        self._evals = open(self.dir / EVALS_FILE, "a", encoding="utf-8")

    @staticmethod
    def _derived_columns(config: dict, architecture, tokens_planned, seed) -> dict:
        from scaling.architecture import Architecture

        if architecture is None and isinstance(config.get("architecture"), dict):
            architecture = Architecture.from_dict(config["architecture"])
        elif isinstance(architecture, dict):
            architecture = Architecture.from_dict(architecture)
        cols = architecture_columns(architecture) if architecture is not None else {}
        if tokens_planned is not None:
            cols["tokens_planned"] = int(tokens_planned)
        if seed is not None:
            cols["seed"] = int(seed)
        return cols

    @classmethod
    def reopen(cls, dir: str | Path, *, through_step: int, metrics_parquet: bool = False) -> RunWriter:
        """Continue the run in ``dir`` after a crash: keep the metrics and eval lines with
        step <= ``through_step`` (the checkpoint's step; 0 keeps none), drop the rest and a
        truncated last line, set the status back to ``running`` and append from there.

        The kept lines are rewritten atomically (temp file + rename), so a crash during
        reopen leaves either the old or the new file, never a mix.
        """
        dir = Path(dir)
        file = dir / RUN_FILE
        try:
            run = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MoescaleError(f"{file}: cannot reopen the run: {exc}") from None
        self = cls.__new__(cls)
        self.dir = dir
        self.metrics_parquet = metrics_parquet
        self.run = run
        (dir / METRICS_PARQUET).unlink(missing_ok=True)
        for name in (METRICS_FILE, EVALS_FILE):
            path = dir / name
            kept = [
                json.dumps(obj) + "\n"
                for _, obj in read_jsonl_rows(path, warn=False, messages=[])
                if isinstance(obj.get("step"), int) and obj["step"] <= through_step
            ]
            atomic_write(path, "".join(kept))
        run.pop("error", None)
        self.set_status("running")
        self._metrics = open(dir / METRICS_FILE, "a", encoding="utf-8")
        self._evals = open(dir / EVALS_FILE, "a", encoding="utf-8")
        return self

    def log(self, step: int, tokens: int, **metrics: float) -> None:
        """Append one metrics line: ``{"step", "tokens", name: value, ...}``; flushed at once."""
        row = {"step": int(step), "tokens": int(tokens)}
        row.update({name: _float_or_none(v) for name, v in metrics.items()})
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()

    def log_eval(
        self,
        step: int,
        tokens: int,
        task: str,
        metric: str,
        value: float,
        task_kind: str = "other",
        n_examples: int | None = None,
    ) -> None:
        """Append one evaluation line (task_kind: memorization, reasoning or other); a row that ingest
        would refuse (an empty task or metric, a negative step, ...) is refused here, before it is
        written, with a MoescaleError naming the field (``scaling.rundir_files.check_eval_row``)."""
        row = {
            "step": _int_like(step), "tokens": _int_like(tokens), "task": task, "task_kind": task_kind,
            "metric": metric, "value": _float_like(value), "n_examples": _int_like(n_examples),
        }  # fmt: skip
        try:
            checked = check_eval_row(row, f"{self.dir / EVALS_FILE}: log_eval")
        except MoescaleError as exc:
            raise MoescaleError(str(exc).replace(": column ", ": field ", 1)) from None
        row = checked or {**row, "value": None}
        self._evals.write(json.dumps(row) + "\n")
        self._evals.flush()

    def set_status(self, status: str, error: str | None = None) -> None:
        """Rewrite run.json atomically with a new status (running, finished, diverged, failed);
        ``error`` (e.g. the first line of a crash's message) is recorded as key ``error``."""
        if status not in STATUSES:
            raise MoescaleError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        self.run["status"] = status
        if error is not None:
            self.run["error"] = str(error)
        write_json_atomic(self.dir / RUN_FILE, self.run)

    def finish(self, status: str = "finished", error: str | None = None) -> None:
        """Close the logs, write metrics.parquet when asked, then record the final status (and error)."""
        self.close()
        if self.metrics_parquet:
            import pyarrow.parquet as pq

            wide = read_metrics_arrow(self.dir)
            if wide is not None:
                with atomic_path(self.dir / METRICS_PARQUET) as tmp:
                    pq.write_table(wide, tmp)
        self.set_status(status, error)

    def close(self) -> None:
        for fh in (self._metrics, self._evals):
            if not fh.closed:
                fh.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.run["status"] != "running":
            self.close()
        else:
            error = first_line(exc) if exc_type is not None else None
            self.finish("failed" if exc_type is not None else "finished", error)


# ----------------------------------------------------------------------------- reading


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The code that writes a run: moe-scaling's version plus, in a git checkout of the project, its
    commit (``0.1.0+ge426674``, ``.dirty`` when tracked files differ from that commit), as
    ``git describe --always --dirty`` gives it; the version alone elsewhere. The runner records it
    in every run.json it writes."""
    from scaling import __version__

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return __version__
    try:
        done = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=7"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return __version__
    described = done.stdout.strip()
    if done.returncode != 0 or not described:
        return __version__
    commit, dirty = (described[: -len("-dirty")], ".dirty") if described.endswith("-dirty") else (described, "")
    return f"{__version__}+g{commit}{dirty}"


@dataclass
class RunRecord:
    """One run directory read back: run.json as a dict and long metrics/evals tables."""

    path: Path
    run: dict
    metrics: pd.DataFrame  # run_id, step, tokens, name, value
    evals: pd.DataFrame  # run_id, step, tokens, task, task_kind, metric, value, n_examples
    warnings: list[str] = field(default_factory=list)


def read_run_dir(path: str | Path, warn: bool = True) -> RunRecord:
    """Read a run directory: run.json, metrics (long) and evals, validated.

    A truncated last line in metrics.jsonl or evals.jsonl is dropped with a warning
    (also listed in ``RunRecord.warnings``); any other malformed line raises MoescaleError
    naming ``file:line``.
    """
    path = Path(path)
    run = read_run_json(path)
    messages: list[str] = []
    metrics = read_metrics(path, run["run_id"], warn, messages)
    evals = read_evals(path, run["run_id"], warn, messages)
    return RunRecord(path=path, run=run, metrics=metrics, evals=evals, warnings=messages)


# ----------------------------------------------------------------------------- a run in progress
# Forgiving questions the runner asks of a directory another process may be writing or may
# have been killed in (read_run_json above validates strictly for the store instead).


def discard_run_files(run_dir) -> None:
    """Remove what a RunWriter wrote in ``run_dir`` (run.json, metrics, evals, metrics.parquet), so that
    a new RunWriter can start the run over there (e.g. ``moescale train --restart`` after run.json was
    corrupted); other files (a checkpoint, the tokenizer) are the trainer's to keep or remove."""
    for name in (RUN_FILE, METRICS_FILE, EVALS_FILE, METRICS_PARQUET):
        (Path(run_dir) / name).unlink(missing_ok=True)


def read_run_file(run_dir) -> dict | None:
    """run.json of ``run_dir`` as written (no validation), or None when missing, unreadable or not an object."""
    try:
        run = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) else None


def run_status(run_dir) -> str | None:
    """The ``status`` in run.json (running, finished, diverged, failed), or None when there is no readable run.json."""
    run = read_run_file(run_dir)
    return None if run is None else run.get("status")


def recorded_error(run_dir) -> str | None:
    """The error a failed run recorded in run.json (key ``error``, else ``config.error``), when there is one."""
    run = read_run_file(run_dir)
    if run is None:
        return None
    config = run.get("config")
    return run.get("error") or (config.get("error") if isinstance(config, dict) else None)


def mark_failed(run_dir, error: str) -> bool:
    """Record status ``failed`` and ``error`` in run.json when it still says ``running``; True when written.

    For a trainer that raised without ending its run, so the store does not show a dead run
    as running; a later sweep retries it.
    """
    run = read_run_file(run_dir)
    if run is None or run.get("status") != "running":
        return False
    run["status"], run["error"] = "failed", error
    write_json_atomic(Path(run_dir) / RUN_FILE, run)
    return True
