"""Uncertainty of a fit: bootstrap over runs, and lmfit standard errors.

Bootstrap (Efron & Tibshirani 1993; as Besiroglu et al. 2024 do for Chinchilla):
resample the *runs* with replacement (never single rows of one run's curve),
refit, and take the 2.5% and 97.5% percentiles of each parameter. A resample is
a vector of multinomial counts c_r over runs; point i of run r gets weight c_r,
so all B resamples are refitted at once by the batched optimizer, started at the
full-data optimum.

Standard errors: lmfit's least-squares covariance at the optimum (Newville et al.,
LMFIT), with the same robust loss (scipy ``least_squares`` with loss="huber",
f_scale=δ minimizes exactly the Huber(δ) objective); derived quantities
(E = exp(e), ...) by the delta method.
"""

from __future__ import annotations

import math

import numpy as np

from scaling.objectives import LossProblem, Objective
from scaling.optimize import minimize_batch

#: Resamples refitted per batch (progress is reported between batches).
CHUNK = 1000


def resample_weights(runs: np.ndarray | None, n_points: int, n_boot: int, seed: int) -> np.ndarray:
    """Point weights (n_boot, n_points): multinomial counts of runs drawn with replacement.

    ``runs`` gives each point's run id; None means every point is its own run.
    Uses ``numpy.random.default_rng(seed)``, so the result is deterministic.
    """
    rng = np.random.default_rng(seed)
    if runs is None:
        index, n_runs = np.arange(n_points), n_points
    else:
        _, index = np.unique(np.asarray(runs).astype(str), return_inverse=True)
        n_runs = int(index.max()) + 1
    counts = rng.multinomial(n_runs, np.full(n_runs, 1.0 / n_runs), size=n_boot)
    return counts[:, index].astype(float)


def resample_runs(run_ids, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap weights (n_boot, n_rows): multinomial counts of runs drawn with replacement.

    ``run_ids`` gives each row's run; rows of one run get the same count. Uses
    ``numpy.random.default_rng(seed)``; the same runs and seed give the same weights in claims,
    accuracy and optimum, so their resamples agree (``scaling.final.FinalRuns.resample``).
    """
    return resample_weights(np.asarray(run_ids), len(run_ids), int(n_boot), int(seed))


def refit_weighted(result, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Refit a ``scaling.fitting.FitResult`` under point weights (B, n), all at once from its optimum.

    ``weights``' columns follow the rows of ``result.data``. Returns (full parameter vectors
    (B, n_params) in ``law.params`` order, converged (B,)); the engine is ``bootstrap_fits``.
    """
    sel = result.data
    X = {v: sel[v].to_numpy(dtype=float) for v in result.law.variables}
    problem = LossProblem(result.law, X, sel["y"].to_numpy(dtype=float), Objective(result.loss, result.delta),
                          fixed=result.fixed)
    theta = np.array([result.params[p] for p in problem.free])
    x, ok = bootstrap_fits(problem, theta, np.asarray(weights, dtype=float))
    return problem.full(x), ok


def bootstrap_fits(problem: LossProblem, theta: np.ndarray, weights: np.ndarray, progress=None):
    """Refit under each row of point weights (B, n), all at once from ``theta``.

    Returns (free parameters (B, k), converged (B,)).
    """
    B = weights.shape[0]
    xs, ok = [], []
    for start in range(0, B, CHUNK):
        prob = problem.with_weights(weights[start : start + CHUNK])
        z0 = np.repeat(problem.to_z(theta), prob.weights.shape[0], axis=0)
        res = minimize_batch(prob.value_grad_z, z0, problem.lower, problem.upper, ftol=1e-13, max_iter=1000)
        xs.append(problem.from_z(res.x))
        ok.append(res.converged)
        if progress:
            progress(min(start + CHUNK, B), B)
    return np.concatenate(xs), np.concatenate(ok)


def bootstrap_ci(problem: LossProblem, theta: np.ndarray, n_boot: int, *, seed: int = 0, runs=None,
                 level: float = 0.95, progress=None):
    """Percentile intervals of every reported parameter over ``n_boot`` resamples of runs.

    Returns (ci: name -> (lo, hi), info: n, n_runs, seed, n_failed, level).
    """
    weights = resample_weights(runs, problem.n, n_boot, seed)
    x, converged = bootstrap_fits(problem, theta, weights, progress)
    law = problem.law
    full = problem.full(x)
    reported = [law.report(dict(zip(law.params, row))) for row in full]
    names = list(reported[0])
    values = np.array([[r[n] for n in names] for r in reported])
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [q, 100 - q], axis=0)
    ci = {n: (float(a), float(b)) for n, a, b in zip(names, lo, hi) if n not in problem.fixed}
    n_runs = problem.n if runs is None else len(np.unique(np.asarray(runs).astype(str)))
    info = {"n": int(n_boot), "n_runs": int(n_runs), "seed": int(seed), "n_failed": int((~converged).sum()), "level": level}
    return ci, info


def standard_errors(problem: LossProblem, theta: np.ndarray) -> tuple[dict, dict]:
    """lmfit standard errors and correlations at the optimum; ({}, {}) where lmfit cannot estimate them."""
    import lmfit

    law = problem.law
    names = {p: f"p{i}" for i, p in enumerate(problem.free)}  # lmfit needs plain identifiers
    params = lmfit.Parameters()
    for p, v, lo, hi in zip(problem.free, theta, problem.lower, problem.upper):
        params.add(names[p], value=float(v), min=float(lo), max=float(hi))

    def residual(pars):
        vec = np.array([[pars[names[p]].value for p in problem.free]])
        r, _ = problem.residuals(vec)
        return r[0] * np.sqrt(problem.weights if problem.weights.ndim == 1 else 1.0)

    kws = {"loss": "huber", "f_scale": problem.objective.delta} if problem.objective.name == "huber" else {}
    try:
        with np.errstate(all="ignore"):
            out = lmfit.minimize(residual, params, method="least_squares", max_nfev=200, **kws)
    except Exception:  # lmfit raises assorted errors on singular problems; no SE then
        return {}, {}
    if out.covar is None:
        return {}, {}
    se = {p: out.params[names[p]].stderr for p in problem.free}
    if any(v is None or not math.isfinite(v) for v in se.values()):
        return {}, {}
    back = {v: k for k, v in names.items()}
    correl = {p: {back[q]: float(c) for q, c in (out.params[names[p]].correl or {}).items()} for p in problem.free}
    stderr = {p: float(v) for p, v in se.items()}
    if law.derived:
        cov = np.asarray(out.covar)
        order = [back[v] for v in out.var_names]
        base = dict(zip(law.params, problem.full(np.asarray(theta)[None, :])[0]))
        d0 = law.derived(base)
        grads = {k: np.zeros(len(order)) for k in d0}
        for j, p in enumerate(order):
            h = 1e-6 * max(1.0, abs(base[p]))
            up, dn = dict(base), dict(base)
            up[p] += h
            dn[p] -= h
            du, dd = law.derived(up), law.derived(dn)
            for k in d0:
                grads[k][j] = (du[k] - dd[k]) / (2 * h)
        for k, g in grads.items():
            stderr[k] = float(math.sqrt(max(g @ cov @ g, 0.0)))
    return stderr, correl
