"""One vocabulary for what the data say about a claim: five words, with their thresholds.

- ``supported``: the 95% interval lies on the claim's side (excludes the null), or the
  information criterion prefers the claim's model by ΔAIC ≥ 2;
- ``contradicted``: the interval lies on the other side, or ΔAIC ≥ 2 prefers the other model;
- ``inconclusive``: the interval includes the null, or |ΔAIC| < 2 (the models "fit about
  equally": Burnham & Anderson 2002, §2.6, treat ΔAIC < 2 as substantial support for both);
- ``not testable``: the claim's region lies outside the sampled range (e.g. a TPP peak near
  20 when the runs span TPP 0.2–6), or the design cannot separate the parameter (one top_k);
- ``undetermined``: the claim's parameter is not identified (``scaling.identify``: on a
  bound, its interval reaching a bound or spanning most of its range) or the fit is degenerate.

Claims of "no effect" (a parameter equal to 0) are ``supported`` only by an interval inside
±``effect`` (an equivalence test, Schuirmann 1987), never by a wide interval that merely
includes 0. The CLI, the report, the demo and the paper comparison all print these words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WORDS", "AIC_THRESHOLD", "NEAR_FACTOR", "Verdict", "sign_verdict", "aic_verdict", "peak_verdict"]

WORDS = ("supported", "contradicted", "inconclusive", "not testable", "undetermined")
#: ΔAIC needed to prefer one model over another (Burnham & Anderson 2002).
AIC_THRESHOLD = 2.0
#: "Near" a claimed value: within this factor of it (a TPP peak "near 20" is one in [10, 40]).
NEAR_FACTOR = 2.0


@dataclass(frozen=True)
class Verdict:
    """A verdict word (one of ``WORDS``) and the reason, as one line: ``word: reason``."""

    word: str
    reason: str

    def __post_init__(self):
        if self.word not in WORDS:
            raise ValueError(f"verdict {self.word!r} is not one of {', '.join(WORDS)}")

    def __str__(self) -> str:
        return f"{self.word}: {self.reason}" if self.reason else self.word


def _interval(name: str, est: float, lo: float, hi: float) -> str:
    return f"{name} = {est:.3g} [{lo:.3g}, {hi:.3g}]"


def sign_verdict(name: str, estimate: float, lo: float, hi: float, *, claim: str, effect: float | None = None,
                 unidentified: str = "", untestable: str = "") -> Verdict:
    """The verdict on a claim about a parameter's sign from its estimate and 95% interval [lo, hi].

    ``claim``: ">0", "<0" or "=0". ">0"/"<0": supported when the interval excludes 0 on the
    claimed side, contradicted when it excludes 0 on the other, else inconclusive. "=0":
    contradicted when the interval excludes 0; supported when it lies inside ±``effect``;
    else inconclusive. ``untestable`` / ``unidentified``: a reason that makes the verdict
    ``not testable`` / ``undetermined`` whatever the interval says.
    """
    if claim not in (">0", "<0", "=0"):
        raise ValueError(f"claim {claim!r} is not one of '>0', '<0', '=0'")
    if untestable:
        return Verdict("not testable", untestable)
    if unidentified:
        return Verdict("undetermined", unidentified)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return Verdict("undetermined", f"{name} = {estimate:.3g} has no finite interval")
    text = _interval(name, estimate, lo, hi)
    excludes_zero = lo > 0 or hi < 0
    if claim == "=0":
        if excludes_zero:
            return Verdict("contradicted", f"{text} excludes 0")
        if effect is not None and -effect < lo and hi < effect:
            return Verdict("supported", f"{text} lies inside ±{effect:g}")
        return Verdict("inconclusive", f"{text} includes 0" + (f" but is wider than ±{effect:g}" if effect else ""))
    positive = claim == ">0"
    if excludes_zero:
        agrees = (lo > 0) == positive
        return Verdict("supported" if agrees else "contradicted", f"{text} excludes 0")
    return Verdict("inconclusive", f"{text} includes 0")


def aic_verdict(delta_aic: float, *, claim_model: str, other_model: str) -> Verdict:
    """The verdict on "``claim_model`` fits better than ``other_model``" from
    ΔAIC = AIC(other) − AIC(claim) (> 0 favours the claim; threshold ``AIC_THRESHOLD``)."""
    if not np.isfinite(delta_aic):
        return Verdict("undetermined", f"ΔAIC({other_model} − {claim_model}) is not finite")
    text = f"ΔAIC({other_model} − {claim_model}) = {delta_aic:.3g}"
    if delta_aic >= AIC_THRESHOLD:
        return Verdict("supported", f"{text} ≥ {AIC_THRESHOLD:g}")
    if delta_aic <= -AIC_THRESHOLD:
        return Verdict("contradicted", f"{text} ≤ −{AIC_THRESHOLD:g}")
    return Verdict("inconclusive", f"{text}: |ΔAIC| < {AIC_THRESHOLD:g}, the two fit about equally")


def peak_verdict(name: str, peak: float, lo: float, hi: float, *, claimed: float, sampled: tuple[float, float],
                 unidentified: str = "") -> Verdict:
    """The verdict on "``name`` peaks near ``claimed``" from the fitted peak and its 95% interval.

    Near means within ``NEAR_FACTOR`` of ``claimed``. ``not testable`` when that region
    [claimed/f, claimed·f] does not overlap the ``sampled`` range (lo, hi) of the variable;
    ``undetermined`` when the peak has no finite interval inside the sampled range (no
    interior peak) or ``unidentified`` is given; supported when the interval lies inside the
    near region, contradicted when it lies outside it, else inconclusive.
    """
    near = (claimed / NEAR_FACTOR, claimed * NEAR_FACTOR)
    s_lo, s_hi = sampled
    if near[1] < s_lo or near[0] > s_hi:
        return Verdict("not testable", f"the sampled {name} range [{s_lo:.3g}, {s_hi:.3g}] does not reach "
                                       f"[{near[0]:g}, {near[1]:g}] around {claimed:g}")
    if unidentified:
        return Verdict("undetermined", unidentified)
    if not (np.isfinite(peak) and np.isfinite(lo) and np.isfinite(hi)) or lo < s_lo or hi > s_hi:
        return Verdict("undetermined", f"no interior peak in the sampled {name} range [{s_lo:.3g}, {s_hi:.3g}] "
                                       f"(peak {peak:.3g} [{lo:.3g}, {hi:.3g}])")
    text = _interval(f"peak {name}", peak, lo, hi)
    if near[0] <= lo and hi <= near[1]:
        return Verdict("supported", f"{text} lies within [{near[0]:g}, {near[1]:g}]")
    if hi < near[0] or lo > near[1]:
        return Verdict("contradicted", f"{text} lies outside [{near[0]:g}, {near[1]:g}]")
    return Verdict("inconclusive", f"{text} overlaps [{near[0]:g}, {near[1]:g}] but is wider")
