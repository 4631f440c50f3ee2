"""Per-run claims: which process is training a run right now, safe against SIGKILL.

A sweep process (or a Slurm job) trains a run only while it holds the run's claim, an
exclusive OS lock on ``<out>/.claims/<run_id>.lock`` taken through ``filelock`` (``flock``
on Linux and macOS, ``msvcrt.locking`` on Windows). The kernel drops the lock when its
holder dies, SIGKILL included, so a claim is never stale: the lock *file* a killed process
leaves behind is free to the next taker at once, and no timeout or pid check is needed.
Two sweeps started at once on the same sweep and run folder therefore never train the
same run twice: the loser of the race skips the run while it is held and finds it
finished (or interrupted, and resumable) once the holder lets go.

A small ``<run_id>.owner`` JSON file next to the lock (host, pid, since) says who holds
it, for ``moescale sweep --status``; it is informative only, the lock decides.

On a shared file system (a Slurm cluster), ``flock`` needs NFSv4 or Lustre/GPFS with
locking enabled (the usual set-ups); on a file system without working locks two jobs
could still claim the same run, and the second would then find it finished or resume it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from scaling.files import atomic_write

CLAIMS_DIR = ".claims"


class RunClaim:
    """The exclusive claim on one run of a run folder (see the module docstring).

    >>> claim = RunClaim("runs", "d64-l2-e4-k1-f128-1a2b3c4d")
    >>> if claim.acquire():          # non-blocking: False when another process holds it
    ...     try:
    ...         train(...)
    ...     finally:
    ...         claim.release()
    """

    def __init__(self, out: str | Path, run_id: str):
        self.dir = Path(out) / CLAIMS_DIR
        self.run_id = run_id
        self.path = self.dir / f"{run_id}.lock"
        self.owner_path = self.dir / f"{run_id}.owner"
        self._lock: FileLock | None = None

    def acquire(self) -> bool:
        """Take the claim if no other process holds it; True when taken. Never blocks."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return False
        self._lock = lock
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        atomic_write(self.owner_path, json.dumps(owner))
        return True

    def release(self) -> None:
        """Let the claim go (the lock file stays; it carries no state)."""
        if self._lock is not None:
            self.owner_path.unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    @property
    def held(self) -> bool:
        """True while this object holds the claim."""
        return self._lock is not None

    def held_elsewhere(self) -> bool:
        """True when another process holds the claim now (probed by a try-and-release)."""
        if self._lock is not None:
            return False
        if not self.path.exists():
            return False
        lock = FileLock(self.path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return True
        lock.release()
        return False

    def owner(self) -> dict | None:
        """Who holds the claim ({"host", "pid", "since"}), when held and recorded; else None."""
        if not self.held_elsewhere():
            return None
        try:
            return json.loads(self.owner_path.read_text())
        except (OSError, ValueError):
            return None

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
