"""Training-curve figures: loss against tokens coloured by sparsity, and routing balance over training.

Both read the store's long ``metrics`` table (run_id, step, tokens, name, value); the metric
names are read from it (the training loop logs ``val_loss``, ``train_loss`` and the routing
statistics of ``runner.moe``: ``load_cv``, ``router_entropy``, ``max_expert_share``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from figures.style import TOP_K_STYLES, NoData, format_flops, log_axis, new_figure, sparsity_colors, styled

__all__ = ["training_curves", "routing_balance", "find_metric", "curve_metric", "BALANCE_METRICS", "LOSS_METRICS"]

#: Names a routing-balance metric may carry, in order of preference (coefficient of variation of expert load).
BALANCE_METRICS = ("load_cv", "routing/load_cv", "router/load_cv", "moe/load_cv", "expert_load_cv")
#: Names of the loss curve, in order of preference.
LOSS_METRICS = ("val_loss", "train_loss", "loss")


def find_metric(metrics: pd.DataFrame, candidates, *, contains: str | None = None) -> str:
    """The first of ``candidates`` present in the metrics table's ``name`` column, else the first name
    containing ``contains``; NoData (naming the names present) when none is."""
    if metrics is None or not len(metrics):
        raise NoData("the store has no metrics rows (no training curves)")
    names = sorted(set(metrics["name"]))
    for c in candidates:
        if c in names:
            return c
    if contains:
        hits = [n for n in names if contains in n]
        if hits:
            return hits[0]
    raise NoData(f"no metric named {' or '.join(candidates)} in the metrics table (metrics: {', '.join(names)})")


def _densest(metrics: pd.DataFrame, candidates) -> str:
    find_metric(metrics, candidates)  # NoData naming the metrics when none is present
    present = [c for c in candidates if c in set(metrics["name"])]
    counts = {c: float(metrics[metrics["name"] == c].groupby("run_id").size().median()) for c in present}
    return max(present, key=lambda c: (counts[c], -present.index(c)))


def _with_runs(metrics: pd.DataFrame, final: pd.DataFrame, name: str) -> pd.DataFrame:
    from scaling.budgets import budget_groups

    m = metrics[metrics["name"] == name][["run_id", "step", "tokens", "value"]]
    cols = ["run_id", "sparsity", "n_experts", "top_k", "active_flops"]
    f = final[[c for c in cols if c in final.columns]].dropna(subset=["sparsity", "active_flops"])
    if f.empty:
        raise NoData("no finished run to draw curves for")
    f = f.assign(budget=budget_groups(f["active_flops"].to_numpy(dtype=float)))
    out = m.merge(f, on="run_id", how="inner")
    out = out[np.isfinite(pd.to_numeric(out["value"], errors="coerce"))]
    if out.empty:
        raise NoData(f"no finite {name!r} values for finished runs")
    return out.sort_values(["run_id", "tokens"])


def _curves(data: pd.DataFrame, ylabel: str, title: str, *, logy: bool, max_panels: int = 4):
    budgets = sorted(data["budget"].unique())[-max_panels:]
    colors = sparsity_colors(data["sparsity"])
    fig, axes = new_figure(len(budgets), sharey=True, panel_size=(3.6, 3.0))
    for ax, b in zip(axes, budgets):
        sub = data[data["budget"] == b]
        for run, g in sub.groupby("run_id", sort=True):
            s = float(g["sparsity"].iloc[0])
            k = int(g["top_k"].iloc[0]) if "top_k" in g else 1
            ax.plot(g["tokens"], g["value"], color=colors[s], linewidth=1.2, alpha=0.9,
                    linestyle=TOP_K_STYLES.get(k, "-"), marker="o" if len(g) <= 3 else None, markersize=4)
        log_axis(ax, "x", "count")
        if logy:
            log_axis(ax, "y")
        ax.set_title(f"C = {format_flops(b)}")
        ax.set_xlabel("tokens seen")
        ax.set_ylabel(ylabel)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, label=f"s = {s:g}") for s, c in colors.items()]
    if "top_k" in data and data["top_k"].nunique() > 1:
        handles += [Line2D([], [], color="0.35", linestyle=TOP_K_STYLES.get(int(k), "-"), label=f"top_k = {int(k)}")
                    for k in sorted(data["top_k"].unique())]
    fig.legend(handles=handles, loc="outside right center", title="sparsity / top_k")
    fig.suptitle(title, fontsize=11)
    return fig


def curve_metric(metrics: pd.DataFrame) -> str:
    """The loss metric ``training_curves`` draws: of ``LOSS_METRICS``, the one logged most often per run."""
    return _densest(metrics, LOSS_METRICS)


@styled
def training_curves(metrics: pd.DataFrame, final: pd.DataFrame, metric: str | None = None):
    """Loss against tokens seen for every finished run, one panel per isoFLOP budget (the largest four),
    coloured by sparsity s = n_experts/top_k, line style by top_k (two architectures of one sparsity, E 8
    k 1 and E 16 k 2, differ). ``metric`` defaults to the loss metric of ``LOSS_METRICS``
    logged most often per run (val_loss first on ties: a run that evaluates only at its end has a
    denser train_loss curve; ``curve_metric`` says which, for the caption)."""
    name = metric or curve_metric(metrics)
    data = _with_runs(metrics, final, name)
    return _curves(data, name, f"Training curves ({name}) by sparsity", logy=True)


@styled
def routing_balance(metrics: pd.DataFrame, final: pd.DataFrame, metric: str | None = None):
    """Routing balance over training: the coefficient of variation of the tokens per expert (std/mean
    of the load; 0 is perfectly balanced, Switch Transformer's load-balancing target; ``runner.moe``)
    against tokens seen, one line per MoE run (n_experts > 1), coloured by sparsity."""
    name = metric or find_metric(metrics, BALANCE_METRICS, contains="load_cv")
    data = _with_runs(metrics, final, name)
    if "n_experts" in data.columns:
        data = data[data["n_experts"] > 1]
    if data.empty:
        raise NoData(f"no MoE run (n_experts > 1) has {name!r} values")
    return _curves(data, f"{name} (expert load std/mean)", f"Routing balance over training ({name})", logy=False)
