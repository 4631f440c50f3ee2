"""Benchmark: ingest 1,000 run directories x 2,000 metrics lines into a fresh store.

Each metrics.jsonl line holds step, tokens, train_loss and lr, plus val_loss on every
50th line (4,040,000 long metric rows in all), and each run has 4 eval lines. Run
directories are written straight to disk in the RunWriter format (RunWriter itself
flushes per line, which is right for a training run but slow for generating 2M lines).
Target: ingest in <= 10 s on 2 cores. Prints its numbers; not a timed test.

    python benchmarks/bench_store.py [--runs 1000] [--rows 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from scaling.ingest import ingest
from scaling.store import Store

TARGET_S = 10.0


def write_runs(root: Path, n_runs: int, n_rows: int, seed: int = 0) -> int:
    """Write ``n_runs`` run directories under ``root``; returns the number of long metric rows."""
    rng = np.random.default_rng(seed)
    long_rows = 0
    steps = np.arange(1, n_rows + 1) * 10
    for i in range(n_runs):
        d = root / f"run{i:04d}"
        d.mkdir(parents=True)
        e, k = [(1, 1), (8, 1), (8, 2), (16, 2), (64, 8)][i % 5]
        config = {"d_model": 256, "n_layers": 4, "n_heads": 4, "d_ff": 512, "n_experts": e, "top_k": k,
                  "vocab_size": 99574, "seq_len": 2048, "seed": i}  # fmt: skip
        run = {"run_id": f"bench-{i:04d}", "sweep": "bench", "status": "finished",
               "created_at": "2026-01-01T00:00:00+00:00", "code_version": "bench", "config": config,
               "n_total": 10_000_000 * e, "n_active": 10_000_000 * k, "flops_per_token": 6.0e7 * k,
               "tokens_planned": int(steps[-1]) * 2048}  # fmt: skip
        (d / "run.json").write_text(json.dumps(run))
        loss = (3.0 + 5.0 * np.exp(-steps / 3000.0) + rng.normal(0, 0.01, n_rows)).tolist()
        lines = []
        for j in range(n_rows):
            s = int(steps[j])
            if j % 50 == 0:
                lines.append(f'{{"step": {s}, "tokens": {s * 2048}, "train_loss": {loss[j]!r}, "lr": 0.0003, "val_loss": {loss[j] + 0.05!r}}}\n')
            else:
                lines.append(f'{{"step": {s}, "tokens": {s * 2048}, "train_loss": {loss[j]!r}, "lr": 0.0003}}\n')
        (d / "metrics.jsonl").write_text("".join(lines))
        long_rows += 2 * n_rows + (n_rows + 49) // 50
        evals = [
            {"step": int(steps[-1]), "tokens": int(steps[-1]) * 2048, "task": t, "task_kind": kind,
             "metric": "accuracy", "value": float(rng.uniform()), "n_examples": 500}
            for t, kind in (("arith", "reasoning"), ("facts", "memorization"), ("logic", "reasoning"), ("trivia", "memorization"))
        ]  # fmt: skip
        (d / "evals.jsonl").write_text("".join(json.dumps(x) + "\n" for x in evals))
    return long_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=2000, help="metrics.jsonl lines per run")
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it (default: a temp folder)")
    parser.add_argument("--killed", type=int, default=0, metavar="K",
                        help="leave a truncated last line in K runs, as a killed run would")  # fmt: skip
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        t0 = time.perf_counter()
        long_rows = write_runs(root / "runs", args.runs, args.rows)
        for i in range(args.killed):
            with open(root / "runs" / f"run{i:04d}" / "metrics.jsonl", "a") as fh:
                fh.write('{"step": 99999999, "tokens": 12')
        t_gen = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in (root / "runs").rglob("*") if f.is_file()) / 1e6

        store_path = root / "bench.duckdb"
        t0 = time.perf_counter()
        with Store(store_path) as store, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the truncated lines of --killed runs
            summary = ingest(store, [root / "runs"], progress=False)
        t_ingest = time.perf_counter() - t0
        with Store(store_path) as store:
            counts = store.sql("SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM metrics) AS metrics, "
                               "(SELECT count(*) FROM final) AS final")  # fmt: skip
        t0 = time.perf_counter()
        with Store(store_path) as store:
            again = ingest(store, [root / "runs"], progress=False)
        t_again = time.perf_counter() - t0

    lines = args.runs * args.rows
    print(f"bench_store: {args.runs} runs x {args.rows} metrics lines = {lines:,} lines, "
          f"{long_rows:,} long metric rows, {size_mb:.0f} MB of run directories")  # fmt: skip
    print(f"  generate run dirs : {t_gen:7.2f} s")
    print(f"  ingest (new store): {t_ingest:7.2f} s  = {lines / t_ingest:,.0f} lines/s, "
          f"{long_rows / t_ingest:,.0f} metric rows/s; added {len(summary.added)}")  # fmt: skip
    print(f"  re-ingest (no-op) : {t_again:7.2f} s  unchanged {len(again.unchanged)}")
    if args.killed:
        print(f"  killed runs       : {args.killed} (truncated last line; {len(summary.warnings)} warnings)")
    print(f"  store rows        : runs {counts.runs[0]}, metrics {counts.metrics[0]:,}, final {counts.final[0]}")
    print(f"  target {TARGET_S:.0f} s: ingest/target = {t_ingest / TARGET_S:.2f} ({'met' if t_ingest <= TARGET_S else 'NOT met'})")


if __name__ == "__main__":
    main()
