"""A sweep's progress: a rich live table on a terminal, else plain log lines.

The table shows runs done / running / failed, the ETA, and each running run's step, loss
and tokens/s, read from the tail of its metrics.jsonl (``tail_metrics``); with ``quiet`` or
when stdout is not a terminal, each start and end is one time-stamped line.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from runner.sweep.settings import SweepRun
from runner.sweep.worker import Outcome

__all__ = ["Progress", "tail_metrics"]


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
        """Print one time-stamped line (above the live table when there is one)."""
        stamp = time.strftime("%H:%M:%S")
        if self.live is not None:
            self.live.console.print(f"[dim]{stamp}[/dim] {text}", highlight=False)
        else:
            print(f"{stamp} {text}", flush=True)

    def skipped(self, runs: list[SweepRun], statuses: dict[str, str]) -> None:
        """Count the runs already done before this invocation (``statuses``: run_id -> final status)."""
        for r in runs:
            self.counts[statuses[r.run_id]] += 1
            self.counts["skipped"] += 1
            self.skipped_flops += r.flops
        if runs:
            self.log(f"{len(runs)} of {self.total} runs already done ({self._summary()}); not retrained")

    def begin(self, run: SweepRun, attempt: int) -> None:
        """A run's attempt started."""
        self.running[run.run_id] = run
        self.started[run.run_id] = time.monotonic()
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self.log(f"start  {run.run_id}{again}")

    def end(self, run: SweepRun, outcome: Outcome, final: bool) -> None:
        """A run's attempt ended; ``final`` when it will not be retried (only then is it counted)."""
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
        """Redraw the live table (no-op for log lines)."""
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
