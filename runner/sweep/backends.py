"""Where a sweep's runs train: local worker processes, or Slurm jobs through submitit.

Both backends take ``RunTask``s and hand back handles to wait on; a handle's result is the
run's ``Outcome``.

- ``LocalBackend``: ``workers`` processes on this machine (``concurrent.futures`` with the
  spawn start method), each with its share of CPU threads and, when GPUs are visible, one
  GPU each (``CUDA_VISIBLE_DEVICES``, round robin).
- ``SubmititBackend``: one submitit job per run (a batch of submissions goes out as one job
  array); ``RunJob`` is ``Checkpointable``, so a preempted or timed-out job is requeued and
  resumes from the run's checkpoint.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.sweep.worker import Outcome, RunTask, execute_in_worker, execute_run, init_worker
from scaling.errors import MoescaleError

__all__ = ["LocalBackend", "RunJob", "SlurmOptions", "SubmititBackend", "check_slurm", "cpu_count", "visible_gpus"]


class LocalBackend:
    """``workers`` processes on this machine (spawn start method), one run at a time each."""

    def __init__(self, workers: int, threads: int | None, gpus: list[str]):
        self.workers = workers
        self.threads = threads
        self.gpus = gpus
        self.pool = None
        self._start()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        queue = None
        if self.gpus:
            queue = ctx.Queue()
            for i in range(self.workers):
                queue.put(self.gpus[i % len(self.gpus)])
        self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=init_worker,
                                           initargs=(self.threads, queue, os.getpid()))

    def submit(self, tasks: list[RunTask]) -> list:
        """Start ``tasks``; one future per task."""
        return [self.pool.submit(execute_in_worker, t) for t in tasks]

    def wait(self, handles, timeout: float):
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def result(self, handle) -> Outcome:
        return handle.result()

    def broken(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the pool died (a worker was killed); restarts it if so."""
        if isinstance(exc, cf.process.BrokenProcessPool):
            self.pool.shutdown(wait=False, cancel_futures=True)
            self._start()
            return True
        return False

    def close(self, cancel: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


try:  # submitit is optional for the local executor; defined lazily otherwise
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is a runner dependency
    _Checkpointable = object


class RunJob(_Checkpointable):
    """A submitit job that trains one run (``execute_run``).

    Checkpointable: on preemption or time-out submitit calls ``checkpoint`` and requeues
    the same call; ``train(resume=True)`` then continues from the run's last checkpoint,
    so a requeued job loses at most the steps since it.
    """

    def __call__(self, task: RunTask) -> Outcome:
        return execute_run(task)


@dataclass
class SlurmOptions:
    """Slurm resources for each run's job (submitit's names in brackets).

    partition [slurm_partition], time in minutes [timeout_min], gpus_per_node,
    cpus_per_task, mem_gb, extra: any other submitit parameter (e.g. slurm_account).
    cluster: None to auto-detect Slurm, "local" for submitit's local executor (tests),
    "debug" to run in-process. folder: where submitit keeps its logs and pickles
    (default ``<out>/.submitit``).
    """

    partition: str | None = None
    time: int = 60
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    cluster: str | None = None
    folder: str | None = None
    max_requeue: int = 3
    extra: dict = field(default_factory=dict)

    def parameters(self, name: str) -> dict:
        params = {"timeout_min": int(self.time), "gpus_per_node": int(self.gpus_per_node), "name": name,
                  "tasks_per_node": 1, "nodes": 1}
        if self.cpus_per_task:
            params["cpus_per_task"] = int(self.cpus_per_task)
        if self.mem_gb:
            params["mem_gb"] = float(self.mem_gb)
        if self.partition:
            params["slurm_partition"] = self.partition
        return {**params, **self.extra}


def check_slurm(options: SlurmOptions) -> None:
    """MoescaleError unless Slurm is here (``sbatch`` on PATH) when ``options`` ask for it (cluster
    None or "slurm"): without it submitit's auto-detection quietly runs every job at once on
    this machine. submitit's stand-ins (cluster "local", "debug") need no Slurm."""
    if options.cluster in (None, "slurm") and shutil.which("sbatch") is None:
        raise MoescaleError("sweep --executor slurm: Slurm was not found on this machine (no sbatch on PATH); "
                            "run it where Slurm is, or use --executor local")


class SubmititBackend:
    """One submitit job per run; a batch of submissions goes out as one job array."""

    def __init__(self, options: SlurmOptions, out: Path, name: str):
        try:
            import submitit
        except ImportError:
            raise MoescaleError("sweep --executor slurm needs submitit: pip install submitit") from None
        folder = Path(options.folder or Path(out) / ".submitit")
        kwargs = {"slurm_max_num_timeout": options.max_requeue} if options.cluster in (None, "slurm") else {}
        self.executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.cluster, **kwargs)
        self.executor.update_parameters(**options.parameters(name))
        self.threads = options.cpus_per_task

    def submit(self, tasks: list[RunTask]) -> list:
        for t in tasks:
            t.threads = t.threads or self.threads
        if len(tasks) == 1:
            return [self.executor.submit(RunJob(), tasks[0])]
        with self.executor.batch():
            jobs = [self.executor.submit(RunJob(), t) for t in tasks]
        return jobs

    def wait(self, handles, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            done = [h for h in handles if h.done()]
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def result(self, handle) -> Outcome:
        return handle.result()

    def broken(self, exc: BaseException) -> bool:
        return False

    def close(self, cancel: bool = False) -> None:
        pass


def cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """GPU ids the workers can share out: CUDA_VISIBLE_DEVICES when set, else torch's count."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in (x.strip() for x in env.split(",")) if g and g != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []
