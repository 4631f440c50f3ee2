"""Whether the data decide an optimum: the determination rule, lack of fit, and the trend's bootstrap.

``scaling.optimum.find_optimum`` states an optimum per budget only where the data decide it.
The rule, applied to every row of ``OptimumResult.best``:

- the optimal **sparsity** is ``determined`` when (1) at least ``DETERMINED_SHARE`` = 80% of the
  bootstrap resamples put the optimal sparsity within one step of it on the budget's grid of
  sparsities (``sparsity_share``), (2) it is not on an edge of the searched grid (smallest or
  largest N_total, lowest or highest sparsity; sparsity 1, dense, is a natural end and not an
  edge, and the largest N_total under a memory or active cap is the cap binding, not an edge),
  and (3) the loss law behind it is identified and not degenerate (``scaling.identify.fit_flags``
  on the law's resample intervals: no parameter on a bound, reaching a bound or spanning half its
  range, asymptote and exponents in their plausible ranges);
- the optimal **architecture** is ``arch_determined`` under the same rule with (1) replaced by:
  it is optimal in at least 80% of the resamples (``frequency``);
- without resamples (bootstrap = 0) nothing is determined.

``why`` says, in words, what fails: "wins 50% of resamples", "highest sparsity of the grid",
"model not identified: gamma (on bound)".

Lack of fit (``prediction_intervals``): each run's 95% prediction interval is the 2.5-97.5%
percentile of the refitted law's prediction at the run's point on each resample, times a
residual of the point fit (ln y - ln ŷ) drawn at random, so it covers the seed noise as well as
the fit's uncertainty (a bootstrap prediction interval; Davison & Hinkley 1997, §6.3.3). The
share of runs outside their interval should be near 5% when the law fits. Per budget, the
observed best run is compared with the predicted optimum: when they differ and a run of either
lies outside its prediction interval, or the run of the predicted optimum's architecture lies
outside the optimum's own 95% interval (``pred_low``..``pred_high``, the law's resample spread),
the budget is flagged (``lack_of_fit``): a note, not a refusal.

The trend of the optimum against compute (``trend``): y = k C^a fitted by log-log OLS to the
optima (Hoffmann et al. 2022 fit N_opt(C) this way); its 95% interval is the 2.5-97.5%
percentile of a refitted on each resample's optima (the same resamples as the law's refits).

A widened grid (``find_optimum(widen=...)``, ``moescale optimum --n-experts ...``) is refused
when a value it adds gives no valid candidate (``check_widened``), rather than ignored.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError

__all__ = ["DETERMINED_SHARE", "axis_value", "check_widened", "optimum_flags", "data_ranges", "sparsity_share", "model_flags", "decide", "prediction_intervals", "lack_of_fit",
           "trend", "TREND_QUANTITIES"]

#: Share of resamples an optimum must win (sparsity: within one grid step) to be stated.
DETERMINED_SHARE = 0.8
TREND_QUANTITIES = ("sparsity", "n_total", "tpp")


def sparsity_share(boot_sparsity: np.ndarray, sparsity: float, grid: np.ndarray) -> float:
    """Share of resamples whose optimal sparsity lies within one step of ``sparsity`` on the sorted
    distinct sparsities ``grid`` of the budget's candidates."""
    steps = np.sort(np.unique(np.asarray(grid, dtype=float)))
    if len(boot_sparsity) == 0:
        return float("nan")
    pos = np.searchsorted(steps, np.asarray(boot_sparsity, dtype=float))
    return float(np.mean(np.abs(pos - np.searchsorted(steps, sparsity)) <= 1))


def model_flags(fit, samples: np.ndarray | None, y_min: float) -> str:
    """``scaling.identify.fit_flags`` of the loss law, judged on the 2.5-97.5% percentiles of its
    resample refits ``samples`` (B, n_params in ``law.params`` order) when given."""
    from scaling.identify import fit_flags

    ci = None
    if samples is not None and len(samples):
        ok = np.isfinite(samples).all(axis=1)
        lo, hi = np.percentile(samples[ok], [2.5, 97.5], axis=0) if ok.any() else (samples[0] * np.nan,) * 2
        ci = {p: (float(lo[j]), float(hi[j])) for j, p in enumerate(fit.law.params)}
    return fit_flags(fit, ci, y_min)


def decide(row: dict, n_boot: int, flags: str) -> dict:
    """The determination rule (module docstring) for one row of ``best``: determined (sparsity),
    arch_determined, why (the sparsity's reasons) and arch_why."""
    edges = [e for e in str(row.get("edge") or "").split("; ") if e and "under the caps" not in e
             and not (e == "lowest sparsity of the grid" and row["sparsity"] == 1)]
    common = edges + ([f"model {flags}"] if flags else [])  # "model not identified: gamma (on bound)"
    if not n_boot:
        spread = arch_spread = ["no bootstrap resamples to judge it"]
    else:
        share, freq = row["sparsity_share"], row["frequency"]
        spread = [] if share >= DETERMINED_SHARE else [f"within one sparsity step in {share:.0%} of resamples"]
        arch_spread = [] if freq >= DETERMINED_SHARE else [f"wins {freq:.0%} of resamples"]
    why, arch_why = spread + common, arch_spread + common
    return {"determined": not why, "arch_determined": not arch_why, "why": "; ".join(why),
            "arch_why": "; ".join(arch_why)}


def _arch_names(df: pd.DataFrame) -> pd.Series:
    return ("L" + df["n_layers"].astype(int).astype(str) + "-d" + df["d_model"].astype(int).astype(str)
            + "-E" + df["n_experts"].astype(int).astype(str) + "-k" + df["top_k"].astype(int).astype(str)
            + "-f" + df["d_ff"].astype(int).astype(str))


def prediction_intervals(fit, samples: np.ndarray | None, final: pd.DataFrame, x: dict, seed: int = 0) -> pd.DataFrame:
    """Each run's observed val_loss against the law's 95% bootstrap prediction interval (module
    docstring): run_id, arch, budget, observed, predicted, pi_low, pi_high, outside. Without
    resamples the interval is NaN and ``outside`` False."""
    from scaling.budgets import budget_groups

    X = {v: final[c].to_numpy(dtype=float) for v, c in x.items()}
    y = final["val_loss"].to_numpy(dtype=float)
    point = np.atleast_2d(fit.law.predict(fit.vector()[None, :], X))[0]
    lo = hi = np.full(len(y), np.nan)
    if samples is not None and len(samples):
        mu = np.atleast_2d(fit.law.predict(samples, X))
        mu = mu[np.isfinite(mu).all(axis=1) & (mu > 0).all(axis=1)]
        resid = np.log(y) - np.log(point)
        resid = resid[np.isfinite(resid)]
        if len(mu) and len(resid):
            draw = np.random.default_rng(seed).choice(resid, size=mu.shape)
            lo, hi = np.percentile(mu * np.exp(draw), [2.5, 97.5], axis=0)
    out = pd.DataFrame({"run_id": final["run_id"].to_numpy(), "arch": _arch_names(final).to_numpy(),
                        "budget": budget_groups(final["active_flops"]), "observed": y, "predicted": point,
                        "pi_low": lo, "pi_high": hi})
    out["outside"] = (out["observed"] < out["pi_low"]) | (out["observed"] > out["pi_high"])
    return out


def lack_of_fit(row: dict, runs_pi: pd.DataFrame, rtol: float = 0.05) -> dict:
    """Per budget (row of ``best`` for the loss objective): the observed best run of the runs whose
    budget is within ``rtol`` of the row's compute, and whether the law misfits there (module
    docstring). Returns observed_best, observed_loss, lack_of_fit, lack_of_fit_reason."""
    nan = float("nan")
    out = {"observed_best": None, "observed_loss": nan, "lack_of_fit": False, "lack_of_fit_reason": ""}
    C = row["compute"]
    at = runs_pi[np.abs(runs_pi["budget"] / C - 1) <= rtol]
    if at.empty:
        return out
    b = at.loc[at["observed"].idxmin()]
    out.update(observed_best=b["arch"], observed_loss=float(b["observed"]))
    if b["arch"] == row["arch"]:
        return out
    reasons = []
    lo, hi = row.get("pred_low", nan), row.get("pred_high", nan)
    for r in [b, *(r for _, r in at[at["arch"] == row["arch"]].iterrows())]:
        if r["arch"] == row["arch"] and np.isfinite(lo) and not lo <= r["observed"] <= hi:
            reasons.append(f"{r['arch']} observed {r['observed']:.4g} outside the optimum's predicted "
                           f"{row['predicted']:.4g} [{lo:.4g}, {hi:.4g}]")
        elif r["outside"]:
            reasons.append(f"{r['arch']} observed {r['observed']:.4g} outside its prediction interval "
                           f"{r['predicted']:.4g} [{r['pi_low']:.4g}, {r['pi_high']:.4g}]")
    if reasons:
        out.update(lack_of_fit=True, lack_of_fit_reason=f"observed best {b['arch']} ({b['observed']:.4g}) is not "
                   f"the predicted optimum {row['arch']}; " + "; ".join(reasons))
    return out


def trend(best: pd.DataFrame, boot: dict) -> pd.DataFrame:
    """The optimum's trend against compute per objective and quantity (sparsity, n_total, tpp):
    exponent a and coefficient k of y = k C^a (log-log OLS over the budgets), exponent_lo/hi the
    2.5-97.5% percentile of a refitted on each resample's optima (``boot``: (objective, compute) ->
    quantity -> (B,) per-resample optima, NaN where a resample was dropped), n_points, n_boot.
    Rows only where an objective has >= 3 budgets."""
    rows = []
    for obj, g in best.groupby("objective", sort=False):
        g = g.dropna(subset=["compute"]).sort_values("compute")
        if g["compute"].nunique() < 3:
            continue
        lc = np.log(g["compute"].to_numpy(dtype=float))
        for q in TREND_QUANTITIES:
            ly = np.log(g[q].to_numpy(dtype=float))
            a, c = np.polyfit(lc, ly, 1)
            lo = hi = float("nan")
            n_boot = 0
            keys = [(obj, float(C)) for C in g["compute"]]
            if all(k in boot for k in keys):
                Y = np.log(np.column_stack([boot[k][q] for k in keys]))
                Y = Y[np.isfinite(Y).all(axis=1)]
                if len(Y):
                    slopes = np.polyfit(lc, Y.T, 1)[0]
                    lo, hi = (float(v) for v in np.percentile(slopes, [2.5, 97.5]))
                    n_boot = len(Y)
            rows.append({"objective": obj, "quantity": q, "exponent": float(a), "exponent_lo": lo, "exponent_hi": hi,
                         "coefficient": float(np.exp(c)), "n_points": len(g), "n_boot": n_boot})
    return pd.DataFrame(rows, columns=["objective", "quantity", "exponent", "exponent_lo", "exponent_hi",
                                       "coefficient", "n_points", "n_boot"])


def optimum_flags(row: pd.Series, cc: pd.DataFrame, ranges: dict[str, tuple[float, float]],
                  capped: bool) -> dict:
    """Why an optimum is uncertain: ``at_edge`` / ``edge`` when it has the smallest or largest
    N_total (the largest under the caps when ``capped``) or sparsity of the budget's candidates
    ``cc``; ``extrapolation`` / ``extrapolation_reason`` when its N_total, tokens, sparsity or
    budget lies outside the data's ``ranges`` (``data_ranges``)."""
    edges = []
    if row["n_total"] == cc["n_total"].min():
        edges.append("smallest N_total of the grid")
    if row["n_total"] == cc["n_total"].max():
        edges.append("largest N_total of the grid" + (" under the caps" if capped else ""))
    if cc["sparsity"].nunique() > 1 and row["sparsity"] == cc["sparsity"].min():
        edges.append("lowest sparsity of the grid")
    if cc["sparsity"].nunique() > 1 and row["sparsity"] == cc["sparsity"].max():
        edges.append("highest sparsity of the grid")
    extra = []
    for q, key in (("N_total", "n_total"), ("tokens", "tokens"), ("sparsity", "sparsity"), ("compute", "compute")):
        val, (lo, hi) = row[key], ranges[key]
        if val < lo * (1 - 1e-9) or val > hi * (1 + 1e-9):
            extra.append(f"{q} {val:.3g} outside the data's {lo:.3g}..{hi:.3g}")
    return {"at_edge": bool(edges), "edge": "; ".join(edges), "extrapolation": bool(extra),
            "extrapolation_reason": "; ".join(extra)}


def data_ranges(final: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """The sampled range (min, max) of N_total, tokens, sparsity and compute (active FLOPs) of the runs."""
    cols = {"n_total": "n_total", "tokens": "tokens", "sparsity": "sparsity", "compute": "active_flops"}
    return {k: (final[c].min(), final[c].max()) for k, c in cols.items()}


def axis_value(axis: str, x):
    """A widened grid value: a positive integer (a positive number for granularity), else MoescaleError."""
    ok = isinstance(x, (int, float, np.number)) and not isinstance(x, (bool, np.bool_)) and math.isfinite(x) and x > 0
    if axis == "granularity" and ok:
        return float(x)
    if not ok or float(x) != int(x):
        raise MoescaleError(f"widen {axis}: {x!r} is not a positive {'number' if axis == 'granularity' else 'integer'}")
    return int(x)


#: A widened value is refused when all its candidates exceed the runs' largest N_total this many times.
WIDEN_REACH = 1000.0


def check_widened(grid, widen: dict | None, cand: pd.DataFrame, n_total_max: float) -> None:
    """Refuse a widened axis value that no valid candidate has (e.g. top_k above every n_experts,
    a d_model that is not a multiple of the head dim), or whose every candidate has N_total above
    ``WIDEN_REACH`` times the runs' largest ``n_total_max`` (three orders of magnitude of
    extrapolation, which no fitted law supports), saying why; such a value would otherwise be
    accepted with no effect."""
    from scaling.planner import GridSpace

    g = grid[0] if isinstance(grid, tuple) else grid
    for axis, values in (widen or {}).items():
        col = "d_model" if axis == "granularity" else axis
        for v in values:
            v = axis_value(axis, v)
            has = cand["d_model"] / cand["d_ff"] if axis == "granularity" else cand[col]
            if np.isclose(has, v).any() if axis == "granularity" else (has == v).any():
                sel = np.isclose(has, v) if axis == "granularity" else has == v
                if cand.loc[sel, "n_total"].min() > WIDEN_REACH * n_total_max:
                    raise MoescaleError(f"widen {axis} {v:g}: every such architecture has N_total >= "
                                        f"{cand.loc[sel, 'n_total'].min():.3g}, over {WIDEN_REACH:g} times the "
                                        f"runs' largest {n_total_max:.3g}; the law cannot be extrapolated that far")
                continue
            why = "no valid architecture of the grid has it"
            if axis == "top_k" and v > max(g.n_experts):
                why = f"top_k {v} exceeds every n_experts of the grid (largest {max(g.n_experts)})"
            elif axis == "n_experts" and v < min(g.top_k):
                why = f"n_experts {v} is below every top_k of the grid (smallest {min(g.top_k)})"
            elif axis == "d_model" and isinstance(g, GridSpace) and v % g.head_dim:
                why = f"d_model {v} is not a multiple of the head dim {g.head_dim}"
            raise MoescaleError(f"widen {axis} {v:g}: {why}")
