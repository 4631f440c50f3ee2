"""The whole analysis of a store in one call: claims, accuracy regimes, isoFLOP minima and the optimum.

``analyze(store, compute=...)`` runs, on the store's finished runs, with one set of bootstrap
resamples of runs shared by every part:

- ``scaling.claims.test_claims``: Liew et al. 2026's claims as nested-model tests of the ``moe`` law;
- ``scaling.accuracy.accuracy_models``: Nakamura et al. 2025's binomial GLMs per task kind, the
  TPP peak and the two-step loss -> accuracy path (skipped, with a note, when the store has no evals);
- ``scaling.allocation.isoflop_minima``: the data-side optimum per budget (Porian et al. 2024's
  Akima-spline method) of loss against N_total;
- ``scaling.optimum.find_optimum``: the best real architecture per budget and objective.

The report and the demo read the returned ``Analysis``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError

__all__ = ["Analysis", "analyze"]


@dataclass
class Analysis:
    """Everything ``analyze`` found.

    ``runs``: the finished runs used (the ``final`` view); ``excluded``: status -> runs left out;
    ``claims``: ClaimsResult; ``accuracy``: AccuracyResult or None (no eval data);
    ``isoflop``: DataFrame of isoFLOP minima per budget (``scaling.allocation.isoflop_minima``,
    budget column ``budget``) or an empty frame; ``optimum``: OptimumResult; ``compute``: the budgets
    used; ``objectives``: the objectives optimized; ``notes``: what was skipped and why.
    """

    runs: pd.DataFrame
    excluded: dict
    claims: object
    accuracy: object | None
    isoflop: pd.DataFrame
    optimum: object
    compute: list
    objectives: list
    bootstrap: int
    seed: int
    notes: list = field(default_factory=list)

    def headline(self) -> list[str]:
        """One line per budget and objective: the optimal sparsity with its resample range."""
        out = []
        for r in self.optimum.best.itertuples(index=False):
            rng = (f" (range {r.sparsity_low:g}..{r.sparsity_high:g}, {r.frequency:.0%} of resamples pick {r.arch})"
                   if self.bootstrap else "")
            out.append(f"C = {r.compute:.3g}, {r.objective}: optimal sparsity {r.sparsity:g}{rng}")
        return out

    def summary(self) -> str:
        parts = [self.claims.summary()]
        if self.accuracy is not None:
            parts.append(self.accuracy.summary())
        if len(self.isoflop):
            parts.append("IsoFLOP minima (loss against N_total, Akima spline):\n"
                         + self.isoflop.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        parts.append("Optimum per budget:\n" + self.optimum.summary())
        return "\n\n".join(parts + self.notes)

    def __str__(self) -> str:
        return self.summary()


def analyze(store, compute=None, *, memory: float | None = None, active: float | None = None, objectives=None,
            bootstrap: int = 1000, seed: int = 0, widen: dict | None = None, grid=None, progress=None) -> Analysis:
    """Run the whole analysis of a store (see the module docstring).

    ``store``: a Store or an existing store path. ``compute``: budgets in FLOPs (default: the
    sweep's own budgets, groups of equal active FLOPs). ``objectives``: default "loss" plus every
    task kind (memorization, reasoning) with accuracy evals. ``bootstrap`` resamples of runs,
    shared by claims, accuracy and optimum; ``seed`` makes them deterministic. ``memory``,
    ``active``, ``widen``, ``grid``: as in ``scaling.optimum.find_optimum``. ``progress``: optional
    callable(stage: str) called as each part starts.
    """
    import warnings

    from scaling.accuracy import accuracy_models
    from scaling.allocation import isoflop_minima
    from scaling.claims import budget_groups, final_runs, open_store, test_claims
    from scaling.optimum import find_optimum

    st = open_store(store)
    final, excluded = final_runs(st)
    notes = []
    say = progress or (lambda stage: None)
    say("claims")
    claims = test_claims(st, bootstrap=bootstrap, seed=seed)
    weights = claims.bootstrap_weights
    samples = None
    if claims.bootstrap_params is not None:
        samples = claims.bootstrap_params[list(claims.fits["moe"].law.params)].to_numpy()
    evals = st.sql("SELECT * FROM evals")
    accuracy = None
    say("accuracy")
    if len(evals):
        try:
            start = {p: claims.fits["moe"].params[p] for p in claims.fits["moe"].law.params}
            accuracy = accuracy_models(final, evals, bootstrap=bootstrap, seed=seed, weights=weights, loss_start=start)
        except MoescaleError as exc:
            notes.append(f"note: accuracy models skipped: {exc}")
    else:
        notes.append("note: the store has no evals rows; accuracy models and task objectives skipped")
    if objectives is None:
        objectives = ["loss"] + ([k for k in ("memorization", "reasoning") if accuracy and k in accuracy.models])
    labels = budget_groups(final["active_flops"])
    if compute is None:
        compute = sorted(float(f"{v:.3g}") for v in np.unique(labels))
    say("isoflop")
    iso = pd.DataFrame()
    frame = final.assign(budget=labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            iso = isoflop_minima(frame, budget="budget", size="n_total", loss="val_loss", method="smooth")
        except MoescaleError as exc:
            notes.append(f"note: isoFLOP minima skipped: {exc}")
    notes += [f"note: {w.message}" for w in caught]
    say("optimum")
    opt = find_optimum(st, compute, memory=memory, active=active, objective=objectives, grid=grid, widen=widen,
                       bootstrap=bootstrap, seed=seed, evals=evals, loss_fit=claims.fits["moe"], loss_samples=samples,
                       accuracy=accuracy, weights=weights)
    return Analysis(runs=final, excluded=excluded, claims=claims, accuracy=accuracy, isoflop=iso, optimum=opt,
                    compute=list(compute), objectives=list(objectives), bootstrap=int(bootstrap), seed=int(seed),
                    notes=notes)
