"""scaling.simulate: synthetic sweeps from known laws through RunWriter + ingest."""

import math

import numpy as np
import pandas as pd
import pytest

from scaling.simulate import Truth, simulate_sweep, task_truths, true_accuracy, true_loss, write_store


def test_true_loss_is_the_moe_law():
    t = Truth()
    from scaling.laws import get_law

    N, s, n, D = np.array([1e6, 3e7]), np.array([1.0, 8.0]), np.array([1.0, 16.0]), np.array([1e7, 2e8])
    # by hand, and through the registered moe law at the truth's parameters
    hand = t.E + t.A * N**-t.alpha * s**t.gamma * n**t.lam + t.B * D**-t.beta
    np.testing.assert_allclose(true_loss(t, N, s, n, D), hand, rtol=1e-14)
    law = get_law("moe").predict(t.moe_params, {"N": N, "s": s, "n_exp": n, "D": D})
    np.testing.assert_allclose(law, hand, rtol=1e-12)


def test_reasoning_truth_peaks_at_tpp_20():
    for task in task_truths(True):
        if task.kind == "reasoning":
            assert task.tpp_peak == pytest.approx(20.0, rel=1e-12)
            tpp = np.array([10.0, 20.0, 40.0])
            p = true_accuracy(task, 3.0, 1e14, tpp)
            assert p[1] > p[0] and p[1] > p[2]
        else:
            assert task.tpp_peak is None
    assert all(t.b_flops == 0 for t in task_truths(False))


def test_simulate_is_deterministic_and_uses_the_accounting():
    r1, m1, e1 = simulate_sweep(n_runs=20, seed=3)
    r2, m2, e2 = simulate_sweep(n_runs=20, seed=3)
    pd.testing.assert_frame_equal(r1, r2)
    pd.testing.assert_frame_equal(e1, e2)
    r3, _, _ = simulate_sweep(n_runs=20, seed=4)
    assert not r1["loss"].equals(r3["loss"])
    # tokens = round(C / flops_per_token); the last curve point is the final loss
    np.testing.assert_allclose(r1["tokens"], np.round(r1["compute"] / r1["flops_per_token"]))
    last = m1.sort_values("step").groupby("run_id").tail(1).set_index("run_id")["val_loss"]
    np.testing.assert_allclose(last.loc[r1["run_id"]].to_numpy(), r1["loss"].to_numpy())


def test_write_store_round_trip(tmp_path):
    store = write_store(tmp_path / "s.duckdb", n_runs=24, diverged=2, failed=1, seed=1)
    runs = store.simulation_runs
    final = store.sql("SELECT * FROM final")
    assert len(final) == 24
    status = dict(store.sql("SELECT status, count(*) AS n FROM runs GROUP BY status").itertuples(index=False))
    assert status == {"finished": 24, "diverged": 2, "failed": 1}
    fin = runs[runs.status == "finished"].set_index("run_id").loc[final["run_id"]]
    np.testing.assert_allclose(final["val_loss"], fin["loss"], rtol=1e-12)
    np.testing.assert_array_equal(final["n_total"], fin["n_total"])
    np.testing.assert_allclose(final["active_flops"], fin["flops_per_token"] * fin["tokens"], rtol=1e-12)
    evals = store.sql("SELECT DISTINCT task, task_kind FROM evals ORDER BY task")
    assert dict(evals.itertuples(index=False)) == {"arith": "reasoning", "facts": "memorization", "pointer": "reasoning"}
    assert {"facts_accuracy", "pointer_accuracy", "arith_task_loss"} <= set(final.columns)
    n = store.sql("SELECT DISTINCT n_examples FROM evals")["n_examples"].tolist()
    assert n == [2000]
    curves = store.sql("SELECT run_id, count(*) AS n FROM metrics WHERE name = 'val_loss' GROUP BY run_id")
    assert (curves["n"] >= 8).sum() == 24
    assert store.sql("SELECT count(*) AS n FROM metrics WHERE name = 'load_cv'")["n"][0] > 0
    store.close()


def test_lam_override():
    r0, _, _ = simulate_sweep(Truth(noise=0.0), lam=0.0, n_runs=10)
    t = Truth(noise=0.0, lam=0.0)
    np.testing.assert_allclose(r0["loss"], true_loss(t, r0.n_total, r0.n_experts / r0.top_k, r0.n_experts, r0.tokens))
    assert not math.isclose(true_loss(Truth(), 1e6, 8, 16, 1e7), true_loss(t, 1e6, 8, 16, 1e7))


def test_write_store_leaves_no_run_directories_behind(tmp_path):
    """Issue 18: the run directories went to ``<store>.runs/`` beside the store (not git-ignored)."""
    store = write_store(tmp_path / "s.duckdb", n_runs=6, seed=2)
    assert len(store.sql("SELECT * FROM final")) == 6
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["s.duckdb"]
    kept = write_store(tmp_path / "k.duckdb", n_runs=6, seed=2, runs_dir=tmp_path / "runs")  # asked for: kept
    kept.close()
    assert len(list((tmp_path / "runs").iterdir())) == len(kept.simulation_runs) == 6
