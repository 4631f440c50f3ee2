"""The seed papers' claims set against an analysis of our runs, each with a plain verdict.

``paper_comparison(analysis)`` reads an ``Analysis`` (``scaling.analysis.analyze``) and returns one
row per claim: the paper, the claim, our number (an estimate with its 95% interval, a p-value or
a difference in AIC) and the verdict, "agrees", "disagrees ..." (saying how) or "not testable"
(the store lacks what the claim needs). The claims:

- Liew et al. 2026: sparsity s matters beyond N_total (gamma != 0, likelihood-ratio test of the
  moe law L = E + A·N_total^-alpha·s^gamma·n_exp^lam + B·D^-beta); n_experts and top_k do not
  quite cancel inside s (lam != 0); N_total and s fit loss better than N_active (ΔAIC > 0).
- Nakamura et al. 2025: at equal loss, active compute does not change memorization (the
  b_flops interval of the binomial GLM holds 0); it raises reasoning (b_flops > 0); reasoning
  accuracy peaks near 20 tokens per parameter (an interior peak whose interval reaches [10, 40]).

The report (``figures.report``) renders the table; the demo prints it. ``format_value`` and
``format_ci`` are the number formats of both.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["paper_comparison", "format_value", "format_ci"]


def format_value(v, digits: int = 4) -> str:
    """A number as the report writes it: ``digits`` significant digits, scientific below 1e-3 and from 1e5,
    thousands separators for integers from 10,000, yes/no for booleans, "" for None and NaN."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}" if abs(int(v)) >= 10000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "" if math.isnan(float(v)) else ("inf" if v > 0 else "-inf")
        v = float(v)
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(v)


def format_ci(est, lo, hi) -> str:
    """``est [lo, hi]``, or ``est`` alone when either bound is missing or not finite."""
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return format_value(est)
    return f"{format_value(est)} [{format_value(lo)}, {format_value(hi)}]"


def paper_comparison(analysis) -> pd.DataFrame:
    """The seed papers' claims set against the analysis: paper, claim, ours (the number), verdict
    (agrees / disagrees / not testable), one row each.

    Liew et al. 2026: sparsity matters beyond N_total (gamma != 0); n_experts and top_k do not quite
    cancel (lam != 0); N_total and s describe loss better than N_active (ΔAIC > 0).
    Nakamura et al. 2025: at equal loss active compute does not change memorization (b_flops CI holds 0);
    it raises reasoning (b_flops > 0); reasoning accuracy peaks near 20 tokens per parameter (an interior
    peak whose CI reaches [10, 40]).
    """
    rows = []
    claims = getattr(analysis, "claims", None)
    if claims is not None:
        t = claims.table.set_index("parameter") if "parameter" in claims.table else pd.DataFrame()
        level = getattr(claims, "alpha", 0.05)
        for par, claim in (("gamma", "sparsity s matters beyond N_total (gamma != 0)"),
                           ("lam", "n_experts and top_k do not quite cancel inside s (lam != 0)")):
            if par not in t.index:
                rows.append(("Liew et al. 2026", claim, "not fitted", "not testable"))
                continue
            r = t.loc[par]
            p = r.get("p_value", np.nan)
            est = format_ci(r["estimate"], r.get("ci_low"), r.get("ci_high"))
            ours = f"{par} = {est}, LR p = {format_value(p, 2)}"
            verdict = ("not testable" if not np.isfinite(p) else "agrees" if p < level else "disagrees (not significant)")
            rows.append(("Liew et al. 2026", claim, ours, verdict))
        act = claims.table[claims.table["claim"].str.contains("N_active", na=False)]
        if len(act):
            d = float(act["delta_aic"].iloc[0])
            rows.append(("Liew et al. 2026", "N_total and s fit loss better than N_active",
                         f"ΔAIC(N_active - moe) = {format_value(d)}",
                         "not testable" if not np.isfinite(d) else "agrees" if d > 0 else "disagrees"))
    acc = getattr(analysis, "accuracy", None)
    if acc is None:
        rows.append(("Nakamura et al. 2025", "memorization and reasoning regimes", "no accuracy evals", "not testable"))
        return pd.DataFrame(rows, columns=["paper", "claim", "ours", "verdict"])
    q = acc.questions
    for kind, claim, want in (("memorization", "at equal loss, active compute does not change memorization", "zero"),
                              ("reasoning", "at equal loss, more active compute raises reasoning accuracy", "positive")):
        r = q[(q["kind"] == kind) & (q["question"] == "active_flops")]
        if not len(r):
            rows.append(("Nakamura et al. 2025", claim, f"no {kind} tasks", "not testable"))
            continue
        r = r.iloc[0]
        lo, hi = float(r["ci_low"]), float(r["ci_high"])
        ours = f"b_flops = {format_ci(r['estimate'], lo, hi)}"
        if want == "zero":
            verdict = "agrees" if lo <= 0 <= hi else "disagrees"
        else:
            verdict = "agrees" if lo > 0 else "disagrees" if hi < 0 else "disagrees (CI includes 0)"
        rows.append(("Nakamura et al. 2025", claim, ours, verdict))
    pk = acc.peaks[acc.peaks["kind"] == "reasoning"] if len(acc.peaks) else pd.DataFrame()
    claim = "reasoning accuracy peaks near 20 tokens per parameter"
    if not len(pk):
        rows.append(("Nakamura et al. 2025", claim, "no reasoning tasks", "not testable"))
    else:
        r = pk.iloc[0]
        if bool(r["interior"]) and np.isfinite(r["tpp_peak"]):
            lo, hi = float(r["ci_low"]), float(r["ci_high"])
            near = (lo <= 40 and hi >= 10) if np.isfinite(lo) and np.isfinite(hi) else 10 <= r["tpp_peak"] <= 40
            rows.append(("Nakamura et al. 2025", claim, f"peak TPP = {format_ci(r['tpp_peak'], lo, hi)}",
                         "agrees" if near else "disagrees (peak elsewhere)"))
        else:
            span = f"{format_value(r['tpp_min'])}..{format_value(r['tpp_max'])}"
            rows.append(("Nakamura et al. 2025", claim, f"no interior peak in the sampled TPP {span}",
                         "disagrees (no interior peak)"))
    return pd.DataFrame(rows, columns=["paper", "claim", "ours", "verdict"])
