"""Bootstrap confidence intervals from resampled estimates: percentile and BCa.

Given an estimate theta_hat, its bootstrap replicates theta*_1..theta*_B (refits on resamples
of runs, ``scaling.bootstrap``) and, for BCa, its jackknife values theta_(1)..theta_(n) (refits
leaving out one run at a time), at level 1 - 2*alpha (0.95: alpha = 0.025):

- percentile (Efron & Tibshirani 1993, ch. 13): [q_alpha, q_(1-alpha)] of the theta*_b;
- BCa, bias-corrected and accelerated (Efron 1987, "Better bootstrap confidence intervals",
  JASA 82:171; Efron & Tibshirani 1993, ch. 14.3, eq. 14.9-14.15): [q_a1, q_a2] with

      z0 = Phi^-1( (#{theta*_b < theta_hat} + #{theta*_b <= theta_hat}) / (2B) )   (bias correction),
      a  = sum_i d_i^3 / (6 (sum_i d_i^2)^(3/2)),  d_i = mean_j theta_(j) - theta_(i)   (acceleration),
      a1 = Phi( z0 + (z0 + z_alpha) / (1 - a (z0 + z_alpha)) ),
      a2 = Phi( z0 + (z0 + z_(1-alpha)) / (1 - a (z0 + z_(1-alpha))) ),

  quantiles by linear interpolation, as ``scipy.stats.bootstrap(method="BCa")`` computes them
  (``tests/test_intervals.py`` checks the two agree). BCa corrects the percentile interval's
  median bias and skew; it needs the jackknife, n more refits.

Arrays may carry several statistics as columns: replicates (B,) or (B, k), jackknife (n,) or
(n, k). An interval that cannot be formed (no replicate on one side of theta_hat) is NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

__all__ = ["percentile_interval", "bca_interval", "bca_levels"]


def percentile_interval(replicates, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval (lo, hi) of bootstrap replicates (B,) or (B, k), NaN rows dropped per column."""
    r = np.asarray(replicates, dtype=float)
    q = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(r, [q, 100 - q], axis=0)
    return lo, hi


def bca_levels(theta_hat, replicates, jackknife, level: float = 0.95):
    """The BCa quantile levels (a1, a2), bias correction z0 and acceleration a (module docstring)."""
    r = np.asarray(replicates, dtype=float)
    t = np.asarray(theta_hat, dtype=float)
    jk = np.asarray(jackknife, dtype=float)
    B = r.shape[0]
    share = (np.sum(r < t, axis=0) + np.sum(r <= t, axis=0)) / (2.0 * B)
    with np.errstate(divide="ignore", invalid="ignore"):
        z0 = ndtri(share)
        d = jk.mean(axis=0) - jk
        a = np.sum(d**3, axis=0) / (6.0 * np.sum(d**2, axis=0) ** 1.5)
        z = ndtri((1 - level) / 2)
        a1 = ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
        a2 = ndtr(z0 + (z0 - z) / (1 - a * (z0 - z)))
    return a1, a2, z0, a


def bca_interval(theta_hat, replicates, jackknife, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The BCa interval (lo, hi) of ``theta_hat`` from its bootstrap replicates and jackknife values.

    ``replicates``: (B,) or (B, k) (finite; drop failed refits first); ``jackknife``: (n,) or
    (n, k), the estimate with each of the n resampled units left out in turn. NaN where z0 or
    the acceleration is not finite (every replicate on one side of theta_hat, or a constant
    jackknife).
    """
    r = np.asarray(replicates, dtype=float)
    a1, a2, _, _ = bca_levels(theta_hat, r, jackknife, level)
    a1, a2 = np.atleast_1d(a1), np.atleast_1d(a2)
    cols = r.reshape(r.shape[0], -1)
    lo, hi = np.full(cols.shape[1], np.nan), np.full(cols.shape[1], np.nan)
    for j in range(cols.shape[1]):
        if np.isfinite(a1[j]) and np.isfinite(a2[j]):
            lo[j], hi[j] = np.percentile(cols[:, j], [100 * a1[j], 100 * a2[j]])
    if r.ndim == 1:
        return lo[0], hi[0]
    return lo, hi
