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
(Hoffmann et al. 2022's test of whether a fit predicts the next scale), and a one-line verdict.
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
from scaling.laws import ACTIVE_X, MOE_X

if TYPE_CHECKING:
    from scaling.fitting import FitResult

__all__ = ["ClaimsResult", "test_claims", "MIN_RUNS", "VARIANTS"]

#: Finished runs the claims need: the moe law's 7 free parameters plus 3.
MIN_RUNS = 10

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
    n_free, n_points, logL, AIC, BIC, extrapolation_error). ``fits``: variant -> FitResult.
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
        lines.append(self.variants.drop(columns=["description"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        lines += self.notes
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> dict:
        """The result as a JSON-ready dict: table and variants as records, each variant's fit
        (``FitResult.to_json``), n_runs, excluded, bootstrap, seed, holdout_budget, alpha, notes.
        The resample-level arrays (``bootstrap_params``, ``bootstrap_weights``) are left out."""
        return jsonable({"table": self.table, "variants": self.variants,
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


def _strength(p: float) -> str:
    return "strongly" if p < 1e-3 else "clearly" if p < 1e-2 else "weakly"


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.3g}"


def _ci(v, lo, hi):
    return f"{_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]"


def test_claims(final, *, bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05, extrapolation: bool = True,
                progress=None) -> ClaimsResult:
    """Test Liew et al. 2026's claims on finished runs (see the module docstring).

    ``final``: the runs loaded by ``scaling.final.load_final`` (or what it loads: a Store, a
    store path, or a DataFrame of the ``final`` view with columns run_id, n_total, n_active,
    sparsity, n_experts, top_k, tokens, val_loss, active_flops). Runs
    that are not finished, or lack a val_loss, are left out and counted in ``excluded``.
    ``bootstrap`` resamples of runs give the percentile CIs of gamma and lam; ``alpha`` is
    the test level of the verdicts. Budgets for the extrapolation error are groups of equal
    active FLOPs (``budget_groups``). Needs at least ``MIN_RUNS`` runs with 2 or more
    sparsities; the lam claim needs 2 or more top_k values (otherwise n_exp = s * top_k and
    lam is not identified, and the verdict says so).
    """
    from scaling.compare import aic, bic, likelihood_ratio_test, log_likelihood, n_free_params

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
    ci = {}
    if bootstrap:
        weights = runs.resample(bootstrap, seed)
        full_vec, ok = refit_weighted(full, weights)
        samples = pd.DataFrame(full_vec, columns=list(full.law.params))
        samples["converged"] = ok
        good = samples[ok]
        for p in ("gamma", "lam"):
            if len(good):
                lo, hi = np.percentile(good[p], [100 * alpha / 2, 100 * (1 - alpha / 2)])
                ci[p] = (float(lo), float(hi))
        if (~ok).sum():
            notes.append(f"warning: {(~ok).sum()} of {bootstrap} bootstrap refits did not converge")
    if progress:
        progress(len(names) + 1, len(names) + 2)
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
                     "logL": log_likelihood(r), "AIC": aic(r), "BIC": bic(r), "extrapolation_error": extra[n]})
    variants = pd.DataFrame(rows)

    def lr(restricted):
        return likelihood_ratio_test(fits[restricted], full)

    def est(p):
        lo, hi = ci.get(p, (float("nan"), float("nan")))
        return float(full.params[p]), lo, hi

    claims = []
    # 1. sparsity adds nothing over N_total
    g, glo, ghi = est("gamma")
    stat, dof, p = lr("total_only")
    daic, dbic = aic(fits["total_only"]) - aic(full), bic(fits["total_only"]) - bic(full)
    if p < alpha:
        direction = "costs" if g > 0 else "lowers"
        verdict = (f"sparsity matters beyond N_total ({_strength(p)}): gamma = {_ci(g, glo, ghi)}, LR p = {p:.2g}, "
                   f"dAIC = {daic:.1f}: at fixed N_total, higher sparsity {direction} loss")
    else:
        verdict = (f"no evidence that sparsity matters beyond N_total: gamma = {_ci(g, glo, ghi)}, LR p = {p:.2g}, "
                   f"dAIC = {daic:.1f}: the N_total-only law suffices")
    claims.append({"claim": "sparsity adds nothing over N_total (gamma = lam = 0)", "parameter": "gamma",
                   "estimate": g, "ci_low": glo, "ci_high": ghi, "lr_stat": stat, "df": dof, "p_value": p,
                   "delta_aic": daic, "delta_bic": dbic, "extrapolation_error": extra["total_only"],
                   "extrapolation_error_full": extra["moe"], "verdict": verdict})
    # 2. n_experts and top_k cancel inside s
    if lam_testable:
        lv, llo, lhi = est("lam")
        stat, dof, p = lr("moe_lam0")
        daic, dbic = aic(fits["moe_lam0"]) - aic(full), bic(fits["moe_lam0"]) - bic(full)
        if p < alpha:
            direction = "cost" if lv > 0 else "lower"
            verdict = (f"n_exp penalty lam = {_ci(lv, llo, lhi)}, LR p = {p:.2g} ({_strength(p)}): more experts at "
                       f"fixed N_total and s {direction} loss")
        else:
            verdict = (f"lam = {_ci(lv, llo, lhi)}, LR p = {p:.2g}: consistent with n_experts and top_k entering "
                       "only through s")
        claims.append({"claim": "n_experts and top_k cancel inside s (lam = 0)", "parameter": "lam", "estimate": lv,
                       "ci_low": llo, "ci_high": lhi, "lr_stat": stat, "df": dof, "p_value": p, "delta_aic": daic,
                       "delta_bic": dbic, "extrapolation_error": extra["moe_lam0"],
                       "extrapolation_error_full": extra["moe"], "verdict": verdict})
    else:
        claims.append({"claim": "n_experts and top_k cancel inside s (lam = 0)", "parameter": "lam",
                       "estimate": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                       "lr_stat": float("nan"), "df": 1, "p_value": float("nan"), "delta_aic": float("nan"),
                       "delta_bic": float("nan"), "extrapolation_error": float("nan"),
                       "extrapolation_error_full": extra["moe"],
                       "verdict": "not testable: one top_k value, so n_experts = s * top_k and lam is not identified"})
    # 3. the N_active alternative (not nested: AIC/BIC only)
    act = fits["active"]
    daic, dbic = aic(act) - aic(full), bic(act) - bic(full)
    if daic > 2:
        verdict = (f"N_total and s fit better than N_active alone: dAIC = {daic:.1f}, dBIC = {dbic:.1f} "
                   f"({'essentially no support for N_active' if daic > 10 else 'less support for N_active'})")
    elif daic < -2:
        verdict = f"N_active alone fits better than N_total and s: dAIC = {daic:.1f}, dBIC = {dbic:.1f}"
    else:
        verdict = f"N_active alone and (N_total, s) fit about equally: dAIC = {daic:.1f}, dBIC = {dbic:.1f}"
    claims.append({"claim": "N_active instead of s (chinchilla in N_active)", "parameter": "alpha_active",
                   "estimate": float(act.params["alpha"]), "ci_low": float("nan"), "ci_high": float("nan"),
                   "lr_stat": float("nan"), "df": np.nan, "p_value": float("nan"), "delta_aic": daic,
                   "delta_bic": dbic, "extrapolation_error": extra["active"],
                   "extrapolation_error_full": extra["moe"], "verdict": verdict})
    table = pd.DataFrame(claims)
    if holdout is None:
        notes.append(f"note: {n_budgets} compute budget(s); the extrapolation error needs 2 or more")
    return ClaimsResult(table=table, variants=variants, fits=fits, n_runs=len(df), excluded=excluded,
                        bootstrap=int(bootstrap), seed=int(seed), holdout_budget=holdout, bootstrap_params=samples,
                        bootstrap_weights=weights, alpha=alpha, notes=notes)


test_claims.__test__ = False  # not a pytest test despite its name
