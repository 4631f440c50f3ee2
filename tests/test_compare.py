"""scaling.compare against independent references: statsmodels' OLS
log-likelihood/AIC/BIC and likelihood-ratio test, scipy.stats.norm log-densities,
closed-form chi-square tails, and hand-made held-out predictions."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scaling.compare import aic, bic, compare, likelihood_ratio_test, log_likelihood, n_free_params
from scaling.errors import MoescaleError
from scaling.laws import get_law


class Stub:
    """The FitResult attributes compare.py reads."""

    def __init__(self, law, params, data, loss, fixed=None, objective=0.0, fingerprint=None):
        self.law = get_law(law, [c for c in data.columns if c != "y"])
        self.params = params
        self.data = data
        self.loss = loss
        self.fixed = fixed or {}
        self.objective = objective
        self.n_points = len(data)
        self.fingerprint = fingerprint


@pytest.fixture
def power_data():
    rng = np.random.default_rng(3)
    x = np.logspace(0, 3, 20)
    z = rng.uniform(-1, 1, 20)
    y = 2.0 * x**0.3 * np.exp(0.02 * z + rng.normal(0, 0.05, 20))
    return pd.DataFrame({"x": x, "z": z, "y": y})


def test_loglik_aic_bic_match_statsmodels_ols(power_data):
    import statsmodels.api as sm

    df = power_data
    X = sm.add_constant(np.log(df.x.to_numpy()))
    ols = sm.OLS(np.log(df.y.to_numpy()), X).fit()
    a, alpha = ols.params
    r = Stub("power_pure", {"a": a, "alpha": alpha}, df[["x", "y"]], "mse-log")
    assert log_likelihood(r) == pytest.approx(ols.llf, rel=1e-10)
    # statsmodels counts the 2 regression coefficients; we also count the variance
    assert n_free_params(r) == 3
    assert aic(r) == pytest.approx(ols.aic + 2, rel=1e-10)
    assert bic(r) == pytest.approx(ols.bic + math.log(20), rel=1e-10)
    # independent: sum of normal log-densities at the variance MLE RSS/n
    res = np.log(df.y) - (a + alpha * np.log(df.x))
    sigma = math.sqrt(np.mean(res**2))
    assert log_likelihood(r) == pytest.approx(stats.norm.logpdf(res, 0, sigma).sum(), rel=1e-10)


def test_residual_spaces():
    # constant prediction yhat = 10 e^0.1; observed y built so that the residual
    # in each loss's space is rr: y = yhat e^rr (ln), yhat 10^rr (log10), yhat + rr (linear)
    p = {"a": math.log(10.0) + 0.1, "alpha": 0.0}
    yhat = 10.0 * math.exp(0.1)
    rr = np.array([0.05, -0.02, 0.1])
    rss = float(np.sum(rr**2))
    expected = -3 / 2 * (math.log(2 * math.pi * rss / 3) + 1)
    observed = {"huber": yhat * np.exp(rr), "mse-log": yhat * np.exp(rr), "mse-log10": yhat * 10.0**rr, "mse": yhat + rr}
    for loss, y in observed.items():
        stub = Stub("power_pure", p, pd.DataFrame({"x": [1.0, 10.0, 100.0], "y": y}), loss)
        assert log_likelihood(stub) == pytest.approx(expected, rel=1e-10), loss


def test_fixed_parameters_are_not_counted(power_data):
    r = Stub("chinchilla", {"e": 0.0, "a": 1.0, "b": 1.0, "alpha": 0.3, "beta": 0.3},
             power_data.rename(columns={"x": "N", "z": "D"}).assign(D=lambda d: d.N), "huber",
             fixed={"e": 0.0})  # fmt: skip
    assert n_free_params(r) == 5  # 4 free + variance


def _nested_pair(df):
    """Restricted: log y = a + alpha log x; full: + c z, by statsmodels OLS as laws."""
    import statsmodels.api as sm

    full_sm = sm.OLS(np.log(df.y), sm.add_constant(np.column_stack([np.log(df.x), df.z]))).fit()
    restr_sm = sm.OLS(np.log(df.y), sm.add_constant(np.log(df.x))).fit()
    full = Stub("exp(a) * x**alpha * exp(c*z)", dict(zip(["a", "alpha", "c"], full_sm.params)),
                df, "mse-log", fingerprint="f")  # fmt: skip
    restricted = Stub("exp(a) * x**alpha * exp(c*z)", dict(zip(["a", "alpha", "c"], [*restr_sm.params, 0.0])),
                      df, "mse-log", fixed={"c": 0.0}, fingerprint="f")  # fmt: skip
    return restricted, full, restr_sm, full_sm


def test_likelihood_ratio_test_matches_statsmodels(power_data):
    restricted, full, restr_sm, full_sm = _nested_pair(power_data)
    stat, df, p = likelihood_ratio_test(restricted, full)
    ref_stat, ref_p, ref_df = full_sm.compare_lr_test(restr_sm)
    assert df == 1 == ref_df
    assert stat == pytest.approx(ref_stat, rel=1e-8)
    assert p == pytest.approx(ref_p, rel=1e-8)
    # chi-square(1) tail in closed form: P(X > s) = erfc(sqrt(s/2))
    assert p == pytest.approx(math.erfc(math.sqrt(stat / 2)), rel=1e-10)
    # n ln(RSS_r / RSS_f)
    assert stat == pytest.approx(20 * math.log(restr_sm.ssr / full_sm.ssr), rel=1e-8)


def test_likelihood_ratio_test_nesting_checks(power_data):
    restricted, full, *_ = _nested_pair(power_data)
    with pytest.raises(MoescaleError, match="not a strict subset"):
        likelihood_ratio_test(full, restricted)
    other = Stub(full.law.name, full.params, power_data.iloc[:19], "mse-log")
    with pytest.raises(MoescaleError, match="restricted fit has 20 points, full fit 19"):
        likelihood_ratio_test(restricted, other)
    other = Stub(full.law.name, full.params, power_data, "mse-log", fingerprint="g")
    with pytest.raises(MoescaleError, match="different data"):
        likelihood_ratio_test(restricted, other)
    other = Stub(full.law.name, full.params, power_data, "huber", fingerprint="f")
    with pytest.raises(MoescaleError, match="used loss 'mse-log'"):
        likelihood_ratio_test(restricted, other)


def test_compare_table(power_data):
    restricted, full, restr_sm, full_sm = _nested_pair(power_data)
    table = compare({"restricted": restricted, "full": full})
    assert list(table.columns) == ["law", "n_params", "n_points", "objective", "logL", "AIC", "BIC", "dAIC", "dBIC"]
    assert table.loc["full", "AIC"] == pytest.approx(full_sm.aic + 2, rel=1e-10)
    assert table.loc["restricted", "BIC"] == pytest.approx(restr_sm.bic + math.log(20), rel=1e-10)
    assert table["dAIC"].min() == 0.0
    assert table["AIC"].is_monotonic_increasing
    assert table.loc["full", "dAIC"] == pytest.approx(max(0.0, (full_sm.aic - restr_sm.aic)), abs=1e-9)
    with pytest.raises(MoescaleError, match="different numbers of points"):
        compare({"a": full, "b": Stub(full.law.name, full.params, power_data.iloc[:10], "mse-log")})


# --------------------------------------------------------------------------- held-out error
# power_pure fitted with mse-log is OLS of ln y on ln x: refits have closed forms.


def _ols_predict(x_train, y_train, x_test):
    X = np.column_stack([np.ones(len(x_train)), np.log(x_train)])
    beta = np.linalg.lstsq(X, np.log(y_train), rcond=None)[0]
    return np.exp(beta[0] + beta[1] * np.log(x_test))


@pytest.fixture
def runs_df():
    rng = np.random.default_rng(5)
    rows = []
    for i, x in enumerate(np.logspace(0, 3, 8)):
        for rep in range(3):  # three rows per run
            rows.append({"run_id": f"r{i}", "C": 6 * x * (1 + 0.1 * rep), "y": 3.0 * x**-0.2 * np.exp(rng.normal(0, 0.03))})
    return pd.DataFrame(rows)


def test_leave_one_out_single_points_hat_matrix(runs_df):
    from scaling.compare import leave_one_out

    df = runs_df.assign(run_id=np.arange(len(runs_df)))  # one row per group
    h = leave_one_out(df, "power_pure", x={"x": "C/6"}, y="y", loss="mse-log", progress=False)
    # OLS leave-one-out residuals e_i / (1 - h_ii) (hat matrix H = X (X'X)^-1 X')
    X = np.column_stack([np.ones(len(df)), np.log(df.C / 6)])
    yl = np.log(df.y.to_numpy())
    H = X @ np.linalg.inv(X.T @ X) @ X.T
    e = yl - H @ yl
    loo_log_err = -e / (1 - np.diag(H))  # ln y_hat_(i) - ln y_i
    np.testing.assert_allclose(h.points["log_err"], loo_log_err, atol=1e-7)  # optimizer tolerance
    assert h.metrics["n_folds"] == len(df) == h.metrics["n_points"]
    assert h.metrics["rmse_log"] == pytest.approx(np.sqrt(np.mean(loo_log_err**2)), rel=1e-6)
    assert h.metrics["mean_abs_rel"] == pytest.approx(np.mean(np.abs(np.expm1(loo_log_err))), rel=1e-6)
    assert "folds" in str(h)


def test_leave_one_out_groups_and_where(runs_df):
    from scaling.compare import leave_one_out

    where = "C > 7"  # drops the first run's first row
    h = leave_one_out(runs_df, "power_pure", x={"x": "C/6"}, y="y", where=where, loss="mse-log",
                      progress=False)  # fmt: skip
    cold = leave_one_out(runs_df, "power_pure", x={"x": "C/6"}, y="y", where=where, loss="mse-log",
                         progress=True, warm_start=False)  # fmt: skip
    np.testing.assert_allclose(h.points["y_pred"], cold.points["y_pred"], rtol=1e-6)
    kept = runs_df[runs_df.C > 7]
    assert len(h.points) == len(kept) and h.metrics["n_folds"] == 8
    for run, test in kept.groupby("run_id"):
        train = kept[kept.run_id != run]
        ref = _ols_predict(train.C / 6, train.y, test.C / 6)
        got = h.points[h.points.fold == run]["y_pred"].to_numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_leave_largest_out(runs_df):
    from scaling.compare import leave_largest_out

    h = leave_largest_out(runs_df, "power_pure", x={"x": "C/6"}, y="y", by="x", n_groups=2, loss="mse-log")
    xs = runs_df.C / 6
    cut = np.sort(xs.unique())[-2]
    train, test = runs_df[xs < cut], runs_df[xs >= cut]
    np.testing.assert_allclose(h.points["y_pred"], _ols_predict(train.C / 6, train.y, test.C / 6), rtol=1e-6)
    np.testing.assert_allclose(h.points["rel_err"], h.points.y_pred / test.y.to_numpy() - 1, rtol=1e-12)
    assert h.metrics["n_folds"] == 1 and h.metrics["n_points"] == 2


def test_holdout_errors(runs_df):
    from scaling.compare import leave_largest_out, leave_one_out

    with pytest.raises(MoescaleError, match="no column 'seed'"):
        leave_one_out(runs_df, "power_pure", x={"x": "C"}, y="y", group="seed", progress=False)
    with pytest.raises(MoescaleError, match="by='N' is not a mapped variable"):
        leave_largest_out(runs_df, "power_pure", x={"x": "C"}, y="y")
    with pytest.raises(MoescaleError, match="cannot hold out 30"):
        leave_largest_out(runs_df, "power_pure", x={"x": "C"}, y="y", by="x", n_groups=30)


def test_compare_rejects_mixed_residual_spaces(power_data):
    _, full, *_ = _nested_pair(power_data)
    huber = Stub(full.law.name, full.params, power_data, "huber")
    linear = Stub(full.law.name, full.params, power_data, "mse")
    assert len(compare({"a": full, "b": huber})) == 2  # both in ln space
    with pytest.raises(MoescaleError, match="different spaces"):
        compare({"a": full, "b": linear})
