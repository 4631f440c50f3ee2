"""scaling.claims: Liew et al.'s claims as nested-model tests on synthetic stores whose truth is known."""

import numpy as np
import pandas as pd
import pytest

from scaling.claims import test_claims as run_claims
from scaling.errors import MoescaleError
from scaling.final import final_runs
from scaling.simulate import Truth, write_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("claims")
    pos = write_store(root / "pos.duckdb", Truth(lam=0.04), n_runs=60, diverged=2, failed=1, seed=5)
    zero = write_store(root / "zero.duckdb", Truth(lam=0.0), n_runs=60, seed=6)
    yield pos, zero
    pos.close()
    zero.close()


@pytest.fixture(scope="module")
def pos_result(stores):
    return run_claims(stores[0], bootstrap=100, seed=0)


def _row(result, parameter):
    return result.table.set_index("parameter").loc[parameter]


def test_lam_positive_is_detected(pos_result):
    res = pos_result
    assert res.n_runs == 60 and res.excluded == {"diverged": 2, "failed": 1}
    lam = _row(res, "lam")
    assert lam.p_value < 0.01 and lam.ci_low > 0 and lam.estimate == pytest.approx(0.04, abs=0.02)
    assert lam.verdict.startswith("n_exp penalty lam =") and "more experts at fixed N_total and s cost loss" in lam.verdict
    assert lam.delta_aic > 0
    gamma = _row(res, "gamma")
    assert gamma.p_value < 1e-6 and gamma.ci_low > 0 and "higher sparsity costs loss" in gamma.verdict
    assert gamma.ci_low <= 0.08 <= gamma.ci_high
    act = _row(res, "alpha_active")
    assert act.delta_aic > 10 and "N_total and s fit better than N_active" in act.verdict
    assert res.holdout_budget == pytest.approx(3e14, rel=0.05)
    # the full law extrapolates to the held-out largest budget better than the N_total-only one
    assert gamma.extrapolation_error_full < gamma.extrapolation_error
    assert list(res.table.columns[:12]) == ["claim", "parameter", "estimate", "ci_low", "ci_high", "lr_stat", "df",
                                            "p_value", "delta_aic", "delta_bic", "extrapolation_error", "verdict"][:11] + ["extrapolation_error_full"]


def test_lam_zero_is_not_rejected(stores):
    res = run_claims(stores[1], bootstrap=50, seed=0, extrapolation=False)
    lam = _row(res, "lam")
    assert lam.p_value > 0.05 and lam.ci_low <= 0 <= lam.ci_high
    assert "consistent with n_experts and top_k entering only through s" in lam.verdict
    assert _row(res, "gamma").p_value < 1e-6


def test_lr_statistic_by_hand(stores, pos_result):
    """2 (logL_full - logL_restricted) = n ln(RSS_r / RSS_f) with residuals computed here from the fits."""
    from scipy.stats import chi2

    res = pos_result
    df, _ = final_runs(stores[0])
    X = {"N": df.n_total.to_numpy(), "s": df.sparsity.to_numpy(), "n_exp": df.n_experts.to_numpy(),
         "D": df.tokens.to_numpy()}
    y = np.log(df.val_loss.to_numpy())

    def rss(fit):
        p = fit.params
        pred = np.log(np.exp(p["e"]) + np.exp(p["a"]) * X["N"] ** -p["alpha"] * X["s"] ** p["gamma"]
                      * X["n_exp"] ** p["lam"] + np.exp(p["b"]) * X["D"] ** -p["beta"])
        return np.sum((y - pred) ** 2)

    stat = len(y) * np.log(rss(res.fits["moe_lam0"]) / rss(res.fits["moe"]))
    lam = _row(res, "lam")
    assert lam.lr_stat == pytest.approx(stat, rel=1e-9)
    assert lam.p_value == pytest.approx(chi2.sf(stat, 1), rel=1e-9)
    assert lam.df == 1 and _row(res, "gamma").df == 2
    # percentile CI over the stored bootstrap refits
    lo, hi = np.percentile(res.bootstrap_params.loc[res.bootstrap_params.converged, "lam"], [2.5, 97.5])
    assert (lam.ci_low, lam.ci_high) == pytest.approx((lo, hi), rel=1e-12)


def test_bad_input(stores, tmp_path):
    df = stores[0].sql("SELECT * FROM final")
    with pytest.raises(MoescaleError, match="9 finished runs; the moe law's claims need at least 10"):
        run_claims(df.iloc[:9], bootstrap=0)
    with pytest.raises(MoescaleError, match="no finished runs"):
        run_claims(df.assign(val_loss=np.nan), bootstrap=0)
    with pytest.raises(MoescaleError, match="no such store file"):
        run_claims(tmp_path / "missing.duckdb")
    assert not (tmp_path / "missing.duckdb").exists()
    one = df[df.sparsity == 1.0]
    one = pd.concat([one] * 3, ignore_index=True).assign(run_id=lambda d: [f"r{i}" for i in range(len(d))])
    with pytest.raises(MoescaleError, match="need at least 2 sparsities"):
        run_claims(one, bootstrap=0)
    # one top_k: lam is not identified and the verdict says so
    k1 = df[df.top_k == 1]
    res = run_claims(k1, bootstrap=0, extrapolation=False)
    assert _row(res, "lam").verdict.startswith("not testable")
