"""Run a planned sweep, resumably, straight into the store: ``moescale sweep SWEEP.yaml``.

A sweep file (``moescale plan grid --out sweep.yaml``) lists planned runs; each becomes a
``TrainConfig`` through ``TrainConfig.from_planned(run, overrides)``, with overrides taken
from the sweep file's optional ``train:`` block and then ``--set key=value`` (later wins;
a dotted key ``data.n_people=500`` sets one key inside a mapping). A run lives in
``<out>/<config.run_id>``; the run_id covers every setting that changes the result, so a
changed setting never reuses an old run directory.

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

Executors:

- ``local``: ``workers`` processes on this machine (``concurrent.futures`` with the spawn
  start method), each with ``cpu_count // workers`` torch threads and, when GPUs are
  visible, one GPU each (``CUDA_VISIBLE_DEVICES``, round robin). Runs start longest first
  (planned training FLOPs), which keeps the last worker's idle tail short.
- ``slurm``: one Slurm job per run through submitit (``submitit.AutoExecutor``; the first
  wave of submissions goes out as one job array); a job is a ``submitit.helpers
  .Checkpointable``, so on preemption or time-out submitit requeues it and the job resumes
  from the run's checkpoint. ``cluster="local"`` runs the same path with submitit's local
  executor (used by the tests), ``cluster="debug"`` in-process.

Progress: a rich live table (runs done / running / failed, ETA, and each running run's
step, loss and tokens/s, read from the tail of its metrics.jsonl), or plain log lines
with ``quiet=True`` or when stdout is not a terminal.

    >>> from runner.sweep import run_sweep, sweep_status
    >>> result = run_sweep("sweep.yaml", "s.duckdb", "runs", workers=2)
    >>> sweep_status("sweep.yaml", "s.duckdb", "runs")      # a DataFrame, one row per run
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import importlib
import json
import math
import multiprocessing
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from runner.locks import RunClaim
from scaling.errors import MoescaleError
from scaling.planner import PlannedRun, Sweep

#: Final statuses that are never trained again.
TERMINAL = ("finished", "diverged")
EXECUTORS = ("local", "slurm")
DEFAULT_TRAINER = "runner.train"


# ----------------------------------------------------------------------------- inputs


def parse_value(text: str):
    """A ``--set`` value: JSON first (numbers such as 3e-3, true, null, lists), then YAML, else the string."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None and text.strip() not in ("", "~", "null") else value


def parse_overrides(items) -> dict:
    """``["lr=3e-3", "data.n_people=500"]`` -> ``{"lr": 0.003, "data": {"n_people": 500}}``.

    A dotted key sets one key inside a mapping (merged into, not replacing, the rest).
    """
    out: dict = {}
    for item in items or ():
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise MoescaleError(f"--set {item!r}: expected key=value")
        parts = key.split(".")
        if any(not p for p in parts):
            raise MoescaleError(f"--set {item!r}: empty part in key {key!r}")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MoescaleError(f"--set {item!r}: {part!r} is already set to a value, not a mapping")
            node = child
        node[parts[-1]] = parse_value(raw)
    return out


def merge(base: dict, extra: dict) -> dict:
    """Deep merge: mappings merge key by key, anything else in ``extra`` replaces ``base``."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_trainer(trainer: str = DEFAULT_TRAINER):
    """The module that provides ``TrainConfig`` (with ``from_planned`` and ``run_id``) and ``train``."""
    try:
        module = importlib.import_module(trainer)
    except ImportError as exc:
        raise MoescaleError(f"sweep: cannot import the trainer {trainer!r} ({exc}); install the runner extra") from None
    for name in ("TrainConfig", "train"):
        if not hasattr(module, name):
            raise MoescaleError(f"sweep: trainer {trainer!r} has no {name}")
    return module


@dataclass
class SweepRun:
    """One run of a sweep, resolved: the planned run, its TrainConfig, run_id and directory."""

    planned: PlannedRun
    config: object
    run_id: str
    dir: Path

    @property
    def tokens(self) -> int:
        """Tokens this run trains for (the config's, which an override may have changed)."""
        return int(getattr(self.config, "tokens", None) or self.planned.tokens)

    @property
    def flops(self) -> float:
        """Planned training FLOPs: flops_per_token * tokens (Architecture accounting)."""
        return float(self.planned.architecture.flops_per_token) * self.tokens

    @property
    def cost(self) -> float:
        """Expected training time, in FLOP-equivalents: flops + 600 * N_total * steps.

        Besides the model FLOPs, every step pays work in proportion to the total parameters
        (the AdamW update, one matmul per expert): on the cpu-tiny sweep (2-core CPU) the run
        times fit 3.3e-11 s per FLOP + 2.0e-8 s per parameter-step, a ratio of ~600. Used
        only to start the longest runs first, so that no worker idles long at the end.
        """
        batch = getattr(self.config, "batch_tokens", None) or self.tokens
        steps = self.tokens / max(1, int(batch))
        return self.flops + 600.0 * float(self.planned.architecture.n_total) * steps


def resolve(sweep_path, out, overrides: dict | None = None, trainer: str | None = None) -> tuple[Sweep, list[SweepRun]]:
    """Read a sweep file and build every run's TrainConfig (sweep ``train:`` block, then ``overrides``).

    Raises MoescaleError (nothing started) for a missing or malformed sweep file, an
    unknown or invalid training key, or two planned runs that resolve to one run_id.
    """
    path = Path(sweep_path)
    if not path.is_file():
        raise MoescaleError(f"sweep {sweep_path}: no such file")
    sweep = Sweep.from_yaml(path)
    if not sweep.runs:
        raise MoescaleError(f"sweep {sweep_path}: lists no runs")
    module = load_trainer(trainer or DEFAULT_TRAINER)
    settings = merge(_mapping_defaults(module.TrainConfig, merge(sweep.train, overrides or {})),
                     merge(sweep.train, overrides or {}))
    runs, seen = [], {}
    for planned in sweep.runs:
        try:
            config = module.TrainConfig.from_planned(planned, {**settings, "sweep": sweep.name}
                                                     if _accepts_sweep(module) else settings)
        except MoescaleError as exc:
            raise MoescaleError(f"sweep {sweep_path}: run {planned.run_id}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise MoescaleError(f"sweep {sweep_path}: run {planned.run_id}: {exc}") from None
        run_id = config.run_id
        if run_id in seen:
            raise MoescaleError(f"sweep {sweep_path}: runs {seen[run_id]} and {planned.run_id} are the same run {run_id}")
        seen[run_id] = planned.run_id
        runs.append(SweepRun(planned, config, run_id, Path(out) / run_id))
    return sweep, runs


def _mapping_defaults(config_class, settings: dict) -> dict:
    """For each mapping in ``settings`` whose TrainConfig field defaults to a mapping (``data``),
    that default, so a dotted ``--set data.KEY=VALUE`` changes one key instead of replacing it."""
    import dataclasses

    out = {}
    for f in getattr(config_class, "__dataclass_fields__", {}).values():
        if isinstance(settings.get(f.name), dict) and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if isinstance(default, dict):
                out[f.name] = default
    return out


def _accepts_sweep(module) -> bool:
    """Whether TrainConfig has a ``sweep`` field (the sweep's name, recorded in run.json)."""
    fields = getattr(module.TrainConfig, "__dataclass_fields__", {})
    return "sweep" in fields


# ----------------------------------------------------------------------------- run directories


def read_status(run_dir: Path) -> str | None:
    """The status in a run directory's run.json, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((Path(run_dir) / "run.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def tail_metrics(run_dir: Path, max_bytes: int = 16384) -> dict:
    """The latest values in a run's metrics.jsonl: {"step", "tokens", "loss", "tokens_per_s", ...}.

    Reads only the file's last ``max_bytes``; scans back for the last line with each key
    (train loss and tokens/s may be logged on different lines). {} when there is nothing.
    """
    file = Path(run_dir) / "metrics.jsonl"
    try:
        with open(file, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return {}
    found: dict = {}
    aliases = {"loss": ("train_loss", "loss"), "tokens_per_s": ("tokens_per_s", "tok_per_s", "tokens_per_sec"),
               "val_loss": ("val_loss",)}
    for raw in reversed(data.split(b"\n")):
        try:
            row = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        for key in ("step", "tokens"):
            if key not in found and isinstance(row.get(key), int):
                found[key] = row[key]
        for key, names in aliases.items():
            if key not in found:
                for name in names:
                    if isinstance(row.get(name), (int, float)):
                        found[key] = float(row[name])
                        break
        if len(found) == 5:
            break
    return found


# ----------------------------------------------------------------------------- one run (in a worker)


@dataclass
class RunTask:
    """What a worker needs to train and ingest one run (picklable)."""

    run_id: str
    config: object
    out: str
    store: str | None
    trainer: str = "runner.train"
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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def execute_run(task: RunTask) -> Outcome:
    """Claim, train (resuming), ingest and release one run; never raises.

    The run is trained only while its claim is held; a run already finished or diverged
    is ingested, not trained. Returns status "busy" at once when another process holds
    the claim.
    """
    claim = RunClaim(task.out, task.run_id)
    if not claim.acquire():
        return Outcome(task.run_id, "busy")
    try:
        run_dir = Path(task.out) / task.run_id
        outcome = Outcome(task.run_id, read_status(run_dir) or "planned")
        if outcome.status not in TERMINAL:
            start = time.perf_counter()
            try:
                module = importlib.import_module(task.trainer)
                outcome.status = module.train(task.config, task.out, resume=True, quiet=True, threads=task.threads)
                outcome.trained = True
            except Exception as exc:  # a crash is a failed attempt, reported with its first line
                outcome.status, outcome.error = "failed", first_line(exc)
                _mark_failed(run_dir, outcome.error)
            outcome.seconds = time.perf_counter() - start
            if outcome.status == "failed" and outcome.error is None:
                outcome.error = _recorded_error(run_dir)
        if task.store and (run_dir / "run.json").is_file():
            try:
                from scaling.ingest import ingest

                ingest(task.store, [run_dir], progress=False)
            except Exception as exc:  # reported by the sweep; the run directory stays for a later ingest
                outcome.ingest_error = first_line(exc)
        return outcome
    finally:
        claim.release()


def _mark_failed(run_dir: Path, error: str) -> None:
    """Record ``failed`` and the error in run.json when ``train`` raised with the run still ``running``
    (so the store does not show a dead run as running); a later sweep retries it."""
    from scaling.rundir import RUN_FILE, _atomic_write_json

    try:
        run = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return
    if isinstance(run, dict) and run.get("status") == "running":
        run["status"], run["error"] = "failed", error
        _atomic_write_json(run_dir / RUN_FILE, run)


def _recorded_error(run_dir: Path) -> str | None:
    """The error a failed run recorded in run.json (key ``error``), when there is one."""
    try:
        run = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return run.get("error") or (run.get("config") or {}).get("error")


def _init_worker(threads: int | None, gpus) -> None:
    """Worker process set-up: its share of CPU threads, its GPU when given, and corpus reuse."""
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(threads)
    if gpus is not None:
        try:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get_nowait())
        except Exception:
            pass
    reuse_synthetic_corpus()


def reuse_synthetic_corpus() -> None:
    """Make ``runner.data.load_corpus`` in this (worker) process build a synthetic corpus once
    per (spec, seed) and hand the same one to later runs.

    Building is deterministic from (spec, seed) and training only reads the corpus, so the
    runs train exactly as with a fresh build; a sweep's runs usually share one spec and seed,
    and the build (seconds to tens of seconds) would otherwise repeat for every run. Files
    ("bin", "text") are read each time (they may change on disk). Keeps the latest corpus only.
    """
    try:
        import runner.data as data
    except ImportError:  # pragma: no cover - a stand-in trainer without runner.data
        return
    original = getattr(data, "load_corpus", None)
    if original is None or getattr(original, "reuses_synthetic", False):
        return
    cache: dict = {}

    def load_corpus(spec, seed):
        if not isinstance(spec, dict) or spec.get("kind") != "synthetic":
            return original(spec, seed)
        key = (json.dumps(spec, sort_keys=True, default=str), seed)
        if key not in cache:
            cache.clear()
            cache[key] = original(spec, seed)
        return cache[key]

    load_corpus.__doc__ = original.__doc__
    load_corpus.reuses_synthetic = True
    data.load_corpus = load_corpus


# ----------------------------------------------------------------------------- executors


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
        self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                           initargs=(self.threads, queue))

    def submit(self, tasks: list[RunTask]) -> list:
        return [self.pool.submit(execute_run, t) for t in tasks]

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


# ----------------------------------------------------------------------------- progress


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """The sweep's progress: a rich live table on a terminal, else (or with quiet) log lines."""

    def __init__(self, name: str, runs: list[SweepRun], quiet: bool):
        from rich.console import Console

        self.name = name
        self.total = len(runs)
        self.total_flops = sum(r.flops for r in runs)
        self.console = Console(stderr=False)
        self.live = None
        self.quiet = quiet or not self.console.is_terminal
        self.start = time.monotonic()
        self.counts = {"finished": 0, "diverged": 0, "failed": 0, "skipped": 0}
        self.done_flops = 0.0
        self.skipped_flops = 0.0
        self.running: dict[str, SweepRun] = {}
        self.started: dict[str, float] = {}
        self.waiting = 0

    def __enter__(self) -> Progress:
        if not self.quiet:
            from rich.live import Live

            self.live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(*exc)
            self.live = None

    def log(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self.live is not None:
            self.live.console.print(f"[dim]{stamp}[/dim] {text}", highlight=False)
        else:
            print(f"{stamp} {text}", flush=True)

    def skipped(self, runs: list[SweepRun], statuses: dict[str, str]) -> None:
        for r in runs:
            self.counts[statuses[r.run_id]] += 1
            self.counts["skipped"] += 1
            self.skipped_flops += r.flops
        if runs:
            self.log(f"{len(runs)} of {self.total} runs already done ({self._summary()}); not retrained")

    def begin(self, run: SweepRun, attempt: int) -> None:
        self.running[run.run_id] = run
        self.started[run.run_id] = time.monotonic()
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self.log(f"start  {run.run_id}{again}")

    def end(self, run: SweepRun, outcome: Outcome, final: bool) -> None:
        self.running.pop(run.run_id, None)
        seconds = time.monotonic() - self.started.pop(run.run_id, time.monotonic())
        if outcome.status == "busy":
            return
        if final:
            self.counts[outcome.status if outcome.status in self.counts else "failed"] += 1
            self.done_flops += run.flops
        tail = tail_metrics(run.dir)
        loss = f", loss {tail['loss']:.4g}" if "loss" in tail else ""
        val = f", val_loss {tail['val_loss']:.4g}" if "val_loss" in tail else ""
        why = f": {outcome.error}" if outcome.error else ""
        retry = "" if final else "; will retry"
        self.log(f"{outcome.status:<8} {run.run_id} in {seconds:.1f} s{loss}{val}{why}{retry} ({self._summary()})")
        if outcome.ingest_error:
            self.log(f"ingest failed for {run.run_id}: {outcome.ingest_error}")

    def _summary(self) -> str:
        c = self.counts
        done = c["finished"] + c["diverged"] + c["failed"]
        return f"{done}/{self.total} done: {c['finished']} finished, {c['diverged']} diverged, {c['failed']} failed"

    def eta(self) -> float | None:
        """Remaining planned FLOPs / FLOPs trained per second so far in this invocation."""
        partial = 0.0
        for run in self.running.values():
            tokens = tail_metrics(run.dir).get("tokens", 0)
            partial += min(1.0, tokens / max(run.tokens, 1)) * run.flops
        elapsed = time.monotonic() - self.start
        done = self.done_flops + partial
        remaining = self.total_flops - self.skipped_flops - done
        if done <= 0 or elapsed < 1:
            return None
        return max(0.0, remaining) * elapsed / done

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def _render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        c = self.counts
        done = c["finished"] + c["diverged"] + c["failed"]
        head = Text.assemble(
            (f"sweep {self.name}: ", "bold"), f"{done}/{self.total} done",
            f" ({c['finished']} finished, {c['diverged']} diverged, ", (f"{c['failed']} failed", "red" if c["failed"] else ""),
            f") · {len(self.running)} running",
            f" · {self.waiting} held by another sweep" if self.waiting else "",
            f" · elapsed {_fmt_time(time.monotonic() - self.start)} · ETA {_fmt_time(self.eta())}",
        )
        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("run", "E", "k", "step", "progress", "loss", "tokens/s", "time"):
            table.add_column(col, justify="left" if col == "run" else "right")
        for run in self.running.values():
            tail = tail_metrics(run.dir)
            a = run.planned.architecture
            frac = tail.get("tokens", 0) / max(run.tokens, 1)
            table.add_row(
                run.run_id, str(a.n_experts), str(a.top_k), str(tail.get("step", "-")), f"{100 * frac:.0f}%",
                f"{tail['loss']:.4g}" if "loss" in tail else "-",
                f"{tail['tokens_per_s']:,.0f}" if "tokens_per_s" in tail else "-",
                _fmt_time(time.monotonic() - self.started.get(run.run_id, time.monotonic())),
            )
        return Group(head, table) if self.running else head


# ----------------------------------------------------------------------------- the sweep


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
        return not self.failed and not self.ingest_errors

    def __str__(self) -> str:
        text = (f"sweep {self.name}: {len(self.finished)} finished, {len(self.diverged)} diverged, "
                f"{len(self.failed)} failed of {self.total} runs ({len(self.skipped)} already done, "
                f"{len(self.trained)} trained now) in {self.wall_seconds:.1f} s")
        for run_id, error in self.failed.items():
            text += f"\n  failed {run_id}: {error}"
        for run_id, error in self.ingest_errors.items():
            text += f"\n  not ingested {run_id}: {error}"
        return text


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


def _check_store_path(store) -> str | None:
    if store is None:
        return None
    store = str(store)
    if store == ":memory:":
        raise MoescaleError("sweep: the store must be a file (workers ingest into it), not :memory:")
    parent = Path(store).expanduser().resolve().parent
    if not parent.is_dir():
        raise MoescaleError(f"{store}: folder {parent} does not exist")
    return str(Path(store).expanduser())


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
    trainer: str | None = None,
    poll: float = 0.5,
) -> SweepResult:
    """Train every run of a sweep file not yet done into ``out`` and ingest each into ``store``.

    workers: processes (local) or jobs in flight (slurm; None = all runs at once).
    overrides: training keys for every run, over the sweep file's ``train:`` block.
    retries: extra attempts for a run that fails (a diverged run is not retried).
    threads: torch threads per local worker (default: CPUs // workers).
    Bad input (sweep file, keys, store folder) raises MoescaleError before anything starts.
    """
    if executor not in EXECUTORS:
        raise MoescaleError(f"sweep: unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise MoescaleError(f"sweep: workers must be at least 1, got {workers}")
    store = _check_store_path(store)
    trainer = trainer or DEFAULT_TRAINER
    sweep, runs = resolve(sweep_path, out, overrides, trainer)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    result = SweepResult(sweep.name, len(runs))

    statuses = {r.run_id: read_status(r.dir) for r in runs}
    done = [r for r in runs if statuses[r.run_id] in TERMINAL]
    todo = sorted((r for r in runs if statuses[r.run_id] not in TERMINAL), key=lambda r: -r.cost)
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
        return RunTask(run.run_id, run.config, str(out), store, trainer, per_worker)

    pending: deque[SweepRun] = deque(todo)
    held: list[tuple[float, SweepRun]] = []  # runs another process is training: (retry after, run)
    attempts: dict[str, int] = {}
    inflight: dict = {}
    cancelled = False
    with progress:
        progress.skipped(done, statuses)
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
                        held.append((now + 2.0, run))
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
                        outcome = Outcome(run.run_id, "failed", error=first_line(exc) or "worker died")
                        if backend.broken(exc):
                            for other in list(inflight):
                                lost = inflight.pop(other)
                                progress.end(lost, Outcome(lost.run_id, "failed", error="worker pool died"), False)
                                pending.appendleft(lost)
                    if outcome.status == "busy":
                        attempts[run.run_id] -= 1
                        progress.end(run, outcome, False)
                        held.append((time.monotonic() + 2.0, run))
                        continue
                    if outcome.trained:
                        result.trained.append(run.run_id)
                        result.trained_seconds += outcome.seconds
                    retry = outcome.status == "failed" and attempts[run.run_id] <= retries
                    progress.end(run, outcome, final=not retry)
                    if retry:
                        pending.append(run)
                        continue
                    if outcome.status == "finished":
                        result.finished.append(run.run_id)
                    elif outcome.status == "diverged":
                        result.diverged.append(run.run_id)
                    else:
                        result.failed[run.run_id] = outcome.error or f"status {outcome.status}"
                    if outcome.ingest_error:
                        result.ingest_errors[run.run_id] = outcome.ingest_error
                progress.refresh()
        except BaseException:
            cancelled = True
            raise
        finally:
            backend.close(cancel=cancelled)
    result.wall_seconds = time.monotonic() - began
    return result


# ----------------------------------------------------------------------------- status


STATUS_COLUMNS = ["run_id", "n_experts", "top_k", "d_model", "n_layers", "n_total", "n_active", "tokens",
                  "compute", "state", "step", "progress", "loss", "in_store", "store_status"]


def sweep_status(sweep_path, store=None, out="runs", *, overrides: dict | None = None,
                 trainer: str | None = None):
    """One row per run of a sweep, without running anything (a pandas DataFrame).

    state: planned (no run directory), running (its claim is held), interrupted
    (``running`` in run.json but nobody holds it: a rerun resumes it), finished,
    diverged or failed. in_store / store_status: whether the store holds the run, and
    with which status. Columns: see ``STATUS_COLUMNS``.
    """
    import pandas as pd

    store = _check_store_path(store)
    sweep, runs = resolve(sweep_path, out, overrides, trainer)
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

