"""Power of a planned sweep, by simulation: can it answer the questions before it is trained?

Power analysis by simulation (Gelman & Hill 2007, "Data Analysis Using Regression and
Multilevel/Hierarchical Models", ch. 20): assume a truth, draw the sweep's results from it
many times, analyse every simulated sweep as the real one will be analysed, and count how
often each question gets an answer. For simulated sweep j = 1..n_sim, at the planned points
(N_total, s, n_exp, D) of the sweep's runs i:

    L_ij = L(N_i, s_i, n_exp_i, D_i) * exp(sigma * z_ij),   z_ij ~ N(0, 1),
    L    = E + A * N^-alpha * s^gamma * n_exp^lam + B * D^-beta    (the ``moe`` law),

with sigma the relative seed noise of the final loss (``seed_noise``). Each simulated sweep
is fitted with the ``moe`` law (Huber(1e-3) on log residuals, as ``scaling.fitting.fit``;
lam fixed at 0 with one top_k, as ``scaling.claims``) and refitted on ``bootstrap``
resamples of its runs (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13:
the percentile interval [q_2.5, q_97.5] of the refits), the interval the claims report.

Why the bootstrap and not the curvature: at the noise of real sweeps (sigma ~ 0.004) most
log residuals lie beyond the Huber delta = 1e-3, on the loss's linear arm, where the objective
has almost no curvature; and on small sweeps the refits are strongly skewed (e runs off towards
-inf on resamples that lose a budget). A Hessian interval misstates both; the bootstrap is what
the analysis will print. ``tests/test_power.py`` checks the predicted widths against the
claims-style bootstrap of independently simulated sweeps (within 25%).

The simulated sweeps and their batched fits are ``scaling.power_fits``; the inputs (planned
runs, truth, seed noise) ``scaling.power_inputs``.

The questions, one row each:

- ``gamma``, ``lam`` (claims "gamma = 0", "lam = 0" of Liew et al. 2026, arXiv 2601.08215):
  ``decided`` when the verdict (``scaling.verdicts.sign_verdict``, claim "= 0") is supported
  or contradicted: the interval excludes 0, or lies inside +-effect (an equivalence test,
  Schuirmann 1987), and the parameter is identified; ``identified`` per ``scaling.identify``
  (not on a bound, interval not reaching a bound nor spanning half its range, fit not degenerate).
- ``tpp_peak:<kind>`` (when the truth carries accuracy tasks; Nakamura et al. 2025, arXiv
  2508.18672): the binomial GLM of ``scaling.accuracy`` on binomially drawn accuracies;
  half-width in ln TPP; decided when ``peak_verdict`` ("peaks near TPP 20") is supported or
  contradicted, identified when it is neither undetermined nor not testable.
- ``optimum`` per compute budget: the best of the sweep's own runs at that budget by each
  fitted law; ``decided`` when it wins >= 80% of the bootstrap resamples, ``identified`` when
  decided and not on an edge (smallest or largest N_total or sparsity among the budget's runs,
  as ``scaling.optimum`` flags ``at_edge``); half-width of its predicted loss.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd

from scaling.optimum_checks import DETERMINED_SHARE
from scaling.claims import EFFECT
from scaling.errors import MoescaleError
from scaling.laws import MOE, MOE_X
from scaling.power_fits import fit_simulated, simulate_losses
from scaling.power_inputs import as_truth, planned_runs, seed_noise, store_truth
from scaling.simulate import task_truths, true_accuracy

__all__ = ["power", "power_report", "power_json", "seed_noise", "store_truth", "planned_runs", "as_truth", "DEFAULT_EFFECT", "CLAIMED_TPP_PEAK",
           "OPTIMUM_SHARE"]

#: Smallest effects worth deciding (the equivalence margin of a "= 0" claim): the claims' own
#: margins (scaling.claims.EFFECT), so the power tool predicts the verdicts the analysis will print.
DEFAULT_EFFECT = dict(EFFECT)
#: The TPP near which reasoning accuracy is claimed to peak (Nakamura et al. 2025).
CLAIMED_TPP_PEAK = 20.0
#: Share of bootstrap resamples an optimum must win to count as identified.
OPTIMUM_SHARE = DETERMINED_SHARE  # the analysis's own rule (scaling.optimum_checks)
#: Converged refits a simulated sweep needs for an interval.
MIN_REFITS = 10

_COLUMNS = ["quantity", "compute", "testable", "true_value", "half_width", "p_decided", "p_identified", "note"]


def _check(n_sim, noise, bootstrap, seed, effect) -> dict[str, float]:
    for name, value, low in (("n_sim", n_sim, 1), ("bootstrap", bootstrap, MIN_REFITS), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise MoescaleError(f"{name} must be an integer >= {low}, got {value!r}")
    if noise is not None and (isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating))
                              or not (math.isfinite(noise) and noise >= 0)):
        raise MoescaleError(f"noise must be a finite number >= 0 (the relative seed noise of the loss), got {noise!r}")
    eff = dict(DEFAULT_EFFECT)
    for k, v in (effect or {}).items():
        if k not in DEFAULT_EFFECT:
            raise MoescaleError(f"effect: unknown quantity {k!r}; known: {', '.join(DEFAULT_EFFECT)}")
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise MoescaleError(f"effect of {k} must be a finite number > 0, got {v!r}")
        eff[k] = float(v)
    return eff


# --------------------------------------------------------------------------- per simulated sweep


def _judge_parameter(name, point, refits, ok, fixed, y_min, effect):
    """(half-width, decided, identified) of one parameter of one simulated sweep."""
    from scaling.identify import check_parameters, degenerate_reasons
    from scaling.verdicts import sign_verdict

    j = MOE.params.index(name)
    good = refits[ok, j]
    if len(good) < MIN_REFITS:
        return np.nan, False, False
    lo, hi = np.percentile(good, [2.5, 97.5])
    params = dict(zip(MOE.params, point))
    fitlike = SimpleNamespace(law=MOE, params=params, fixed=fixed, ci={name: (lo, hi)})
    check = next(c for c in check_parameters(fitlike, {name: (lo, hi)}) if c.name == name)
    reason = check.reason or "; ".join(degenerate_reasons(fitlike, y_min))
    verdict = sign_verdict(name, params[name], lo, hi, claim="=0", effect=effect, unidentified=reason)
    return (hi - lo) / 2, verdict.word in ("supported", "contradicted"), not reason


def _budgets(runs: pd.DataFrame) -> np.ndarray | None:
    """A budget label per planned run: its planned compute, else its grouped training FLOPs."""
    from scaling.budgets import budget_groups

    if "compute" in runs.columns and np.isfinite(pd.to_numeric(runs["compute"], errors="coerce")).all():
        return runs["compute"].to_numpy(dtype=float)
    if "flops_per_token" in runs.columns:
        return budget_groups(runs["flops_per_token"].to_numpy(dtype=float) * runs["tokens"].to_numpy(dtype=float))
    return None


def _edge(runs: pd.DataFrame, i: int) -> bool:
    """Whether run ``i`` of a budget's runs has the smallest or largest N_total or sparsity (as
    ``scaling.optimum`` flags ``at_edge``)."""
    n, s = runs["n_total"].to_numpy(), runs["sparsity"].to_numpy()
    return bool(n[i] in (n.min(), n.max()) or (len(set(s)) > 1 and s[i] in (s.min(), s.max())))


def _optimum_rows(runs, labels, X, mu, points, refits, ok) -> list[dict]:
    rows = []
    for C in np.unique(labels):
        at = np.flatnonzero(labels == C)
        sub = runs.iloc[at].reset_index(drop=True)
        if len(at) < 2:
            rows.append(_row("optimum", C, False, np.nan, note="one run at this budget: nothing to choose"))
            continue
        Xc = {v: x[at] for v, x in X.items()}
        true_i = int(np.argmin(mu[at]))
        half, decided, ident, correct = [], [], [], []
        for j in range(len(points)):
            i = int(np.argmin(MOE.predict(points[j], Xc)))
            P = refits[j][ok[j]]
            if len(P) < MIN_REFITS:
                half.append(np.nan), decided.append(False), ident.append(False), correct.append(i == true_i)
                continue
            L = np.atleast_2d(MOE.predict(P, Xc))
            L = L[np.isfinite(L).all(axis=1)]
            share = float(np.mean(np.argmin(L, axis=1) == i))
            lo, hi = np.percentile(L[:, i], [2.5, 97.5])
            half.append((hi - lo) / 2)
            decided.append(share >= OPTIMUM_SHARE)
            ident.append(share >= OPTIMUM_SHARE and not _edge(sub, i))
            correct.append(i == true_i)
        edge = " (on an edge of the grid: never identified)" if _edge(sub, true_i) else ""
        rows.append(_row("optimum", C, True, float(mu[at][true_i]), _median(half), np.mean(decided), np.mean(ident),
                         f"true best {sub['arch'][true_i]}{edge}; the fitted best is it in {np.mean(correct):.0%}"))
    return rows


def _peak_rows(runs, truth, Y, seeds, n_boot) -> tuple[list[dict], list[str]]:
    """The TPP-peak row of each task kind of the truth, from a binomial GLM per simulated sweep."""
    from scaling.accuracy import accuracy_models
    from scaling.verdicts import peak_verdict

    if not truth.tasks:
        return [], ["note: the truth carries no accuracy tasks, so the TPP peaks are not simulated "
                    "(--tasks, or power(tasks=True), simulates the default tasks)"]
    if "flops_per_token" not in runs.columns:
        return [], ["note: the planned runs lack flops_per_token, so the TPP peaks are not simulated"]
    af = runs["flops_per_token"].to_numpy(float) * runs["tokens"].to_numpy(float)
    tpp = runs["tokens"].to_numpy(float) / runs["n_total"].to_numpy(float)
    final = runs[["run_id", "n_total", "sparsity", "n_experts", "top_k", "tokens"]].assign(
        n_active=runs.get("n_active", runs["n_total"]), active_flops=af, tpp=tpp)
    kinds = sorted({t.kind for t in truth.tasks})
    stats = {k: {"half": [], "decided": [], "ident": [], "note": ""} for k in kinds}
    rng = np.random.default_rng(int(seeds[0]) if len(seeds) else 0)
    for j in range(len(Y)):
        evals = []
        for t in truth.tasks:
            p = true_accuracy(t, Y[j], af, tpp)
            k = rng.binomial(t.n_examples, p)
            evals.append(pd.DataFrame({"run_id": runs["run_id"], "step": 1, "task": t.task, "task_kind": t.kind,
                                       "metric": "accuracy", "value": k / t.n_examples, "n_examples": t.n_examples}))
        try:
            res = accuracy_models(final.assign(val_loss=Y[j]), pd.concat(evals, ignore_index=True), kinds=kinds,
                                  bootstrap=n_boot, seed=int(seeds[j]), two_step=False)
        except MoescaleError as exc:
            for k in kinds:
                stats[k]["half"].append(np.nan), stats[k]["decided"].append(False), stats[k]["ident"].append(False)
                stats[k]["note"] = str(exc)
            continue
        for pk in res.peaks.itertuples():
            v = peak_verdict("TPP", pk.tpp_peak, pk.ci_low, pk.ci_high, claimed=CLAIMED_TPP_PEAK,
                             sampled=(pk.tpp_min, pk.tpp_max))
            st = stats[pk.kind]
            st["half"].append((math.log(pk.ci_high) - math.log(pk.ci_low)) / 2 if pk.interior and pk.ci_low > 0
                              else np.nan)
            st["decided"].append(v.word in ("supported", "contradicted"))
            st["ident"].append(v.word not in ("undetermined", "not testable"))
            st["testable"] = v.word != "not testable"
            st["note"] = st["note"] or (str(v) if v.word == "not testable" else "")
    rows = []
    for k in kinds:
        st = stats[k]
        peaks = [t.tpp_peak for t in truth.tasks if t.kind == k and t.tpp_peak is not None]
        true = float(np.exp(np.mean(np.log(peaks)))) if peaks else np.nan
        testable = st.get("testable", False)
        note = st["note"] or ("half-width in ln TPP" + ("" if peaks else "; the truth has no peak for this kind"))
        rows.append(_row(f"tpp_peak:{k}", np.nan, testable, true, _median(st["half"]) if testable else np.nan,
                         np.mean(st["decided"]) if testable else np.nan,
                         np.mean(st["ident"]) if testable else np.nan, note))
    return rows, []


def _median(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]  # an infinite width (a peak interval reaching TPP 0 or inf) counts, a missing one not
    return float(np.median(v)) if v.size else np.nan


def _row(quantity, compute, testable, true_value, half_width=np.nan, p_decided=np.nan, p_identified=np.nan,
         note="") -> dict:
    return dict(zip(_COLUMNS, (quantity, float(compute), bool(testable), float(true_value), float(half_width),
                               float(p_decided), float(p_identified), note)))


# --------------------------------------------------------------------------- power


def power(sweep, *, truth=None, store=None, noise: float | None = None, n_sim: int = 200, bootstrap: int = 100,
          seed: int = 0, effect: dict | None = None, tasks: bool = False, progress=None) -> pd.DataFrame:
    """Whether a planned sweep can answer the questions, by simulation (see the module docstring).

    Args:
        sweep: a sweep YAML path (``moescale plan grid --out``), a ``Sweep``, or its planned runs
            as a DataFrame (``planned_runs``).
        truth: what to simulate from (``as_truth``): None for ``Truth()``, a ``Truth`` (with
            ``tasks`` for the TPP peaks), a ``moe`` FitResult, its JSON file, or moe parameters.
        store: instead of ``truth``, a Store, store path or final DataFrame whose finished runs
            give the truth (the moe law fitted to them) and the seed noise (``store_truth``).
        noise: the relative seed noise sigma of the final loss (``seed_noise`` of a store measures
            it); None: the truth's (the store's).
        n_sim: simulated sweeps. bootstrap: resamples of runs per simulated sweep (>= 10).
        seed: seed of the noise, the accuracies and the resamples (deterministic).
        effect: smallest effect worth deciding per claim, default ``DEFAULT_EFFECT`` (gamma and
            lam: 0.01, the claims' margins); a "= 0" claim is decided when its interval lies inside +-effect.
        tasks: when the truth carries no accuracy tasks, simulate the default ones
            (``scaling.simulate.task_truths``: reasoning peaks at TPP 20), so the TPP peaks get rows.
        progress: optional callable(done, total) over simulated sweeps.

    Returns one row per question, columns: quantity (gamma, lam, tpp_peak:<kind>, optimum),
    compute (the budget of an optimum row), testable (False: the design cannot separate the
    quantity, e.g. lam with one top_k), true_value (of the truth; the true best run's loss for an
    optimum), half_width (median over simulated sweeps of the 95% interval's half-width: the
    typical width, which the mean is not when a few sweeps' intervals span the bounds),
    p_decided, p_identified (shares of simulated sweeps), note. ``attrs`` holds n_runs, n_sim,
    bootstrap, noise, seed, effect and notes (``power_report`` prints them).
    Raises MoescaleError (one line) for bad arguments, a missing sweep file and a sweep with
    fewer than ``scaling.claims.MIN_RUNS`` runs or one sparsity.
    """
    from scaling.claims import MIN_RUNS

    eff = _check(n_sim, noise, bootstrap, seed, effect)
    runs = planned_runs(sweep)
    if store is not None and truth is not None:
        raise MoescaleError("give a truth or a store to fit one from, not both")
    if store is None:
        truth, notes = as_truth(truth)
        notes = notes if noise is None else []  # as_truth's notes are on the noise
    if len(runs) < MIN_RUNS:
        raise MoescaleError(f"sweep: {len(runs)} planned runs; the moe law's claims need at least {MIN_RUNS}")
    if runs["sparsity"].nunique() < 2:
        raise MoescaleError(f"sweep: every planned run has sparsity {runs['sparsity'].iloc[0]:g}; "
                            "the claims need 2 or more sparsities")
    if store is not None:  # the fit is the slow part: after the sweep's own checks
        truth, notes = store_truth(store, noise)
    sigma = truth.noise if noise is None else float(noise)
    if tasks and not truth.tasks:
        truth = replace(truth, tasks=task_truths())
    lam_testable = runs["top_k"].nunique() >= 2
    fixed = {} if lam_testable else {"lam": 0.0}
    X = {v: runs[c].to_numpy(dtype=float) for v, c in MOE_X.items()}  # planned runs carry the final view's names
    rng = np.random.default_rng(seed)
    mu, Y = simulate_losses(truth, X, sigma, n_sim, rng)
    seeds = rng.integers(0, 2**62, size=n_sim)
    tp = truth.moe_params
    start = np.array([tp[p] for p in MOE.params if p not in fixed])
    if not lam_testable:  # n_exp = s * top_k: the fit's gamma absorbs lam and a absorbs lam * ln top_k
        k = float(runs["top_k"].iloc[0])
        start[MOE.params.index("gamma")] += tp["lam"]
        start[MOE.params.index("a")] += tp["lam"] * math.log(k)
    points, refits, ok = fit_simulated(X, Y, start, fixed, int(bootstrap), seeds, progress)
    rows = []
    for name in ("gamma", "lam"):
        if name == "lam" and not lam_testable:
            rows.append(_row("lam", np.nan, False, tp["lam"],
                             note="not testable: one top_k value, so n_experts = s * top_k and lam is not identified"))
            continue
        j = [_judge_parameter(name, points[i], refits[i], ok[i], fixed, float(Y[i].min()), eff[name])
             for i in range(n_sim)]
        half, decided, ident = (np.array(v, dtype=float) for v in zip(*j))
        true = tp[name] + (tp["lam"] if name == "gamma" and not lam_testable else 0.0)
        note = f"effect {eff[name]:g}" + ("; one top_k: the fit's gamma is gamma + lam" if true != tp[name] else "")
        rows.append(_row(name, np.nan, True, true, _median(half), decided.mean(), ident.mean(), note))
    peak_rows, peak_notes = _peak_rows(runs, truth, Y, seeds, int(bootstrap))
    rows += peak_rows
    labels = _budgets(runs)
    if labels is None:
        notes.append("note: the planned runs carry neither compute nor flops_per_token: no optimum per budget")
    else:
        rows += _optimum_rows(runs, labels, X, mu, points, refits, ok)
    failed = int((~ok).sum())
    if failed:
        notes.append(f"note: {failed} of {ok.size} bootstrap refits did not converge and were left out "
                     "(as the claims do)")
    out = pd.DataFrame(rows, columns=_COLUMNS)
    out.attrs.update({"n_runs": len(runs), "n_sim": int(n_sim), "bootstrap": int(bootstrap), "noise": sigma,
                      "seed": int(seed), "effect": eff, "notes": notes + peak_notes})
    return out


def power_report(df: pd.DataFrame) -> str:
    """The table ``moescale plan power`` prints: a header (runs, simulations, resamples, noise), one
    line per question (quantity, budget, truth, median 95% half-width, P(decided), P(identified),
    note) and the notes."""
    a = df.attrs
    lines = [f"Power of a sweep of {a.get('n_runs', '?')} runs: {a.get('n_sim', '?')} simulated sweeps, "
             f"{a.get('bootstrap', '?')} bootstrap resamples each, seed noise {a.get('noise', float('nan')):.3g}, "
             f"seed {a.get('seed', '?')}"]

    def fmt(v, spec):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    head = ("quantity", "budget C", "truth", "half-width", "P(decided)", "P(identified)", "note")
    body = [(r.quantity, fmt(r.compute, ".3g"), fmt(r.true_value, ".4g"), fmt(r.half_width, ".3g"),
             fmt(r.p_decided, ".0%"), fmt(r.p_identified, ".0%"), r.note) for r in df.itertuples()]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head) - 1)]
    for row in [head, *body]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1])
    lines += list(a.get("notes", []))
    return "\n".join(lines)


def power_json(df: pd.DataFrame) -> dict:
    """``power``'s table as JSON (``moescale plan power --json``): the settings of ``df.attrs`` and
    one object per row, NaN as null."""
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]
    a = df.attrs
    return {"n_runs": a.get("n_runs"), "n_sim": a.get("n_sim"), "bootstrap": a.get("bootstrap"),
            "noise": a.get("noise"), "seed": a.get("seed"), "effect": a.get("effect"), "notes": list(a.get("notes", [])),
            "rows": rows}
