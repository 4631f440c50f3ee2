"""Compute-optimal allocation: how to split a compute budget C between model
size N and training tokens D (and, for MoE, the sparsity).

Three estimates of N_opt(C), after Hoffmann et al. 2022 ("Training
Compute-Optimal Large Language Models", arXiv 2203.15556):

- Approach 3, ``chinchilla_optimum``: the closed-form minimum of a fitted
  ``chinchilla`` law L = E + A N^-alpha + B D^-beta under C = 6 N D.
- Approach 2, ``isoflop_minima``: per compute budget, the minimum of the final
  loss over log N (a parabola, or a cubic spline), then ``scaling_exponents``.
- Approach 1, ``envelope_minima``: the lower envelope of training curves on a
  grid of C, then ``scaling_exponents``.

``optimal_sparsity`` locates the sparsity that minimizes a fitted MoE law's
predicted loss per compute and memory budget.

Compute is counted as C = k N D with k = ``flops_per_param_token`` (6 by default:
forward plus backward, Kaplan et al. 2020). For MoE models N is the ACTIVE
parameter count in this relation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError

__all__ = [
    "chinchilla_optimum",
    "isoflop_minima",
    "scaling_exponents",
    "envelope_minima",
    "optimal_sparsity",
]


# --------------------------------------------------------------------------- Approach 3


def _chinchilla_params(result_or_params) -> tuple[float, float, float, float, float]:
    """(E, A, B, alpha, beta) from a FitResult or a dict in either parameterization."""
    params = getattr(result_or_params, "params", result_or_params)
    if not isinstance(params, Mapping):
        raise MoescaleError("chinchilla_optimum needs a FitResult or a dict of parameters")
    p = dict(params)
    try:
        E = p["E"] if "E" in p else np.exp(p["e"])
        A = p["A"] if "A" in p else np.exp(p["a"])
        B = p["B"] if "B" in p else np.exp(p["b"])
        alpha, beta = p["alpha"], p["beta"]
    except KeyError as exc:
        raise MoescaleError(
            f"chinchilla parameters lack {exc.args[0]!r}: need E|e, A|a, B|b, alpha, beta (got {sorted(p)})"
        ) from None
    for name, v in (("A", A), ("B", B), ("alpha", alpha), ("beta", beta)):
        if not (np.isfinite(v) and v > 0):
            raise MoescaleError(f"chinchilla parameter {name} = {v:g}: the optimum needs it finite and > 0")
    return float(E), float(A), float(B), float(alpha), float(beta)


def chinchilla_optimum(result_or_params, C, *, flops_per_param_token: float = 6.0) -> pd.DataFrame:
    """Compute-optimal model size and tokens of a ``chinchilla`` law.

    Minimizing L(N, D) = E + A N^-alpha + B D^-beta subject to C = 6 N D gives
    (Hoffmann et al. 2022, Approach 3, their eq. 4):

        N_opt(C) = G (C/6)^a,   D_opt(C) = G^-1 (C/6)^b,
        G = (alpha A / (beta B))^(1 / (alpha + beta)),
        a = beta / (alpha + beta),  b = alpha / (alpha + beta).

    (6 stands for ``flops_per_param_token``.) ``result_or_params`` is a
    FitResult of the ``chinchilla`` law, or a dict with E, A, B (or their logs
    e, a, b) and alpha, beta. ``C`` is a number or an array. Returns a
    DataFrame with columns C, N_opt, D_opt, tokens_per_param, loss (the law at
    the optimum), one row per C.
    """
    E, A, B, alpha, beta = _chinchilla_params(result_or_params)
    C = np.atleast_1d(np.asarray(C, dtype=float))
    if not np.all(np.isfinite(C) & (C > 0)):
        raise MoescaleError("compute budgets C must be finite and > 0")
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    a = beta / (alpha + beta)
    b = alpha / (alpha + beta)
    base = C / flops_per_param_token
    N = G * base**a
    D = base**b / G
    loss = E + A * N**-alpha + B * D**-beta
    return pd.DataFrame({"C": C, "N_opt": N, "D_opt": D, "tokens_per_param": D / N, "loss": loss})


# --------------------------------------------------------------------------- Approach 2


def _minimum_parabola(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    c2, c1, c0 = np.polyfit(x, y, 2)
    if not c2 > 0:
        return np.nan, np.nan  # concave: no minimum
    xm = -c1 / (2 * c2)
    return xm, c0 + c1 * xm + c2 * xm**2


def _minimum_spline(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.interpolate import CubicSpline
    from scipy.optimize import minimize_scalar

    spline = CubicSpline(x, y)  # not-a-knot: with 3 points it is the interpolating parabola
    i = int(np.argmin(y))
    lo, hi = x[max(i - 1, 0)], x[min(i + 1, len(x) - 1)]
    # the spline's minimum lies between the observed minimum's neighbours
    res = minimize_scalar(spline, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    return float(res.x), float(spline(res.x))


def isoflop_minima(
    df: pd.DataFrame,
    budget: str = "C",
    size: str = "N",
    loss: str = "loss",
    method: str = "parabola",
    *,
    flops_per_param_token: float = 6.0,
) -> pd.DataFrame:
    """Per compute budget, the model size minimizing the final loss (Approach 2).

    For each value of ``budget`` (an isoFLOP profile: runs of equal compute C
    and different N), the minimum over x = ln N of the loss:

    - ``method="parabola"``: least-squares quadratic L = c0 + c1 x + c2 x^2 over
      all points of the profile, x_opt = -c1 / (2 c2) (Hoffmann et al. 2022,
      Approach 2). It averages noise, but it is biased when the profile is not
      a parabola over its whole sampled range: a Chinchilla profile
      E + A N^-alpha + B (C/6N)^-beta is asymmetric in ln N unless alpha = beta.
    - ``method="smooth"``: a cubic spline (not-a-knot) through the points,
      minimized between the observed minimum's neighbours. It follows the
      profile's local shape, so it has no such shape bias, but it passes
      through noisy points instead of averaging them.

    Profiles are grouped by the exact value of ``budget``: round a computed
    budget column first. Repeated sizes in a profile (seeds) are averaged first. A profile needs 3
    distinct sizes. ``at_edge`` marks a profile whose observed minimum is its
    smallest or largest size (the optimum may lie outside the sampled range;
    the parabola's vertex may then fall outside it, the spline's cannot).

    Returns a DataFrame with columns <budget>, N_opt, D_opt = C / (6 N_opt),
    loss_opt, n_points, at_edge, one row per budget, sorted by budget.
    D_opt assumes the budget column holds FLOPs and ``size`` the (active)
    parameters, C = 6 N D.
    """
    if method not in ("parabola", "smooth"):
        raise MoescaleError(f"isoflop_minima: method must be 'parabola' or 'smooth', not {method!r}")
    for col in (budget, size, loss):
        if col not in df.columns:
            raise MoescaleError(f"isoflop_minima: no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    data = df[[budget, size, loss]].apply(pd.to_numeric, errors="coerce")
    bad = data.index[~np.isfinite(data.to_numpy(dtype=float)).all(axis=1)]
    if len(bad):
        raise MoescaleError(f"isoflop_minima: row {bad[0]} has a missing or non-finite {budget}/{size}/{loss}")
    if (data[size] <= 0).any():
        row = data.index[data[size] <= 0][0]
        raise MoescaleError(f"isoflop_minima: column {size!r} row {row} is not > 0; its log is taken")
    find = _minimum_parabola if method == "parabola" else _minimum_spline
    rows = []
    for C, group in data.groupby(budget, sort=True):
        prof = group.groupby(size, sort=True)[loss].mean()
        if len(prof) < 3:
            raise MoescaleError(
                f"isoflop_minima: budget {budget} = {C:g} has {len(prof)} distinct sizes; need at least 3"
            )
        x = np.log(prof.index.to_numpy(dtype=float))
        y = prof.to_numpy(dtype=float)
        i = int(np.argmin(y))
        xm, lm = find(x, y)
        N = float(np.exp(xm)) if np.isfinite(xm) else np.nan
        rows.append(
            {
                budget: float(C),
                "N_opt": N,
                "D_opt": float(C) / (flops_per_param_token * N),
                "loss_opt": lm,
                "n_points": len(prof),
                "at_edge": i in (0, len(y) - 1),
            }
        )
    return pd.DataFrame(rows)


def scaling_exponents(
    minima: pd.DataFrame,
    budget: str = "C",
    size: str = "N_opt",
    tokens: str | None = "D_opt",
    *,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Power laws of the optima against compute: N_opt = k C^a, D_opt = k' C^b.

    Fitted as log-log OLS with statsmodels (``scaling.linear.loglog_ols``):
    ln N_opt = ln k + a ln C, so the (1 - alpha) CIs are t-intervals on a and
    on ln k (Hoffmann et al. 2022, Approaches 1 and 2 report a and b). Rows
    with a missing optimum (NaN) are dropped. When D_opt = C / (6 N_opt)
    exactly, b = 1 - a identically.

    Returns a DataFrame indexed by quantity (``size``, ``tokens``) with columns
    exponent, exponent_lo, exponent_hi, coefficient, coefficient_lo,
    coefficient_hi, n_points.
    """
    from scaling.linear import loglog_ols

    rows = {}
    for col in (size, tokens):
        if col is None:
            continue
        if col not in minima.columns or budget not in minima.columns:
            raise MoescaleError(f"scaling_exponents: no column {col if col not in minima.columns else budget!r}")
        sub = minima[[budget, col]].replace([np.inf, -np.inf], np.nan).dropna()
        if len(sub) < 2:
            raise MoescaleError(f"scaling_exponents: {len(sub)} finite optima in {col!r}; need at least 2")
        fit = loglog_ols(sub.reset_index(drop=True), col, budget, alpha=alpha)
        lo_c, hi_c = fit.ci["const"]
        rows[col] = {
            "exponent": fit.params[budget],
            "exponent_lo": fit.ci[budget][0],
            "exponent_hi": fit.ci[budget][1],
            "coefficient": float(np.exp(fit.params["const"])),
            "coefficient_lo": float(np.exp(lo_c)),
            "coefficient_hi": float(np.exp(hi_c)),
            "n_points": fit.n_points,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------- Approach 1


def envelope_minima(
    curves: pd.DataFrame,
    run: str = "run_id",
    size: str = "N",
    tokens: str = "tokens",
    loss: str = "loss",
    *,
    flops: str | None = None,
    flops_per_param_token: float = 6.0,
    n_grid: int = 50,
    min_runs: int = 2,
) -> pd.DataFrame:
    """Compute-optimal size from the lower envelope of training curves (Approach 1).

    Each run's curve (tokens, loss) is placed on a compute axis, C = 6 N D
    (or the ``flops`` column, e.g. flops_per_token * tokens for MoE). On a log
    grid of ``n_grid`` values of C, each run's loss is interpolated linearly in
    ln C inside the run's own range (never extrapolated); the run with the
    lowest loss at C gives N_opt(C), and its tokens at C give D_opt(C)
    (Hoffmann et al. 2022, Approach 1). Grid points covered by fewer than
    ``min_runs`` runs are dropped, since there the envelope is one run.

    Returns a DataFrame with columns C, N_opt, D_opt, loss_opt, run, n_runs;
    fit power laws to it with ``scaling_exponents``.
    """
    needed = [run, size, tokens, loss] + ([flops] if flops else [])
    for col in needed:
        if col not in curves.columns:
            raise MoescaleError(f"envelope_minima: no column {col!r} (columns: {', '.join(map(str, curves.columns))})")
    df = curves[needed].copy()
    num = df[needed[1:]].apply(pd.to_numeric, errors="coerce")
    bad = num.index[~(np.isfinite(num.to_numpy(dtype=float)).all(axis=1) & (num[[size, tokens]] > 0).all(axis=1))]
    if len(bad):
        raise MoescaleError(f"envelope_minima: row {bad[0]} has a missing, non-finite or non-positive value")
    df[needed[1:]] = num
    df["_C"] = df[flops] if flops else flops_per_param_token * df[size] * df[tokens]
    if (df["_C"] <= 0).any():
        raise MoescaleError("envelope_minima: compute must be > 0")
    runs = []
    for run_id, g in df.groupby(run, sort=True):
        g = g.sort_values("_C")
        if g[size].nunique() != 1:
            raise MoescaleError(f"envelope_minima: run {run_id!r} has more than one {size!r}")
        if len(g) >= 2:
            runs.append((run_id, float(g[size].iloc[0]), np.log(g["_C"].to_numpy()), g[loss].to_numpy(), g[tokens].to_numpy()))
    if len(runs) < min_runs:
        raise MoescaleError(f"envelope_minima: {len(runs)} runs with at least 2 points; need {min_runs}")
    lo = min(r[2][0] for r in runs)
    hi = max(r[2][-1] for r in runs)
    grid = np.linspace(lo, hi, n_grid)
    L = np.full((len(runs), n_grid), np.inf)
    T = np.full((len(runs), n_grid), np.nan)
    for j, (_, _, lc, lv, tv) in enumerate(runs):
        inside = (grid >= lc[0]) & (grid <= lc[-1])
        L[j, inside] = np.interp(grid[inside], lc, lv)
        T[j, inside] = np.exp(np.interp(grid[inside], lc, np.log(tv)))
    covered = np.isfinite(L).sum(axis=0)
    best = np.argmin(L, axis=0)
    cols = np.arange(n_grid)
    keep = covered >= min_runs
    return pd.DataFrame(
        {
            "C": np.exp(grid[keep]),
            "N_opt": np.array([runs[j][1] for j in best])[keep],
            "D_opt": T[best, cols][keep],
            "loss_opt": L[best, cols][keep],
            "run": np.array([runs[j][0] for j in best], dtype=object)[keep],
            "n_runs": covered[keep],
        }
    ).reset_index(drop=True)


# --------------------------------------------------------------------------- MoE sparsity


def optimal_sparsity(
    result,
    compute,
    *,
    n_total_max=None,
    n_total: np.ndarray | None = None,
    sparsity: np.ndarray | None = None,
    top_k: int = 1,
    shared_fraction: float = 0.0,
    n_active: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    variables: Mapping[str, str] | None = None,
    flops_per_param_token: float = 6.0,
) -> pd.DataFrame:
    """The sparsity and total size minimizing a fitted MoE law's loss per budget.

    For every compute budget C (FLOPs) and memory budget n_total_max (a cap on
    total parameters; None for no cap), a grid search over total size N_total
    and sparsity s = n_experts / top_k:

        N_active = n_active(N_total, s), by default
                   N_total * (f + (1 - f) / s), f = shared_fraction
                   (f = 0: every parameter is an expert parameter, N_active = N_total / s);
        D        = C / (6 N_active)                 (compute spent on active parameters);
        n_experts = s * top_k;
        L        = law(N_total, s, n_experts, D)    (the fitted law's prediction);

    and the argmin of L over the grid points with N_total <= n_total_max.

    ``result`` is a FitResult of a law of (N_total, sparsity, n_experts,
    tokens); ``variables`` maps the roles "N", "s", "n_exp", "D" to the law's
    variable names (default: the identical names; roles the law lacks are
    ignored, so a law without n_experts works too). Default grids: N_total
    over 1e7..1e13 (200 log-spaced values), s in {1, 2, 4, ..., 256}.

    Returns one row per (C, n_total_max): C, n_total_max, N_total, sparsity,
    n_experts, N_active, D, loss, at_grid_edge (the optimum sits on the edge
    of the N_total or s grid, or on the memory cap).
    """
    compute = np.atleast_1d(np.asarray(compute, dtype=float))
    if not np.all(np.isfinite(compute) & (compute > 0)):
        raise MoescaleError("optimal_sparsity: compute budgets must be finite and > 0")
    caps = [None] if n_total_max is None else list(np.atleast_1d(np.asarray(n_total_max, dtype=float)))
    Ngrid = np.logspace(7, 13, 200) if n_total is None else np.asarray(n_total, dtype=float)
    sgrid = 2.0 ** np.arange(0, 9) if sparsity is None else np.asarray(sparsity, dtype=float)
    if np.any(Ngrid <= 0) or np.any(sgrid < 1):
        raise MoescaleError("optimal_sparsity: n_total must be > 0 and sparsity >= 1")
    if not 0.0 <= shared_fraction < 1.0:
        raise MoescaleError(f"optimal_sparsity: shared_fraction = {shared_fraction} must lie in [0, 1)")
    law = result.law
    names = {"N": "N", "s": "s", "n_exp": "n_exp", "D": "D"} | dict(variables or {})
    unknown = [v for v in law.variables if v not in names.values()]
    if unknown:
        raise MoescaleError(
            f"optimal_sparsity: law {law.name!r} variable(s) {unknown} have no role; "
            "map roles N, s, n_exp, D to them with variables={...}"
        )
    NN, SS = (a.ravel() for a in np.meshgrid(Ngrid, sgrid, indexing="ij"))
    NA = n_active(NN, SS) if n_active is not None else NN * (shared_fraction + (1 - shared_fraction) / SS)
    NA = np.asarray(NA, dtype=float)
    rows = []
    for C in compute:
        D = C / (flops_per_param_token * NA)
        values = {"N": NN, "s": SS, "n_exp": SS * top_k, "D": D}
        X = {names[role]: values[role] for role in values if names[role] in law.variables}
        L = np.asarray(law.predict(result.params, X), dtype=float)
        for cap in caps:
            ok = np.isfinite(L) & (True if cap is None else NN <= cap)
            if not ok.any():
                raise MoescaleError(f"optimal_sparsity: no grid point with N_total <= {cap:g}")
            i = int(np.flatnonzero(ok)[np.argmin(L[ok])])
            edge_N = NN[i] in (Ngrid.min(), Ngrid.max()) or (cap is not None and NN[i] == Ngrid[Ngrid <= cap].max())
            rows.append(
                {
                    "C": C,
                    "n_total_max": np.nan if cap is None else cap,
                    "N_total": NN[i],
                    "sparsity": SS[i],
                    "n_experts": SS[i] * top_k,
                    "N_active": NA[i],
                    "D": D[i],
                    "loss": L[i],
                    "at_grid_edge": bool(edge_N or SS[i] in (sgrid.min(), sgrid.max())),
                }
            )
    return pd.DataFrame(rows)
