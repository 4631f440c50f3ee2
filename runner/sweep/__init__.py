"""Run a planned sweep, resumably, straight into the store: ``moescale sweep SWEEP.yaml``.

A sweep file (``moescale plan grid --out sweep.yaml``) lists planned runs; each becomes a
``TrainConfig`` through ``TrainConfig.from_planned(run, overrides)``, with overrides taken
from the sweep file's optional ``train:`` block and then ``--set key=value`` (later wins;
a dotted key ``data.n_people=500`` sets one key inside a mapping; ``settings.resolve``). A
run lives in ``<out>/<config.run_id>``; the run_id covers every setting that changes the
result, so a changed setting never reuses an old run directory. The trainer is an object
(``Trainer(train, config_class)``; default ``runner.train.train`` with ``TrainConfig``).

What makes a sweep safe to kill at any moment and rerun:

- a run directory whose run.json says ``finished`` or ``diverged`` is never trained again
  (it is only ingested, which is idempotent);
- an interrupted run (run.json still ``running``, nobody holding its claim) resumes from
  its last checkpoint through ``train(config, out, resume=True)``;
- a run is trained only under its claim, an OS lock on ``<out>/.claims/<run_id>.lock``
  (``runner.locks``): the kernel frees it when the holder dies, so there are no stale
  locks after SIGKILL, and two sweeps on the same runs never train one run twice;
- each run is ingested into the store by the process that trained it, right after it
  ends (the store's own file lock serializes concurrent ingests, and ingest replaces a
  run's rows rather than adding them, so nothing is doubled);
- a run that ends ``failed`` (or whose worker process dies) is retried ``retries`` times
  (default once), then reported; a ``diverged`` run is recorded as such and not retried.

Executors (``backends``):

- ``local``: ``workers`` processes on this machine (spawn), each with ``cpu_count // workers``
  torch threads and, when GPUs are visible, one GPU each. Runs start longest first
  (``SweepRun.cost``), which keeps the last worker's idle tail short. A worker whose sweep
  process dies (``kill -9`` of the parent alone) exits within a second; its run resumes on rerun.
- ``slurm``: one Slurm job per run through submitit (the first wave as one job array); a job
  is ``Checkpointable``, so on preemption or time-out submitit requeues it and it resumes from
  the run's checkpoint. ``cluster="local"`` runs the same path with submitit's local executor
  (used by the tests), ``cluster="debug"`` in-process.

Progress (``progress``): a rich live table (runs done / running / failed, ETA, and each running run's
step, loss and tokens/s, read from the tail of its metrics.jsonl), or plain log lines
with ``quiet=True`` or when stdout is not a terminal.

    >>> from runner.sweep import run_sweep, sweep_status
    >>> result = run_sweep("sweep.yaml", "s.duckdb", "runs", workers=2)
    >>> sweep_status("sweep.yaml", "s.duckdb", "runs")      # a DataFrame, one row per run
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.locks import RunClaim
from runner.sweep.backends import (LocalBackend, RunJob, SlurmOptions, SubmititBackend, check_slurm, cpu_count,
                                   visible_gpus)
from runner.sweep.progress import Progress, tail_metrics
from runner.sweep.schedule import drive
from runner.sweep.settings import (SweepRun, Trainer, check_runs, check_store_path, default_trainer, merge,
                                   parse_overrides, parse_value, resolve)
from runner.sweep.worker import TERMINAL, Outcome, RunTask, execute_run
from scaling.errors import MoescaleError
from scaling.rundir import run_status as read_status

__all__ = [
    "DEFAULT_TRAINER", "EXECUTORS", "STATUS_COLUMNS", "TERMINAL", "LocalBackend", "Outcome", "Progress", "RunJob",
    "RunTask", "SlurmOptions", "SubmititBackend", "SweepResult", "SweepRun", "Trainer", "check_runs", "check_slurm",
    "cpu_count", "default_trainer",
    "execute_run", "merge", "parse_overrides", "parse_value", "read_status", "resolve", "run_sweep", "sweep_status",
    "tail_metrics", "visible_gpus",
]  # fmt: skip

EXECUTORS = ("local", "slurm")
#: The trainer of a call that names none; None: ``default_trainer()`` (runner.train, imported when needed).
DEFAULT_TRAINER: Trainer | None = None


@dataclass
class SweepResult:
    """What a sweep invocation did.

    finished / diverged / failed: run_ids by final status (failed: run_id -> error);
    skipped: runs already finished or diverged before it started (ingested, not trained);
    trained_seconds: time workers spent inside ``train`` calls; wall_seconds: the whole call.
    """

    name: str
    total: int
    finished: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    ingest_errors: dict[str, str] = field(default_factory=dict)
    trained_seconds: float = 0.0
    wall_seconds: float = 0.0
    workers: int = 1

    @property
    def ok(self) -> bool:
        """True when no run failed and every run reached the store."""
        return not self.failed and not self.ingest_errors

    def record(self, run: SweepRun, outcome: Outcome, final: bool) -> None:
        """Account for one ended attempt at ``run``; its status counts only when ``final``."""
        if outcome.trained:
            self.trained.append(run.run_id)
            self.trained_seconds += outcome.seconds
        if not final:
            return
        if outcome.status == "finished":
            self.finished.append(run.run_id)
        elif outcome.status == "diverged":
            self.diverged.append(run.run_id)
        else:
            self.failed[run.run_id] = outcome.error or f"status {outcome.status}"
        if outcome.ingest_error:
            self.ingest_errors[run.run_id] = outcome.ingest_error

    def __str__(self) -> str:
        text = (f"sweep {self.name}: {len(self.finished)} finished, {len(self.diverged)} diverged, "
                f"{len(self.failed)} failed of {self.total} runs ({len(self.skipped)} already done, "
                f"{len(self.trained)} trained now) in {self.wall_seconds:.1f} s")
        for run_id, error in self.failed.items():
            text += f"\n  failed {run_id}: {error}"
        for run_id, error in self.ingest_errors.items():
            text += f"\n  not ingested {run_id}: {error}"
        return text


def run_sweep(
    sweep_path,
    store,
    out,
    *,
    workers: int | None = 1,
    executor: str = "local",
    overrides: dict | None = None,
    quiet: bool = False,
    retries: int = 1,
    threads: int | None = None,
    slurm: SlurmOptions | None = None,
    trainer: Trainer | None = None,
    poll: float = 0.5,
) -> SweepResult:
    """Train every run of a sweep file not yet done into ``out`` and ingest each into ``store``.

    workers: processes (local) or jobs in flight (slurm; None = all runs at once).
    overrides: training keys for every run, over the sweep file's ``train:`` block.
    retries: extra attempts for a run that fails (a diverged run is not retried).
    threads: torch threads per local worker, at least 1 (default: CPUs // workers).
    trainer: what trains each run (``Trainer``; default ``DEFAULT_TRAINER`` or ``default_trainer()``).
    Bad input raises MoescaleError before anything starts or is written: the sweep file and
    keys, workers or threads below 1, a store that exists but is no store or cannot be read
    back whole, Slurm not found for ``executor="slurm"`` (``backends.check_slurm``), and, for the
    local executor, any run to train whose config cannot train here (``Trainer.check``: data,
    device, memory; ``settings.check_runs``).
    """
    began = time.monotonic()
    if executor not in EXECUTORS:
        raise MoescaleError(f"sweep: unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    for what, value in (("workers", workers), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise MoescaleError(f"sweep: {what} must be an integer of at least 1, got {value!r}")
    if executor == "slurm":
        check_slurm(slurm or SlurmOptions())
    store = check_store_path(store, verify=True)
    trainer = trainer or DEFAULT_TRAINER or default_trainer()
    sweep, runs = resolve(sweep_path, out, overrides, trainer)
    statuses = {r.run_id: read_status(r.dir) for r in runs}
    done = [r for r in runs if statuses[r.run_id] in TERMINAL]
    todo = sorted((r for r in runs if statuses[r.run_id] not in TERMINAL), key=lambda r: -r.cost)
    if executor == "local":  # a Slurm job's node is not this one: its own train() checks there
        check_runs(sweep_path, todo, trainer)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = SweepResult(sweep.name, len(runs))
    for r in done:
        (result.finished if statuses[r.run_id] == "finished" else result.diverged).append(r.run_id)
        result.skipped.append(r.run_id)
    if store and done:  # idempotent: unchanged runs are left alone, a run killed before its ingest is added now
        from scaling.ingest import ingest

        try:
            ingest(store, [r.dir for r in done], progress=False)
        except MoescaleError as exc:
            for r in done:
                result.ingest_errors[r.run_id] = str(exc)

    progress = Progress(sweep.name, runs, quiet)
    if workers is None:
        workers = len(todo) if executor == "slurm" else 1
    workers = max(1, min(workers, len(todo) or 1))
    result.workers = workers
    if not todo:
        progress.skipped(done, statuses)
        result.wall_seconds = time.monotonic() - began
        return result

    if executor == "local":
        per_worker = threads or max(1, cpu_count() // workers)
        backend = LocalBackend(workers, per_worker, visible_gpus())
    else:
        per_worker = threads
        backend = SubmititBackend(slurm or SlurmOptions(), out, sweep.name)

    def task(run: SweepRun) -> RunTask:
        return RunTask(run.run_id, run.config, str(out), store, trainer.train, per_worker)

    with progress:
        progress.skipped(done, statuses)
        drive(backend, todo, out=out, workers=workers, retries=retries, poll=poll, progress=progress, task=task,
              record=result.record)
    result.wall_seconds = time.monotonic() - began
    return result


STATUS_COLUMNS = ["run_id", "n_experts", "top_k", "d_model", "n_layers", "n_total", "n_active", "tokens",
                  "compute", "state", "step", "progress", "loss", "in_store", "store_status"]


def sweep_status(sweep_path, store=None, out="runs", *, overrides: dict | None = None, trainer: Trainer | None = None):
    """One row per run of a sweep, without running anything (a pandas DataFrame).

    state: planned (no run directory), running (its claim is held), interrupted
    (``running`` in run.json but nobody holds it: a rerun resumes it), finished,
    diverged or failed. in_store / store_status: whether the store holds the run, and
    with which status. Columns: see ``STATUS_COLUMNS``.
    """
    import pandas as pd

    store = check_store_path(store)
    sweep, runs = resolve(sweep_path, out, overrides, trainer or DEFAULT_TRAINER or default_trainer())
    in_store: dict[str, str] = {}
    if store and Path(store).exists():
        from scaling.store import Store

        frame = Store(store).sql("SELECT run_id, status FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                                 [[r.run_id for r in runs]])
        in_store = dict(zip(frame["run_id"], frame["status"]))
    rows = []
    for r in runs:
        status = read_status(r.dir)
        held = RunClaim(out, r.run_id).held_elsewhere()
        if held:
            state = "running"
        elif status is None:
            state = "planned"
        elif status == "running":
            state = "interrupted"
        else:
            state = status
        tail = tail_metrics(r.dir) if status is not None else {}
        a = r.planned.architecture
        rows.append({
            "run_id": r.run_id, "n_experts": a.n_experts, "top_k": a.top_k, "d_model": a.d_model,
            "n_layers": a.n_layers, "n_total": a.n_total, "n_active": a.n_active, "tokens": r.tokens,
            "compute": r.planned.compute, "state": state, "step": tail.get("step"),
            "progress": min(1.0, tail.get("tokens", 0) / max(r.tokens, 1)) if tail else 0.0,
            "loss": tail.get("loss"), "in_store": r.run_id in in_store, "store_status": in_store.get(r.run_id),
        })
    frame = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    frame.attrs["sweep"] = sweep.name
    return frame
