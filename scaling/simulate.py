"""Synthetic sweeps drawn from known laws, written as run directories and ingested into a store.

The truth is known, so every analysis step can be checked against it: the claims
tests of Liew et al. 2026 (arXiv 2601.08215) on the ``moe`` law, the accuracy
regimes of Nakamura et al. 2025 (arXiv 2508.18672), and the optimum per budget.
The data path is the real one: ``scaling.RunWriter`` writes run.json, metrics.jsonl
and evals.jsonl, and ``Store.ingest`` loads them, so the ``final`` view, the
``evals`` table (with ``task_kind`` and ``n_examples``) and the training curves
are exactly what a trained sweep gives.

Truth:

- final loss  L = E + A*N_total^-alpha * s^gamma * n_exp^lam + B*D^-beta  (the ``moe`` law),
  observed as L * exp(noise * z), z ~ N(0, 1); a training curve follows the same law
  at the tokens seen so far;
- accuracy of task t (kind k): successes ~ Binomial(n_examples, p),
  logit p = c_t + b_loss*L_obs + b_flops*ln(C/C_ref) + b_tpp*ln TPP + b_tpp2*(ln TPP)^2
  (the binomial GLM of ``scaling.accuracy``), with C = active FLOPs and TPP = D / N_total;
- task loss of task t: the moe law's shape rescaled, task_loss = scale_t * L_obs (for the
  two-step loss -> accuracy path).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.architecture import Architecture
from scaling.errors import MoescaleError
from scaling.planner import GridSpace

__all__ = ["Truth", "TaskTruth", "DEFAULT_GRID", "DEFAULT_COMPUTE", "simulate_sweep", "write_store", "true_loss",
           "true_accuracy", "task_truths"]

#: Default candidate grid of the simulations: 4 layers, d_model 64..384, E 1..32, k 1..2.
DEFAULT_GRID = GridSpace(n_layers=(4,), d_model=(64, 128, 192, 256, 384), n_experts=(1, 2, 4, 8, 16, 32),
                         top_k=(1, 2), granularity=(0.5,), head_dim=32, vocab_size=512, seq_len=128)
#: Default compute budgets (FLOPs) of the simulations.
DEFAULT_COMPUTE = (3e13, 1e14, 3e14)

C_REF = 1e14  # reference compute of the accuracy truth (ln(C / C_REF) is centred near 0)


@dataclass(frozen=True)
class TaskTruth:
    """One task's accuracy truth: logit p = c + b_loss*L + b_flops*ln(C/C_ref) + b_tpp*ln TPP + b_tpp2*(ln TPP)^2."""

    task: str
    kind: str
    c: float
    b_loss: float
    b_flops: float = 0.0
    b_tpp: float = 0.0
    b_tpp2: float = 0.0
    task_loss_scale: float = 1.0
    n_examples: int = 2000

    @property
    def tpp_peak(self) -> float | None:
        """TPP at the vertex of the quadratic in ln TPP, exp(-b_tpp / (2 b_tpp2)); None when b_tpp2 >= 0."""
        return math.exp(-self.b_tpp / (2 * self.b_tpp2)) if self.b_tpp2 < 0 else None


@dataclass(frozen=True)
class Truth:
    """The parameters a synthetic sweep is drawn from (``moe`` law in natural units, accuracy per task)."""

    E: float = 1.6
    A: float = 60.0
    alpha: float = 0.3
    B: float = 80.0
    beta: float = 0.28
    gamma: float = 0.08
    lam: float = 0.03
    noise: float = 0.004
    tasks: tuple[TaskTruth, ...] = ()

    @property
    def moe_params(self) -> dict[str, float]:
        """The truth as ``moe`` law parameters (e, a, b, alpha, beta, gamma, lam)."""
        return {"e": math.log(self.E), "a": math.log(self.A), "b": math.log(self.B), "alpha": self.alpha,
                "beta": self.beta, "gamma": self.gamma, "lam": self.lam}


def task_truths(active_effect: bool = True) -> tuple[TaskTruth, ...]:
    """Default tasks: ``facts`` (memorization, monotone in loss, no TPP peak) and ``pointer``, ``arith``
    (reasoning, peak at TPP = 20; with ``active_effect`` a positive active-FLOPs coefficient 0.5)."""
    b_f = 0.5 if active_effect else 0.0
    # reasoning peak at ln TPP = ln 20: b_tpp = -2 b_tpp2 ln 20
    b2 = -0.1
    b1 = -2 * b2 * math.log(20.0)
    peak = b1 * math.log(20.0) + b2 * math.log(20.0) ** 2  # the TPP terms at the peak
    # intercepts put logit p near 0.5 (reasoning) and 0.3 (facts) at L = 3.3, TPP = 20 (facts: TPP = 1)
    return (
        TaskTruth("facts", "memorization", c=0.3 + 3.0 * 3.3, b_loss=-3.0, b_flops=0.0, b_tpp=-0.4, b_tpp2=0.0,
                  task_loss_scale=1.3),
        TaskTruth("pointer", "reasoning", c=0.5 + 2.5 * 3.3 - peak, b_loss=-2.5, b_flops=b_f, b_tpp=b1,
                  b_tpp2=b2, task_loss_scale=0.9),
        TaskTruth("arith", "reasoning", c=0.0 + 2.5 * 3.3 - peak, b_loss=-2.5, b_flops=b_f, b_tpp=b1,
                  b_tpp2=b2, task_loss_scale=1.1),
    )


def true_loss(truth: Truth, n_total, sparsity, n_experts, tokens) -> np.ndarray:
    """The noiseless loss E + A N^-alpha s^gamma n_exp^lam + B D^-beta (Liew et al. 2026's form)."""
    N, s, n, D = (np.asarray(v, dtype=float) for v in (n_total, sparsity, n_experts, tokens))
    return truth.E + truth.A * N**-truth.alpha * s**truth.gamma * n**truth.lam + truth.B * D**-truth.beta


def true_accuracy(task: TaskTruth, loss, active_flops, tpp) -> np.ndarray:
    """The accuracy probability of ``task``: inverse logit of its linear predictor (see module docstring)."""
    lt = np.log(np.asarray(tpp, dtype=float))
    eta = (task.c + task.b_loss * np.asarray(loss, dtype=float) + task.b_flops * np.log(np.asarray(active_flops) / C_REF)
           + task.b_tpp * lt + task.b_tpp2 * lt**2)
    return 1.0 / (1.0 + np.exp(-eta))


def _architectures(grid: GridSpace | tuple[GridSpace, ...]) -> list[Architecture]:
    from scaling.planner import Constraints, candidates

    return candidates(grid, Constraints())


def simulate_sweep(
    truth: Truth | None = None,
    *,
    grid: GridSpace | tuple[GridSpace, ...] = DEFAULT_GRID,
    compute=DEFAULT_COMPUTE,
    lam: float | None = None,
    active_effect: bool = True,
    n_runs: int | None = None,
    seeds: int = 1,
    curve_points: int = 8,
    diverged: int = 0,
    failed: int = 0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Draw a synthetic isoFLOP sweep from ``truth``: (runs, metrics, evals) as DataFrames.

    Every architecture of ``grid`` is trained (in simulation) at every budget C of
    ``compute`` with D = round(C / flops_per_token) tokens, for ``seeds`` seeds.
    ``n_runs`` keeps a random subset of that many runs (spread over budgets).
    ``lam`` overrides truth.lam (0: n_experts and top_k cancel inside s);
    ``active_effect`` sets whether reasoning accuracy depends on active FLOPs at
    equal loss (when truth.tasks is empty). ``diverged``/``failed`` add that many
    runs with those statuses (excluded from ``final``). Deterministic in ``seed``.

    runs: run_id, status, architecture fields, tokens, compute, seed, loss (observed final).
    metrics: run_id, step, tokens, train_loss, val_loss, load_cv (long curves, wide columns).
    evals: run_id, step, tokens, task, task_kind, metric, value, n_examples.
    """
    truth = truth or Truth()
    if lam is not None:
        truth = replace(truth, lam=float(lam))
    if not truth.tasks:
        truth = replace(truth, tasks=task_truths(active_effect))
    compute = [float(c) for c in np.atleast_1d(compute)]
    if not compute or any(not (math.isfinite(c) and c > 0) for c in compute):
        raise MoescaleError("simulate_sweep: compute budgets must be finite and > 0")
    rng = np.random.default_rng(seed)
    archs = _architectures(grid)
    plan = [(a, c, s) for c in compute for a in archs for s in range(seeds)]
    if n_runs is not None:
        if n_runs < 1 or n_runs > len(plan):
            raise MoescaleError(f"simulate_sweep: n_runs = {n_runs}; the grid gives 1..{len(plan)} runs")
        keep = np.sort(rng.choice(len(plan), size=n_runs, replace=False))
        plan = [plan[i] for i in keep]
    runs, metrics, evals = [], [], []
    for i, (a, C, s) in enumerate(plan):
        tokens = max(int(round(C / a.flops_per_token)), 1)
        run_id = f"sim-d{a.d_model}-l{a.n_layers}-e{a.n_experts}-k{a.top_k}-c{C:.0e}-s{s}".replace("+", "")
        z = rng.standard_normal()
        final = float(true_loss(truth, a.n_total, a.sparsity, a.n_experts, tokens) * math.exp(truth.noise * z))
        runs.append({"run_id": run_id, "status": "finished", **a.to_dict(), "tokens": tokens, "compute": C, "seed": s,
                     "loss": final, "n_total": a.n_total, "n_active": a.n_active,
                     "flops_per_token": float(a.flops_per_token)})
        steps = np.unique(np.linspace(1, curve_points, curve_points).astype(int))
        for st in steps:
            t = max(int(tokens * st / steps[-1]), 1)
            base = float(true_loss(truth, a.n_total, a.sparsity, a.n_experts, t))
            val = final if st == steps[-1] else base * math.exp(truth.noise * rng.standard_normal())
            row = {"run_id": run_id, "step": int(st) * 10, "tokens": t, "train_loss": val * 1.01, "val_loss": val}
            if a.n_experts > 1:
                row["load_cv"] = float(0.6 * math.exp(-3.0 * st / steps[-1]) + 0.05 + 0.01 * abs(rng.standard_normal()))
            metrics.append(row)
        af = a.flops_per_token * tokens
        tpp = tokens / a.n_total
        for task in truth.tasks:
            p = float(true_accuracy(task, final, af, tpp))
            k = int(rng.binomial(task.n_examples, p))
            common = {"run_id": run_id, "step": int(steps[-1]) * 10, "tokens": tokens, "task": task.task,
                      "task_kind": task.kind, "n_examples": task.n_examples}
            evals.append({**common, "metric": "accuracy", "value": k / task.n_examples})
            tl = task.task_loss_scale * final * math.exp(truth.noise * rng.standard_normal())
            evals.append({**common, "metric": "task_loss", "value": tl})
    for status, count in (("diverged", diverged), ("failed", failed)):
        for j in range(count):
            a = archs[j % len(archs)]
            runs.append({"run_id": f"sim-{status}-{j}", "status": status, **a.to_dict(), "tokens": 1000,
                         "compute": compute[0], "seed": 0, "loss": float("nan"), "n_total": a.n_total,
                         "n_active": a.n_active, "flops_per_token": float(a.flops_per_token)})
            metrics.append({"run_id": f"sim-{status}-{j}", "step": 10, "tokens": 1000, "train_loss": float("inf"),
                            "val_loss": float("nan")})
    return pd.DataFrame(runs), pd.DataFrame(metrics), pd.DataFrame(evals)


def write_store(path, truth: Truth | None = None, *, runs_dir=None, sweep: str = "sim", progress: bool = False,
                **kwargs):
    """Simulate a sweep (``simulate_sweep(truth, **kwargs)``), write it through ``RunWriter`` and ingest it.

    ``path``: the store file (or a Store). ``runs_dir``: where the run directories go; by
    default a temporary folder, removed once they are ingested (the store then holds all
    they hold, and the same arguments simulate them again), so nothing is left beside the
    store. Returns the open ``Store``; the truth used is in ``store.simulation_truth`` and
    the runs table in ``store.simulation_runs``.
    """
    if runs_dir is None:
        with tempfile.TemporaryDirectory(prefix="moescale-sim-") as tmp:
            return write_store(path, truth, runs_dir=Path(tmp) / "runs", sweep=sweep, progress=progress, **kwargs)
    from scaling.rundir import RunWriter
    from scaling.store import Store

    truth = truth or Truth()
    if kwargs.get("lam") is not None:
        truth = replace(truth, lam=float(kwargs.pop("lam")))
    else:
        kwargs.pop("lam", None)
    if not truth.tasks:
        truth = replace(truth, tasks=task_truths(kwargs.pop("active_effect", True)))
    else:
        kwargs.pop("active_effect", None)
    runs, metrics, evals = simulate_sweep(truth, **kwargs)
    store = path if isinstance(path, Store) else Store(path)
    root = Path(runs_dir)
    by_run_m = {k: g for k, g in metrics.groupby("run_id", sort=False)}
    by_run_e = {k: g for k, g in evals.groupby("run_id", sort=False)} if len(evals) else {}
    for r in runs.itertuples(index=False):
        arch = Architecture(**{k: getattr(r, k) for k in ("d_model", "n_layers", "n_heads", "d_ff", "n_experts",
                                                           "top_k", "vocab_size", "n_kv_heads", "seq_len",
                                                           "tied_embeddings")
                               if not (k == "n_kv_heads" and (r.n_kv_heads is None or pd.isna(r.n_kv_heads)))})
        config = {"architecture": arch.to_dict(), "tokens": int(r.tokens), "compute": float(r.compute),
                  "seed": int(r.seed), "simulated": True}
        columns = {**arch.to_dict(), **arch.summary(), "tokens_planned": int(r.tokens), "seed": int(r.seed)}
        w = RunWriter(root / r.run_id, r.run_id, config, sweep=sweep, columns=columns)
        for m in by_run_m.get(r.run_id, pd.DataFrame()).itertuples(index=False):
            values = {k: getattr(m, k) for k in ("train_loss", "val_loss", "load_cv")
                      if hasattr(m, k) and not (k == "load_cv" and pd.isna(getattr(m, k)))}
            w.log(int(m.step), int(m.tokens), **values)
        if r.run_id in by_run_e:
            for e in by_run_e[r.run_id].itertuples(index=False):
                w.log_eval(int(e.step), int(e.tokens), task=e.task, metric=e.metric, value=float(e.value),
                           task_kind=e.task_kind, n_examples=int(e.n_examples))
        w.finish(r.status)
    from scaling.ingest import ingest

    ingest(store, [root], progress=progress)
    store.simulation_truth = truth
    store.simulation_runs = runs
    return store
