"""scaling.intervals: percentile and BCa intervals, checked against scipy.stats.bootstrap."""

import numpy as np
import pytest
from scipy import stats

from scaling.intervals import bca_interval, bca_levels, percentile_interval


def _jackknife(x, statistic):
    return np.array([statistic(np.delete(x, i)) for i in range(len(x))])


@pytest.mark.parametrize("statistic", [np.mean, np.std, lambda v: np.log(np.mean(v))], ids=["mean", "std", "log-mean"])
def test_bca_equals_scipy_bootstrap(statistic):
    # a skewed sample, where BCa and percentile differ
    x = np.random.default_rng(0).lognormal(0.0, 0.8, size=40)
    res = stats.bootstrap((x,), statistic, method="BCa", n_resamples=2000, vectorized=False,
                          rng=np.random.default_rng(1))
    lo, hi = bca_interval(statistic(x), res.bootstrap_distribution, _jackknife(x, statistic))
    assert lo == pytest.approx(res.confidence_interval.low, rel=1e-9)
    assert hi == pytest.approx(res.confidence_interval.high, rel=1e-9)
    p_lo, p_hi = percentile_interval(res.bootstrap_distribution)
    assert (p_lo, p_hi) != pytest.approx((lo, hi), rel=1e-3)  # the correction does something here


def test_percentile_equals_scipy_percentile():
    x = np.random.default_rng(2).normal(size=30)
    res = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=999, rng=np.random.default_rng(3))
    lo, hi = percentile_interval(res.bootstrap_distribution)
    assert (lo, hi) == pytest.approx((res.confidence_interval.low, res.confidence_interval.high), rel=1e-12)


def test_columns_and_symmetric_case():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 2))
    boot = np.stack([x[rng.integers(0, 50, 50)].mean(axis=0) for _ in range(4000)])
    jack = np.stack([np.delete(x, i, axis=0).mean(axis=0) for i in range(50)])
    lo, hi = bca_interval(x.mean(axis=0), boot, jack)
    assert lo.shape == (2,) and np.all(lo < x.mean(axis=0)) and np.all(hi > x.mean(axis=0))
    a1, a2, z0, a = bca_levels(x.mean(axis=0), boot, jack)
    assert np.all(np.abs(a) < 0.05) and np.all(np.abs(z0) < 0.1)  # near-symmetric data: small corrections
    # normal data: BCa is close to the percentile interval
    p_lo, p_hi = percentile_interval(boot)
    assert np.allclose(lo, p_lo, atol=0.03) and np.allclose(hi, p_hi, atol=0.03)


def test_one_sided_replicates_give_nan():
    lo, hi = bca_interval(0.0, np.ones(100), np.linspace(-1, 1, 10))
    assert np.isnan(lo) and np.isnan(hi)
