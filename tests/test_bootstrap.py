"""scaling.bootstrap: resamples of runs and weighted refits, against independent references."""

import numpy as np
import pandas as pd
import pytest

from scaling.bootstrap import refit_weighted, resample_runs
from scaling.fitting import fit

TRUTH = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def test_resample_runs_are_multinomial_counts_of_runs():
    """Rows of one run share a count; each resample draws n_runs runs; the seed fixes the draw and
    it is numpy's multinomial over the sorted run ids, drawn here directly."""
    runs = np.array(["b", "a", "c", "a", "b", "d"])
    w = resample_runs(runs, 50, seed=3)
    assert w.shape == (50, 6)
    np.testing.assert_array_equal(w[:, 1], w[:, 3])
    np.testing.assert_array_equal(w[:, 0], w[:, 4])
    per_run = w[:, [1, 0, 2, 5]]  # a, b, c, d
    np.testing.assert_array_equal(per_run.sum(axis=1), 4.0)
    assert (per_run >= 0).all() and np.array_equal(per_run, np.round(per_run))
    ref = np.random.default_rng(3).multinomial(4, np.full(4, 0.25), size=50)
    np.testing.assert_array_equal(per_run, ref)
    np.testing.assert_array_equal(resample_runs(runs, 50, seed=3), w)
    assert not np.array_equal(resample_runs(runs, 50, seed=4), w)


@pytest.fixture(scope="module")
def chinchilla_fit():
    rng = np.random.default_rng(0)
    N, D = (g.ravel() for g in np.meshgrid(np.logspace(7, 9, 6), np.logspace(9, 11, 5)))
    loss = TRUTH["E"] + TRUTH["A"] * N ** -TRUTH["alpha"] + TRUTH["B"] * D ** -TRUTH["beta"]
    df = pd.DataFrame({"N": N, "D": D, "loss": loss * np.exp(rng.normal(0, 0.003, N.size))})
    return df, fit(df, "chinchilla", x={"N": "N", "D": "D"}, y="loss", stderr=False)


def test_refit_weighted_reproduces_the_fit_and_a_subset_fit(chinchilla_fit):
    """All-ones (and all-twos) weights give back the fitted optimum; zero weights on some points
    give the fit of the remaining points, made here from scratch by ``fit``."""
    df, res = chinchilla_fit
    n = len(df)
    keep = np.arange(n) % 3 != 0
    weights = np.vstack([np.ones(n), np.full(n, 2.0), keep.astype(float)])
    P, ok = refit_weighted(res, weights)
    assert P.shape == (3, len(res.law.params)) and ok.all()
    np.testing.assert_allclose(P[0], res.vector(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(P[1], res.vector(), rtol=1e-5, atol=1e-7)
    sub = fit(df[keep].reset_index(drop=True), "chinchilla", x={"N": "N", "D": "D"}, y="loss", stderr=False)
    np.testing.assert_allclose(P[2], sub.vector(), rtol=1e-4, atol=1e-6)
