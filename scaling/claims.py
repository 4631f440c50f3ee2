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

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError
from scaling.laws import ACTIVE_X, MOE_X

__all__ = ["ClaimsResult", "test_claims", "final_runs", "budget_groups", "resample_runs", "refit_weighted",
           "MOE_X", "ACTIVE_X", "MIN_RUNS"]

#: Finished runs the claims need: the moe law's 7 free parameters plus 3.
MIN_RUNS = 10

_NEEDED = ("run_id", "n_total", "n_active", "sparsity", "n_experts", "top_k", "tokens", "val_loss", "active_flops")

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
    fits: dict
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


# --------------------------------------------------------------------------- data


def final_runs(source, *, need: tuple[str, ...] = _NEEDED) -> tuple[pd.DataFrame, dict[str, int]]:
    """The finished runs of a store (``final`` view) or a final-like DataFrame, and what was left out.

    Returns (runs with a finite val_loss, {"diverged": n, "failed": n, "running": n,
    "no val_loss": n}). A Store (or a path to one) has its ``runs`` table counted by status;
    a DataFrame with a ``status`` column keeps only ``finished`` rows.
    """
    excluded: dict[str, int] = {}
    if isinstance(source, pd.DataFrame):
        df = source.copy()
        if "status" in df.columns:
            counts = df["status"].value_counts()
            excluded.update({str(k): int(v) for k, v in counts.items() if k != "finished"})
            df = df[df["status"] == "finished"]
    else:
        store = open_store(source)
        counts = store.sql("SELECT status, count(*) AS n FROM runs GROUP BY status")
        excluded.update({str(s): int(n) for s, n in zip(counts["status"], counts["n"]) if s != "finished"})
        df = store.sql("SELECT * FROM final")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise MoescaleError(f"final runs lack column(s) {', '.join(missing)} (columns: {', '.join(map(str, df.columns))})")
    for c in need:
        if c != "run_id":
            df[c] = pd.to_numeric(df[c], errors="coerce")
    ok = np.isfinite(df[[c for c in need if c != "run_id"]].to_numpy(dtype=float)).all(axis=1)
    if (~ok).sum():
        excluded["no val_loss"] = int((~ok).sum())
    df = df[ok].sort_values("run_id").reset_index(drop=True)
    if df.empty:
        found = ", ".join(f"{v} {k}" for k, v in excluded.items() if v) or "no runs at all"
        raise MoescaleError(f"no finished runs with a val_loss ({found}); train and ingest a sweep first")
    return df, excluded


def open_store(source):
    """A Store from a Store or an existing store path (a missing file is an error, never created)."""
    from pathlib import Path

    from scaling.store import Store

    if isinstance(source, Store):
        return source
    if isinstance(source, (str, Path)):
        if str(source) != ":memory:" and not Path(source).is_file():
            raise MoescaleError(f"{source}: no such store file")
        return Store(source)
    raise MoescaleError(f"expected a Store, a store path or a DataFrame of final runs, got {type(source).__name__}")


def budget_groups(flops, rtol: float = 0.05) -> np.ndarray:
    """A budget label per run: active FLOPs within ``rtol`` of each other (chained in sorted order)
    are one isoFLOP budget, labelled by their geometric mean. (Tokens D = round(C / flops_per_token),
    so a planned budget C comes back only approximately.)"""
    v = np.asarray(flops, dtype=float)
    order = np.argsort(v)
    labels = np.empty(len(v))
    start = 0
    for i in range(1, len(v) + 1):
        if i == len(v) or v[order[i]] > v[order[i - 1]] * (1 + rtol):
            idx = order[start:i]
            labels[idx] = float(np.exp(np.mean(np.log(v[idx]))))
            start = i
    return labels


def resample_runs(run_ids, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap point weights (n_boot, n_rows): multinomial counts of runs drawn with replacement.

    Rows of one run get the same count. ``numpy.random.default_rng(seed)``; the same runs and
    seed give the same weights in claims, accuracy and optimum, so their resamples agree.
    """
    from scaling.bootstrap import resample_weights

    return resample_weights(np.asarray(run_ids), len(run_ids), int(n_boot), int(seed))


def refit_weighted(result, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Refit a FitResult under point weights (B, n), all at once from its optimum.

    Returns (full parameter vectors (B, n_params) in ``law.params`` order, converged (B,)).
    The engine is ``scaling.bootstrap.bootstrap_fits`` (batched L-BFGS-B).
    """
    from scaling.bootstrap import bootstrap_fits
    from scaling.objectives import LossProblem, Objective

    sel = result.data
    X = {v: sel[v].to_numpy(dtype=float) for v in result.law.variables}
    problem = LossProblem(result.law, X, sel["y"].to_numpy(dtype=float), Objective(result.loss, result.delta),
                          fixed=result.fixed)
    theta = np.array([result.params[p] for p in problem.free])
    x, ok = bootstrap_fits(problem, theta, np.asarray(weights, dtype=float))
    return problem.full(x), ok


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

    ``final``: a Store, a store path, or a DataFrame of the ``final`` view (columns run_id,
    n_total, n_active, sparsity, n_experts, top_k, tokens, val_loss, active_flops). Runs
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
    df, excluded = final_runs(final)
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
        weights = resample_runs(df["run_id"], bootstrap, seed)
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
