"""benchmarks/bench_coverage.py, small: the bootstrap intervals cover the truth of simulated sweeps."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scaling.intervals import bca_interval
from scaling.simulate import Truth

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_coverage.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_coverage", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table(bench):
    truth = Truth()
    records = []
    for k in range(20):
        final = bench.simulated_final(truth, 30, seed=500 + k)
        # fitted from the truth (one start) to keep the test fast; the benchmark uses fit's multi-start
        recs, _ = bench.cover_sweep(final, truth, 50, seed=k, methods=("percentile", "bca"), starts=truth.moe_params)
        records += [{**r, "runs": 30, "sweep": k} for r in recs]
    return bench.coverage_table(pd.DataFrame(records)).set_index(["method", "parameter"])


def test_percentile_intervals_cover_gamma_and_lam(table):
    for p in ("gamma", "lam"):
        row = table.loc[("percentile", p)]
        assert row["n"] >= 15 and row["coverage"] >= 0.7, (p, row.to_dict())
        assert 0 < row["mean_width"] < 0.5
    assert {"percentile", "bca"} == set(table.index.get_level_values("method"))
    assert any(p.startswith("L_opt@C=") for p in table.index.get_level_values("parameter"))
    assert set(table["target"]) <= {"yes", "no"}


def test_bca_equals_scipy_on_a_simple_statistic():
    x = np.random.default_rng(7).gamma(2.0, size=25)
    res = stats.bootstrap((x,), np.median, method="BCa", n_resamples=999, vectorized=False,
                          rng=np.random.default_rng(8))
    jack = np.array([np.median(np.delete(x, i)) for i in range(len(x))])
    lo, hi = bca_interval(np.median(x), res.bootstrap_distribution, jack)
    assert (lo, hi) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high), rel=1e-9)


def test_command_line_runs(bench, capsys):
    assert bench.main(["--n", "1", "--runs", "12", "--bootstrap", "20", "--method", "percentile"]) == 0
    out = capsys.readouterr().out
    assert "Coverage of 95% intervals" in out and "percentile" in out and "Timings" in out
