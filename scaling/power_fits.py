"""The simulated sweeps of a power analysis (``scaling.power``) and their batched fits.

For simulated sweep j = 1..n_sim, at the planned points (N_total, s, n_exp, D) of the sweep's
runs i (``simulate_losses``):

    L_ij = L(N_i, s_i, n_exp_i, D_i) * exp(sigma * z_ij),   z_ij ~ N(0, 1),
    L    = E + A * N^-alpha * s^gamma * n_exp^lam + B * D^-beta    (the ``moe`` law),

with sigma the relative seed noise of the final loss. ``fit_simulated`` fits the ``moe`` law to
each (Huber(1e-3) on log residuals, as ``scaling.fitting.fit``) and refits it on resamples of
its runs (``scaling.bootstrap.resample_runs``; Efron & Tibshirani 1993, ch. 13).

Speed: all simulated sweeps of a chunk are fitted at once. Their points are stacked into one
``LossProblem`` in which every batch row weights only its own sweep's points (the batched
optimizer of ``scaling.optimize``, the engine ``scaling.bootstrap`` refits resamples with);
each sweep's fit starts at the given start (the truth: a simulated sweep's optimum lies near
it, so the 972 starts of ``fit`` are skipped) and each refit at its sweep's fit.
"""

from __future__ import annotations

import numpy as np

from scaling.bootstrap import resample_runs
from scaling.laws import MOE
from scaling.simulate import Truth, true_loss

__all__ = ["simulate_losses", "fit_simulated", "CHUNK_ROWS"]

#: Batch rows (simulated sweeps x resamples) refitted at once.
CHUNK_ROWS = 1000


def simulate_losses(truth: Truth, X: dict, sigma: float, n_sim: int, rng: np.random.Generator):
    """The true losses mu (n,) at the planned points ``X`` (the moe law's N, s, n_exp, D) and
    ``n_sim`` simulated sweeps Y (n_sim, n): Y_ij = mu_i * exp(sigma * z_ij), z_ij ~ N(0, 1)."""
    mu = true_loss(truth, X["N"], X["s"], X["n_exp"], X["D"])
    return mu, mu * np.exp(sigma * rng.standard_normal((n_sim, len(mu))))


def fit_simulated(X: dict, Y: np.ndarray, start: np.ndarray, fixed: dict, n_boot: int, seeds, progress=None):
    """Fit the ``moe`` law to each simulated sweep (row of Y, (S, n)) and refit it on ``n_boot``
    resamples of its runs (``resample_runs`` with that sweep's seed), stacked per chunk.

    ``X``: the law's variables at the n planned points; ``start``: the free parameters to start
    from. Returns (point fits (S, 7), refits (S, n_boot, 7), converged (S, n_boot)), full vectors
    in ``MOE.params`` order.
    """
    from scaling.objectives import LossProblem, Objective
    from scaling.optimize import minimize_batch

    S, n = Y.shape
    objective = Objective(MOE.default_loss, 1e-3)
    points, refits, ok = np.empty((S, MOE.n_params)), np.empty((S, n_boot, MOE.n_params)), np.empty((S, n_boot), bool)
    chunk = max(1, CHUNK_ROWS // n_boot)
    for c0 in range(0, S, chunk):
        idx = np.arange(c0, min(c0 + chunk, S))
        m = len(idx)
        prob = LossProblem(MOE, {v: np.tile(x, m) for v, x in X.items()}, Y[idx].ravel(), objective, fixed=fixed)
        block = np.kron(np.eye(m), np.ones((1, n)))  # row j weights only sweep j's points
        p1 = prob.with_weights(block)
        res = minimize_batch(p1.value_grad_z, np.repeat(prob.to_z(start), m, axis=0), prob.lower, prob.upper,
                             ftol=1e-13, max_iter=1000)
        theta = prob.from_z(res.x)
        W = np.zeros((m * n_boot, m * n))
        for j, s in enumerate(idx):
            W[j * n_boot:(j + 1) * n_boot, j * n:(j + 1) * n] = resample_runs(np.arange(n), n_boot, int(seeds[s]))
        pb = prob.with_weights(W)
        rb = minimize_batch(pb.value_grad_z, np.repeat(prob.to_z(theta), n_boot, axis=0), prob.lower, prob.upper,
                            ftol=1e-13, max_iter=1000)
        points[idx] = prob.full(theta)
        refits[idx] = prob.full(prob.from_z(rb.x)).reshape(m, n_boot, -1)
        ok[idx] = rb.converged.reshape(m, n_boot)
        if progress:
            progress(int(idx[-1]) + 1, S)
    return points, refits, ok
