"""Batched multi-start minimization in numpy, and a scipy polish of the best candidates.

:func:`minimize_batch` runs projected L-BFGS (Nocedal & Wright 2006, Alg. 7.4, the
two-loop recursion) on all starts at once: the iterate is an array of shape
(n_starts, n_params), each row with its own curvature history, backtracking
Armijo line search and convergence test; converged rows drop out of the active
set. Bounds are handled by projection: components at a bound whose gradient
points outward are frozen for the step, and the step is clipped to the box.
:func:`polish` then refines candidates with scipy's L-BFGS-B at tight tolerances,
so the reported optimum is the true one, not one stopped early.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

# Status codes of minimize_batch, per start.
GTOL, FTOL, STALLED, MAX_ITER, INVALID = 0, 1, 2, 3, 4
STATUS = {GTOL: "gradient below gtol", FTOL: "objective change below ftol", STALLED: "line search stalled",
          MAX_ITER: "iteration limit", INVALID: "objective not finite at start"}  # fmt: skip


@dataclass
class BatchResult:
    """Per-start results: x (b, k), fun (b,), status (b,), n_iter (b,)."""

    x: np.ndarray
    fun: np.ndarray
    status: np.ndarray
    n_iter: np.ndarray

    @property
    def converged(self) -> np.ndarray:
        return self.status <= STALLED

    def best(self) -> int:
        return int(np.argmin(np.where(np.isfinite(self.fun), self.fun, np.inf)))


def _projected_grad(x, g, lower, upper):
    pg = g.copy()
    pg[(x <= lower) & (g > 0)] = 0.0
    pg[(x >= upper) & (g < 0)] = 0.0
    return pg


def minimize_batch(fun, x0, lower=None, upper=None, *, m: int = 10, max_iter: int = 2000,
                   ftol: float = 1e-14, gtol: float = 1e-10, max_backtrack: int = 50) -> BatchResult:
    """Minimize ``fun`` from every row of ``x0`` at once with projected L-BFGS.

    ``fun(x, rows, need_grad)`` takes x (b, k) and the row indices (b,) of those
    starts in ``x0`` and returns (values (b,), gradients (b, k) or None); values may be inf.
    A start stops when its projected gradient's max-norm is ≤ gtol, when its relative
    decrease (f_old − f)/max(|f|, 1e-300) is ≤ ftol, when the line search can make
    no progress (stalled: converged to machine precision), or at ``max_iter``.
    """
    x = np.array(x0, dtype=float, copy=True)
    B, k = x.shape
    lower = np.full(k, -np.inf) if lower is None else np.asarray(lower, dtype=float)
    upper = np.full(k, np.inf) if upper is None else np.asarray(upper, dtype=float)
    x = np.clip(x, lower, upper)
    f, g = fun(x, np.arange(B), True)
    status = np.full(B, -1)
    status[~np.isfinite(f)] = INVALID
    n_iter = np.zeros(B, dtype=int)
    S = np.zeros((B, m, k))
    Y = np.zeros((B, m, k))
    rho = np.zeros((B, m))  # 0 marks an empty slot; slot 0 is the newest pair
    gamma = np.ones(B)
    has_pair = np.zeros(B, dtype=bool)

    for it in range(max_iter):
        act = np.flatnonzero(status < 0)
        if act.size == 0:
            break
        xa, fa, ga = x[act], f[act], g[act]
        pg = _projected_grad(xa, ga, lower, upper)
        done = np.abs(pg).max(axis=1) <= gtol
        status[act[done]] = GTOL
        keep = ~done
        act, xa, fa, ga, pg = act[keep], xa[keep], fa[keep], ga[keep], pg[keep]
        if act.size == 0:
            break
        frozen = pg == 0.0  # components held at a bound this step
        # Two-loop recursion over the stored pairs of each start.
        q = pg.copy()
        Sa, Ya, ra = S[act], Y[act], rho[act]
        alphas = np.empty((act.size, m))
        for i in range(m):
            alphas[:, i] = ra[:, i] * np.einsum("bk,bk->b", Sa[:, i], q)
            q -= alphas[:, i : i + 1] * Ya[:, i]
        first = ~has_pair[act]
        h0 = np.where(first, 1.0 / np.maximum(np.abs(pg).sum(axis=1), 1.0), gamma[act])
        d = q * h0[:, None]
        for i in reversed(range(m)):
            beta = ra[:, i] * np.einsum("bk,bk->b", Ya[:, i], d)
            d += (alphas[:, i] - beta)[:, None] * Sa[:, i]
        d = -d
        d[frozen] = 0.0
        slope = np.einsum("bk,bk->b", ga, d)
        bad = ~(slope < 0) | ~np.isfinite(slope)
        if bad.any():  # not a descent direction: restart from steepest descent
            d[bad] = -pg[bad] * h0[bad, None]
            rho[act[bad]] = 0.0
            has_pair[act[bad]] = False
        # Backtracking Armijo line search, only the rows that still fail are re-evaluated.
        t = np.ones(act.size)
        x_new = np.clip(xa + d, lower, upper)
        f_new, g_new = fun(x_new, act, True)
        ok = f_new <= fa + 1e-4 * np.einsum("bk,bk->b", ga, x_new - xa)
        for _ in range(max_backtrack):
            fail = np.flatnonzero(~ok)
            if fail.size == 0:
                break
            t[fail] *= 0.5
            xt = np.clip(xa[fail] + t[fail, None] * d[fail], lower, upper)
            ft, gt = fun(xt, act[fail], True)
            x_new[fail], f_new[fail], g_new[fail] = xt, ft, gt
            ok[fail] = ft <= fa[fail] + 1e-4 * np.einsum("bk,bk->b", ga[fail], xt - xa[fail])
        stalled = ~ok | np.all(x_new == xa, axis=1)
        status[act[stalled]] = STALLED
        acc = ~stalled
        ia = act[acc]
        s = x_new[acc] - xa[acc]
        yv = g_new[acc] - ga[acc]
        sy = np.einsum("bk,bk->b", s, yv)
        yy = np.einsum("bk,bk->b", yv, yv)
        good = (sy > 1e-12 * np.sqrt(np.einsum("bk,bk->b", s, s) * yy)) & (yy > 0)
        gi = ia[good]
        S[gi] = np.roll(S[gi], 1, axis=1)
        Y[gi] = np.roll(Y[gi], 1, axis=1)
        rho[gi] = np.roll(rho[gi], 1, axis=1)
        S[gi, 0], Y[gi, 0], rho[gi, 0] = s[good], yv[good], 1.0 / sy[good]
        gamma[gi] = sy[good] / yy[good]
        has_pair[gi] = True
        f_old = fa[acc]
        x[ia], f[ia], g[ia] = x_new[acc], f_new[acc], g_new[acc]
        n_iter[ia] += 1
        small = (f_old - f[ia]) <= ftol * np.maximum(np.abs(f[ia]), 1e-300)
        status[ia[small]] = FTOL
    status[status < 0] = MAX_ITER
    return BatchResult(x=x, fun=f, status=status, n_iter=n_iter)


def distinct_best(result: BatchResult, n: int, rtol: float = 1e-6) -> list[int]:
    """Indices of up to n lowest-objective starts whose parameter vectors differ (relative rtol)."""
    order = np.argsort(np.where(np.isfinite(result.fun), result.fun, np.inf))
    picked: list[int] = []
    for i in order:
        if not np.isfinite(result.fun[i]):
            break
        xi = result.x[i]
        if all(np.max(np.abs(xi - result.x[j]) / np.maximum(np.abs(result.x[j]), 1.0)) > rtol for j in picked):
            picked.append(int(i))
        if len(picked) == n:
            break
    return picked


@dataclass
class Polished:
    x: np.ndarray
    fun: float
    success: bool
    message: str
    n_iter: int


def polish(fun, x0, lower, upper, *, ftol: float = 1e-15, gtol: float = 1e-15, maxiter: int = 20000) -> Polished:
    """Refine one candidate with scipy L-BFGS-B (exact gradient) at tight tolerances.

    ``fun(x, rows, need_grad)`` as in :func:`minimize_batch`, called with a single row.
    The better of the start and scipy's answer is returned.
    """
    rows = np.array([0])
    x0 = np.asarray(x0, dtype=float)
    f0 = float(fun(x0[None, :], rows, False)[0][0])
    # scipy's ftol test is (f_k - f_k+1) / max(|f_k|, |f_k+1|, 1): absolute for objectives
    # far below 1 (1e-5 for Clark's), so minimize f / f0 to make it relative.
    scale = 1.0 / abs(f0) if np.isfinite(f0) and f0 != 0 else 1.0

    def fg(v):
        val, grad = fun(v[None, :], rows, True)
        value = float(val[0])
        if not np.isfinite(value):
            return 1e300, np.zeros_like(v)
        return value * scale, grad[0] * scale

    bounds = [(None if not np.isfinite(lo) else lo, None if not np.isfinite(hi) else hi) for lo, hi in zip(lower, upper)]
    res = minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": ftol, "gtol": gtol, "maxiter": maxiter, "maxcor": 20, "maxls": 50})
    msg = res.message if isinstance(res.message, str) else res.message.decode()
    fun_end = float(res.fun) / scale
    if fun_end <= f0:
        return Polished(np.asarray(res.x), fun_end, bool(res.success), msg, int(res.nit))
    return Polished(x0, f0, bool(res.success), msg, int(res.nit))
