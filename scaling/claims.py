"""Liew et al. 2026's claims about MoE loss as nested-model tests on a store's finished runs.

The ``moe`` law (``scaling.laws.MOE``)

    L = E + A * N_total^-alpha * s^gamma * n_exp^lam + B * D^-beta,    s = n_experts / top_k,

holds each claim of Liew et al. 2026 (arXiv 2601.08215) as a restriction:

- ``sparsity``: "sparsity adds nothing over N_total" is gamma = lam = 0 (the Chinchilla law
  in N_total; Hoffmann et al. 2022);
- ``n_experts``: "n_experts and top_k cancel inside s" is lam = 0;
- ``active``: the common alternative, the Chinchilla law in N_active
  (L = E + A N_active^-alpha + B D^-beta), is not nested in ``moe``; it is compared by AIC/BIC.

Per claim: the fitted parameter with its bootstrap percentile CI (resampling runs,
Efron & Tibshirani 1993), the likelihood-ratio statistic and p-value (Wilks 1938;
``scaling.compare.likelihood_ratio_test``), ΔAIC/ΔBIC (restricted minus full: > 0 favours
the full law), the leave-the-largest-budget-out extrapolation error of each variant
(Hoffmann et al. 2022's test of whether a fit predicts the next scale), and a one-line verdict
in ``scaling.verdicts``' five words (``word: reason``):

- "sparsity matters beyond N_total (gamma != 0)" and "n_experts and top_k do not quite cancel
  (lam != 0)": ``supported`` when the parameter's bootstrap interval excludes 0, ``contradicted``
  when it lies inside ±``EFFECT`` (an equivalence test, Schuirmann 1987: evidence of no effect),
  else ``inconclusive``; ``undetermined`` when the parameter is not identified or the full fit is
  degenerate (``scaling.identify``); ``not testable`` (lam) with one top_k value;
- "N_total and s fit loss better than N_active": ``aic_verdict`` (ΔAIC ≥ 2 prefers a model;
  Burnham & Anderson 2002), ``undetermined`` when either fit is degenerate.

Every free parameter of every variant gets its percentile interval from the same resamples of
runs, and its identifiability (``ClaimsResult.identifiability``, ``ClaimsResult.flags``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.bootstrap import refit_weighted
from scaling.budgets import budget_groups
from scaling.errors import MoescaleError
from scaling.final import load_final
from scaling.fitjson import jsonable
from scaling.identify import check_parameters, degenerate_reasons, fit_flags
from scaling.laws import ACTIVE_X, MOE_X
from scaling.verdicts import Verdict, aic_verdict, sign_verdict

if TYPE_CHECKING:
    from scaling.fitting import FitResult

__all__ = ["ClaimsResult", "test_claims", "check_alpha", "MIN_RUNS", "VARIANTS", "EFFECT", "CLAIMS"]

#: Finished runs the claims need: the moe law's 7 free parameters plus 3.
MIN_RUNS = 10
#: Exponents "too small to matter" for the equivalence test of gamma and lam: |x| < 0.01 changes the
#: reducible loss A N^-alpha s^gamma n_exp^lam by less than 5% over s (or n_exp) from 1 to 64 (64^0.01 = 1.04).
EFFECT = {"gamma": 0.01, "lam": 0.01}
#: parameter -> the claim of Liew et al. 2026 it tests (the ``claim`` column of ``ClaimsResult.table``).
CLAIMS = {"gamma": "sparsity matters beyond N_total (gamma != 0)",
          "lam": "n_experts and top_k do not quite cancel inside s (lam != 0)",
          "alpha_active": "N_total and s fit loss better than N_active"}

# variant name -> (law, x mapping, fixed parameters, description)
VARIANTS = {
    "moe": ("moe", MOE_X, {}, "full: E + A N^-alpha s^gamma n_exp^lam + B D^-beta"),
    "moe_lam0": ("moe", MOE_X, {"lam": 0.0}, "lam = 0: n_experts and top_k enter only through s"),
    "total_only": ("moe", MOE_X, {"gamma": 0.0, "lam": 0.0}, "gamma = lam = 0: N_total alone (chinchilla)"),
    "active": ("chinchilla", ACTIVE_X, {}, "chinchilla in N_active: E + A N_active^-alpha + B D^-beta"),
}


@dataclass
class ClaimsResult:
    """The claims tests.

    ``table``: one row per claim with columns claim, parameter, estimate, ci_low, ci_high,
    lr_stat, df, p_value, delta_aic, delta_bic, extrapolation_error (RMSE of ln L on the held-out
    largest budget, restricted variant), extrapolation_error_full (the full ``moe`` law's),
    verdict. ``variants``: one row per fitted variant (variant, law, fixed, description,
    n_free, n_points, logL, AIC, BIC, extrapolation_error, flags). ``fits``: variant -> FitResult.
    ``identifiability``: one row per free parameter of each variant (variant, parameter, estimate,
    ci_low, ci_high, status, reason; ``scaling.identify.check_parameters`` on the bootstrap
    percentile intervals); ``flags``: variant -> ``scaling.identify.fit_flags`` line ("" when
    every free parameter is identified and the fit is not degenerate).
    ``bootstrap_params``: the full law's parameters on each bootstrap resample (rows) and
    ``bootstrap_weights`` the run counts of each resample (B, n_runs), reused by the optimum.
    ``n_runs``: finished runs used; ``excluded``: status or reason -> count of runs left out.
    """

    table: pd.DataFrame
    variants: pd.DataFrame
    fits: dict[str, FitResult]
    n_runs: int
    excluded: dict[str, int]
    bootstrap: int
    seed: int
    holdout_budget: float | None
    bootstrap_params: pd.DataFrame | None = None
    bootstrap_weights: np.ndarray | None = None
    alpha: float = 0.05
    notes: list[str] = field(default_factory=list)
    identifiability: pd.DataFrame = field(default_factory=pd.DataFrame)
    flags: dict[str, str] = field(default_factory=dict)

    @property
    def verdicts(self) -> list[str]:
        """The one-line verdict of each claim."""
        return list(self.table["verdict"])

    def summary(self) -> str:
        """The verdicts and the variants table as text."""
        excl = ", ".join(f"{k}: {v}" for k, v in self.excluded.items() if v) or "none"
        lines = [f"Claims of Liew et al. 2026 on {self.n_runs} finished runs (excluded: {excl}); "
                 f"{self.bootstrap} bootstrap resamples of runs, seed {self.seed}"]
        lines += [f"- {c}: {v}" for c, v in zip(self.table["claim"], self.table["verdict"])]
        lines.append(self.variants.drop(columns=["description", "flags"], errors="ignore")
                     .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        flagged = {k: v for k, v in self.flags.items() if v}
        lines += [f"flag {k}: {v}" for k, v in flagged.items()]
        if self.flags and not flagged:
            lines.append("flags: none (every free parameter identified, no fit degenerate)")
        lines += self.notes
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> dict:
        """The result as a JSON-ready dict: table and variants as records, each variant's fit
        (``FitResult.to_json``), identifiability as records, flags, n_runs, excluded, bootstrap, seed,
        holdout_budget, alpha, notes. The resample-level arrays (``bootstrap_params``,
        ``bootstrap_weights``) are left out."""
        return jsonable({"table": self.table, "variants": self.variants, "identifiability": self.identifiability,
                         "flags": self.flags,
                         "fits": {k: f.to_json() for k, f in self.fits.items()}, "n_runs": self.n_runs,
                         "excluded": self.excluded, "bootstrap": self.bootstrap, "seed": self.seed,
                         "holdout_budget": self.holdout_budget, "alpha": self.alpha, "notes": self.notes})


# --------------------------------------------------------------------------- tests


def _fit_variant(df, name, *, starts=None):
    from scaling.fitting import fit

    law, x, fixed, _ = VARIANTS[name]
    return fit(df, law, x=x, y="val_loss", fix=fixed or None, stderr=False, starts=starts)


def _holdout_error(df, name, full_fit, labels) -> float:
    """RMSE of ln L on the largest budget's runs, fitted without them (single start at the full optimum)."""
    top = labels.max()
    train, test = df[labels < top], df[labels == top]
    law, x, fixed, _ = VARIANTS[name]
    n_free = full_fit.n_free
    if len(train) < n_free + 1 or test.empty:
        return float("nan")
    starts = {p: [full_fit.params[p]] for p in full_fit.law.params if p not in full_fit.fixed}
    try:
        res = _fit_variant(train.reset_index(drop=True), name, starts=starts)
    except MoescaleError:
        return float("nan")
    Xt = {v: test[c].to_numpy(dtype=float) for v, c in x.items()}
    pred = res.law.predict(res.params, Xt)
    return float(np.sqrt(np.mean((np.log(pred) - np.log(test["val_loss"].to_numpy(dtype=float))) ** 2)))


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.3g}"


def check_alpha(alpha) -> float:
    """``alpha`` as a test level in (0, 0.5] (0.05 gives 95% intervals); a one-line MoescaleError otherwise
    (2.0 would invert the intervals, 0 make every test pass, nan or a negative level mean nothing)."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        a = float("nan")
    if isinstance(alpha, bool) or not 0 < a <= 0.5:
        raise MoescaleError(f"alpha = {alpha!r}: must be in (0, 0.5] (the test level; 0.05 gives 95% intervals)")
    return a


def _percentile_ci(vectors: np.ndarray, ok: np.ndarray, names: list[str], alpha: float) -> dict:
    good = vectors[ok]
    if not len(good):
        return {}
    lo, hi = np.percentile(good, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return {n: (float(a), float(b)) for n, a, b in zip(names, lo, hi)}


def _identifiability(fits, cis, y_min) -> tuple[pd.DataFrame, dict[str, str]]:
    rows, flags = [], {}
    for name, f in fits.items():
        ci = cis.get(name, {})
        rows += [{"variant": name, "parameter": c.name, "estimate": c.estimate, "ci_low": c.ci_low,
                  "ci_high": c.ci_high, "status": c.status, "reason": c.reason} for c in check_parameters(f, ci)]
        flags[name] = fit_flags(f, ci, y_min)
    cols = ["variant", "parameter", "estimate", "ci_low", "ci_high", "status", "reason"]
    return pd.DataFrame(rows, columns=cols), flags


def _nonzero_verdict(name, est, lo, hi, *, effect, unidentified="", untestable="") -> Verdict:
    """"``name`` != 0": the "= 0" sign verdict with supported and contradicted swapped (an interval that
    excludes 0 supports the claim; one inside ±effect contradicts it)."""
    v = sign_verdict(name, est, lo, hi, claim="=0", effect=effect, unidentified=unidentified, untestable=untestable)
    return Verdict({"supported": "contradicted", "contradicted": "supported"}.get(v.word, v.word), v.reason)


def _why_undetermined(param, table, variant, degenerate) -> str:
    rows = table[(table["variant"] == variant) & (table["parameter"] == param) & (table["status"] != "identified")]
    parts = list(rows["reason"])
    if degenerate:
        parts.append(f"the {variant} fit is degenerate: " + "; ".join(degenerate))
    return "; ".join(parts)


def test_claims(final, *, bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05, extrapolation: bool = True,
                progress=None) -> ClaimsResult:
    """Test Liew et al. 2026's claims on finished runs (see the module docstring).

    ``final``: the runs loaded by ``scaling.final.load_final`` (or what it loads: a Store, a
    store path, or a DataFrame of the ``final`` view with columns run_id, n_total, n_active,
    sparsity, n_experts, top_k, tokens, val_loss, active_flops). Runs
    that are not finished, or lack a val_loss, are left out and counted in ``excluded``.
    ``bootstrap`` resamples of runs give the percentile CIs of every free parameter of every
    variant (without them every verdict on a parameter is ``undetermined``); ``alpha`` in (0, 0.5]
    is the test level (1 − alpha intervals). Budgets for the extrapolation error are groups of equal
    active FLOPs (``budget_groups``). Needs at least ``MIN_RUNS`` runs with 2 or more
    sparsities; the lam claim needs 2 or more top_k values (otherwise n_exp = s * top_k and
    lam is not identified, and the verdict is ``not testable``).
    """
    from scaling.compare import aic, bic, likelihood_ratio_test, log_likelihood, n_free_params

    alpha = check_alpha(alpha)
    if int(bootstrap) < 0:
        raise MoescaleError(f"bootstrap = {bootstrap}: must be >= 0")
    runs = load_final(final)
    df, excluded = runs.final, runs.excluded
    if len(df) < MIN_RUNS:
        raise MoescaleError(f"{len(df)} finished runs; the moe law's claims need at least {MIN_RUNS} "
                            "(7 free parameters plus 3)")
    if df["sparsity"].nunique() < 2:
        raise MoescaleError(f"all {len(df)} finished runs have sparsity {df['sparsity'].iloc[0]:g}; "
                            "the claims need at least 2 sparsities")
    lam_testable = df["top_k"].nunique() >= 2
    names = ["moe", "moe_lam0", "total_only", "active"] if lam_testable else ["moe", "total_only", "active"]
    notes = []
    fits = {}
    for i, name in enumerate(names):
        if name == "moe" and not lam_testable:
            law, x, _, _ = VARIANTS["moe"]
            from scaling.fitting import fit

            fits[name] = fit(df, law, x=x, y="val_loss", fix={"lam": 0.0}, stderr=False)
            notes.append("note: one top_k value, so n_exp = s * top_k and lam is not identified; lam fixed at 0")
        else:
            fits[name] = _fit_variant(df, name)
        if progress:
            progress(i + 1, len(names) + 2)
    full = fits["moe"]
    weights = samples = None
    cis: dict[str, dict] = {}
    if bootstrap:
        weights = runs.resample(bootstrap, seed)
        for name in names:  # the same resamples of runs for every variant
            vec, ok = refit_weighted(fits[name], weights)
            params = list(fits[name].law.params)
            cis[name] = {p: v for p, v in _percentile_ci(vec, ok, params, alpha).items() if p not in fits[name].fixed}
            if name == "moe":
                samples = pd.DataFrame(vec, columns=params)
                samples["converged"] = ok
            if (~ok).sum():
                notes.append(f"warning: {(~ok).sum()} of {bootstrap} bootstrap refits of {name} did not converge")
    ci = cis.get("moe", {})
    if progress:
        progress(len(names) + 1, len(names) + 2)
    y_min = float(df["val_loss"].min())
    ident, flags = _identifiability(fits, cis, y_min)
    degenerate = {n: degenerate_reasons(f, y_min) for n, f in fits.items()}
    labels = budget_groups(df["active_flops"])
    n_budgets = len(np.unique(labels))
    holdout = float(labels.max()) if extrapolation and n_budgets >= 2 else None
    extra = {n: (_holdout_error(df, n, fits[n], labels) if holdout is not None else float("nan")) for n in names}
    if progress:
        progress(len(names) + 2, len(names) + 2)
    rows = []
    for n in names:
        _, _, fixed, desc = VARIANTS[n]
        r = fits[n]
        rows.append({"variant": n, "law": r.law.name, "fixed": ", ".join(f"{k}={v:g}" for k, v in r.fixed.items()),
                     "description": desc, "n_free": n_free_params(r) - 1, "n_points": r.n_points,
                     "logL": log_likelihood(r), "AIC": aic(r), "BIC": bic(r), "extrapolation_error": extra[n],
                     "flags": flags[n]})
    variants = pd.DataFrame(rows)

    def est(p):
        lo, hi = ci.get(p, (float("nan"), float("nan")))
        return float(full.params[p]), lo, hi

    claims = []
    # 1. sparsity matters beyond N_total: gamma != 0 (LR test of gamma = lam = 0)
    g, glo, ghi = est("gamma")
    stat, dof, p = likelihood_ratio_test(fits["total_only"], full)
    daic, dbic = aic(fits["total_only"]) - aic(full), bic(fits["total_only"]) - bic(full)
    v = _nonzero_verdict("gamma", g, glo, ghi, effect=EFFECT["gamma"],
                         unidentified=_why_undetermined("gamma", ident, "moe", degenerate["moe"]))
    tail = f"; LR p = {p:.2g}, ΔAIC(N_total only − moe) = {daic:.1f}"
    if v.word == "supported":
        tail += f": at fixed N_total, higher sparsity {'costs' if g > 0 else 'lowers'} loss"
    claims.append({"claim": CLAIMS["gamma"], "parameter": "gamma",
                   "estimate": g, "ci_low": glo, "ci_high": ghi, "lr_stat": stat, "df": dof, "p_value": p,
                   "delta_aic": daic, "delta_bic": dbic, "extrapolation_error": extra["total_only"],
                   "extrapolation_error_full": extra["moe"], "verdict": str(Verdict(v.word, v.reason + tail))})
    # 2. n_experts and top_k do not quite cancel inside s: lam != 0
    if lam_testable:
        lv, llo, lhi = est("lam")
        stat, dof, p = likelihood_ratio_test(fits["moe_lam0"], full)
        daic, dbic = aic(fits["moe_lam0"]) - aic(full), bic(fits["moe_lam0"]) - bic(full)
        v = _nonzero_verdict("lam", lv, llo, lhi, effect=EFFECT["lam"],
                             unidentified=_why_undetermined("lam", ident, "moe", degenerate["moe"]))
        tail = f"; LR p = {p:.2g}, ΔAIC(lam = 0 − moe) = {daic:.1f}"
        if v.word == "supported":
            tail += f": more experts at fixed N_total and s {'cost' if lv > 0 else 'lower'} loss"
        v = Verdict(v.word, v.reason + tail)
    else:
        lv = llo = lhi = stat = p = daic = dbic = float("nan")
        dof = 1
        v = Verdict("not testable", "one top_k value, so n_experts = s * top_k and lam is not identified")
    claims.append({"claim": CLAIMS["lam"], "parameter": "lam", "estimate": lv,
                   "ci_low": llo, "ci_high": lhi, "lr_stat": stat, "df": dof, "p_value": p, "delta_aic": daic,
                   "delta_bic": dbic, "extrapolation_error": extra["moe_lam0"] if lam_testable else float("nan"),
                   "extrapolation_error_full": extra["moe"], "verdict": str(v)})
    # 3. the N_active alternative (not nested: AIC/BIC only)
    act = fits["active"]
    daic, dbic = aic(act) - aic(full), bic(act) - bic(full)
    bad = [f"the {n} fit is degenerate: " + "; ".join(degenerate[n]) for n in ("moe", "active") if degenerate[n]]
    if bad:
        v = Verdict("undetermined", "; ".join(bad) + f" (ΔAIC(N_active − moe) = {_fmt(daic)})")
    else:
        v = aic_verdict(daic, claim_model="moe", other_model="N_active")
        v = Verdict(v.word, v.reason + f", ΔBIC = {_fmt(dbic)}"
                    + (": N_total and s fit better than N_active alone" if v.word == "supported" else ""))
    # an AIC comparison: no interval here (the active fit's intervals are in ``identifiability``)
    claims.append({"claim": CLAIMS["alpha_active"], "parameter": "alpha_active",
                   "estimate": float(act.params["alpha"]), "ci_low": float("nan"), "ci_high": float("nan"),
                   "lr_stat": float("nan"), "df": np.nan, "p_value": float("nan"), "delta_aic": daic,
                   "delta_bic": dbic, "extrapolation_error": extra["active"],
                   "extrapolation_error_full": extra["moe"], "verdict": str(v)})
    table = pd.DataFrame(claims)
    if holdout is None:
        notes.append(f"note: {n_budgets} compute budget(s); the extrapolation error needs 2 or more")
    return ClaimsResult(table=table, variants=variants, fits=fits, n_runs=len(df), excluded=excluded,
                        bootstrap=int(bootstrap), seed=int(seed), holdout_budget=holdout, bootstrap_params=samples,
                        bootstrap_weights=weights, alpha=alpha, notes=notes, identifiability=ident, flags=flags)


test_claims.__test__ = False  # not a pytest test despite its name
