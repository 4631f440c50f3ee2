"""Compute-optimal allocation: how to split a compute budget C between model
size N and training tokens D (and, for MoE, the sparsity).

Three estimates of N_opt(C), after Hoffmann et al. 2022 ("Training
Compute-Optimal Large Language Models", arXiv 2203.15556):

- Approach 3, ``chinchilla_optimum``: the closed-form minimum of a fitted
  ``chinchilla`` law L = E + A N^-alpha + B D^-beta under C = 6 N D.
- Approach 2, ``isoflop_minima``: per compute budget, the minimum of the final
  loss over log N (an Akima spline as Porian et al. 2024 do, a parabola, or a cubic
  spline), then ``scaling_exponents``.
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


#: Grid points per interval between samples of the Akima minimum (Porian et al. 2024).
AKIMA_POINTS_PER_INTERVAL = 25


def akima_grid(x: np.ndarray, per_interval: int = AKIMA_POINTS_PER_INTERVAL) -> np.ndarray:
    """The fine grid of Porian et al. 2024: ``per_interval`` points evenly spaced in ln N (geometric in N)
    in every interval between consecutive sampled sizes, both ends included, over the whole sampled range."""
    parts = [np.linspace(a, b, per_interval + 1)[:-1] for a, b in zip(x[:-1], x[1:])]
    return np.concatenate(parts + [x[-1:]])


def _minimum_akima(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.interpolate import Akima1DInterpolator

    # ln loss against ln N (Porian et al. 2024); the minimum on the fine grid over the whole range
    spline = Akima1DInterpolator(x, np.log(y))
    grid = akima_grid(x)
    values = spline(grid)
    j = int(np.nanargmin(values))
    return float(grid[j]), float(np.exp(values[j]))


_METHODS = {"smooth": _minimum_akima, "parabola": _minimum_parabola, "spline": _minimum_spline}


def isoflop_minima(
    df: pd.DataFrame,
    budget: str = "C",
    size: str = "N",
    loss: str = "loss",
    method: str = "smooth",
    *,
    flops_per_param_token: float = 6.0,
    bootstrap: int = 0,
    noise: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Per compute budget, the model size minimizing the final loss (Approach 2).

    For each value of ``budget`` (an isoFLOP profile: runs of equal compute C
    and different N), the minimum over x = ln N of the loss:

    - ``method="smooth"`` (default; Porian et al. 2024, "Resolving Discrepancies in
      Compute-Optimal Scaling of Language Models", arXiv 2406.19146): an Akima spline
      (scipy ``Akima1DInterpolator``) of ln loss against ln N, minimized on a fine grid
      of 25 points per interval between samples (geometric in N) over the whole sampled
      range, not only between the neighbours of the lowest sample. It follows the
      profile's shape without a parabola's bias and without a cubic spline's overshoot.
    - ``method="parabola"``: least-squares quadratic L = c0 + c1 x + c2 x^2 over
      all points of the profile, x_opt = -c1 / (2 c2) (Hoffmann et al. 2022,
      Approach 2). It averages noise, but it is biased when the profile is not
      a parabola over its whole sampled range: a Chinchilla profile
      E + A N^-alpha + B (C/6N)^-beta is asymmetric in ln N unless alpha = beta.
    - ``method="spline"``: a cubic spline (not-a-knot) of the loss, minimized between
      the observed minimum's neighbours (this module's earlier "smooth").

    Profiles are grouped by the exact value of ``budget``: round a computed budget column
    first. Repeated sizes in a profile (seeds) are averaged first. A profile with fewer than
    3 distinct sizes is skipped with a warning naming its budget. ``at_edge`` marks a budget
    whose interpolated minimum lies at (or, for the parabola, beyond) the smallest or largest
    size sampled: the optimum may lie outside the sampled range (``scaling_exponents`` drops
    such budgets by default); ``observed_at_edge`` marks a lowest *sample* at an end.

    Seed-noise bootstrap (Porian et al. 2024), when ``bootstrap`` > 0: ``bootstrap`` times,
    Gaussian noise of standard deviation ``noise`` is added to ln loss of every size, the
    minimum is found again, and the median of the interior argmins (``N_opt_median``) and
    their 2.5/97.5% percentiles (``N_opt_lo``, ``N_opt_hi``) are reported with
    ``n_boot_interior``. ``noise`` defaults to the pooled standard deviation of ln loss
    between repeated runs of one size (seeds); without repeats it must be given.

    Returns a DataFrame with columns <budget>, N_opt, D_opt = C / (6 N_opt), loss_opt,
    n_points, at_edge, observed_at_edge (+ the bootstrap columns), one row per budget with
    3 or more sizes, sorted by budget. D_opt assumes the budget column holds FLOPs and
    ``size`` the (active) parameters, C = 6 N D.
    """
    import warnings

    if method not in _METHODS:
        raise MoescaleError(f"isoflop_minima: method must be 'smooth', 'parabola' or 'spline', not {method!r}")
    for col in (budget, size, loss):
        if col not in df.columns:
            raise MoescaleError(f"isoflop_minima: no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    if int(bootstrap) < 0:
        raise MoescaleError(f"isoflop_minima: bootstrap = {bootstrap} must be >= 0")
    data = df[[budget, size, loss]].apply(pd.to_numeric, errors="coerce")
    bad = data.index[~np.isfinite(data.to_numpy(dtype=float)).all(axis=1)]
    if len(bad):
        raise MoescaleError(f"isoflop_minima: row {bad[0]} has a missing or non-finite {budget}/{size}/{loss}")
    if (data[size] <= 0).any():
        row = data.index[data[size] <= 0][0]
        raise MoescaleError(f"isoflop_minima: column {size!r} row {row} is not > 0; its log is taken")
    if method == "smooth" and (data[loss] <= 0).any():
        row = data.index[data[loss] <= 0][0]
        raise MoescaleError(f"isoflop_minima: column {loss!r} row {row} is not > 0; the Akima spline is of ln loss")
    find = _METHODS[method]
    if bootstrap and noise is None:
        logs = np.log(data[loss].clip(lower=1e-300))
        groups = logs.groupby([data[budget], data[size]])
        dev = (logs - groups.transform("mean")) ** 2
        dof = int((groups.transform("size") > 1).sum() - groups.ngroups + (groups.size() == 1).sum())
        if dof <= 0:
            raise MoescaleError("isoflop_minima: the seed-noise bootstrap needs noise= (no repeated sizes to estimate it)")
        noise = float(np.sqrt(dev.sum() / dof))
    rng = np.random.default_rng(seed)
    rows = []
    skipped = []
    for C, group in data.groupby(budget, sort=True):
        prof = group.groupby(size, sort=True)[loss].mean()
        if len(prof) < 3:
            skipped.append((C, len(prof)))
            continue
        x = np.log(prof.index.to_numpy(dtype=float))
        y = prof.to_numpy(dtype=float)
        i = int(np.argmin(y))
        xm, lm = find(x, y)
        N = float(np.exp(xm)) if np.isfinite(xm) else np.nan
        tol = 1e-9 * max(1.0, abs(x[-1] - x[0]))
        row = {
            budget: float(C),
            "N_opt": N,
            "D_opt": float(C) / (flops_per_param_token * N),
            "loss_opt": lm,
            "n_points": len(prof),
            "at_edge": bool(not np.isfinite(xm) or xm <= x[0] + tol or xm >= x[-1] - tol),
            "observed_at_edge": i in (0, len(y) - 1),
        }
        if bootstrap:
            found = []
            for _ in range(int(bootstrap)):
                yb = np.exp(np.log(y) + rng.normal(0.0, noise, len(y)))
                xb, _ = find(x, yb)
                if np.isfinite(xb) and x[0] + tol < xb < x[-1] - tol:
                    found.append(xb)
            found = np.asarray(found)
            row["N_opt_median"] = float(np.exp(np.median(found))) if found.size else np.nan
            row["N_opt_lo"], row["N_opt_hi"] = (
                (float(np.exp(np.percentile(found, 2.5))), float(np.exp(np.percentile(found, 97.5))))
                if found.size else (np.nan, np.nan))
            row["n_boot_interior"] = int(found.size)
        rows.append(row)
    if skipped:
        warnings.warn("isoflop_minima: skipped " + ", ".join(f"{budget} = {C:g} ({n} distinct sizes)" for C, n in skipped)
                      + "; a budget needs at least 3", stacklevel=2)
    if not rows:
        raise MoescaleError(f"isoflop_minima: no budget has 3 or more distinct sizes "
                            f"({', '.join(f'{budget} = {C:g}: {n}' for C, n in skipped)})")
    out = pd.DataFrame(rows)
    out.attrs["skipped"] = [float(C) for C, _ in skipped]
    return out


def scaling_exponents(
    minima: pd.DataFrame,
    budget: str = "C",
    size: str = "N_opt",
    tokens: str | None = "D_opt",
    *,
    alpha: float = 0.05,
    drop_edge: bool = True,
) -> pd.DataFrame:
    """Power laws of the optima against compute: N_opt = k C^a, D_opt = k' C^b.

    Fitted as log-log OLS with statsmodels (``scaling.linear.loglog_ols``):
    ln N_opt = ln k + a ln C, so the (1 - alpha) CIs are t-intervals on a and
    on ln k (Hoffmann et al. 2022, Approaches 1 and 2 report a and b). Rows
    with a missing optimum (NaN) are dropped, and with ``drop_edge`` (default) so are
    budgets whose minimum lies at the edge of their sampled range (an ``at_edge``
    column, as ``isoflop_minima`` gives; Porian et al. 2024), with a warning saying how
    many. When D_opt = C / (6 N_opt) exactly, b = 1 - a identically.

    Returns a DataFrame indexed by quantity (``size``, ``tokens``) with columns
    exponent, exponent_lo, exponent_hi, coefficient, coefficient_lo,
    coefficient_hi, n_points; ``attrs["dropped_edge"]`` holds the number dropped.
    """
    import warnings

    from scaling.linear import loglog_ols

    dropped = 0
    if drop_edge and "at_edge" in minima.columns:
        edge = minima["at_edge"].astype(bool)
        dropped = int(edge.sum())
        if dropped:
            warnings.warn(f"scaling_exponents: dropped {dropped} edge budget(s) of {len(minima)} "
                          f"({', '.join(f'{v:g}' for v in minima.loc[edge, budget]) if budget in minima else ''}); "
                          "pass drop_edge=False to keep them", stacklevel=2)
        minima = minima[~edge]
    rows = {}
    for col in (size, tokens):
        if col is None:
            continue
        if col not in minima.columns or budget not in minima.columns:
            raise MoescaleError(f"scaling_exponents: no column {col if col not in minima.columns else budget!r}")
        sub = minima[[budget, col]].replace([np.inf, -np.inf], np.nan).dropna()
        if len(sub) < 2:
            raise MoescaleError(f"scaling_exponents: {len(sub)} finite optima in {col!r}"
                                + (f" after dropping {dropped} edge budget(s)" if dropped else "") + "; need at least 2")
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
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.attrs["dropped_edge"] = dropped
    return out


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
