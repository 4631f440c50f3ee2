"""The whole analysis of a store in one call: claims, accuracy regimes, isoFLOP minima and the optimum.

``analyze(store, compute=...)`` runs, on the store's finished runs, with one set of bootstrap
resamples of runs shared by every part:

- ``scaling.claims.test_claims``: Liew et al. 2026's claims as nested-model tests of the ``moe`` law;
- ``scaling.accuracy.accuracy_models``: Nakamura et al. 2025's binomial GLMs per task kind, the
  TPP peak and the two-step loss -> accuracy path (skipped, with a note, when the store has no evals);
- ``scaling.allocation.isoflop_minima``: the data-side optimum per budget (Porian et al. 2024's
  Akima-spline method) of loss against N_total, per architecture family (n_experts, top_k):
  runs of different families that share an N_total are never averaged (a k = 1 and a k = 2 run
  of one size averaged make a profile no run has); the table's ``family`` column names it;
- ``scaling.optimum.find_optimum``: the best real architecture per budget and objective.

The headline states an optimal sparsity only where the data decide it (``determined``: 80% of
the resamples within one sparsity step, not on an edge of the grid, the law identified; see
``scaling.optimum_checks``), else ``undetermined`` and why. ``where=`` / ``sweep=`` select one
variant of a sweep; a store that mixes variants is refused (``scaling.final.check_variants``).

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
    used; ``objectives``: the objectives optimized; ``notes``: what was skipped and why;
    ``evals``: the store's evals rows of those runs (empty when it has none).
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
    evals: pd.DataFrame = field(default_factory=pd.DataFrame)

    def headline(self) -> list[str]:
        """One line per budget and objective: the optimal sparsity with its resample range where the
        data decide it (``best.determined``), else ``undetermined`` with the fitted value and why."""
        out = []
        for r in self.optimum.best.itertuples(index=False):
            rng = (f"range {r.sparsity_low:g}..{r.sparsity_high:g}, within one step in {r.sparsity_share:.0%} of "
                   f"resamples, {r.frequency:.0%} pick {r.arch}" if self.bootstrap else "")
            if r.determined:
                line = f"optimal sparsity {r.sparsity:g} ({rng})"
            else:
                line = f"optimal sparsity undetermined (fitted {r.sparsity:g}: {r.why}" + (f"; {rng})" if rng else ")")
            lof = f"; lack of fit: {r.lack_of_fit_reason}" if r.lack_of_fit else ""
            out.append(f"C = {r.compute:.3g}, {r.objective}: {line}{lof}")
        return out

    def table(self) -> pd.DataFrame:
        """Claims, accuracy and optimum as one table (``moescale analyze``): part (claim, accuracy,
        optimum), item, estimate, ci_low, ci_high, verdict. An optimum row's estimate is the optimal
        sparsity only where it is ``determined`` (NaN otherwise), its interval the resamples' range,
        its verdict "determined: <arch>" or "undetermined: <why>"."""
        rows = [{"part": "claim", "item": r.claim, "estimate": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high,
                 "verdict": r.verdict} for r in self.claims.table.itertuples(index=False)]
        nan = float("nan")
        for v in (self.accuracy.verdicts if self.accuracy is not None else []):
            item, _, text = str(v).partition(": ")
            rows.append({"part": "accuracy", "item": item, "estimate": nan, "ci_low": nan, "ci_high": nan,
                         "verdict": text})
        for r in self.optimum.best.itertuples(index=False):
            rows.append({"part": "optimum", "item": f"C = {r.compute:.3g} {r.objective}: sparsity",
                         "estimate": r.sparsity if r.determined else nan, "ci_low": r.sparsity_low,
                         "ci_high": r.sparsity_high,
                         "verdict": f"determined: {r.arch}" if r.determined else f"undetermined: {r.why}"})
        return pd.DataFrame(rows, columns=["part", "item", "estimate", "ci_low", "ci_high", "verdict"])

    def summary(self) -> str:
        """The claims, accuracy, isoFLOP minima and optimum summaries, and the notes, as text."""
        parts = [self.claims.summary()]
        if self.accuracy is not None:
            parts.append(self.accuracy.summary())
        if len(self.isoflop):
            parts.append("IsoFLOP minima (loss against N_total, Akima spline, per family n_experts/top_k):\n"
                         + self.isoflop.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        parts.append("Optimum per budget:\n" + self.optimum.summary())
        return "\n\n".join(parts + self.notes)

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> dict:
        """The analysis as a JSON-ready dict: n_runs, excluded, compute, objectives, bootstrap, seed,
        headline, table (``table()`` as records), claims / accuracy / optimum (their ``to_json``; accuracy None without evals),
        isoflop as records, notes. The runs themselves are left out: they are the store's ``final`` view."""
        return jsonable({"n_runs": len(self.runs), "excluded": self.excluded, "compute": self.compute,
                         "objectives": self.objectives, "bootstrap": self.bootstrap, "seed": self.seed,
                         "headline": self.headline(), "table": self.table(), "claims": self.claims.to_json(),
                         "accuracy": None if self.accuracy is None else self.accuracy.to_json(),
                         "isoflop": self.isoflop, "optimum": self.optimum.to_json(), "notes": self.notes})


def isoflop(runs: FinalRuns, labels: np.ndarray | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The isoFLOP minima of the runs, per budget (``labels``, default ``budget_groups`` of active
    FLOPs) and architecture family (n_experts, top_k): the N_total minimizing val_loss by Porian et
    al. 2024's Akima-spline method (``scaling.allocation.isoflop_minima(method="smooth")``, budget
    column ``budget``). Runs of different families are never averaged, even where they share an
    N_total; only seeds of one architecture are.

    Also the lower envelope of the families (``family`` "envelope", n_experts and top_k NaN): per
    budget and N_total the lowest family mean, so a profile exists where no single family has 3
    sizes, still without averaging families.

    Returns (the minima with columns family ("E8-k1" or "envelope"), n_experts, top_k, budget,
    N_opt, ..., or an empty frame when nothing has 3 sizes in a budget; notes on what was skipped
    and on the per-family rule).
    """
    import warnings

    from scaling.allocation import isoflop_minima
    from scaling.budgets import budget_groups

    final = runs.final
    frame = final.assign(budget=budget_groups(final["active_flops"]) if labels is None else labels)
    parts, skipped = [], []
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        for (E, k), g in frame.groupby(["n_experts", "top_k"], sort=True):
            family = f"E{int(E)}-k{int(k)}"
            try:
                iso = isoflop_minima(g, budget="budget", size="n_total", loss="val_loss", method="smooth")
            except MoescaleError:
                skipped.append(family)
                continue
            parts.append(iso.assign(family=family, n_experts=int(E), top_k=int(k)))
            skipped += [f"{family} at budget {b:.3g}" for b in iso.attrs.get("skipped", [])]
        # the lower envelope: per budget and N_total the best family (seeds of one architecture averaged first)
        fam = frame.groupby(["budget", "n_total", "n_experts", "top_k"], as_index=False)["val_loss"].mean()
        env = fam.groupby(["budget", "n_total"], as_index=False)["val_loss"].min()
        try:
            iso = isoflop_minima(env, budget="budget", size="n_total", loss="val_loss", method="smooth")
            parts.append(iso.assign(family="envelope", n_experts=np.nan, top_k=np.nan))
        except MoescaleError:
            skipped.append("envelope")
    notes = ["note: isoFLOP minima are per architecture family (n_experts, top_k) and of the families' lower "
             "envelope (family 'envelope'); runs of different families that share an N_total are never averaged"]
    if skipped:
        notes.append(f"note: isoFLOP minima skipped where a family has fewer than 3 sizes in a budget: "
                     f"{', '.join(skipped)}")
    if not parts:
        return pd.DataFrame(), notes
    iso = pd.concat(parts, ignore_index=True)
    front = ["family", "n_experts", "top_k"]
    return iso[front + [c for c in iso.columns if c not in front]], notes


def _check_args(compute, seed, bootstrap) -> list[float] | None:
    """``compute`` as a list of budgets (a number is one budget; None: the sweep's own); seed and
    bootstrap checked; MoescaleError (one line) otherwise."""
    for name, v in (("seed", seed), ("bootstrap", bootstrap)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise MoescaleError(f"{name} = {v!r}: must be an integer >= 0")
    if compute is None:
        return None
    values = list(compute) if isinstance(compute, (list, tuple, np.ndarray, pd.Series)) else [compute]
    for c in values:
        if isinstance(c, bool) or not isinstance(c, (int, float, np.number)) or not (np.isfinite(c) and c > 0):
            raise MoescaleError(f"compute budget {c!r} must be a finite number > 0")
    if not values:
        raise MoescaleError("compute: no budget given")
    return [float(c) for c in values]


def analyze(store, compute=None, *, memory: float | None = None, active: float | None = None, objectives=None,
            bootstrap: int = 1000, seed: int = 0, widen: dict | None = None, grid=None, progress=None,
            where: str | None = None, sweep: str | None = None) -> Analysis:
    """Run the whole analysis of a store (see the module docstring).

    ``store``: a Store or an existing store path (or the runs ``scaling.final.load_final`` made);
    its finished runs and evals are read once and handed to every part. ``compute``: budgets in
    FLOPs (default: the sweep's own budgets, groups of equal active FLOPs). ``objectives``:
    default "loss" plus every task kind (memorization, reasoning) with accuracy evals.
    ``bootstrap`` resamples of runs, shared by claims, accuracy and optimum; ``seed`` makes them
    deterministic. ``memory``, ``active``, ``widen``, ``grid``: as in
    ``scaling.optimum.find_optimum``. ``progress``: optional callable(stage: str) called as each
    part starts. ``where`` (SQL over ``final``) and ``sweep`` (a sweep name) select one variant
    (``scaling.final.load_final``). Raises MoescaleError (one line) for bad arguments.
    """
    from scaling.accuracy import accuracy_models
    from scaling.budgets import budget_groups, store_budgets
    from scaling.claims import test_claims
    from scaling.final import load_final
    from scaling.optimum import find_optimum

    compute = _check_args(compute, seed, bootstrap)
    runs = load_final(store, where=where, sweep=sweep)
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
        compute = store_budgets(runs)
    say("isoflop")
    iso, iso_notes = isoflop(runs, labels)
    notes += iso_notes
    say("optimum")
    opt = find_optimum(runs, compute, memory=memory, active=active, objective=objectives, grid=grid, widen=widen,
                       bootstrap=bootstrap, seed=seed, loss_fit=full, loss_samples=samples, accuracy=accuracy,
                       weights=weights)
    return Analysis(runs=runs.final, excluded=runs.excluded, claims=claims, accuracy=accuracy, isoflop=iso,
                    optimum=opt, compute=list(compute), objectives=list(objectives), bootstrap=int(bootstrap),
                    seed=int(seed), notes=notes, evals=runs.evals)
