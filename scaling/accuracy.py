"""Task accuracy of MoE models: Nakamura et al. 2025's two regimes, and the two-step loss -> accuracy path.

Binomial GLM per task kind (memorization, reasoning; read from the ``evals`` table's
``task_kind``, never from task names), after Nakamura et al. 2025 ("Optimal Sparsity of
Mixture-of-Experts Language Models", arXiv 2508.18672):

    successes_rt ~ Binomial(n_rt, p_rt),   successes = accuracy * n_examples,
    logit p_rt = c_t + b_loss * L_r + b_flops * ln(C_r / C_ref) + b_tpp * ln TPP_r + b_tpp2 * (ln TPP_r)^2,

over runs r and tasks t of the kind (one intercept c_t per task), L = pre-training val_loss,
C = active FLOPs (flops_per_token * tokens), TPP = tokens / N_total, C_ref = the geometric
mean of C. Fitted by maximum likelihood (statsmodels GLM, IRLS) with Wald CIs; the bootstrap
over runs (all tasks of a resampled run move together) refits with a batched IRLS.

The questions, each a number with a CI:

- at equal loss, does more active compute raise accuracy? the sign and CI of b_flops;
- where does accuracy peak in TPP? the vertex TPP* = exp(-b_tpp / (2 b_tpp2)) of the quadratic
  when b_tpp2 < 0 (its Wald CI below 0) and TPP* lies inside the sampled TPP range, with a
  bootstrap percentile CI; "no interior peak" otherwise.

Each question's verdict is one of ``scaling.verdicts``' five words (``word: reason``), on the claim
of Nakamura et al. as the question states it: "at equal loss, more active compute raises accuracy"
(``sign_verdict``, b_flops > 0) and "accuracy peaks near TPP 20" (``peak_verdict``: ``not testable``
when the sampled TPP range does not reach [10, 40]). Both are ``undetermined`` when the kind's GLM
is flagged (``flags``): the fit did not converge, or the data are (quasi-)separated (statsmodels'
PerfectSeparationWarning: a coefficient runs off to infinity), or the question's interval is not
finite; the TPP peak also when its bootstrap interval spans the whole sampled TPP range.

The two-step path (Gadre et al. 2024, arXiv 2403.08540; Bhagia et al. 2024, arXiv 2412.04403):
a task-loss law (the ``moe`` law fitted to the task's ``task_loss``) and a sigmoid from task loss
to accuracy (the ``sigmoid`` law), to predict accuracy at budgets not trained.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import expit

from scaling.budgets import budget_groups
from scaling.errors import MoescaleError
from scaling.final import load_final
from scaling.fitjson import jsonable
from scaling.laws import MOE_X
from scaling.verdicts import Verdict, peak_verdict, sign_verdict

if TYPE_CHECKING:
    from statsmodels.genmod.generalized_linear_model import GLMResultsWrapper

    from scaling.final import FinalRuns
    from scaling.fitting import FitResult

__all__ = ["AccuracyResult", "KindModel", "TwoStep", "accuracy_models", "accuracy_table", "glm_design",
           "irls_batch", "TERMS", "MIN_RUNS"]

#: The GLM's slope terms (besides one intercept per task).
TERMS = ("loss", "log_active_flops", "log_tpp", "log_tpp_sq")
#: Runs with accuracy a kind needs: intercepts + 4 slopes + 3.
MIN_RUNS = 8
#: Nakamura et al. 2025's reasoning accuracy peaks near this many tokens per parameter.
TPP_CLAIM = 20.0


def accuracy_table(final: pd.DataFrame, evals: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Long table of the last ``metric`` evaluation of each (run, task) joined to the run's final row.

    Columns: run_id, task, task_kind, accuracy, n_examples, successes, val_loss, active_flops, tpp,
    n_total, tokens (+ task_loss when the task has one). Only runs in ``final`` are kept.
    """
    need = ("run_id", "step", "task", "task_kind", "metric", "value", "n_examples")
    missing = [c for c in need if c not in evals.columns]
    if missing:
        raise MoescaleError(f"evals table lacks column(s) {', '.join(missing)}")
    ev = evals[evals["run_id"].isin(final["run_id"])]
    last = ev.sort_values("step").groupby(["run_id", "task", "metric"], sort=False).tail(1)
    acc = last[last["metric"] == metric][["run_id", "task", "task_kind", "value", "n_examples"]]
    acc = acc.rename(columns={"value": "accuracy"})
    tl = last[last["metric"] == "task_loss"][["run_id", "task", "value"]].rename(columns={"value": "task_loss"})
    if len(tl):
        acc = acc.merge(tl, on=["run_id", "task"], how="left")
    cols = ["run_id", "val_loss", "active_flops", "tpp", "n_total", "n_active", "sparsity", "n_experts", "tokens"]
    out = acc.merge(final[[c for c in cols if c in final.columns]], on="run_id", how="inner")
    out = out[np.isfinite(pd.to_numeric(out["accuracy"], errors="coerce"))]
    out["n_examples"] = pd.to_numeric(out["n_examples"], errors="coerce")
    out = out[np.isfinite(out["n_examples"]) & (out["n_examples"] > 0)]
    out["successes"] = out["accuracy"] * out["n_examples"]
    return out.sort_values(["task_kind", "task", "run_id"]).reset_index(drop=True)


def glm_design(data: pd.DataFrame, tasks: list[str], c_ref: float, with_flops: bool = True) -> np.ndarray:
    """Design matrix [one-hot task | loss, ln(C/C_ref), ln TPP, (ln TPP)^2] (the flops column left out when
    ``with_flops`` is False)."""
    onehot = np.stack([(data["task"].to_numpy() == t).astype(float) for t in tasks], axis=1)
    lt = np.log(data["tpp"].to_numpy(dtype=float))
    cols = [data["val_loss"].to_numpy(dtype=float)]
    if with_flops:
        cols.append(np.log(data["active_flops"].to_numpy(dtype=float) / c_ref))
    cols += [lt, lt**2]
    return np.column_stack([onehot, *cols])


def irls_batch(X: np.ndarray, successes: np.ndarray, trials: np.ndarray, weights: np.ndarray, beta0: np.ndarray,
               n_iter: int = 30, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Binomial-logit maximum likelihood for many row weightings at once (Newton = IRLS).

    Maximizes sum_i w_bi [y_i eta_i - m_i log(1 + e^eta_i)], eta = X beta, for each row b of
    ``weights`` (B, n), from ``beta0``: beta <- beta + (X' W_b X)^-1 X' w_b (y - m p),
    W_b = diag(w_b m p (1 - p)) (McCullagh & Nelder 1989). Returns (beta (B, p), converged (B,)).
    """
    W = np.atleast_2d(np.asarray(weights, dtype=float))
    B = W.shape[0]
    beta = np.repeat(np.atleast_2d(beta0), B, axis=0).astype(float)
    done = np.zeros(B, dtype=bool)
    ridge = 1e-10 * np.eye(X.shape[1])
    for _ in range(n_iter):
        eta = beta @ X.T
        p = 1.0 / (1.0 + np.exp(-np.clip(eta, -35, 35)))
        grad = (W * (successes - trials * p)) @ X
        h = W * trials * p * (1 - p)
        H = np.einsum("bn,ni,nj->bij", h, X, X) + ridge
        try:
            step = np.linalg.solve(H, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(H[b], grad[b], rcond=None)[0] for b in range(B)])
        beta = beta + np.where(done[:, None], 0.0, step)
        done |= np.max(np.abs(step), axis=1) < tol * (1 + np.max(np.abs(beta), axis=1))
        if done.all():
            break
    return beta, done & np.isfinite(beta).all(axis=1)


@dataclass
class KindModel:
    """The GLM of one task kind: its tasks, parameter names and estimates, C_ref and the data range."""

    kind: str
    tasks: list[str]
    names: list[str]
    params: np.ndarray
    c_ref: float
    with_flops: bool
    tpp_range: tuple[float, float]
    n_runs: int
    result: GLMResultsWrapper | None = field(repr=False, default=None)
    bootstrap_params: np.ndarray | None = None
    flags: str = ""

    def eta(self, loss, active_flops, tpp, params: np.ndarray | None = None) -> np.ndarray:
        """Linear predictor averaged over nothing: shape (B, n_tasks, n) for params (B, p) or (n_tasks, n)."""
        P = np.atleast_2d(self.params if params is None else params)
        k = len(self.tasks)
        loss, af, tpp = (np.asarray(v, dtype=float).reshape(-1) for v in (loss, active_flops, tpp))
        lt = np.log(tpp)
        cols = [loss] + ([np.log(af / self.c_ref)] if self.with_flops else []) + [lt, lt**2]
        Z = np.stack(cols, axis=0)  # (q, n)
        slope = P[:, k:] @ Z  # (B, n)
        out = P[:, :k, None] + slope[:, None, :]
        return out[0] if params is None or np.ndim(params) == 1 else out

    def predict(self, loss, active_flops, tpp, params: np.ndarray | None = None) -> np.ndarray:
        """Mean predicted accuracy over the kind's tasks: (n,) or (B, n) for a batch of params."""
        e = self.eta(loss, active_flops, tpp, params)
        return expit(e).mean(axis=-2)  # the logistic function without exp overflow at large |eta|

    def to_json(self) -> dict:
        """kind, tasks, names, params (in ``names`` order), c_ref, with_flops, tpp_range, n_runs, flags."""
        return jsonable({"kind": self.kind, "tasks": self.tasks, "names": self.names, "params": self.params,
                         "c_ref": self.c_ref, "with_flops": self.with_flops, "tpp_range": self.tpp_range,
                         "n_runs": self.n_runs, "flags": self.flags})


@dataclass
class TwoStep:
    """The two-step path for one task: task_loss = moe law(N_total, s, n_exp, D); accuracy = sigmoid(task_loss)."""

    task: str
    kind: str
    loss_fit: FitResult
    acc_fit: FitResult

    def predict(self, n_total, sparsity, n_experts, tokens) -> np.ndarray:
        """Predicted accuracy at the given architectures and tokens."""
        X = {"N": np.asarray(n_total, float), "s": np.asarray(sparsity, float), "n_exp": np.asarray(n_experts, float),
             "D": np.asarray(tokens, float)}
        tl = self.loss_fit.law.predict(self.loss_fit.params, X)
        return self.acc_fit.law.predict(self.acc_fit.params, {"x": tl})

    def to_json(self) -> dict:
        """task, kind and the two fits (``FitResult.to_json``)."""
        return {"task": self.task, "kind": self.kind, "loss_fit": jsonable(self.loss_fit.to_json()),
                "acc_fit": jsonable(self.acc_fit.to_json())}


@dataclass
class AccuracyResult:
    """Accuracy models of a store.

    ``coefficients``: kind, term (task:<name> intercepts, loss, log_active_flops, log_tpp, log_tpp_sq),
    estimate, std_err, ci_low, ci_high (Wald), boot_low, boot_high (bootstrap percentile), p_value.
    ``questions``: kind, question ("active_flops" | "tpp_peak"), estimate, ci_low, ci_high, verdict
    (``word: reason``; for tpp_peak: the vertex TPP*, NaN with "no interior peak"), flags (why the
    answer is not identified, "" when it is).
    ``peaks``: kind, tpp_peak, ci_low, ci_high, interior, share_interior (of resamples), tpp_min, tpp_max, verdict,
    flags.
    ``two_step``: task, kind, n_points, loss_law_rmse_log, sigmoid_rmse, holdout_abs_error (largest budget
    held out), holdout_budget. ``data``: the long table fitted (``accuracy_table``).
    ``models``: kind -> KindModel; ``paths``: task -> TwoStep.
    """

    coefficients: pd.DataFrame
    questions: pd.DataFrame
    peaks: pd.DataFrame
    two_step: pd.DataFrame
    data: pd.DataFrame
    models: dict[str, KindModel]
    paths: dict[str, TwoStep]
    bootstrap: int
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return list(self.models)

    @property
    def verdicts(self) -> list[str]:
        return [f"{k} / {q}: {v}" for k, q, v in zip(self.questions["kind"], self.questions["question"],
                                                     self.questions["verdict"])]

    def predict(self, kind: str, loss, active_flops, tpp) -> np.ndarray:
        """Mean predicted accuracy of a task kind's tasks (see ``KindModel.predict``)."""
        if kind not in self.models:
            raise MoescaleError(f"no accuracy model for task kind {kind!r}; the store has {', '.join(self.models) or 'none'}")
        return self.models[kind].predict(loss, active_flops, tpp)

    def summary(self) -> str:
        lines = [f"Accuracy models (binomial GLM per task kind; {self.bootstrap} bootstrap resamples, seed {self.seed})"]
        lines += [f"- {v}" for v in self.verdicts]
        lines += [f"flag {k}: {m.flags}" for k, m in self.models.items() if m.flags]
        lines.append(self.coefficients.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if len(self.two_step):
            lines.append(self.two_step.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        return "\n".join(lines + self.notes)

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> dict:
        """The result as a JSON-ready dict: coefficients, questions, peaks and two_step as records,
        models and paths (``KindModel.to_json``, ``TwoStep.to_json``), bootstrap, seed, notes. The
        long table fitted (``data``) is left out: it is ``accuracy_table`` of the store."""
        return jsonable({"coefficients": self.coefficients, "questions": self.questions, "peaks": self.peaks,
                         "two_step": self.two_step, "models": {k: m.to_json() for k, m in self.models.items()},
                         "paths": {k: p.to_json() for k, p in self.paths.items()}, "bootstrap": self.bootstrap,
                         "seed": self.seed, "notes": self.notes})


def _vertex(b1, b2):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b2 < 0, -b1 / (2 * b2), np.where(b1 >= 0, np.inf, -np.inf))


def _percentile_inf(values, q):
    """Percentile by order statistic (works with infinities)."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0:
        return float("nan")
    i = min(max(int(math.floor(q / 100 * (v.size - 1) + 0.5)), 0), v.size - 1)
    return float(v[i])


def _fit_kind(kind, data, weights_runs, alpha, bootstrap):
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    tasks = sorted(data["task"].unique())
    c_ref = float(np.exp(np.mean(np.log(data["active_flops"]))))
    budgets = np.unique(np.round(np.log(data["active_flops"].to_numpy()), 1))
    with_flops = len(budgets) >= 2
    X = glm_design(data, tasks, c_ref, with_flops)
    names = [f"task:{t}" for t in tasks] + [t for t in TERMS if with_flops or t != "log_active_flops"]
    y = data["successes"].to_numpy(dtype=float)
    m = data["n_examples"].to_numpy(dtype=float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sm.GLM(np.column_stack([y, m - y]), X, family=sm.families.Binomial()).fit()
    params = np.asarray(res.params, dtype=float)
    flags = []
    if any(issubclass(w.category, PerfectSeparationWarning) for w in caught):
        flags.append(f"the {kind} GLM is separated (perfect prediction: a coefficient runs off to infinity)")
    if not getattr(res, "converged", True):
        flags.append(f"the {kind} GLM did not converge")
    if not np.isfinite(np.asarray(res.bse, dtype=float)).all():
        flags.append(f"the {kind} GLM's standard errors are not finite")
    ci = np.asarray(res.conf_int(alpha))
    boot = None
    if bootstrap and weights_runs is not None:
        boot, ok = irls_batch(X, y, m, weights_runs, params)
        boot[~ok] = np.nan  # rows stay aligned with the resamples
    lt = np.log(data["tpp"].to_numpy(dtype=float))
    model = KindModel(kind=kind, tasks=tasks, names=names, params=params, c_ref=c_ref, with_flops=with_flops,
                      tpp_range=(float(np.exp(lt.min())), float(np.exp(lt.max()))), n_runs=int(data["run_id"].nunique()),
                      result=res, bootstrap_params=boot, flags="; ".join(flags))
    have_boot = boot is not None and bool(np.isfinite(boot).all(axis=1).any())  # all refits failed: no interval
    coef = pd.DataFrame({"kind": kind, "term": names, "estimate": params, "std_err": np.asarray(res.bse),
                         "ci_low": ci[:, 0], "ci_high": ci[:, 1],
                         "boot_low": np.nanpercentile(boot, 100 * alpha / 2, axis=0) if have_boot else np.nan,
                         "boot_high": np.nanpercentile(boot, 100 * (1 - alpha / 2), axis=0) if have_boot else np.nan,
                         "p_value": np.asarray(res.pvalues)})
    return model, coef


def _questions(model: KindModel, coef: pd.DataFrame, alpha: float):
    """The kind's two questions with their verdicts (see the module docstring) and its peaks row."""
    rows = []
    c = coef.set_index("term")
    if model.with_flops:
        b, lo, hi = (float(c.loc["log_active_flops", k]) for k in ("estimate", "ci_low", "ci_high"))
        flag = model.flags or ("" if np.isfinite(lo) and np.isfinite(hi) else "b_flops has no finite interval")
        v = sign_verdict("b_flops", b, lo, hi, claim=">0", unidentified=flag)
        if v.word in ("supported", "contradicted"):
            how = "raises" if lo > 0 else "lowers"
            v = Verdict(v.word, f"{v.reason}: at equal loss, more active compute {how} {model.kind} accuracy")
    else:
        b = lo = hi = float("nan")
        flag = ""
        v = Verdict("not testable", "one compute budget, so active FLOPs do not vary")
    rows.append({"kind": model.kind, "question": "active_flops", "estimate": b, "ci_low": lo, "ci_high": hi,
                 "verdict": str(v), "flags": flag})
    # TPP peak
    b1, b2 = float(c.loc["log_tpp", "estimate"]), float(c.loc["log_tpp_sq", "estimate"])
    b2_hi = float(c.loc["log_tpp_sq", "ci_high"])
    lo_t, hi_t = model.tpp_range
    vertex = float(np.exp(_vertex(np.array(b1), np.array(b2))))
    interior = bool(b2 < 0 and b2_hi < 0 and lo_t <= vertex <= hi_t)
    share = float("nan")
    clo = chi = float("nan")
    if model.bootstrap_params is not None and len(model.bootstrap_params):
        names = model.names
        good = np.isfinite(model.bootstrap_params).all(axis=1)
        bb1 = model.bootstrap_params[good, names.index("log_tpp")]
        bb2 = model.bootstrap_params[good, names.index("log_tpp_sq")]
        vb = _vertex(bb1, bb2)
        inside = (bb2 < 0) & (vb >= math.log(lo_t)) & (vb <= math.log(hi_t))
        share = float(inside.mean()) if inside.size else float("nan")
        clo = float(np.exp(_percentile_inf(vb, 100 * alpha / 2)))
        chi = float(np.exp(_percentile_inf(vb, 100 * (1 - alpha / 2))))
    span = f"{lo_t:.3g}..{hi_t:.3g}"
    if not interior:
        why = ("rises with TPP" if b1 + 2 * b2 * math.log(hi_t) > 0 else "falls with TPP")
        flag = f"no interior peak: {model.kind} accuracy {why} over the sampled TPP range {span}"
    elif not (np.isfinite(clo) and np.isfinite(chi)):
        flag = f"the TPP peak {vertex:.3g} has no finite bootstrap interval"
    elif clo <= lo_t and chi >= hi_t:
        flag = f"the TPP peak's interval [{clo:.3g}, {chi:.3g}] spans the sampled TPP range {span}"
    else:
        flag = ""
    flag = "; ".join(x for x in (model.flags, flag) if x)
    v = peak_verdict("TPP", vertex, clo, chi, claimed=TPP_CLAIM, sampled=(lo_t, hi_t), unidentified=flag)
    peak = {"kind": model.kind, "tpp_peak": vertex if interior else float("nan"), "ci_low": clo if interior else float("nan"),
            "ci_high": chi if interior else float("nan"), "interior": interior, "share_interior": share,
            "tpp_min": lo_t, "tpp_max": hi_t, "verdict": str(v), "flags": flag}
    rows.append({"kind": model.kind, "question": "tpp_peak", "estimate": peak["tpp_peak"], "ci_low": peak["ci_low"],
                 "ci_high": peak["ci_high"], "verdict": str(v), "flags": flag})
    return rows, peak


def _two_step(data: pd.DataFrame, loss_start: dict | None):
    """Per task with task_loss: step 1 moe law on task_loss, step 2 sigmoid; largest budget held out."""
    from scaling.fitting import fit

    rows, paths = [], {}
    if "task_loss" not in data.columns:
        return pd.DataFrame(rows), paths
    for task, g in data.groupby("task", sort=True):
        g = g[np.isfinite(g["task_loss"]) & (g["task_loss"] > 0)].reset_index(drop=True)
        if len(g) < 10:
            continue
        starts = {k: [v] for k, v in (loss_start or {}).items()}

        def fit_both(frame):
            lf = fit(frame, "moe", x=MOE_X, y="task_loss", stderr=False, starts=starts or None)
            af = fit(frame, "sigmoid", x={"x": "task_loss"}, y="accuracy", stderr=False)
            return TwoStep(task, str(g["task_kind"].iloc[0]), lf, af)

        try:
            with np.errstate(over="ignore"):  # the sigmoid's exp overflows harmlessly at far starts
                path = fit_both(g)
        except MoescaleError:
            continue
        X = {v: g[c].to_numpy(float) for v, c in MOE_X.items()}
        tl = path.loss_fit.law.predict(path.loss_fit.params, X)
        acc_hat = path.acc_fit.law.predict(path.acc_fit.params, {"x": g["task_loss"].to_numpy(float)})
        labels = budget_groups(g["active_flops"])
        hold_err, hold_b = float("nan"), float("nan")
        if len(np.unique(labels)) >= 2 and (labels < labels.max()).sum() >= 10:
            try:
                with np.errstate(over="ignore"):
                    hp = fit_both(g[labels < labels.max()].reset_index(drop=True))
                test = g[labels == labels.max()]
                pred = hp.predict(test["n_total"], test["sparsity"], test["n_experts"], test["tokens"])
                hold_err = float(np.mean(np.abs(pred - test["accuracy"].to_numpy(float))))
                hold_b = float(labels.max())
            except MoescaleError:
                pass
        rows.append({"task": task, "kind": path.kind, "n_points": len(g),
                     "loss_law_rmse_log": float(np.sqrt(np.mean((np.log(tl) - np.log(g["task_loss"])) ** 2))),
                     "sigmoid_rmse": float(np.sqrt(np.mean((acc_hat - g["accuracy"]) ** 2))),
                     "holdout_abs_error": hold_err, "holdout_budget": hold_b})
        paths[task] = path
    return pd.DataFrame(rows), paths


def accuracy_models(final: FinalRuns | pd.DataFrame, evals: pd.DataFrame | None = None, *, kinds=None,
                    metric: str = "accuracy",
                    bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05, two_step: bool = True,
                    weights: np.ndarray | None = None, loss_start: dict | None = None) -> AccuracyResult:
    """Fit the accuracy models of every task kind with data (see the module docstring).

    ``final``: the runs loaded by ``scaling.final.load_final`` (their ``evals`` used unless
    ``evals`` is given), a Store / store path (then ``evals`` is read from it) or a DataFrame of
    the ``final`` view with ``evals`` the evals table (run_id, step, task, task_kind, metric,
    value, n_examples). ``kinds``: the task kinds to model (default: every kind with ``metric`` rows,
    "other" included only when asked). ``bootstrap`` resamples of runs (or the run weights
    ``weights`` (B, n_final_runs) in ``final``'s run_id order, as ``FinalRuns.resample`` makes) give
    the TPP-peak CI and bootstrap coefficient intervals. ``loss_start``: moe parameters to start the
    two-step task-loss fits from (e.g. the val_loss fit's). ``alpha`` in (0, 0.5]: the intervals are
    1 − alpha. Raises MoescaleError when no kind has
    eval data or a kind has fewer than ``MIN_RUNS`` runs.
    """
    from scaling.claims import check_alpha

    alpha = check_alpha(alpha)
    if int(bootstrap) < 0:
        raise MoescaleError(f"bootstrap = {bootstrap}: must be >= 0")
    runs = load_final(final, evals=evals)
    final, evals = runs.final, runs.evals
    if len(evals) == 0:
        raise MoescaleError("no evaluation data (the evals table is empty): the accuracy models need evals rows")
    data = accuracy_table(final, evals, metric)
    available = [k for k in sorted(data["task_kind"].unique()) if k != "other" or (kinds and "other" in kinds)]
    kinds = list(kinds) if kinds else available
    missing = [k for k in kinds if k not in set(data["task_kind"])]
    if missing:
        raise MoescaleError(f"no {metric!r} eval data for task kind(s) {', '.join(missing)}; "
                            f"the store has {', '.join(available) or 'none'}")
    if not kinds:
        raise MoescaleError(f"no {metric!r} eval data of a memorization or reasoning task in the store")
    run_ids = runs.run_ids
    if weights is None and bootstrap:
        weights = runs.resample(bootstrap, seed)
    index = {r: i for i, r in enumerate(run_ids)}
    models, coefs, questions, peaks, notes = {}, [], [], [], []
    for kind in kinds:
        d = data[data["task_kind"] == kind].reset_index(drop=True)
        n_runs = d["run_id"].nunique()
        if n_runs < MIN_RUNS:
            raise MoescaleError(f"task kind {kind!r} has accuracy for {n_runs} runs; its GLM needs at least {MIN_RUNS}")
        w = None if weights is None else np.asarray(weights)[:, [index[r] for r in d["run_id"]]]
        model, coef = _fit_kind(kind, d, w, alpha, bootstrap or (0 if weights is None else len(weights)))
        q, peak = _questions(model, coef, alpha)
        models[kind], coefs, questions, peaks = model, coefs + [coef], questions + q, peaks + [peak]
    if two_step and loss_start is None and "task_loss" in data.columns:
        from scaling.fitting import fit

        try:  # one multi-start fit of val_loss; the per-task task-loss fits start from it
            ref = fit(final, "moe", x=MOE_X, y="val_loss", stderr=False)
            loss_start = {p: ref.params[p] for p in ref.law.params}
        except MoescaleError:
            loss_start = None
    ts, paths = (_two_step(data, loss_start) if two_step else (pd.DataFrame(), {}))
    return AccuracyResult(coefficients=pd.concat(coefs, ignore_index=True), questions=pd.DataFrame(questions),
                          peaks=pd.DataFrame(peaks), two_step=ts, data=data, models=models, paths=paths,
                          bootstrap=int(0 if weights is None else len(weights)), seed=int(seed), notes=notes)
