"""The best real MoE architecture per compute budget (and memory / active-parameter caps), with uncertainty.

Candidates are real architectures of a planner grid space (``scaling.planner.GridSpace``,
by default the sweep's own axes read from its finished runs) with exact accounting
(``scaling.Architecture``), not an idealized N_active = N_total / s. For each budget C:

    D = C / flops_per_token(arch)                       (tokens the budget buys),
    loss     = moe law (N_total, s, n_exp, D)          (``scaling.claims``' full fit),
    accuracy = mean over the kind's tasks of the GLM   (``scaling.accuracy``) at
               (loss, active FLOPs = C, TPP = D / N_total),

and the optimum is the argmin of loss (``objective="loss"``) or the argmax of the kind's
accuracy (``"memorization"``, ``"reasoning"``) over candidates with N_total <= memory and
N_active <= active. Uncertainty: the law and the GLMs are refitted on bootstrap resamples of
runs (the same resamples for both), and each resample's optimum is recorded: how often each
architecture and each sparsity is optimal, and the range of optimal sparsity. An optimum is
flagged ``at_edge`` when it is the smallest or largest N_total or sparsity among the
candidates (or the largest under a cap), and ``extrapolation`` when its N_total, tokens,
sparsity or the budget lies outside the data's range. The trend of optimal sparsity, N_total
and TPP against compute is a log-log power law where there are >= 3 budgets, with a bootstrap
interval (its exponent refitted on each resample's optima); the Pareto front is the predicted
loss against N_total at each budget.

An optimum is stated only where the data decide it (``scaling.optimum_checks``): the optimal
sparsity is ``determined`` when at least 80% of the resamples put it within one step of the
grid's sparsities, it is not on an edge of the searched grid (sparsity 1 and a binding cap
excepted), and the loss law is identified and not degenerate (``scaling.identify.fit_flags``);
the architecture likewise when it wins at least 80% of the resamples. Otherwise the summary
says ``undetermined`` and why. Lack of fit: each run's observed loss against the law's 95%
bootstrap prediction interval (the share outside is reported), and per budget whether the
observed best run disagrees with the predicted optimum beyond those intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.bootstrap import refit_weighted
from scaling.claims import MIN_RUNS
from scaling.errors import MoescaleError
from scaling.final import load_final
from scaling.fitjson import jsonable
from scaling.laws import MOE_X
from scaling.optimum_checks import (axis_value, check_widened, data_ranges, decide, lack_of_fit, model_flags,
                                    optimum_flags, prediction_intervals, sparsity_share, trend)

if TYPE_CHECKING:
    from scaling.accuracy import AccuracyResult, KindModel
    from scaling.final import FinalRuns
    from scaling.fitting import FitResult
    from scaling.planner import GridSpace

__all__ = ["OptimumResult", "find_optimum", "grid_from_runs", "candidate_table", "optimal_experts", "OBJECTIVES"]

OBJECTIVES = ("loss", "memorization", "reasoning")
_ARCH = ["n_layers", "d_model", "n_heads", "d_ff", "n_experts", "top_k"]


@dataclass
class OptimumResult:
    """Optima per budget and objective.

    ``best``: one row per (objective, compute): objective, compute, memory, active, the
    architecture (n_layers, d_model, n_heads, d_ff, n_experts, top_k, arch), n_total, n_active,
    sparsity, tokens, tpp, predicted (loss or accuracy), pred_low, pred_high (bootstrap
    percentile of the predicted value of that architecture), frequency (share of resamples in
    which it is optimal), sparsity_low, sparsity_high (range of the optimal sparsity across
    resamples, 2.5-97.5%), sparsity_share (share of resamples within one sparsity step of it),
    at_edge, edge (reason), extrapolation, extrapolation_reason, determined (bool: the sparsity is
    stated), why (str: why not), arch_determined, arch_why (the same for the architecture;
    ``scaling.optimum_checks.decide``), observed_best, observed_loss (the best run at the budget),
    lack_of_fit (bool), lack_of_fit_reason (loss objective only; ``optimum_checks.lack_of_fit``).
    ``frequency``: objective, compute, arch, n_experts, top_k, d_model, n_layers, sparsity, count, share.
    ``sparsity_frequency``: objective, compute, sparsity, count, share.
    ``trend``: objective, quantity (sparsity, n_total, tpp), exponent, exponent_lo, exponent_hi
    (bootstrap 95%), coefficient, n_points, n_boot (rows only where >= 3 budgets).
    ``runs_fit``: per run, its observed loss against the law's 95% prediction interval
    (``optimum_checks.prediction_intervals``); ``fit_check``: law, flags (``fit_flags``),
    n_runs, outside_share (share of runs outside their interval).
    ``pareto``: compute, arch, n_total, sparsity, loss (the predicted-loss / N_total front).
    ``candidates``: compute, arch columns, n_total, n_active, sparsity, tokens, tpp, loss and one
    column per accuracy objective (point predictions), for figures.
    """

    best: pd.DataFrame
    frequency: pd.DataFrame
    sparsity_frequency: pd.DataFrame
    trend: pd.DataFrame
    pareto: pd.DataFrame
    candidates: pd.DataFrame
    grid: tuple[GridSpace, ...]
    bootstrap: int
    seed: int
    notes: list[str] = field(default_factory=list)
    runs_fit: pd.DataFrame = field(default_factory=pd.DataFrame)
    fit_check: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One line per budget and objective: the best architecture with its uncertainty, or
        ``undetermined`` and why; then the law's lack-of-fit check and the notes."""
        lines = []
        for r in self.best.itertuples(index=False):
            flags = (" [edge: " + r.edge + "]" if r.at_edge else "") + (
                " [extrapolation: " + r.extrapolation_reason + "]" if r.extrapolation else "")
            unc = (f", optimal in {r.frequency:.0%} of {self.bootstrap} resamples, sparsity range "
                   f"{r.sparsity_low:g}..{r.sparsity_high:g}, {r.objective} [{r.pred_low:.4g}, {r.pred_high:.4g}]"
                   if self.bootstrap else "")
            head = (f"{r.arch}" if r.arch_determined else f"undetermined ({r.arch_why}); fitted {r.arch}")
            lines.append(f"C = {r.compute:.3g} {r.objective}: {head} (N_total {r.n_total:.4g}, N_active "
                         f"{r.n_active:.4g}, s = {r.sparsity:g}, D = {r.tokens:.4g}, TPP = {r.tpp:.3g}) "
                         f"predicted {r.predicted:.4g}{unc}{flags}")
            if r.lack_of_fit:
                lines.append(f"  lack of fit at C = {r.compute:.3g}: {r.lack_of_fit_reason}")
        fc = self.fit_check
        if fc and fc.get("n_runs"):
            share = fc["outside_share"]
            lines.append(f"law {fc['law']}: {'n/a' if share != share else f'{share:.0%}'} of {fc['n_runs']} runs "
                         "outside their 95% prediction interval" + (f"; {fc['flags']}" if fc["flags"] else ""))
        return "\n".join(lines + self.notes)

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> dict:
        """What ``moescale optimum --json`` writes: best, frequency, sparsity_frequency, trend and
        pareto, runs_fit as records (NaN as null), fit_check, bootstrap, seed, notes. The per-architecture ``candidates`` table
        and the grid are left out: they are inputs the figures redraw from."""
        return jsonable({"best": self.best, "frequency": self.frequency, "sparsity_frequency": self.sparsity_frequency,
                         "trend": self.trend, "pareto": self.pareto, "fit_check": self.fit_check,
                         "runs_fit": self.runs_fit, "bootstrap": self.bootstrap, "seed": self.seed,
                         "notes": self.notes})


def _arch_name(r) -> str:
    return f"L{int(r['n_layers'])}-d{int(r['d_model'])}-E{int(r['n_experts'])}-k{int(r['top_k'])}-f{int(r['d_ff'])}"


def grid_from_runs(final: pd.DataFrame, widen: dict | None = None):
    """The planner grid space of a sweep's finished runs: its distinct n_layers, d_model, n_experts,
    top_k and granularity d_model/d_ff, with its head_dim, vocab_size and seq_len (the most common
    value where runs differ); ``widen`` adds axis values (e.g. {"n_experts": [64, 128]}).
    The embedding tying is chosen so that the accounting reproduces the runs' n_total."""
    from scaling.architecture import Architecture
    from scaling.planner import GridSpace

    need = ["n_layers", "d_model", "n_heads", "d_ff", "n_experts", "top_k", "vocab_size", "seq_len", "n_total"]
    missing = [c for c in need if c not in final.columns]
    if missing:
        raise MoescaleError(f"final runs lack column(s) {', '.join(missing)} to build the grid space")
    f = final.dropna(subset=need)
    if f.empty:
        raise MoescaleError("no finished run has a complete architecture (n_layers, d_model, ...)")
    mode = lambda s: int(s.astype(int).mode().iloc[0])  # noqa: E731
    head_dim = mode(f["d_model"] // f["n_heads"])
    gran = tuple(sorted({round(float(d) / float(ff), 6) for d, ff in zip(f["d_model"], f["d_ff"])}))
    axes = {"n_layers": tuple(sorted(set(f["n_layers"].astype(int)))), "d_model": tuple(sorted(set(f["d_model"].astype(int)))),
            "n_experts": tuple(sorted(set(f["n_experts"].astype(int)))), "top_k": tuple(sorted(set(f["top_k"].astype(int)))),
            "granularity": gran}
    for k, v in (widen or {}).items():
        if k not in axes:
            raise MoescaleError(f"cannot widen grid axis {k!r}; axes: {', '.join(axes)}")
        axes[k] = tuple(sorted(set(axes[k]) | {axis_value(k, x) for x in np.atleast_1d(np.asarray(v, dtype=object))}))
    r0 = f.iloc[0]
    tied = False
    a = Architecture(d_model=int(r0.d_model), n_layers=int(r0.n_layers), n_heads=int(r0.n_heads), d_ff=int(r0.d_ff),
                     n_experts=int(r0.n_experts), top_k=int(r0.top_k), vocab_size=int(r0.vocab_size),
                     seq_len=int(r0.seq_len))
    if a.n_total != int(r0.n_total):
        tied = True
    return GridSpace(**axes, head_dim=head_dim, vocab_size=mode(f["vocab_size"]), seq_len=mode(f["seq_len"]),
                     tied_embeddings=tied)


def candidate_table(grid) -> pd.DataFrame:
    """Every valid architecture of the grid space(s) with its accounting: arch columns, n_total,
    n_active, flops_per_token, sparsity, arch (a readable name)."""
    from scaling.planner import Constraints, candidates

    archs = candidates(grid, Constraints())
    rows = [{"n_layers": a.n_layers, "d_model": a.d_model, "n_heads": a.n_heads, "d_ff": a.d_ff,
             "n_experts": a.n_experts, "top_k": a.top_k, "n_total": float(a.n_total), "n_active": float(a.n_active),
             "flops_per_token": float(a.flops_per_token), "sparsity": a.sparsity} for a in archs]
    df = pd.DataFrame(rows)
    df["arch"] = df.apply(_arch_name, axis=1)
    return df


def _objective_values(obj, cand_C, law, P, acc_models, C):
    """Predicted objective for each parameter set row of P (B, k): (B, n_cand) (loss) or accuracy."""
    X = {"N": cand_C["n_total"].to_numpy(), "s": cand_C["sparsity"].to_numpy(),
         "n_exp": cand_C["n_experts"].to_numpy(), "D": cand_C["tokens"].to_numpy()}
    L = np.atleast_2d(law.predict(P, X))
    if obj == "loss":
        return L
    model, params = acc_models[obj]
    n = len(cand_C)
    af = np.full(n, C)
    tpp = cand_C["tpp"].to_numpy()
    if params is None:
        return np.atleast_2d(model.predict(L[0], af, tpp))
    out = np.empty((params.shape[0], n))
    e = None
    for b in range(params.shape[0]):
        e = model.predict(L[b], af, tpp, params[b : b + 1])
        out[b] = np.atleast_2d(e)[0]
    return out


@dataclass
class _Models:
    """What the optimum evaluates: the loss law's fit and its resample refits (B, n_params) on the
    run weights (B, n_runs), and the accuracy model of each accuracy objective."""

    loss_fit: FitResult
    samples: np.ndarray | None
    weights: np.ndarray | None
    accuracy: AccuracyResult | None
    acc_models: dict[str, KindModel]

    @property
    def n_boot(self) -> int:
        return 0 if self.samples is None else len(self.samples)


def _check_request(objective, compute, memory, active, bootstrap) -> tuple[list[str], list[float]]:
    """The objectives and budgets asked for as lists, after checking them and the caps."""
    objectives = [objective] if isinstance(objective, str) else list(objective)
    bad = [o for o in objectives if o not in OBJECTIVES]
    if bad or not objectives:
        raise MoescaleError(f"objective {bad[0] if bad else None!r} is not one of {', '.join(OBJECTIVES)}")
    compute = [_budget(c) for c in (compute if isinstance(compute, (list, tuple, np.ndarray, pd.Series)) else [compute])]
    if not compute or any(not (math.isfinite(c) and c > 0) for c in compute):
        raise MoescaleError(f"compute budgets must be finite and > 0, got {', '.join(f'{c:g}' for c in compute) or 'none'}")
    for name, cap in (("memory", memory), ("active", active)):
        if cap is not None and not (math.isfinite(cap) and cap > 0):
            raise MoescaleError(f"{name} cap {cap!r} must be finite and > 0")
    if int(bootstrap) < 0:
        raise MoescaleError(f"bootstrap = {bootstrap}: must be >= 0")
    return objectives, compute


def _budget(value) -> float:
    """One compute budget as a float; MoescaleError naming it when it is not a number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise MoescaleError(f"compute budget {value!r} is not a number")
    return float(value)


def _fit_models(runs: FinalRuns, objectives, bootstrap: int, seed: int, loss_fit, loss_samples, accuracy,
                weights) -> _Models:
    """The models the optimum evaluates, reusing those given and fitting the rest on ``runs``:
    the full ``moe`` law (lam fixed at 0 with one top_k), its refits on ``bootstrap`` resamples of
    runs, and the GLM of each accuracy objective refitted on the same resamples."""
    from scaling.fitting import fit

    final = runs.final
    if loss_fit is None:
        fix = None if final["top_k"].nunique() >= 2 else {"lam": 0.0}
        loss_fit = fit(final, "moe", x=MOE_X, y="val_loss", stderr=False, fix=fix)
    B = int(bootstrap) if loss_samples is None else len(loss_samples)
    if B and weights is None:
        weights = runs.resample(B, seed)
    if B and loss_samples is None:
        loss_samples, _ = refit_weighted(loss_fit, weights)
    acc_models = {}
    for o in objectives:
        if o == "loss":
            continue
        if accuracy is None:
            from scaling.accuracy import accuracy_models

            if len(runs.evals) == 0:
                raise MoescaleError(f"objective {o!r} needs eval data, but the store has no evals rows")
            accuracy = accuracy_models(runs, kinds=None, bootstrap=0, weights=weights if B else None, two_step=False)
        if o not in accuracy.models:
            raise MoescaleError(f"objective {o!r} needs {o} accuracy evals; the store has "
                                f"{', '.join(accuracy.models) or 'none'}")
        acc_models[o] = accuracy.models[o]
    return _Models(loss_fit, loss_samples if B else None, weights if B else None, accuracy, acc_models)


def _capped_candidates(grid, memory: float | None, active: float | None) -> pd.DataFrame:
    """``candidate_table(grid)`` with N_total <= memory and N_active <= active (None: no cap)."""
    cand = candidate_table(grid)
    if memory is not None:
        cand = cand[cand["n_total"] <= memory]
        if cand.empty:
            raise MoescaleError(f"no architecture of the grid has N_total <= {memory:.4g} (smallest: "
                                f"{candidate_table(grid)['n_total'].min():.4g})")
    if active is not None:
        cand = cand[cand["n_active"] <= active]
        if cand.empty:
            raise MoescaleError(f"no architecture of the grid has N_active <= {active:.4g} under the caps")
    return cand.reset_index(drop=True)


def _budget_candidates(cand: pd.DataFrame, C: float, models: _Models, objectives: list[str]) -> pd.DataFrame:
    """The candidates at budget C with what they buy: tokens D = C / flops_per_token (candidates
    with D < 1 dropped), tpp = D / N_total, compute, and the point prediction of the loss law
    (``loss``) and of each accuracy objective (a column named after it)."""
    cc = cand.copy()
    cc["tokens"] = C / cc["flops_per_token"]
    cc = cc[cc["tokens"] >= 1].reset_index(drop=True)
    if cc.empty:
        raise MoescaleError(f"compute budget {C:.3g} buys less than one token for every candidate architecture "
                            f"(cheapest: {cand['flops_per_token'].min():.3g} FLOPs per token)")
    cc["tpp"] = cc["tokens"] / cc["n_total"]
    cc["compute"] = C
    law, P0 = models.loss_fit.law, models.loss_fit.vector()[None, :]
    point = {o: _objective_values(o, cc, law, P0, {k: (v, None) for k, v in models.acc_models.items()}, C)[0]
             for o in ["loss", *(o for o in objectives if o != "loss")]}
    for o, v in point.items():
        cc[o] = v
    return cc


def _pareto(cc: pd.DataFrame, C: float) -> list[dict]:
    """The predicted-loss / N_total front at budget C: candidates by N_total, each lower in loss than all smaller."""
    rows, best_so_far = [], np.inf
    for r in cc.sort_values(["n_total", "loss"]).reset_index(drop=True).itertuples(index=False):
        if r.loss < best_so_far:
            best_so_far = r.loss
            rows.append({"compute": C, "arch": r.arch, "n_total": r.n_total, "sparsity": r.sparsity, "loss": r.loss})
    return rows


def _point_optimum(cc: pd.DataFrame, objective: str) -> int:
    """The row of ``_budget_candidates`` that is optimal under the point fit: argmin of the loss,
    or argmax of the objective's accuracy."""
    sign = 1.0 if objective == "loss" else -1.0
    return int(np.argmin(sign * cc[objective].to_numpy()))


def _bootstrap_frequencies(cc: pd.DataFrame, objective: str, i: int, models: _Models,
                          final: pd.DataFrame) -> tuple[list[dict], list[dict], dict, dict]:
    """The optimum on each bootstrap resample (the refitted law and GLM; resamples with a
    non-finite prediction dropped) among the budget's candidates ``cc``, ``i`` the point optimum.

    Returns (frequency rows: objective, compute, arch, n_experts, top_k, d_model, n_layers,
    sparsity, count, share; sparsity_frequency rows: objective, compute, sparsity, count, share;
    the point optimum's pred_low, pred_high (2.5-97.5% of its predicted value), frequency (its
    share of resamples), sparsity_low, sparsity_high (2.5-97.5% of the optimal sparsity),
    sparsity_share (resamples within one sparsity step of it); each resample's optimal sparsity,
    n_total and tpp (B,), NaN where its prediction was not finite, for the trend).
    """
    o, C = objective, float(cc["compute"].iloc[0])
    sign = 1.0 if o == "loss" else -1.0
    acc = {}
    if o != "loss":  # refit the GLM on the same resamples when the accuracy result lacks them
        acc = {o: (models.acc_models[o], _glm_samples(models.accuracy, o, final, models.weights))}
    V = _objective_values(o, cc, models.loss_fit.law, models.samples, acc, C)
    kept = np.isfinite(V).all(axis=1)
    V = V[kept]
    if not len(V):
        raise MoescaleError(f"C = {C:.3g} {o}: every bootstrap refit gives a non-finite prediction")
    boot_best = np.argmin(sign * V, axis=1)
    counts = pd.Series(cc["arch"].to_numpy()[boot_best]).value_counts()
    freq = []
    for arch, cnt in counts.items():
        a = cc[cc["arch"] == arch].iloc[0]
        freq.append({"objective": o, "compute": C, "arch": arch, "n_experts": int(a.n_experts), "top_k": int(a.top_k),
                     "d_model": int(a.d_model), "n_layers": int(a.n_layers), "sparsity": float(a.sparsity),
                     "count": int(cnt), "share": cnt / len(boot_best)})
    sp = cc["sparsity"].to_numpy()[boot_best]
    sfreq = [{"objective": o, "compute": C, "sparsity": float(s_val), "count": int(cnt), "share": cnt / len(sp)}
             for s_val, cnt in pd.Series(sp).value_counts().sort_index().items()]
    pred_lo, pred_hi = np.percentile(V[:, i], [2.5, 97.5])
    s_lo, s_hi = np.percentile(sp, [2.5, 97.5], method="nearest")
    stats = {"pred_low": float(pred_lo), "pred_high": float(pred_hi),
             "frequency": float(counts.get(cc["arch"].iloc[i], 0) / len(boot_best)),
             "sparsity_low": float(s_lo), "sparsity_high": float(s_hi),
             "sparsity_share": sparsity_share(sp, float(cc["sparsity"].iloc[i]), cc["sparsity"].to_numpy())}
    per_resample = {}
    for q in ("sparsity", "n_total", "tpp"):
        per_resample[q] = np.full(len(kept), np.nan)
        per_resample[q][kept] = cc[q].to_numpy(dtype=float)[boot_best]
    return freq, sfreq, stats, per_resample


def find_optimum(source, compute, *, memory: float | None = None, active: float | None = None,
                 objective="loss", grid: GridSpace | tuple[GridSpace, ...] | None = None, widen: dict | None = None,
                 bootstrap: int = 200, seed: int = 0, evals: pd.DataFrame | None = None,
                 loss_fit: FitResult | None = None, loss_samples: np.ndarray | None = None,
                 accuracy: AccuracyResult | None = None, weights: np.ndarray | None = None) -> OptimumResult:
    """The best architecture per compute budget and objective (see the module docstring).

    Args:
        source: the runs loaded by ``scaling.final.load_final``, a Store, a store path, or a
            DataFrame of the ``final`` view (give ``evals`` too for accuracy objectives).
        compute: budgets C in FLOPs (a number or a list).
        memory: cap on N_total (None: no cap). active: cap on N_active (None: no cap).
        objective: "loss", "memorization", "reasoning", or a list of them.
        grid: a GridSpace (or tuple of them) of candidates; default the sweep's own
            (``grid_from_runs``), widened by ``widen`` (axis -> extra values).
        bootstrap: resamples of runs for the uncertainty (0: none). seed: their seed.
        loss_fit, loss_samples, accuracy, weights: reuse a full ``moe`` FitResult, its bootstrap
            parameter vectors (B, 7), an AccuracyResult and the resample weights (B, n_runs) made
            by ``scaling.analysis.analyze`` (computed here when not given).
    Raises MoescaleError (one line) for no finished runs, too few runs, a budget that is not a
    number or no candidate can meet (D < 1 token, or no candidate under the caps), a widened
    value that adds no valid candidate (``optimum_checks.check_widened``; checked before any fit)
    and an objective without eval data.
    """
    objectives, compute = _check_request(objective, compute, memory, active, bootstrap)
    runs = load_final(source, evals=evals)
    final = runs.final
    if len(final) < MIN_RUNS:
        raise MoescaleError(f"{len(final)} finished runs; the moe law needs at least {MIN_RUNS} (7 free parameters plus 3)")
    grid = grid if grid is not None else grid_from_runs(final, widen)
    if widen:
        check_widened(grid, widen, candidate_table(grid), float(final["n_total"].max()))
    cand = _capped_candidates(grid, memory, active)
    models = _fit_models(runs, objectives, bootstrap, seed, loss_fit, loss_samples, accuracy, weights)
    ranges = data_ranges(final)
    flags = model_flags(models.loss_fit, models.samples, float(final["val_loss"].min()))
    runs_fit = prediction_intervals(models.loss_fit, models.samples, final, MOE_X, seed)
    nan = float("nan")
    best_rows, freq_rows, sfreq_rows, pareto_rows, cand_rows, boot = [], [], [], [], [], {}
    for C in compute:
        cc = _budget_candidates(cand, C, models, objectives)
        cand_rows.append(cc)
        pareto_rows += _pareto(cc, C)
        for o in objectives:
            i = _point_optimum(cc, o)
            row = cc.iloc[i]
            stats = dict.fromkeys(("pred_low", "pred_high", "frequency", "sparsity_low", "sparsity_high",
                                   "sparsity_share"), nan)
            if models.n_boot:
                freq, sfreq, stats, boot[(o, C)] = _bootstrap_frequencies(cc, o, i, models, final)
                freq_rows, sfreq_rows = freq_rows + freq, sfreq_rows + sfreq
            r = {"objective": o, "compute": C, "memory": memory, "active": active,
                 **{k: int(row[k]) for k in _ARCH}, "arch": row["arch"], "n_total": row["n_total"],
                 "n_active": row["n_active"], "sparsity": row["sparsity"], "tokens": row["tokens"],
                 "tpp": row["tpp"], "predicted": float(row[o]), **stats,
                 **optimum_flags(row, cc, ranges, bool(memory or active))}
            r.update(decide(r, models.n_boot, flags))
            r.update(lack_of_fit(r, runs_fit) if o == "loss" else
                     {"observed_best": None, "observed_loss": nan, "lack_of_fit": False, "lack_of_fit_reason": ""})
            best_rows.append(r)
    best = pd.DataFrame(best_rows)
    outside = runs_fit["outside"][runs_fit["pi_low"].notna()]
    fit_check = {"law": models.loss_fit.law.name, "flags": flags, "n_runs": int(len(outside)),
                 "outside_share": float(outside.mean()) if len(outside) else nan}
    return OptimumResult(best=best, frequency=pd.DataFrame(freq_rows), sparsity_frequency=pd.DataFrame(sfreq_rows),
                         trend=trend(best, boot), pareto=pd.DataFrame(pareto_rows),
                         candidates=pd.concat(cand_rows, ignore_index=True),
                         grid=grid if isinstance(grid, tuple) else (grid,), bootstrap=models.n_boot, seed=int(seed),
                         runs_fit=runs_fit, fit_check=fit_check)


def _glm_samples(accuracy, kind, final, weights):
    """The kind's GLM refitted on the resample weights (B, n_runs of ``final``), cached on the model."""
    from scaling.accuracy import glm_design, irls_batch

    m = accuracy.models[kind]
    cache = getattr(m, "_opt_samples", None)
    if cache is not None and cache[0] is weights:
        return cache[1]
    if m.bootstrap_params is not None and len(m.bootstrap_params) == len(weights):
        out = m.bootstrap_params
    else:
        d = accuracy.data[accuracy.data["task_kind"] == kind].reset_index(drop=True)
        index = {r: i for i, r in enumerate(final["run_id"])}
        w = np.asarray(weights)[:, [index[r] for r in d["run_id"]]]
        X = glm_design(d, m.tasks, m.c_ref, m.with_flops)
        out, _ = irls_batch(X, d["successes"].to_numpy(float), d["n_examples"].to_numpy(float), w, m.params)
    m._opt_samples = (weights, out)
    return out


def optimal_experts(result, n_dense, experts=None) -> pd.DataFrame:
    """Per dense model size N, the expert count minimizing a fitted ``clark`` law (Clark et al. 2022,
    arXiv 2202.01169): E_opt(N) = argmin over ``experts`` (default 1, 2, 4, ..., 512) of
    log10 L = a log10 N + b log10 Ê + c log10 N log10 Ê + d.

    ``result``: a FitResult (or any object with ``law`` and ``params``) of a law of (N, E).
    Returns N, E_opt, loss_opt, at_edge (E_opt is the smallest or largest expert count searched).
    """
    law = result.law
    if set(law.variables) != {"N", "E"}:
        raise MoescaleError(f"optimal_experts needs a law of (N, E) such as clark, not {law.name!r} {law.variables}")
    E = np.asarray(experts if experts is not None else 2.0 ** np.arange(10), dtype=float)
    N = np.atleast_1d(np.asarray(n_dense, dtype=float))
    if E.size == 0 or np.any(E < 1) or np.any(N <= 0):
        raise MoescaleError("optimal_experts: expert counts must be >= 1 and sizes > 0")
    NN, EE = np.meshgrid(N, E, indexing="ij")
    L = np.asarray(law.predict(result.params, {"N": NN.ravel(), "E": EE.ravel()})).reshape(NN.shape)
    j = np.argmin(L, axis=1)
    return pd.DataFrame({"N": N, "E_opt": E[j], "loss_opt": L[np.arange(len(N)), j],
                         "at_edge": (j == 0) | (j == len(E) - 1)})
