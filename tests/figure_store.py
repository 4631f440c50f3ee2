"""One small simulated store and its analysis per test session, shared by the figure, report and
notebook tests (a plain module cache: pytest runs them in one process)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

# 3 widths x (dense, E 4 at k 1/2, E 16 at k 1/2) x 3 budgets = 45 runs, one diverged run;
# tasks facts (memorization) and pointer (reasoning) from scaling.simulate's truth.
BUDGETS = (3e13, 1e14, 3e14)


@functools.lru_cache(maxsize=1)
def fixture_store():
    """(path, store, analysis, final, evals, metrics) of the shared simulated store."""
    from dataclasses import replace

    from scaling.analysis import analyze
    from scaling.planner import GridSpace
    from scaling.simulate import Truth, task_truths, write_store

    root = Path(tempfile.mkdtemp(prefix="moescale-figtest-"))
    atexit.register(shutil.rmtree, root, True)
    grid = GridSpace(n_layers=(4,), d_model=(64, 128, 256), n_experts=(1, 4, 16), top_k=(1, 2), granularity=(0.5,),
                     head_dim=32, vocab_size=512, seq_len=128)
    truth = replace(Truth(), tasks=tuple(t for t in task_truths(True) if t.task in ("facts", "pointer")))
    path = root / "s.duckdb"
    store = write_store(path, truth, grid=grid, compute=BUDGETS, diverged=1, seed=0, runs_dir=root / "runs")
    analysis = analyze(store, bootstrap=20, seed=0)
    return SimpleNamespace(path=path, root=root, store=store, analysis=analysis,
                           final=store.sql("SELECT * FROM final"), evals=store.sql("SELECT * FROM evals"),
                           metrics=store.sql("SELECT * FROM metrics"))
