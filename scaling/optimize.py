"""Batched multi-start minimization in numpy, and a scipy polish of the best candidates.

:func:`minimize_batch` runs projected L-BFGS (Nocedal & Wright 2006, Alg. 7.4, the
two-loop recursion) on all starts at once: the iterate is an array of shape
(n_starts, n_params), each row with its own curvature history, backtracking
Armijo line search and convergence test. Finished starts leave the running set,
whose arrays are kept compacted, so each iteration (and each function evaluation)
costs only the starts still running; the curvature pairs live in a ring of m slots
shared by all starts, so storing a pair is one slice assignment, not a per-start roll.
Bounds are handled by projection: components at a bound whose gradient
points outward are frozen for the step, and the step is clipped to the box.
When the rows are starts of one problem (a multi-start, not bootstrap resamples), ``prune``
stops a running start once it shares a small cell with a start of lower objective (it is
descending into a basin another start already covers: the clustering idea of multi-level
single linkage, Rinnooy Kan & Timmer 1987) or once its pace is too slow to reach the best
objective within the iteration limit, so the multi-start costs fewer evaluations.
:func:`polish` then refines candidates with scipy's L-BFGS-B at tight tolerances,
so the reported optimum is the true one, not one stopped early.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

# Status codes of minimize_batch, per start.
GTOL, FTOL, STALLED, MAX_ITER, INVALID, MERGED, BEHIND = 0, 1, 2, 3, 4, 5, 6
STATUS = {GTOL: "gradient below gtol", FTOL: "objective change below ftol", STALLED: "line search stalled",
          MAX_ITER: "iteration limit", INVALID: "objective not finite at start",
          MERGED: "pruned: a start with a lower objective shares its cell",
          BEHIND: "pruned: too slow to reach the best objective within max_iter"}  # fmt: skip
#: Pruning of a multi-start (``minimize_batch(prune=True)``): the merge cell's side relative to
#: each coordinate's scale in the starts, and the slow iterations in a row that stop a start.
MERGE_CELL = 1e-2
PATIENCE = 5
#: The longest first trial step of the line search, relative to each coordinate's magnitude.
MAX_STEP = 10.0


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

    @property
    def pruned(self) -> np.ndarray:
        return self.status >= MERGED

    def best(self) -> int:
        return int(np.argmin(np.where(np.isfinite(self.fun), self.fun, np.inf)))


def projected_grad(x, g, lower, upper):
    """The gradient with the components that push against an active bound set to 0."""
    return np.where(((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)), 0.0, g)


def _dot(a, b):
    """Row-wise dot products of (b, k) arrays."""
    return np.einsum("bk,bk->b", a, b)


class _Running:
    """The starts still running, compacted: row indices into x0, iterate, value, gradient and
    the L-BFGS memory, slot-major so that a slot is contiguous: S, Y (m, b, k) hold the pairs
    s, y; rho (m, b) = 1/sᵀy, 0 for an empty slot; gamma = sᵀy/yᵀy of the newest pair, 0 before
    the first."""

    FIELDS = ("rows", "x", "f", "g", "S", "Y", "rho", "gamma", "slow")

    def __init__(self, rows, x, f, g, m):
        self.rows, self.x, self.f, self.g = rows, x, f, g
        b, k = x.shape
        self.slow = np.zeros(b, dtype=int)
        self.S, self.Y = np.zeros((m, b, k)), np.zeros((m, b, k))
        self.rho, self.gamma = np.zeros((m, b)), np.zeros(b)

    def keep(self, mask):
        for name in self.FIELDS:
            a = getattr(self, name)
            setattr(self, name, a[:, mask] if name in ("S", "Y", "rho") else a[mask])


def _two_loop(run, pg, newest):
    """L-BFGS direction −H·pg of every running start (Nocedal & Wright 2006, Alg. 7.4).

    The memory is a ring shared by all starts: slot ``newest`` holds the latest pair, the
    slots before it (mod m) older ones; an empty or skipped slot has rho = 0 and drops out.
    Before its first pair a start takes H = I / max(sum |pg|, 1), a steepest-descent step of
    bounded length.
    """
    m = run.rho.shape[0]
    order = [(newest - i) % m for i in range(m)]
    q = pg.copy()
    alphas = []
    for i in order:
        a = run.rho[i] * _dot(run.S[i], q)
        q -= a[:, None] * run.Y[i]
        alphas.append(a)
    h0 = np.where(run.gamma > 0, run.gamma, 1.0 / np.maximum(np.abs(pg).sum(axis=1), 1.0))
    d = q * h0[:, None]
    for i, a in zip(reversed(order), reversed(alphas)):
        beta = run.rho[i] * _dot(run.Y[i], d)
        d += (a - beta)[:, None] * run.S[i]
    return -d, h0


def _backtrack(fun, run, d, slope, project, max_backtrack, c1=1e-4):
    """Armijo backtracking along the projected path x(t) = project(x + t·d), starting at t = 1.

    A failed step t is replaced by the minimizer of the quadratic through f(0), f'(0) = slope
    and f(t) (Nocedal & Wright 2006, eq. 3.57), kept within [0.1·t, 0.5·t]; only the rows that
    still fail are evaluated again. Returns (x_new, f_new, g_new, ok).
    """
    x, f, g = run.x, run.f, run.g
    # The first trial is t = 1 unless that moves a coordinate by more than MAX_STEP times its
    # magnitude (or MAX_STEP when |x| < 1): a pair from a nearly flat stretch (the linear part
    # of a Huber loss) gives a huge sᵀy/yᵀy and a step many orders too long.
    with np.errstate(divide="ignore"):
        t = np.minimum(1.0, MAX_STEP / np.max(np.abs(d) / np.maximum(np.abs(x), 1.0), axis=1))
    x_new = project(x + t[:, None] * d)
    f_new, g_new = fun(x_new, run.rows, True)
    ok = f_new <= f + c1 * _dot(g, x_new - x)
    for _ in range(max_backtrack):
        fail = np.flatnonzero(~ok)
        if fail.size == 0:
            break
        tf, sf = t[fail], slope[fail]
        with np.errstate(all="ignore"):
            tq = -sf * tf * tf / (2.0 * (f_new[fail] - f[fail] - sf * tf))
        t[fail] = np.where(np.isfinite(tq), np.clip(tq, 0.1 * tf, 0.5 * tf), 0.1 * tf)
        xt = project(x[fail] + t[fail, None] * d[fail])
        ft, gt = fun(xt, run.rows[fail], True)
        x_new[fail], f_new[fail], g_new[fail] = xt, ft, gt
        ok[fail] = ft <= f[fail] + c1 * _dot(g[fail], xt - x[fail])
    return x_new, f_new, g_new, ok


def dominated(x: np.ndarray, f: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Rows of x (b, k) that share a cell of the grid floor(x / side) with a row of lower f (b,).

    In each occupied cell the row of lowest f (the earliest row on a tie) is kept and the
    others are marked: two rows in one cell are within side·sqrt(k) of each other, so the
    higher one is descending into the basin the lower one already holds (the clustering rule
    of multi-level single linkage, Rinnooy Kan & Timmer 1987, Math. Programming 39, with the
    distance test replaced by a shared grid cell so that it costs one sort, not b² distances).
    """
    cell = np.floor(x / side)
    order = np.lexsort((np.arange(f.size), f, *cell.T[::-1]))
    c = cell[order]
    same = np.r_[False, (c[1:] == c[:-1]).all(axis=1)]
    out = np.zeros(f.size, dtype=bool)
    out[order[same]] = True
    return out


def _prune(code, run, decrease, found, side, left):
    """Status codes of the running starts, with MERGED or BEHIND set where a start is pruned.

    ``code`` is −1 for a start that goes on (see :func:`minimize_batch`), ``decrease`` its relative
    decrease this iteration, ``found`` the converged starts (x, f), ``left`` the iterations left.
    """
    go = code < 0
    f_best = min(run.f.min(), found[1].min(initial=np.inf))
    if f_best > 0:
        # At this pace, f·(1 − decrease)^left ≈ f·exp(−decrease·left) would stay above f_best.
        with np.errstate(divide="ignore", invalid="ignore"):
            behind = go & (decrease * left < np.log(run.f / f_best))
        run.slow = np.where(behind, run.slow + 1, 0)
    dup = dominated(np.concatenate([run.x, found[0]]), np.concatenate([run.f, found[1]]), side)[: code.size]
    return np.where(go & dup, MERGED, np.where(go & (run.slow >= PATIENCE), BEHIND, code))


def minimize_batch(fun, x0, lower=None, upper=None, *, m: int = 10, max_iter: int = 2000,
                   ftol: float = 1e-14, gtol: float = 1e-10, max_backtrack: int = 50,
                   prune: bool = False) -> BatchResult:
    """Minimize ``fun`` from every row of ``x0`` at once with projected L-BFGS.

    ``fun(x, rows, need_grad)`` takes x (b, k) and the row indices (b,) of those
    starts in ``x0`` and returns (values (b,), gradients (b, k) or None); values may be inf.
    A start stops when its projected gradient's max-norm is ≤ gtol, when its relative
    decrease (f_old − f)/max(|f|, 1e-300) is ≤ ftol, when the line search can make
    no progress (stalled: converged to machine precision), or at ``max_iter``.
    Finished starts leave the running set, so an iteration costs only the starts still running.

    ``prune`` (only for starts of one problem, never for bootstrap resamples) stops a running
    start early, with its current iterate, when it is redundant or hopeless:

    - MERGED: after an iteration it shares a cell of side MERGE_CELL·max(median_i |x0_ij|, 1) in
      coordinate j with a start of lower objective, running or converged (:func:`dominated`):
      it is descending into a basin that start already holds;
    - BEHIND: for PATIENCE iterations in a row, its relative decrease d per iteration was so
      small that d·(max_iter − it) < ln(f / f_best), f_best the lowest objective of any start:
      at that pace it would not reach f_best before the iteration limit.

    Without ``prune`` every start runs to its end, each as if alone.
    """
    x = np.array(x0, dtype=float, copy=True)
    B, k = x.shape
    lower = np.full(k, -np.inf) if lower is None else np.asarray(lower, dtype=float)
    upper = np.full(k, np.inf) if upper is None else np.asarray(upper, dtype=float)
    x = np.clip(x, lower, upper)
    bounded = np.isfinite(lower).any() or np.isfinite(upper).any()
    project = (lambda v: np.clip(v, lower, upper)) if bounded else (lambda v: v)
    f, g = fun(x, np.arange(B), True)
    status = np.where(np.isfinite(f), -1, INVALID)
    n_iter = np.zeros(B, dtype=int)
    start = np.flatnonzero(status < 0)
    run = _Running(start, x[start], f[start], g[start], m)
    side = MERGE_CELL * np.maximum(np.median(np.abs(x), axis=0), 1.0)
    found = [np.empty((0, k)), np.empty(0)]  # converged starts, the lowest of each cell (prune)

    def finish(mask, code):
        """Record the starts in ``mask`` with status ``code`` (scalar or per start) and drop them."""
        rows, code = run.rows[mask], np.broadcast_to(code, mask.shape)[mask]
        x[rows], f[rows], status[rows] = run.x[mask], run.f[mask], code
        conv = rows[code <= STALLED]
        if prune and conv.size:
            fx, ff = np.concatenate([found[0], x[conv]]), np.concatenate([found[1], f[conv]])
            keep = ~dominated(fx, ff, side)
            found[:] = [fx[keep], ff[keep]]
        run.keep(~mask)

    for it in range(max_iter):
        pg = projected_grad(run.x, run.g, lower, upper)
        done = np.abs(pg).max(axis=1) <= gtol
        if done.any():
            finish(done, GTOL)
            pg = pg[~done]
        if run.rows.size == 0:
            break
        d, h0 = _two_loop(run, pg, (it - 1) % m)
        d[pg == 0.0] = 0.0  # components held at a bound this step
        slope = _dot(run.g, d)
        bad = ~(slope < 0)
        if bad.any():  # not a descent direction (or not finite): restart from steepest descent
            d[bad] = -pg[bad] * h0[bad, None]
            run.rho[:, bad], run.gamma[bad] = 0.0, 0.0
            slope = _dot(run.g, d)
        x_new, f_new, g_new, ok = _backtrack(fun, run, d, slope, project, max_backtrack)
        s, y = x_new - run.x, g_new - run.g
        stalled = ~ok | ~s.any(axis=1)
        # Store the pair in slot it % m; a start whose pair has too little curvature stores an empty slot.
        sy, yy = _dot(s, y), _dot(y, y)
        good = ~stalled & (sy > 1e-12 * np.sqrt(_dot(s, s) * yy)) & (yy > 0)
        slot = it % m
        run.S[slot], run.Y[slot] = s, y
        run.rho[slot] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
        run.gamma = np.where(good, sy / np.where(good, yy, 1.0), run.gamma)
        decrease = (run.f - f_new) / np.maximum(np.abs(f_new), 1e-300)
        code = np.where(stalled, STALLED, np.where(decrease <= ftol, FTOL, -1))
        acc = ~stalled
        run.x[acc], run.f[acc], run.g[acc] = x_new[acc], f_new[acc], g_new[acc]
        n_iter[run.rows[acc]] += 1
        if prune:
            code = _prune(code, run, decrease, found, side, max_iter - it)
        ended = code >= 0
        if ended.any():
            finish(ended, code)
        if run.rows.size == 0:
            break
    if run.rows.size:
        finish(np.ones(run.rows.size, dtype=bool), MAX_ITER)
    return BatchResult(x=x, fun=f, status=status, n_iter=n_iter)


def distinct_best(result: BatchResult, n: int, rtol: float = 1e-6) -> list[int]:
    """Indices of up to n lowest-objective starts whose parameter vectors differ (relative rtol).

    Starts stopped as BEHIND are left out (their objective is far above the best); merged ones
    stay, as near the best they are candidates as good as the converged ones, and cheap to polish.
    """
    rank = np.where(np.isfinite(result.fun) & (result.status != BEHIND), result.fun, np.inf)
    picked: list[int] = []
    for i in np.argsort(rank):
        if not np.isfinite(rank[i]):
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
