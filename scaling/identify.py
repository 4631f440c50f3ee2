"""Which fitted parameters the data identify, and which fits are degenerate.

A parameter's interval means something only when the data pin the parameter down. Per
parameter of a fit, with its 95% interval [lo, hi] and the law's bounds [b_lo, b_hi]:

- ``on bound``: the estimate sits on a finite bound (|θ − b| ≤ 1e-6·max(1, |b|)); the
  optimizer was stopped by the bound, not by the data;
- ``CI reaches bound``: an interval end sits on a finite bound (the resamples pile up there);
- ``not identified``: the interval spans at least half of the parameter's range (the finite
  bounds, else the law's plausible range below), or an end is not finite;
- ``identified``: none of these.

A fit is ``degenerate`` when its asymptote or an exponent leaves the range its law calls
plausible: the irreducible loss E = exp(e) below 1/20 of the lowest observed loss (a loss
law's floor cannot sit far below every loss it was fitted to), or a data or size exponent
(α, β) outside [0.02, 2] (published values: Kaplan et al. 2020 0.05–0.1, Hoffmann et al.
2022 0.34/0.28, Besiroglu et al. 2024 0.35/0.37; Nakamura et al. 2025 and Liew et al. 2026
stay in that range too). These are the thresholds the verdicts (``scaling.verdicts``) use
to say ``undetermined`` instead of a number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["PLAUSIBLE", "SPAN", "ParameterCheck", "check_parameters", "degenerate_reasons", "fit_flags", "unidentified"]

#: Fraction of a parameter's range that an interval may span before the parameter is "not identified".
SPAN = 0.5
#: Exponent range called plausible for power-law loss laws (see the module docstring).
EXPONENT_RANGE = (0.02, 2.0)
#: Lowest asymptote called plausible, as a fraction of the lowest observed loss.
FLOOR_FRACTION = 1 / 20
#: law name -> parameter -> plausible (lo, hi), used where the law's own bounds are infinite.
#: The log-coefficients e = log E, a = log A, b = log B get wide ranges: an interval over half of
#: [-5, 5] (E known only within a factor of ~150) or of [-5, 35] (A or B within ~5e8) says the data
#: do not pin the term down (Chinchilla's fit: e 0.60, a 6.17, b 7.67; Hoffmann et al. 2022).
LOG_COEFFICIENTS = {"e": (-5.0, 5.0), "a": (-5.0, 35.0), "b": (-5.0, 35.0)}
PLAUSIBLE: dict[str, dict[str, tuple[float, float]]] = {
    "chinchilla": {"alpha": EXPONENT_RANGE, "beta": EXPONENT_RANGE, **LOG_COEFFICIENTS},
    "moe": {"alpha": EXPONENT_RANGE, "beta": EXPONENT_RANGE, **LOG_COEFFICIENTS},
}


@dataclass(frozen=True)
class ParameterCheck:
    """One parameter's identifiability: ``status`` is one of identified, on bound,
    CI reaches bound, not identified; ``reason`` says why in words."""

    name: str
    estimate: float
    ci_low: float
    ci_high: float
    status: str
    reason: str

    @property
    def identified(self) -> bool:
        return self.status == "identified"


def _near(value: float, bound: float) -> bool:
    return np.isfinite(bound) and abs(value - bound) <= 1e-6 * max(1.0, abs(bound))


def _range(law, name: str) -> tuple[float, float]:
    lo, hi = law.bound(name)
    if np.isfinite(lo) and np.isfinite(hi):
        return lo, hi
    plo, phi = PLAUSIBLE.get(law.name, {}).get(name, (-np.inf, np.inf))
    return (lo if np.isfinite(lo) else plo), (hi if np.isfinite(hi) else phi)


def check_parameters(fit, ci: dict | None = None) -> list[ParameterCheck]:
    """The identifiability of each free parameter of ``fit`` (a FitResult; see the module docstring).

    ``ci``: name -> (lo, hi) intervals to judge (default ``fit.ci``, the bootstrap's). A
    parameter without an interval is judged on its estimate alone.
    """
    ci = fit.ci if ci is None else ci
    out = []
    for name in fit.law.params:
        if name in fit.fixed:
            continue
        est = float(fit.params[name])
        lo, hi = (float(v) for v in ci.get(name, (np.nan, np.nan)))
        b_lo, b_hi = fit.law.bound(name)
        r_lo, r_hi = _range(fit.law, name)
        has_ci = not (np.isnan(lo) and np.isnan(hi))
        if _near(est, b_lo) or _near(est, b_hi):
            status, reason = "on bound", f"{name} = {est:.4g} sits on its bound [{b_lo:g}, {b_hi:g}]"
        elif has_ci and (_near(lo, b_lo) or _near(hi, b_hi)):
            status, reason = "CI reaches bound", f"{name}'s interval [{lo:.4g}, {hi:.4g}] reaches its bound [{b_lo:g}, {b_hi:g}]"
        elif has_ci and not (np.isfinite(lo) and np.isfinite(hi)):
            status, reason = "not identified", f"{name}'s interval [{lo:.4g}, {hi:.4g}] is not finite"
        elif has_ci and np.isfinite(r_hi - r_lo) and hi - lo >= SPAN * (r_hi - r_lo):
            status, reason = ("not identified", f"{name}'s interval [{lo:.4g}, {hi:.4g}] spans "
                              f"{(hi - lo) / (r_hi - r_lo):.0%} of its range [{r_lo:g}, {r_hi:g}]")
        else:
            status, reason = "identified", ""
        out.append(ParameterCheck(name, est, lo, hi, status, reason))
    return out


def unidentified(fit, ci: dict | None = None) -> dict[str, str]:
    """name -> reason for each free parameter of ``fit`` that is not ``identified``."""
    return {c.name: c.reason for c in check_parameters(fit, ci) if not c.identified}


def degenerate_reasons(fit, y_min: float | None = None) -> list[str]:
    """Why ``fit`` is degenerate (empty when it is not; see the module docstring).

    ``y_min``: the lowest observed loss (default: the fit's own data ``y``). Only laws with an
    asymptote ``e`` (log E) or exponents ``alpha``/``beta`` are checked.
    """
    reasons = []
    params = fit.params
    if y_min is None and isinstance(getattr(fit, "data", None), pd.DataFrame) and "y" in fit.data:
        y_min = float(np.nanmin(fit.data["y"].to_numpy(dtype=float)))
    if "e" in params and fit.law.name in PLAUSIBLE and y_min is not None and np.isfinite(y_min):
        E = float(np.exp(min(params["e"], 700.0)))
        if E < FLOOR_FRACTION * y_min:
            reasons.append(f"asymptote E = {E:.3g} is below 1/{1 / FLOOR_FRACTION:g} of the lowest observed loss {y_min:.4g}")
    lo, hi = EXPONENT_RANGE
    for name in ("alpha", "beta"):
        if name in params and name not in fit.fixed and fit.law.name in PLAUSIBLE:
            v = float(params[name])
            if not lo <= v <= hi:
                reasons.append(f"exponent {name} = {v:.3g} is outside the plausible range [{lo:g}, {hi:g}]")
    return reasons


def fit_flags(fit, ci: dict | None = None, y_min: float | None = None) -> str:
    """One line that flags a fit wherever it is shown (CLI summary, JSON, report tables, figure captions):
    "" when every free parameter is identified and the fit is not degenerate, else e.g.
    "not identified: gamma (on bound), lam (not identified); degenerate: exponent alpha = 3.77 ...".
    """
    parts = []
    bad = [c for c in check_parameters(fit, ci) if not c.identified]
    if bad:
        parts.append("not identified: " + ", ".join(f"{c.name} ({c.status})" for c in bad))
    reasons = degenerate_reasons(fit, y_min)
    if reasons:
        parts.append("degenerate: " + "; ".join(reasons))
    return "; ".join(parts)
