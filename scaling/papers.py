"""The seed papers' claims set against an analysis of our runs, each with a verdict in five words.

``paper_comparison(analysis)`` reads an ``Analysis`` (``scaling.analysis.analyze``) and returns one
row per claim: the paper, the claim, our number (an estimate with its 95% interval, a p-value or
a difference in AIC) and the verdict, ``word: reason`` with the words of ``scaling.verdicts``
(``supported``, ``contradicted``, ``inconclusive``, ``not testable``, ``undetermined``). The claims:

- Liew et al. 2026: sparsity s matters beyond N_total (gamma != 0 in the moe law
  L = E + A·N_total^-alpha·s^gamma·n_exp^lam + B·D^-beta); n_experts and top_k do not quite cancel
  inside s (lam != 0); N_total and s fit loss better than N_active (ΔAIC ≥ 2, Burnham & Anderson
  2002). These rows carry the verdicts of ``scaling.claims`` (the same claims, the same words).
- Nakamura et al. 2025: at equal loss, active compute does not change memorization, a claim of no
  effect: ``supported`` only when the b_flops interval of the binomial GLM lies inside
  ±``B_FLOPS_EFFECT`` = 0.1 (logit per e-fold of active FLOPs: 0.23 per tenfold, at most 5.8
  percentage points of accuracy per tenfold compute, at p = 0.5), ``contradicted`` when it
  excludes 0, else ``inconclusive`` (an equivalence test, Schuirmann 1987); more active compute
  raises reasoning (b_flops > 0); reasoning accuracy peaks near 20 tokens per parameter
  (``peak_verdict``: ``not testable`` when the sampled TPP range does not reach [10, 40]).
  A question whose GLM is flagged (``scaling.accuracy``: separated, not converged, no finite
  interval, no interior peak) reads ``undetermined`` with the flag.

The report (``figures.report``) renders the table; the demo prints it. ``format_value`` and
``format_ci`` are the number formats of both.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scaling.accuracy import TPP_CLAIM
from scaling.verdicts import Verdict, peak_verdict, sign_verdict

__all__ = ["paper_comparison", "format_value", "format_ci", "B_FLOPS_EFFECT"]

#: Equivalence margin of "active compute does not change memorization": |b_flops| < 0.1 logit per e-fold.
B_FLOPS_EFFECT = 0.1


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


def _flag(row) -> str:
    v = row.get("flags", "") if hasattr(row, "get") else ""
    return v if isinstance(v, str) else ""


def paper_comparison(analysis) -> pd.DataFrame:
    """The seed papers' claims set against the analysis: paper, claim, ours (the number), verdict
    (``word: reason``, see the module docstring), one row each."""
    rows = []
    claims = getattr(analysis, "claims", None)
    if claims is not None:
        t = claims.table.set_index("parameter") if "parameter" in claims.table else pd.DataFrame()
        for par, claim in (("gamma", "sparsity s matters beyond N_total (gamma != 0)"),
                           ("lam", "n_experts and top_k do not quite cancel inside s (lam != 0)")):
            if par not in t.index:
                rows.append(("Liew et al. 2026", claim, "not fitted", str(Verdict("not testable", f"{par} was not fitted"))))
                continue
            r = t.loc[par]
            est = format_ci(r["estimate"], r.get("ci_low"), r.get("ci_high"))
            ours = f"{par} = {est}, LR p = {format_value(r.get('p_value', np.nan), 2)}"
            rows.append(("Liew et al. 2026", claim, ours, str(r["verdict"])))
        act = claims.table[claims.table["claim"].str.contains("N_active", na=False)]
        if len(act):
            d = float(act["delta_aic"].iloc[0])
            rows.append(("Liew et al. 2026", "N_total and s fit loss better than N_active",
                         f"ΔAIC(N_active - moe) = {format_value(d)}", str(act["verdict"].iloc[0])))
    acc = getattr(analysis, "accuracy", None)
    if acc is None:
        rows.append(("Nakamura et al. 2025", "memorization and reasoning regimes", "no accuracy evals",
                     str(Verdict("not testable", "the store has no accuracy evaluations"))))
        return pd.DataFrame(rows, columns=["paper", "claim", "ours", "verdict"])
    q = acc.questions
    for kind, claim, want in (("memorization", "at equal loss, active compute does not change memorization", "=0"),
                              ("reasoning", "at equal loss, more active compute raises reasoning accuracy", ">0")):
        r = q[(q["kind"] == kind) & (q["question"] == "active_flops")]
        if not len(r):
            rows.append(("Nakamura et al. 2025", claim, f"no {kind} tasks",
                         str(Verdict("not testable", f"the store has no {kind} tasks"))))
            continue
        r = r.iloc[0]
        lo, hi = float(r["ci_low"]), float(r["ci_high"])
        ours = f"b_flops = {format_ci(r['estimate'], lo, hi)}"
        if str(r.get("verdict", "")).startswith("not testable"):
            verdict = str(r["verdict"])
        else:
            verdict = str(sign_verdict("b_flops", float(r["estimate"]), lo, hi, claim=want,
                                       effect=B_FLOPS_EFFECT if want == "=0" else None, unidentified=_flag(r)))
        rows.append(("Nakamura et al. 2025", claim, ours, verdict))
    pk = acc.peaks[acc.peaks["kind"] == "reasoning"] if len(acc.peaks) else pd.DataFrame()
    claim = "reasoning accuracy peaks near 20 tokens per parameter"
    if not len(pk):
        rows.append(("Nakamura et al. 2025", claim, "no reasoning tasks",
                     str(Verdict("not testable", "the store has no reasoning tasks"))))
    else:
        r = pk.iloc[0]
        lo, hi = float(r["ci_low"]), float(r["ci_high"])
        span = f"{format_value(r['tpp_min'])}..{format_value(r['tpp_max'])}"
        ours = (f"peak TPP = {format_ci(r['tpp_peak'], lo, hi)}" if bool(r["interior"]) and np.isfinite(r["tpp_peak"])
                else f"no interior peak in the sampled TPP {span}")
        verdict = peak_verdict("TPP", float(r["tpp_peak"]), lo, hi, claimed=TPP_CLAIM,
                               sampled=(float(r["tpp_min"]), float(r["tpp_max"])), unidentified=_flag(r))
        rows.append(("Nakamura et al. 2025", claim, ours, str(verdict)))
    return pd.DataFrame(rows, columns=["paper", "claim", "ours", "verdict"])
