"""The whole analysis of a store in one call: claims, accuracy regimes, isoFLOP minima and the optimum.

``analyze(store, compute=...)`` runs, on the store's finished runs, with one set of bootstrap
resamples of runs shared by every part:

- ``scaling.claims.test_claims``: Liew et al. 2026's claims as nested-model tests of the ``moe`` law;
- ``scaling.accuracy.accuracy_models``: Nakamura et al. 2025's binomial GLMs per task kind, the
  TPP peak and the two-step loss -> accuracy path (skipped, with a note, when the store has no evals);
- ``scaling.allocation.isoflop_minima``: the data-side optimum per budget (Porian et al. 2024's
  Akima-spline method) of loss against N_total;
- ``scaling.optimum.find_optimum``: the best real architecture per budget and objective.

The store's finished runs and evals are read once (``scaling.final.load_final``) and the one
``FinalRuns`` is handed to every part. The report and the demo read the returned ``Analysis``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError
from scaling.fitjson import jsonable

if TYPE_CHECKING:
    from scaling.accuracy import AccuracyResult
    from scaling.claims import ClaimsResult
    from scaling.final import FinalRuns
    from scaling.optimum import OptimumResult

__all__ = ["Analysis", "analyze", "isoflop"]


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
    excluded: dict[str, int]
    claims: ClaimsResult
    accuracy: AccuracyResult | None
    isoflop: pd.DataFrame
    optimum: OptimumResult
    compute: list[float]
    objectives: list[str]
    bootstrap: int
    seed: int
    notes: list[str] = field(default_factory=list)

    def headline(self) -> list[str]:
        """One line per budget and objective: the optimal sparsity with its resample range."""
        out = []
        for r in self.optimum.best.itertuples(index=False):
            rng = (f" (range {r.sparsity_low:g}..{r.sparsity_high:g}, {r.frequency:.0%} of resamples pick {r.arch})"
                   if self.bootstrap else "")
            out.append(f"C = {r.compute:.3g}, {r.objective}: optimal sparsity {r.sparsity:g}{rng}")
        return out

    def summary(self) -> str:
        """The claims, accuracy, isoFLOP minima and optimum summaries, and the notes, as text."""
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

    def to_json(self) -> dict:
        """The analysis as a JSON-ready dict: n_runs, excluded, compute, objectives, bootstrap, seed,
        headline, claims / accuracy / optimum (their ``to_json``; accuracy None without evals),
        isoflop as records, notes. The runs themselves are left out: they are the store's ``final`` view."""
        return jsonable({"n_runs": len(self.runs), "excluded": self.excluded, "compute": self.compute,
                         "objectives": self.objectives, "bootstrap": self.bootstrap, "seed": self.seed,
                         "headline": self.headline(), "claims": self.claims.to_json(),
                         "accuracy": None if self.accuracy is None else self.accuracy.to_json(),
                         "isoflop": self.isoflop, "optimum": self.optimum.to_json(), "notes": self.notes})


def isoflop(runs: FinalRuns, labels: np.ndarray | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The isoFLOP minima of the runs: per budget (``labels``, default ``budget_groups`` of active
    FLOPs), the N_total minimizing val_loss by Porian et al. 2024's Akima-spline method
    (``scaling.allocation.isoflop_minima(method="smooth")``, budget column ``budget``).

    Returns (the minima, or an empty frame when no budget has 3 sizes; notes on what was skipped).
    """
    import warnings

    from scaling.allocation import isoflop_minima
    from scaling.budgets import budget_groups

    final = runs.final
    frame = final.assign(budget=budget_groups(final["active_flops"]) if labels is None else labels)
    iso, notes = pd.DataFrame(), []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            iso = isoflop_minima(frame, budget="budget", size="n_total", loss="val_loss", method="smooth")
        except MoescaleError as exc:
            notes.append(f"note: isoFLOP minima skipped: {exc}")
    return iso, notes + [f"note: {w.message}" for w in caught]


def analyze(store, compute=None, *, memory: float | None = None, active: float | None = None, objectives=None,
            bootstrap: int = 1000, seed: int = 0, widen: dict | None = None, grid=None, progress=None) -> Analysis:
    """Run the whole analysis of a store (see the module docstring).

    ``store``: a Store or an existing store path (or the runs ``scaling.final.load_final`` made);
    its finished runs and evals are read once and handed to every part. ``compute``: budgets in
    FLOPs (default: the sweep's own budgets, groups of equal active FLOPs). ``objectives``:
    default "loss" plus every task kind (memorization, reasoning) with accuracy evals.
    ``bootstrap`` resamples of runs, shared by claims, accuracy and optimum; ``seed`` makes them
    deterministic. ``memory``, ``active``, ``widen``, ``grid``: as in
    ``scaling.optimum.find_optimum``. ``progress``: optional callable(stage: str) called as each
    part starts.
    """
    from scaling.accuracy import accuracy_models
    from scaling.budgets import budget_groups
    from scaling.claims import test_claims
    from scaling.final import load_final
    from scaling.optimum import find_optimum

    runs = load_final(store)
    notes = []
    say = progress or (lambda stage: None)
    say("claims")
    claims = test_claims(runs, bootstrap=bootstrap, seed=seed)
    full = claims.fits["moe"]
    weights = claims.bootstrap_weights
    samples = None
    if claims.bootstrap_params is not None:
        samples = claims.bootstrap_params[list(full.law.params)].to_numpy()
    accuracy = None
    say("accuracy")
    if len(runs.evals):
        try:
            start = {p: full.params[p] for p in full.law.params}
            accuracy = accuracy_models(runs, bootstrap=bootstrap, seed=seed, weights=weights, loss_start=start)
        except MoescaleError as exc:
            notes.append(f"note: accuracy models skipped: {exc}")
    else:
        notes.append("note: the store has no evals rows; accuracy models and task objectives skipped")
    if objectives is None:
        objectives = ["loss"] + ([k for k in ("memorization", "reasoning") if accuracy and k in accuracy.models])
    labels = budget_groups(runs.final["active_flops"])
    if compute is None:
        compute = sorted(float(f"{v:.3g}") for v in np.unique(labels))
    say("isoflop")
    iso, iso_notes = isoflop(runs, labels)
    notes += iso_notes
    say("optimum")
    opt = find_optimum(runs, compute, memory=memory, active=active, objective=objectives, grid=grid, widen=widen,
                       bootstrap=bootstrap, seed=seed, loss_fit=full, loss_samples=samples, accuracy=accuracy,
                       weights=weights)
    return Analysis(runs=runs.final, excluded=runs.excluded, claims=claims, accuracy=accuracy, isoflop=iso,
                    optimum=opt, compute=list(compute), objectives=list(objectives), bootstrap=int(bootstrap),
                    seed=int(seed), notes=notes)
