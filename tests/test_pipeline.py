"""The whole data path: run directories -> ingest -> the store's `final` view -> fit.

Runs of known architectures log a loss curve whose last value follows a known Chinchilla
law exactly; the fit on `final` must recover that law, and `final`'s derived columns must
equal the accounting of `scaling.architecture`.
"""

import numpy as np
import pytest

from scaling import Architecture, RunWriter, Store, fit

TRUE = {"E": 1.7, "A": 400.0, "B": 1200.0, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(n, d):
    return TRUE["E"] + TRUE["A"] * n ** -TRUE["alpha"] + TRUE["B"] * d ** -TRUE["beta"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    archs = [
        Architecture(d_model=d, n_layers=2, n_heads=2, d_ff=2 * d, n_experts=e, top_k=k, vocab_size=512, seq_len=128)
        for d in (64, 128, 256) for (e, k) in ((1, 1), (8, 2))
    ]  # fmt: skip
    dirs = []
    for arch in archs:
        for tpp in (5, 20, 80):
            tokens = tpp * arch.n_total
            run_id = f"d{arch.d_model}-e{arch.n_experts}-tpp{tpp}"
            with RunWriter(root / run_id, run_id, {**arch.to_dict(), "tokens": tokens}, sweep="pipeline",
                           columns={**arch.summary(), "tokens_planned": tokens, "seed": 0}) as w:  # fmt: skip
                for frac in (0.25, 0.5, 1.0):  # a curve; only its last point is the law's
                    seen = int(frac * tokens)
                    w.log(step=int(frac * 100), tokens=seen, val_loss=chinchilla_loss(arch.n_total, seen))
                w.log_eval(step=100, tokens=tokens, task="arith", task_kind="reasoning",
                           metric="accuracy", value=0.1 * tpp ** 0.5, n_examples=100)  # fmt: skip
            dirs.append(root / run_id)
    s = Store(root / "moescale.duckdb")
    from scaling.ingest import ingest

    ingest(s, dirs, progress=False)
    return s, archs


def test_final_view_has_the_accounting_of_each_run(store):
    s, archs = store
    final = s.sql("SELECT * FROM final ORDER BY run_id")
    assert len(final) == 18
    by_arch = {(a.d_model, a.n_experts): a for a in archs}
    for row in final.itertuples():
        arch = by_arch[(row.d_model, row.n_experts)]
        assert row.n_total == arch.n_total and row.n_active == arch.n_active
        assert row.sparsity == arch.sparsity and row.density == arch.density
        assert row.tpp == pytest.approx(row.tokens / arch.n_total)
        assert row.active_flops == pytest.approx(arch.flops_per_token * row.tokens)
        assert row.val_loss == pytest.approx(chinchilla_loss(arch.n_total, row.tokens))
        assert row.arith_accuracy == pytest.approx(0.1 * round(row.tpp) ** 0.5)


def test_fit_on_final_recovers_the_law_and_is_saved(store):
    s, _ = store
    result = fit("final", "chinchilla", x={"N": "n_total", "D": "tokens"}, y="val_loss", store=s)
    assert result.n_points == 18 and result.converged
    for name, value in TRUE.items():
        assert result.params[name] == pytest.approx(value, rel=1e-4), name
    saved = s.sql("SELECT law, n_points, fingerprint FROM fits")
    assert saved.to_dict("records") == [{"law": "chinchilla", "n_points": 18, "fingerprint": result.fingerprint}]
    assert np.isfinite(result.objective) and result.objective < 1e-10
