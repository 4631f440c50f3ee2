"""The sweep's loop: keep ``workers`` runs in flight, collect outcomes, retry failures.

Runs start in the order given (``run_sweep`` sorts them longest first). A run whose claim
another process holds (another sweep is training it) waits aside and is looked at again
every two seconds, so it is never trained twice; it ends when that process lets go (found
finished, or interrupted and resumed here). A failed attempt is retried ``retries`` times;
a worker pool that dies takes its in-flight runs back to the queue.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from runner.locks import RunClaim
from runner.sweep.progress import Progress
from runner.sweep.settings import SweepRun
from runner.sweep.worker import Outcome, RunTask
from scaling.errors import first_line

__all__ = ["HELD_RETRY_SECONDS", "drive"]

#: How long a run held by another process waits before it is looked at again.
HELD_RETRY_SECONDS = 2.0


def drive(backend, runs: list[SweepRun], *, out: Path, workers: int, retries: int, poll: float, progress: Progress,
          task: Callable[[SweepRun], RunTask], record: Callable[[SweepRun, Outcome, bool], None]) -> None:
    """Train ``runs`` on ``backend`` with at most ``workers`` in flight until each has a final outcome.

    ``record(run, outcome, final)`` is called for every attempt that ended (not for "busy":
    the run waits and comes back); ``final`` is False for an attempt that will be retried.
    The backend is closed at the end, its pending work cancelled when interrupted.
    """
    pending: deque[SweepRun] = deque(runs)
    held: list[tuple[float, SweepRun]] = []  # runs another process is training: (retry after, run)
    attempts: dict[str, int] = {}
    inflight: dict = {}
    cancelled = False
    try:
        while pending or held or inflight:
            now = time.monotonic()
            batch = []
            while len(inflight) + len(batch) < workers:
                if pending:
                    run = pending.popleft()
                else:
                    ready = [h for h in held if h[0] <= now]
                    if not ready:
                        break
                    held.remove(ready[0])
                    run = ready[0][1]
                if RunClaim(out, run.run_id).held_elsewhere():
                    held.append((now + HELD_RETRY_SECONDS, run))
                    continue
                batch.append(run)
            if batch:
                for run, handle in zip(batch, backend.submit([task(r) for r in batch])):
                    attempts[run.run_id] = attempts.get(run.run_id, 0) + 1
                    inflight[handle] = run
                    progress.begin(run, attempts[run.run_id])
            progress.waiting = len(held)
            finished = backend.wait(list(inflight), timeout=poll) if inflight else time.sleep(poll) or []
            for handle in finished:
                run = inflight.pop(handle)
                try:
                    outcome = backend.result(handle)
                except Exception as exc:  # the worker process died, or the job failed outside execute_run
                    outcome = Outcome(run.run_id, "failed", error=first_line(exc, with_type=True) or "worker died")
                    if backend.broken(exc):
                        for other in list(inflight):
                            lost = inflight.pop(other)
                            progress.end(lost, Outcome(lost.run_id, "failed", error="worker pool died"), False)
                            pending.appendleft(lost)
                if outcome.status == "busy":
                    attempts[run.run_id] -= 1
                    progress.end(run, outcome, False)
                    held.append((time.monotonic() + HELD_RETRY_SECONDS, run))
                    continue
                retry = outcome.status == "failed" and attempts[run.run_id] <= retries
                record(run, outcome, not retry)
                progress.end(run, outcome, final=not retry)
                if retry:
                    pending.append(run)
            progress.refresh()
    except BaseException:
        cancelled = True
        raise
    finally:
        backend.close(cancel=cancelled)
