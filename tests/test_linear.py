"""scaling.linear against independent references: numpy lstsq, hand-computed
OLS standard errors and t intervals, and a direct scipy MLE of the binomial
likelihood."""

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from scaling.errors import MoescaleError
from scaling.linear import accuracy_glm, loglog_ols


@pytest.fixture
def powerlaw_df():
    rng = np.random.default_rng(0)
    C = np.logspace(18, 22, 12)
    T = rng.uniform(1, 10, 12)
    y = 0.3 * C**0.49 * T**-0.2 * np.exp(rng.normal(0, 0.05, 12))
    return pd.DataFrame({"C": C, "T": T, "N_opt": y})


def test_loglog_ols_matches_lstsq_and_hand_ci(powerlaw_df):
    df = powerlaw_df
    fit = loglog_ols(df, "N_opt", ["C", "T"])
    X = np.column_stack([np.ones(len(df)), np.log(df.C), np.log(df["T"])])
    yv = np.log(df.N_opt.to_numpy())
    beta, rss, *_ = np.linalg.lstsq(X, yv, rcond=None)
    np.testing.assert_allclose([fit.params[k] for k in ("const", "C", "T")], beta, rtol=1e-10)
    # standard errors and 95% t-intervals by hand
    dof = len(yv) - 3
    s2 = rss[0] / dof
    se = np.sqrt(np.diag(np.linalg.inv(X.T @ X)) * s2)
    np.testing.assert_allclose([fit.stderr[k] for k in ("const", "C", "T")], se, rtol=1e-8)
    t = stats.t.ppf(0.975, dof)
    lo, hi = fit.ci["C"]
    assert lo == pytest.approx(beta[1] - t * se[1], rel=1e-8)
    assert hi == pytest.approx(beta[1] + t * se[1], rel=1e-8)
    # near the true exponent (noise sd 0.05 over 4 decades of C: se ~ 0.005, allow 4 se)
    assert beta[1] == pytest.approx(0.49, abs=0.02)
    assert fit.n_points == 12
    pred = fit.predict(df)
    np.testing.assert_allclose(pred, np.exp(X @ beta), rtol=1e-10)
    assert "ols-loglog" in fit.summary() and "const" in fit.summary()


def test_loglog_ols_exact_power_law():
    C = np.array([1e18, 1e19, 1e20, 1e21])
    df = pd.DataFrame({"C": C, "N": 0.1 * C**0.5})
    fit = loglog_ols(df, "N", "C")
    assert fit.params["C"] == pytest.approx(0.5, abs=1e-12)
    assert np.exp(fit.params["const"]) == pytest.approx(0.1, rel=1e-10)


def _binomial_mle(X, k, n):
    def nll(b):
        eta = X @ b
        # -log L = sum n*log(1+e^eta) - k*eta (binomial coefficient is constant)
        return np.sum(n * np.logaddexp(0, eta) - k * eta)

    def grad(b):
        p = 1 / (1 + np.exp(-(X @ b)))
        return X.T @ (n * p - k)

    res = optimize.minimize(nll, np.zeros(X.shape[1]), jac=grad, method="BFGS", options={"gtol": 1e-10})
    return res.x


def test_accuracy_glm_matches_scipy_mle():
    rng = np.random.default_rng(1)
    flops = np.logspace(19, 23, 15)
    n = rng.integers(200, 2000, 15)
    p = 1 / (1 + np.exp(-(-30.0 + 0.6 * np.log(flops))))
    k = rng.binomial(n, p)
    df = pd.DataFrame({"flops": flops, "acc": k / n, "k": k, "n": n})
    fit = accuracy_glm(df, "acc", "n", "flops")
    X = np.column_stack([np.ones(15), np.log(flops)])
    ref = _binomial_mle(X, k.astype(float), n.astype(float))
    np.testing.assert_allclose([fit.params["const"], fit.params["flops"]], ref, rtol=1e-6)
    # the same fit from success counts
    fit2 = accuracy_glm(df, "k", "n", "flops", y_kind="successes")
    np.testing.assert_allclose(fit2.params["flops"], fit.params["flops"], rtol=1e-10)
    # Wald standard errors: inverse Fisher information X' W X, W = n p (1 - p)
    ph = 1 / (1 + np.exp(-(X @ ref)))
    cov = np.linalg.inv(X.T @ (X * (n * ph * (1 - ph))[:, None]))
    np.testing.assert_allclose(fit.stderr["flops"], np.sqrt(cov[1, 1]), rtol=1e-5)
    assert fit.ci["flops"][0] < 0.6 < fit.ci["flops"][1]
    np.testing.assert_allclose(fit.predict(df), ph, rtol=1e-5)


def test_accuracy_glm_constant_n_examples():
    df = pd.DataFrame({"N": [1e8, 1e9, 1e10, 1e11], "acc": [0.2, 0.35, 0.6, 0.8]})
    fit = accuracy_glm(df, "acc", 1000, "N")
    X = np.column_stack([np.ones(4), np.log(df.N)])
    ref = _binomial_mle(X, df.acc.to_numpy() * 1000, np.full(4, 1000.0))
    np.testing.assert_allclose([fit.params["const"], fit.params["N"]], ref, rtol=1e-6)


@pytest.mark.parametrize(
    "df, match",
    [
        (pd.DataFrame({"C": [1.0, 2.0, 0.0], "y": [1.0, 2.0, 3.0]}), "column 'C' row 2 is 0"),
        (pd.DataFrame({"C": [1.0, 2.0, 3.0], "y": [1.0, np.nan, 3.0]}), "column 'y' row 1 is not a finite"),
        (pd.DataFrame({"C": [1.0, 2.0, 3.0], "z": [1.0, 2.0, 3.0]}), "no column 'y'"),
        (pd.DataFrame({"C": [1.0], "y": [1.0]}), "1 rows for 2 parameters"),
    ],
)
def test_loglog_ols_bad_input(df, match):
    with pytest.raises(MoescaleError, match=match):
        loglog_ols(df, "y", "C")


def test_accuracy_glm_bad_input():
    df = pd.DataFrame({"N": [1e8, 1e9, 1e10], "acc": [0.2, 1.3, 0.6]})
    with pytest.raises(MoescaleError, match="accuracy must lie in"):
        accuracy_glm(df, "acc", 100, "N")
    with pytest.raises(MoescaleError, match="n_examples row 0"):
        accuracy_glm(df.assign(acc=0.5), "acc", 0, "N")
