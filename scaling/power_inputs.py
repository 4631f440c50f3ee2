"""The inputs of a power analysis (``scaling.power``): the planned runs of a sweep, the truth to
simulate from, and the seed noise measured on a store.

- ``planned_runs``: one row per planned run of a sweep YAML, a ``Sweep`` or a DataFrame.
- ``as_truth``: a ``scaling.simulate.Truth`` from None (the ``moe`` law's documented defaults),
  a ``moe`` fit, its JSON file (``moescale fit --json``) or its parameters.
- ``seed_noise``: the pooled within-group standard deviation of ln(final loss) over runs that
  differ only in seed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError
from scaling.laws import MOE
from scaling.simulate import Truth

__all__ = ["planned_runs", "as_truth", "seed_noise", "store_truth"]

_ARCH_COLUMNS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ff", "n_experts", "top_k", "vocab_size",
                 "seq_len", "tied_embeddings", "n_total", "n_active", "tokens")


def planned_runs(sweep) -> pd.DataFrame:
    """The planned runs of a sweep: a sweep YAML path, a ``scaling.planner.Sweep``, or a DataFrame.

    Returns one row per run: run_id, arch (a readable name), n_total, sparsity, n_experts,
    top_k, tokens, and where known n_active, flops_per_token, compute (the planned budget C),
    n_layers, d_model. A DataFrame needs n_total, n_experts, top_k, tokens (sparsity defaults to
    n_experts / top_k), all finite and > 0.
    """
    from scaling.planner import Sweep

    if isinstance(sweep, (str, Path)):
        if not Path(sweep).is_file():
            raise MoescaleError(f"sweep {sweep}: no such file")
        sweep = Sweep.from_yaml(Path(sweep))
    if isinstance(sweep, Sweep):
        rows = [{"run_id": r.run_id, "n_layers": r.architecture.n_layers, "d_model": r.architecture.d_model,
                 "n_experts": r.architecture.n_experts, "top_k": r.architecture.top_k,
                 "n_total": float(r.architecture.n_total), "n_active": float(r.architecture.n_active),
                 "sparsity": float(r.architecture.sparsity), "tokens": float(r.tokens),
                 "flops_per_token": float(r.architecture.flops_per_token),
                 "compute": float(r.compute) if r.compute is not None else np.nan} for r in sweep.runs]
        df = pd.DataFrame(rows)
    elif isinstance(sweep, pd.DataFrame):
        df = sweep.copy().reset_index(drop=True)
    else:
        raise MoescaleError(f"sweep: expected a sweep YAML path, a Sweep or a DataFrame, got {type(sweep).__name__}")
    missing = [c for c in ("n_total", "n_experts", "top_k", "tokens") if c not in df.columns]
    if missing:
        raise MoescaleError(f"sweep: planned runs lack column(s) {', '.join(missing)}")
    if "sparsity" not in df.columns:
        df["sparsity"] = df["n_experts"] / df["top_k"]
    for c in ("n_total", "sparsity", "n_experts", "top_k", "tokens"):
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~(np.isfinite(v) & (v > 0)))
        if bad.size:
            raise MoescaleError(f"sweep: column {c} must be finite and > 0, but is {v[bad[0]]!r} in run {bad[0]}")
        df[c] = v
    if "run_id" not in df.columns:
        df["run_id"] = [f"run{i}" for i in range(len(df))]
    if "arch" not in df.columns:
        df["arch"] = [(f"L{int(r.n_layers)}-d{int(r.d_model)}-" if "d_model" in df.columns and "n_layers" in df.columns
                       else f"N{r.n_total:.3g}-") + f"E{int(r.n_experts)}-k{int(r.top_k)}" for r in df.itertuples()]
    return df


def as_truth(truth=None) -> tuple[Truth, list[str]]:
    """The truth to simulate from, and notes: None (``Truth()``, the moe law's documented defaults),
    a ``Truth``, a ``moe`` FitResult, a mapping of moe parameters (e, a, b, alpha, beta, gamma,
    lam), or a fit JSON file (``moescale fit ... --json``, ``FitResult.to_json``).

    A fit's noise is the residual spread of its log losses, sqrt(sum r^2 / (n - k)) (an upper
    bound on the seed noise: misfit counts as noise); a fit without data keeps ``Truth().noise``.
    """
    import json

    if truth is None:
        return Truth(), []
    if isinstance(truth, Truth):
        return truth, []
    if isinstance(truth, (str, Path)):
        if not Path(truth).is_file():
            raise MoescaleError(f"truth {truth}: no such file")
        try:
            data = json.loads(Path(truth).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MoescaleError(f"truth {truth}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise MoescaleError(f"truth {truth}: expected a JSON object of a moe fit")
        if data.get("law", "moe") != "moe":
            raise MoescaleError(f"truth {truth}: a fit of law {data.get('law')!r}; power needs a moe fit")
        return _truth_from_params(data.get("params", data), str(truth)), [
            f"note: truth from {truth}; noise {Truth().noise:g} (default) unless given"]
    if hasattr(truth, "law") and hasattr(truth, "params"):
        if truth.law.name != "moe":
            raise MoescaleError(f"truth: a fit of law {truth.law.name!r}; power needs a moe fit")
        out = _truth_from_params(truth.params, "truth")
        data = getattr(truth, "data", None)
        if isinstance(data, pd.DataFrame) and "y" in data.columns and len(data) > truth.n_free:
            X = {v: data[v].to_numpy(dtype=float) for v in MOE.variables}
            r = np.log(data["y"].to_numpy(dtype=float)) - np.log(MOE.predict(truth.params, X))
            sigma = float(np.sqrt(np.sum(r * r) / (len(r) - truth.n_free)))
            return replace(out, noise=sigma), [f"note: noise {sigma:.3g} from the fit's residuals"]
        return out, [f"note: the fit carries no data; noise {out.noise:g} (default) unless given"]
    if isinstance(truth, dict):
        return _truth_from_params(truth, "truth"), []
    raise MoescaleError(f"truth: expected a Truth, a moe fit, its JSON file or None, got {type(truth).__name__}")


def _truth_from_params(params, where: str) -> Truth:
    missing = [p for p in MOE.params if p not in params]
    if missing:
        raise MoescaleError(f"{where}: moe parameter(s) {', '.join(missing)} missing")
    try:
        v = {p: float(params[p]) for p in MOE.params}
    except (TypeError, ValueError):
        raise MoescaleError(f"{where}: moe parameters must be numbers") from None
    if not all(math.isfinite(x) for x in v.values()):
        raise MoescaleError(f"{where}: moe parameters must be finite")
    return Truth(E=math.exp(v["e"]), A=math.exp(v["a"]), B=math.exp(v["b"]), alpha=v["alpha"], beta=v["beta"],
                 gamma=v["gamma"], lam=v["lam"])


def seed_noise(source) -> float:
    """The relative seed noise sigma of the final loss, pooled over runs that differ only in seed.

    sigma^2 = sum_g sum_i (ln L_gi - mean_g ln L)^2 / sum_g (n_g - 1), over groups g of finished runs
    with the same architecture and tokens (the pooled within-group variance). ``source``: a
    Store, a store path or a DataFrame of the ``final`` view. Raises MoescaleError when no two
    runs differ only in seed.
    """
    from scaling.final import final_runs

    df, _ = final_runs(source, need=("run_id", "n_total", "n_experts", "top_k", "tokens", "val_loss"))
    df = df[df["val_loss"] > 0]
    keys = [c for c in _ARCH_COLUMNS if c in df.columns]
    y = np.log(df["val_loss"].to_numpy(dtype=float))
    groups = df.assign(_y=y).groupby(keys, dropna=False)["_y"]
    dev = (groups.transform(lambda g: g - g.mean()) ** 2).sum()
    dof = int((groups.size() - 1).sum())
    if dof < 1:
        raise MoescaleError(f"seed noise: none of the {len(df)} finished runs has a seed repeat (same architecture "
                            "and tokens, another seed); train one, or give the noise")
    return float(math.sqrt(dev / dof))


def store_truth(source, noise: float | None = None) -> tuple[Truth, list[str]]:
    """The truth a store's runs suggest, and notes: the ``moe`` law fitted to its finished runs
    (``scaling.fitting.fit``, Huber(1e-3) on log residuals; lam fixed at 0 with one top_k, as
    ``scaling.claims``), with the seed noise ``seed_noise`` measures on the same runs, else the
    fit's residual spread sqrt(sum r^2 / (n - k)) (an upper bound: misfit counts as noise).

    ``source``: a Store, a store path or a DataFrame of the ``final`` view (read once); ``noise``:
    a given seed noise, which replaces the measured one. Raises
    MoescaleError for a missing store, fewer than ``scaling.claims.MIN_RUNS`` finished runs or one
    sparsity. The fitted truth is whatever the runs say, identified or not: a store whose moe fit
    has parameters on their bounds gives a power analysis of that fit, and the note says so.
    """
    from scaling.claims import MIN_RUNS
    from scaling.final import final_runs
    from scaling.fitting import fit
    from scaling.laws import MOE_X

    where = f"store {source}" if isinstance(source, (str, Path)) else "store"
    df, _ = final_runs(source)
    if len(df) < MIN_RUNS:
        raise MoescaleError(f"{where}: {len(df)} finished runs; fitting the moe law as a truth needs at least {MIN_RUNS}")
    if df["sparsity"].nunique() < 2:
        raise MoescaleError(f"{where}: every finished run has sparsity {df['sparsity'].iloc[0]:g}; "
                            "the moe law's gamma needs 2 or more sparsities")
    one_k = df["top_k"].nunique() < 2
    res = fit(df, "moe", x=MOE_X, y="val_loss", fix={"lam": 0.0} if one_k else None, stderr=False)
    truth, _ = as_truth(res)
    notes = [f"note: truth fitted to the {len(df)} finished runs of the {where}"
             + ("; lam fixed at 0 (one top_k)" if one_k else "")]
    bounds = list(res.at_bound)
    if bounds:
        notes.append(f"note: the fitted truth has {', '.join(bounds)} on a bound: it is what these runs say, "
                     "not an identified law")
    if noise is not None:
        return replace(truth, noise=float(noise)), notes
    try:
        sigma = seed_noise(df)
        notes.append(f"note: seed noise {sigma:.3g} measured from the store's seed repeats")
        truth = replace(truth, noise=sigma)
    except MoescaleError:
        notes.append(f"note: no seed repeats in the store; noise {truth.noise:.3g} from the fit's residuals "
                     "(an upper bound)")
    return truth, notes
