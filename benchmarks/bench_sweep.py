"""Benchmark: the `cpu-tiny` sweep end to end with 1 and 2 workers, and the sweep's overhead.

For each worker count the whole preset sweep is trained from scratch into a fresh run
folder and store (``runner.sweep.run_sweep``, the code path of ``moescale sweep``), then
run once more to time the no-op rerun. Printed per worker count:

- wall: the sweep call's wall time (what the demo waits for);
- in train(): seconds workers spent inside ``train`` calls, summed;
- in steps: seconds inside training steps, summed over runs: for each run, the span of
  its logged steps (tokens trained / the logged tokens per second) as the trainer
  reports them in metrics.jsonl;
- overhead of the sweep machinery = 1 - sum(train() seconds) / (workers * wall): process
  start, scheduling, ingest, display and the idle tail while the last run finishes;
- overhead outside steps = 1 - sum(step seconds) / (workers * wall): the above plus
  what train() does outside steps (model and corpus build, evaluation, checkpoints).

Target: sweep-machinery overhead <= 5% (issue 10). The ratio of 1-worker to 2-worker
wall time is the parallel speed-up measured in the same process. Not a timed test.

    python benchmarks/bench_sweep.py [--workers 1 2] [--preset cpu-tiny] [--scale 1.0] [--keep DIR] [--set key=value ...]

``--scale f`` multiplies the preset's compute budgets by f (same 18 architectures, f times
the tokens), for a quicker measurement on a busy machine; the overhead share it reports is
an upper bound for the full sweep's (the fixed costs are the same, the training shorter).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from scaling.planner import Constraints, get_preset, plan

TARGET_OVERHEAD = 0.05


def step_seconds(run_dir: Path) -> float:
    """Seconds inside training steps for one run: sum over logged intervals of
    (tokens since the previous logged line) / (logged tokens_per_s)."""
    total, last_tokens = 0.0, 0
    file = run_dir / "metrics.jsonl"
    if not file.exists():
        return 0.0
    for line in file.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        rate = row.get("tokens_per_s")
        tokens = row.get("tokens")
        if isinstance(rate, (int, float)) and rate > 0 and isinstance(tokens, int) and tokens > last_tokens:
            total += (tokens - last_tokens) / rate
            last_tokens = tokens
    return total


def bench(sweep_file: Path, root: Path, workers: int, overrides: dict) -> dict:
    from runner.sweep import run_sweep

    out, store = root / f"runs_w{workers}", root / f"store_w{workers}.duckdb"
    start = time.perf_counter()
    result = run_sweep(sweep_file, store, out, workers=workers, overrides=overrides, quiet=True)
    wall = time.perf_counter() - start
    rerun_start = time.perf_counter()
    again = run_sweep(sweep_file, store, out, workers=workers, overrides=overrides, quiet=True)
    rerun = time.perf_counter() - rerun_start
    steps = sum(step_seconds(out / run_id) for run_id in result.trained)
    return {
        "workers": workers, "runs": result.total, "finished": len(result.finished), "diverged": len(result.diverged),
        "failed": len(result.failed), "wall_s": wall, "train_s": result.trained_seconds, "steps_s": steps,
        "overhead_machinery": 1 - result.trained_seconds / (workers * wall),
        "overhead_outside_steps": 1 - steps / (workers * wall) if steps else None,
        "rerun_s": rerun, "rerun_trained": len(again.trained),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", default="cpu-tiny")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the preset's compute budgets (default 1)")
    parser.add_argument("--keep", help="keep run folders and stores here (default: a temporary folder)")
    args = parser.parse_args()
    from runner.sweep import parse_overrides

    overrides = parse_overrides(args.overrides)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    root.mkdir(parents=True, exist_ok=True)
    budgets = tuple(c * args.scale for c in get_preset(args.preset).compute)
    sweep = plan(args.preset, Constraints(compute=budgets)) if budgets else plan(args.preset)
    sweep_file = root / "sweep.yaml"
    sweep.to_yaml(sweep_file)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    tokens = sum(r.tokens for r in sweep.runs)
    print(f"bench_sweep: preset {args.preset} x{args.scale:g} budgets {[f'{c:.3g}' for c in budgets]}, "
          f"{len(sweep.runs)} runs, {tokens / 1e6:.2f}M tokens, {os.cpu_count()} CPUs, load {load:.2f}", flush=True)
    rows = []
    try:
        for workers in args.workers:
            row = bench(sweep_file, root, workers, overrides)
            rows.append(row)
            steps = f"{row['steps_s']:7.1f} s in steps" if row["steps_s"] else "steps not logged"
            outside = (f", outside steps {100 * row['overhead_outside_steps']:.1f}%"
                       if row["overhead_outside_steps"] is not None else "")
            print(f"  workers {workers}: wall {row['wall_s']:7.1f} s ({row['finished']} finished, {row['diverged']} "
                  f"diverged, {row['failed']} failed); {row['train_s']:7.1f} s in train(), {steps}; "
                  f"overhead: sweep machinery {100 * row['overhead_machinery']:.1f}%{outside}; "
                  f"rerun {row['rerun_s']:.1f} s ({row['rerun_trained']} trained)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    by = {r["workers"]: r for r in rows}
    if 1 in by and 2 in by:
        print(f"  speed-up 2 workers vs 1: {by[1]['wall_s'] / by[2]['wall_s']:.2f}x")
    worst = max(r["overhead_machinery"] for r in rows)
    verdict = "met" if worst <= TARGET_OVERHEAD else f"NOT met (by {100 * (worst - TARGET_OVERHEAD):.1f} points)"
    print(f"  target sweep-machinery overhead <= {100 * TARGET_OVERHEAD:.0f}%: worst {100 * worst:.1f}% ({verdict})")
    print(f"load average after: {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "")


if __name__ == "__main__":
    main()
