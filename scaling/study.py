"""A study's questions answered from one analysis: the headline table, seed noise and knowledge capacity.

A study (``scaling.presets``' ``cpu-study``) is a sweep of named slices; every run's ``slice``
column in the store's ``final`` view names the slice(s) it serves. ``study_questions`` answers
the five questions of the study design, each as an estimate with its 95% interval and one of
``scaling.verdicts``' words, from an ``Analysis`` of the whole store:

1. memorization rises with N_total at fixed active parameters (Nakamura et al. 2025, arXiv
   2508.18672; Allen-Zhu & Li 2024, arXiv 2404.05405): ``memorization_vs_total``, a binomial GLM
   of facts accuracy on ln N_total over the sparsity slice's top-1 runs (one core, so one
   N_active), one intercept per budget;
2. at equal loss, reasoning accuracy rises with active FLOPs (Nakamura et al.): the reasoning
   GLM's b_flops (``scaling.accuracy``);
3. where reasoning and memorization accuracy peak in TPP: the GLMs' vertex (``scaling.accuracy``);
4. Liew et al. 2026 (arXiv 2601.08215): gamma (sparsity beyond N_total) and lambda (the
   n_experts penalty at fixed N_total and s) of the ``moe`` law (``scaling.claims``);
5. the optimal sparsity per budget for loss, memorization and reasoning with its bootstrap
   frequency (``scaling.optimum``).

``seed_noise`` measures how much runs that differ only in their seed differ; ``capacity``
reads the facts task's knowledge bits per parameter (Allen-Zhu & Li 2024, Part 3.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.accuracy import accuracy_table, irls_batch
from scaling.bootstrap import resample_runs
from scaling.budgets import budget_groups
from scaling.verdicts import Verdict, sign_verdict

if TYPE_CHECKING:
    from scaling.analysis import Analysis

__all__ = ["COLUMNS", "capacity", "memorization_vs_total", "seed_noise", "study_questions"]

#: Columns of ``study_questions``' table.
COLUMNS = ("question", "claim", "estimate", "ci_low", "ci_high", "verdict")
#: Fewest runs (at two or more N_total values) the memorization-vs-N_total GLM is fitted on.
MIN_RUNS = 6


def _in_slice(runs: pd.DataFrame, name: str) -> pd.Series:
    if "slice" not in runs.columns:
        return pd.Series(False, index=runs.index)
    return runs["slice"].fillna("").astype(str).str.split("+").apply(lambda parts: name in parts)


def memorization_vs_total(analysis: Analysis, *, alpha: float = 0.05) -> dict:
    """Question 1: does memorization rise with N_total at fixed active parameters?

    On the sparsity slice's top_k = 1 runs (one core, so every run has the same N_active
    up to the router) and every memorization task t:

        successes_rt ~ Binomial(n_rt, p_rt),   logit p_rt = c_t + c_budget(r) + b_N * ln N_total,r

    fitted by maximum likelihood (IRLS, ``scaling.accuracy.irls_batch``); the interval of b_N is
    the bootstrap percentile interval over runs (the analysis's resample count and seed), since
    runs (and seeds) vary more than the binomial alone allows. Claim (Nakamura et al. 2025):
    b_N > 0. Returns a row of ``COLUMNS`` plus ``n_runs``.
    """
    claim = "memorization rises with N_total at fixed active parameters (b_N > 0)"
    row = {"question": "memorization vs N_total at fixed N_active", "claim": claim,
           "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n_runs": 0}
    runs = analysis.runs
    sel = runs[_in_slice(runs, "sparsity") & (runs["top_k"] == 1)]
    evals = getattr(analysis, "evals", None)
    if evals is None or not len(evals) or not len(sel):
        return {**row, "verdict": str(Verdict("not testable", "no sparsity slice with top-1 runs and task evaluations"))}
    data = accuracy_table(sel, evals)
    data = data[data["task_kind"] == "memorization"].reset_index(drop=True)
    n_runs = data["run_id"].nunique()
    if n_runs < MIN_RUNS or data["n_total"].nunique() < 2:
        why = f"{n_runs} top-1 runs of the sparsity slice with a memorization task (need {MIN_RUNS} at 2+ N_total)"
        return {**row, "n_runs": n_runs, "verdict": str(Verdict("not testable", why))}
    tasks = pd.get_dummies(data["task"], dtype=float)
    budgets = pd.get_dummies(budget_groups(data["active_flops"]), dtype=float).iloc[:, 1:]  # the first is the reference
    X = np.column_stack([tasks, budgets, np.log(data["n_total"].to_numpy(dtype=float))])
    y, m = data["successes"].to_numpy(dtype=float), data["n_examples"].to_numpy(dtype=float)
    beta, ok = irls_batch(X, y, m, np.ones((1, len(data))), np.zeros(X.shape[1]))
    b = float(beta[0, -1]) if ok[0] else np.nan
    lo = hi = np.nan
    if analysis.bootstrap and np.isfinite(b):
        w = resample_runs(data["run_id"].to_numpy(), analysis.bootstrap, analysis.seed)
        boot, good = irls_batch(X, y, m, w, beta[0])
        slopes = boot[good, -1]
        if len(slopes) >= 0.9 * len(w):
            lo, hi = (float(v) for v in np.percentile(slopes, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    flag = "" if np.isfinite(b) else "the GLM did not converge (separated data: accuracy at 0 or 1 throughout)"
    v = sign_verdict("b_N", b, lo, hi, claim=">0", unidentified=flag)
    return {**row, "estimate": b, "ci_low": lo, "ci_high": hi, "n_runs": n_runs, "verdict": str(v)}


def study_questions(analysis: Analysis) -> pd.DataFrame:
    """The study's headline table (``COLUMNS``): questions 1-5 of the module docstring, each an
    estimate with its 95% interval and a verdict (``scaling.verdicts``; an optimum row's verdict
    is ``determined`` or ``undetermined`` and why, its interval the resamples' sparsity range)."""
    nan = float("nan")
    rows = [{k: v for k, v in memorization_vs_total(analysis).items() if k in COLUMNS}]
    acc = analysis.accuracy
    claims = {"active_flops": "at equal loss, accuracy rises with active FLOPs (b_flops > 0)",
              "tpp_peak": "accuracy peaks near 20 tokens per parameter"}
    for kind, question in (("reasoning", "active_flops"), ("reasoning", "tpp_peak"), ("memorization", "tpp_peak")):
        label = f"{kind}: {'b_flops at equal loss' if question == 'active_flops' else 'TPP of peak accuracy'}"
        q = None if acc is None else acc.questions[(acc.questions["kind"] == kind) & (acc.questions["question"] == question)]
        if q is None or not len(q):
            rows.append({"question": label, "claim": claims[question], "estimate": nan, "ci_low": nan, "ci_high": nan,
                         "verdict": str(Verdict("not testable", f"no {kind} task evaluated"))})
            continue
        r = q.iloc[0]
        rows.append({"question": label, "claim": claims[question], "estimate": r.estimate, "ci_low": r.ci_low,
                     "ci_high": r.ci_high, "verdict": r.verdict})
    for r in analysis.claims.table.itertuples(index=False):
        if r.parameter in ("gamma", "lam"):
            rows.append({"question": f"Liew et al.: {'gamma' if r.parameter == 'gamma' else 'lambda'}", "claim": r.claim,
                         "estimate": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high, "verdict": r.verdict})
    for r in analysis.optimum.best.itertuples(index=False):
        verdict = (f"determined: {r.arch}, chosen in {r.frequency:.0%} of resamples" if r.determined
                   else f"undetermined: {r.why}")
        rows.append({"question": f"optimal sparsity, {r.objective}, C = {r.compute:.3g}",
                     "claim": "the optimal sparsity at this budget", "estimate": r.sparsity if r.determined else nan,
                     "ci_low": r.sparsity_low, "ci_high": r.sparsity_high, "verdict": verdict})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def seed_noise(runs: pd.DataFrame, evals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Spread between runs that differ only in their seed: per architecture and token count with
    two or more seeds, the number of seeds and the standard deviation (ddof 1) of val_loss and of
    each task's accuracy. Empty when no architecture was run with several seeds."""
    keys = ["d_model", "n_layers", "n_experts", "top_k", "tokens"]
    df = runs.copy()
    if evals is not None and len(evals):
        acc = accuracy_table(runs, evals).pivot_table(index="run_id", columns="task", values="accuracy")
        acc.columns = [f"{c}_accuracy" for c in acc.columns]
        df = df.drop(columns=[c for c in acc.columns if c in df.columns]).merge(acc, left_on="run_id",
                                                                                 right_index=True, how="left")
    values = ["val_loss"] + sorted(c for c in df.columns if c.endswith("_accuracy"))
    grouped = df.groupby(keys)
    out = grouped[values].std(ddof=1).add_prefix("sd_")
    out.insert(0, "seeds", grouped["seed"].nunique())
    out = out[out["seeds"] >= 2].reset_index()
    return out


def capacity(runs: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """Knowledge capacity: the facts task's knowledge bits and bits per (total) parameter of each
    run (``runner.evaluate``, after Allen-Zhu & Li 2024, Part 3.3: ~1 bit per parameter at 100
    exposures, ~2 at 1,000), with the run's N_total, sparsity, tokens and val_loss; sorted by
    bits per parameter, highest first."""
    ev = evals[evals["run_id"].isin(runs["run_id"]) & evals["metric"].isin(["knowledge_bits", "bits_per_param"])]
    if not len(ev):
        return pd.DataFrame(columns=["run_id", "n_total", "sparsity", "tokens", "knowledge_bits", "bits_per_param"])
    last = ev.sort_values("step").groupby(["run_id", "metric"]).tail(1)
    wide = last.pivot_table(index="run_id", columns="metric", values="value").reset_index()
    cols = ["run_id", "n_total", "n_active", "sparsity", "tokens", "val_loss"]
    out = runs[cols].merge(wide, on="run_id")
    return out.sort_values("bits_per_param", ascending=False).reset_index(drop=True)
