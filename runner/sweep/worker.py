"""One run of a sweep, in a worker process or a submitit job: claim, train, ingest, release.

``execute_run`` never raises: a crash of the trainer is a ``failed`` attempt, recorded in
run.json (``scaling.rundir.mark_failed``) and reported with its first line. The run is
trained only while its claim (``runner.locks.RunClaim``) is held, so two sweeps never train
one run twice. A pool worker (``LocalBackend``) keeps one ``runner.data.CorpusCache`` for the
runs it trains, made by ``init_worker`` and passed to the trainer by ``execute_in_worker``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.locks import RunClaim
from scaling.errors import first_line
from scaling.rundir import RUN_FILE
from scaling.rundir import mark_failed, recorded_error, run_status

__all__ = ["TERMINAL", "Outcome", "RunTask", "execute_in_worker", "execute_run", "init_worker"]

#: Final statuses that are never trained again.
TERMINAL = ("finished", "diverged")


@dataclass
class RunTask:
    """What a worker needs to train and ingest one run (picklable).

    train: the trainer's training function (``Trainer.train``; None: ``runner.train.train``).
    """

    run_id: str
    config: object
    out: str
    store: str | None
    train: Callable[..., str] | None = None
    threads: int | None = None


@dataclass
class Outcome:
    """How one attempt at a run ended.

    status: finished, diverged, failed, or busy (another process holds the claim).
    trained: False when the run was already done and only ingested.
    """

    run_id: str
    status: str
    trained: bool = False
    seconds: float = 0.0
    error: str | None = None
    ingest_error: str | None = None


def execute_run(task: RunTask, corpora=None) -> Outcome:
    """Claim, train (resuming), ingest and release one run; never raises.

    The run is trained only while its claim is held; a run already finished or diverged
    is ingested, not trained. Returns status "busy" at once when another process holds
    the claim. ``corpora`` (a ``runner.data.CorpusCache``) goes to the trainer.
    """
    claim = RunClaim(task.out, task.run_id)
    if not claim.acquire():
        return Outcome(task.run_id, "busy")
    try:
        run_dir = Path(task.out) / task.run_id
        outcome = Outcome(task.run_id, run_status(run_dir) or "planned")
        if outcome.status not in TERMINAL:
            start = time.perf_counter()
            try:
                train = task.train or _default_train()
                outcome.status = train(task.config, task.out, resume=True, quiet=True, threads=task.threads,
                                       corpora=corpora)
                outcome.trained = True
            except Exception as exc:  # a crash is a failed attempt, reported with its first line
                # the sweep names the run; a message that starts with it (TrainConfig.source) says it once
                text = first_line(exc, with_type=True).replace(f": run {task.run_id}: ", ": ", 1)
                outcome.status, outcome.error = "failed", text
                mark_failed(run_dir, outcome.error)
            outcome.seconds = time.perf_counter() - start
            if outcome.status == "failed" and outcome.error is None:
                outcome.error = recorded_error(run_dir)
        if task.store and (run_dir / RUN_FILE).is_file():
            try:
                from scaling.ingest import ingest

                ingest(task.store, [run_dir], progress=False)
            except Exception as exc:  # reported by the sweep; the run directory stays for a later ingest
                outcome.ingest_error = first_line(exc, with_type=True)
        return outcome
    finally:
        claim.release()


def _default_train():
    from runner.sweep.settings import default_trainer

    return default_trainer().train


#: This worker process's corpus cache (made by ``init_worker``; None outside a pool worker).
_corpora = None


def init_worker(threads: int | None, gpus, parent: int | None = None) -> None:
    """Worker process set-up: its share of CPU threads, its GPU when given, its corpus cache, and,
    given the sweep process's pid ``parent``, a watchdog that ends this worker when that process dies."""
    global _corpora
    if parent is not None:
        threading.Thread(target=_exit_when_orphaned, args=(parent,), name="parent-watchdog", daemon=True).start()
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(threads)
    if gpus is not None:
        try:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get_nowait())
        except Exception:
            pass
    from runner.data import CorpusCache

    _corpora = CorpusCache()


#: How often a pool worker looks whether its sweep process is still there (seconds).
PARENT_POLL_SECONDS = 0.5


def _exit_when_orphaned(parent: int) -> None:
    """Exit this process as soon as its parent is no longer ``parent`` (it died and we were
    re-parented). A worker of a killed sweep would otherwise finish its run and then wait
    for work forever; exiting at once frees its memory and its claim (the kernel drops the
    lock), and a rerun resumes the run from its last checkpoint."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def execute_in_worker(task: RunTask) -> Outcome:
    """``execute_run`` in a pool worker, with the worker's corpus cache (see ``init_worker``)."""
    return execute_run(task, corpora=_corpora)
