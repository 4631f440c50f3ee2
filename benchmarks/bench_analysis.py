"""Benchmark: the whole analysis of a 60-run store with 1,000 bootstrap resamples (issue 11, target <= 30 s).

In one process:
1. a synthetic 60-run isoFLOP sweep (``scaling.simulate.write_store``: RunWriter + ingest), not timed
   against the target;
2. ``scaling.analysis.analyze(store, bootstrap=B)``: the claims (4 law variants, B refits of the full moe
   law, leave-largest-budget-out refits), the accuracy GLMs (B batched IRLS refits per task kind, the
   two-step path), the isoFLOP minima and the optimum per budget for loss, memorization and reasoning
   (B resampled optima each), timed per stage;
3. a baseline in the same process: one plain ``scaling.fitting.fit`` of the moe law (972 starts), so the
   total can be read as a ratio on a noisy shared machine.

Usage: python benchmarks/bench_analysis.py [--runs 60] [--bootstrap 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import warnings

    warnings.simplefilter("ignore")
    from scaling.analysis import analyze
    from scaling.laws import MOE_X
    from scaling.fitting import fit
    from scaling.simulate import write_store

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store = write_store(Path(tmp) / "s.duckdb", n_runs=args.runs, seed=0)
        t_sim = time.perf_counter() - t
        final = store.sql("SELECT * FROM final")
        t = time.perf_counter()
        fit(final, "moe", x=MOE_X, y="val_loss", stderr=False)
        t_base = time.perf_counter() - t
        stages = {}
        last = [time.perf_counter(), None]

        def progress(stage):
            now = time.perf_counter()
            if last[1] is not None:
                stages[last[1]] = now - last[0]
            last[0], last[1] = now, stage

        t = time.perf_counter()
        result = analyze(store, bootstrap=args.bootstrap, seed=0, progress=progress)
        total = time.perf_counter() - t
        stages[last[1]] = time.perf_counter() - last[0]
        store.close()
    print(f"bench_analysis: {args.runs} runs, {args.bootstrap} bootstrap resamples, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"  simulate + ingest : {t_sim:6.2f} s")
    print(f"  baseline moe fit  : {t_base:6.2f} s  (one 972-start fit)")
    for k, v in stages.items():
        print(f"  {k:<18}: {v:6.2f} s")
    print(f"  whole analysis    : {total:6.2f} s  = {total / t_base:.1f} x the baseline fit")
    print(f"  objectives {', '.join(result.objectives)}; budgets {', '.join(f'{c:.3g}' for c in result.compute)}")
    print(f"  target 30 s: total/target = {total / 30:.2f} ({'met' if total <= 30 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
