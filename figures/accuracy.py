"""Task accuracy figures after Nakamura et al. 2025 ("Optimal Sparsity of Mixture-of-Experts Language
Models", arXiv 2508.18672): error against pre-training loss (their Fig. 1), accuracy against density
at fixed active FLOPs (their Fig. 5), accuracy against tokens per parameter with the fitted peak
(their Fig. 7).

Task names and kinds come from the ``evals`` table (``task_kind``), never from fixed names. Raw
accuracies carry 95% Wilson score intervals from each evaluation's ``n_examples`` (binomial; see
``figures.style.wilson_interval``), and every accuracy panel draws the task's chance rate as a dotted
line when it is known (``chance_rates``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from figures.style import (TOP_K_MARKERS, NoData, budget_colors, format_flops, log2_axis, log_axis, new_figure,
                           sparsity_colors, styled, wilson_interval)

__all__ = ["error_vs_loss", "accuracy_vs_density", "accuracy_vs_tpp", "task_table", "chance_rates"]

_CHANCE = dict(color="0.35", linestyle=":", linewidth=1.1, zorder=1)


def chance_rates(evals: pd.DataFrame | None, runs: pd.DataFrame | None = None) -> dict[str, float]:
    """task -> the accuracy of guessing (the task's chance rate).

    From the evals' ``chance`` metric when a run logged one; else from the ``data_stats`` the runner
    writes into each run's run.json (``tasks.<task>.chance``: 1/|answer alphabet| for the synthetic
    tasks of ``runner.data``), read from the run directories the store ingested (``runs``: run_id,
    source_dir). The median over runs; tasks with no known rate are absent.
    """
    import json
    from pathlib import Path

    logged: dict[str, list[float]] = {}
    if evals is not None and len(evals) and "chance" in set(evals["metric"]):
        for task, v in evals.loc[evals["metric"] == "chance", ["task", "value"]].itertuples(index=False):
            logged.setdefault(str(task), []).append(float(v))
    recorded: dict[str, list[float]] = {}
    if runs is not None and len(runs) and "source_dir" in runs.columns:
        for src in runs["source_dir"].dropna().unique():
            try:
                stats = json.loads((Path(src) / "run.json").read_text()).get("data_stats") or {}
            except (OSError, ValueError):
                continue
            for task, info in (stats.get("tasks") or {}).items():
                chance = (info or {}).get("chance") if isinstance(info, dict) else None
                if isinstance(chance, (int, float)) and 0 <= chance <= 1:
                    recorded.setdefault(str(task), []).append(float(chance))
    return {t: float(np.median(v)) for t, v in {**recorded, **logged}.items() if v}


def _chance_line(ax, chance: dict | None, task: str, *, error: bool = False, **style) -> None:
    if chance and task in chance:
        v = 1 - chance[task] if error else chance[task]
        ax.axhline(v, **{**_CHANCE, **style}, label=f"chance ({task})" if style else "chance")


def task_table(final: pd.DataFrame, evals: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """The last ``metric`` value of each (finished run, task), joined to the run's final row
    (``scaling.accuracy.accuracy_table``) plus density, sparsity, top_k and the isoFLOP budget label
    (``scaling.claims.budget_groups`` of active FLOPs)."""
    from scaling.accuracy import accuracy_table
    from scaling.budgets import budget_groups

    if evals is None or not len(evals):
        raise NoData("the store has no evals rows (no task accuracy)")
    if metric not in set(evals["metric"]):
        raise NoData(f"no {metric!r} evaluations in the evals table (metrics: {', '.join(sorted(set(evals['metric'])))})")
    data = accuracy_table(final, evals, metric=metric)
    if data.empty:
        raise NoData(f"no finished run has a {metric!r} evaluation")
    extra = final[["run_id", "density", "top_k"] + [c for c in ("sparsity",) if c not in data.columns]]
    data = data.merge(extra, on="run_id", how="left")
    fin = final.set_index("run_id")
    labels = pd.Series(budget_groups(fin["active_flops"].to_numpy(dtype=float)), index=fin.index)
    data["budget"] = data["run_id"].map(labels)
    return data


def _tasks(data: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, kind) pairs ordered by kind (memorization first, as Nakamura et al.), then name."""
    pairs = data[["task", "task_kind"]].drop_duplicates()
    order = {"memorization": 0, "reasoning": 1}
    return sorted(((t, k) for t, k in pairs.itertuples(index=False)), key=lambda p: (order.get(p[1], 2), p[0]))


def _density_label(d: float) -> str:
    inv = 1 / d
    return "1" if d == 1 else (f"1/{inv:g}" if abs(inv - round(inv)) < 1e-9 else f"{d:.3g}")


@styled
def error_vs_loss(final: pd.DataFrame, evals: pd.DataFrame, metric: str = "accuracy", *, chance: dict | None = None):
    """Task error (1 - accuracy) against pre-training loss, coloured by density top_k/n_experts, one
    panel per task (Nakamura et al. 2025, Fig. 1: memorization error follows the loss whatever the
    density; reasoning error at equal loss depends on it). One scatter series per architecture family
    (n_experts, top_k): colour by density, marker by top_k, so E 8 k 1 and E 16 k 2 (one density)
    differ. Vertical bars: 95% Wilson intervals from ``n_examples``; dotted: the chance error 1 - chance
    (``chance``: task -> chance accuracy, ``chance_rates``)."""
    data = task_table(final, evals, metric)
    tasks = _tasks(data)
    colors = sparsity_colors(data["density"])
    fig, axes = new_figure(len(tasks), sharey=False)
    for ax, (task, kind) in zip(axes, tasks):
        sub = data[data["task"] == task]
        groups = sorted(sub.groupby(["density", "n_experts", "top_k"]), key=lambda t: (-t[0][0], t[0][1]))
        for (d, e, k), s in groups:
            lo, hi = wilson_interval(s["accuracy"], s["n_examples"])
            err = 1 - s["accuracy"].to_numpy(dtype=float)
            ax.errorbar(s["val_loss"], err, yerr=np.vstack([(err - (1 - hi)).clip(0), ((1 - lo) - err).clip(0)]),
                        fmt="none", ecolor=colors[float(d)], elinewidth=0.7, alpha=0.6, zorder=2)
            ax.scatter(s["val_loss"], err, color=colors[float(d)], s=26, edgecolor="white",
                       marker=TOP_K_MARKERS.get(int(k), "o"), linewidth=0.4,
                       label=f"{_density_label(float(d))} (E {int(e)}, k {int(k)})", zorder=3)
        _chance_line(ax, chance, task, error=True)
        ax.set_title(f"{task} ({kind})")
        ax.set_xlabel("pre-training loss (val_loss)")
        ax.set_ylabel(f"task error (1 - {metric})")
    axes[-1].legend(title="density k/E (architecture)", loc="best")
    fig.suptitle("Task error against pre-training loss, by density (bars: 95% Wilson intervals)", fontsize=11)
    return fig


@styled
def accuracy_vs_density(final: pd.DataFrame, evals: pd.DataFrame, metric: str = "accuracy", *,
                        chance: dict | None = None):
    """Accuracy against density top_k/n_experts at fixed active FLOPs (isoFLOP budgets), one line per
    budget, one panel per task (Nakamura et al. 2025, Fig. 5). The line joins the best run at each
    density (the architectures of a budget differ in more than density); all runs are the faint points
    with 95% Wilson intervals from ``n_examples``; dotted: the task's chance rate (``chance``)."""
    data = task_table(final, evals, metric)
    tasks = _tasks(data)
    colors = budget_colors(data["budget"])
    fig, axes = new_figure(len(tasks))
    for ax, (task, kind) in zip(axes, tasks):
        sub = data[data["task"] == task]
        for b in sorted(sub["budget"].unique()):
            s = sub[sub["budget"] == b]
            best = s.groupby("density")["accuracy"].max().sort_index()
            lo, hi = wilson_interval(s["accuracy"], s["n_examples"])
            acc = s["accuracy"].to_numpy(dtype=float)
            ax.errorbar(s["density"], acc, yerr=np.vstack([(acc - lo).clip(0), (hi - acc).clip(0)]), fmt="none",
                        ecolor=colors[float(b)], elinewidth=0.7, alpha=0.35, zorder=2)
            ax.scatter(s["density"], acc, color=colors[float(b)], s=12, alpha=0.35, zorder=2)
            ax.plot(best.index, best.to_numpy(), "o-", color=colors[float(b)], label=f"C = {format_flops(b)}",
                    zorder=3)
        _chance_line(ax, chance, task)
        log2_axis(ax, "x", sub["density"].unique())
        ax.set_title(f"{task} ({kind})")
        ax.set_xlabel("density top_k / n_experts")
        ax.set_ylabel(metric)
    axes[-1].legend(title="active FLOPs", loc="best")
    fig.suptitle("Accuracy against density at fixed active FLOPs (line: best run per density; bars: 95% Wilson)",
                 fontsize=11)
    return fig


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


@styled
def accuracy_vs_tpp(accuracy, *, n_grid: int = 200, chance: dict | None = None):
    """Accuracy against tokens per parameter (TPP = tokens / N_total) with the fitted binomial GLM and
    its peak, one panel per task kind (Nakamura et al. 2025, Fig. 7: reasoning peaks near TPP = 20).

    ``accuracy``: a ``scaling.accuracy.AccuracyResult``. The curve of each task is the GLM
    logit p = c_t + b_loss L + b_flops ln(C/C_ref) + b_tpp ln TPP + b_tpp2 (ln TPP)^2 at the kind's
    median loss and median active FLOPs, with a 95% bootstrap band when the result has resamples.
    Points are the runs' accuracies adjusted to that median loss and FLOPs on the logit scale
    (a partial-residual plot), so they scatter around the curve. The vertical line is the fitted
    peak TPP* = exp(-b_tpp / (2 b_tpp2)) with its bootstrap CI shaded, or "no interior peak". Dotted
    lines: each task's chance rate (``chance``: task -> chance accuracy, ``chance_rates``).
    """
    from scipy.special import expit  # 1 / (1 + exp(-x)) without overflow
    if accuracy is None or not getattr(accuracy, "models", None):
        raise NoData("no accuracy model (the store has no accuracy evals, or too few runs to fit one)")
    kinds = list(accuracy.models)
    fig, axes = new_figure(len(kinds), panel_size=(4.2, 3.3))
    peaks = accuracy.peaks.set_index("kind") if len(accuracy.peaks) else pd.DataFrame()
    for ax, kind in zip(axes, kinds):
        model = accuracy.models[kind]
        data = accuracy.data[accuracy.data["task_kind"] == kind]
        names = list(model.names)
        b = dict(zip(names, model.params))
        l_med = float(np.median(data["val_loss"]))
        c_med = float(np.exp(np.median(np.log(data["active_flops"]))))
        lo, hi = float(data["tpp"].min()), float(data["tpp"].max())
        grid = np.geomspace(lo, hi, n_grid)
        eta = model.eta(np.full(n_grid, l_med), np.full(n_grid, c_med), grid)  # (n_tasks, n)
        band = None
        if model.bootstrap_params is not None and len(model.bootstrap_params) >= 10:
            eb = model.eta(np.full(n_grid, l_med), np.full(n_grid, c_med), grid, params=model.bootstrap_params)
            pb = expit(eb)
            band = np.percentile(pb, [2.5, 97.5], axis=0)  # (2, n_tasks, n)
        palette = _task_palette(model.tasks)
        for j, task in enumerate(model.tasks):
            s = data[data["task"] == task]
            shift = b.get("loss", 0.0) * (s["val_loss"] - l_med)
            if model.with_flops and "log_active_flops" in b:
                shift = shift + b["log_active_flops"] * np.log(s["active_flops"] / c_med)
            adj = expit(_logit(s["accuracy"]) - shift)
            ax.scatter(s["tpp"], adj, color=palette[j], s=16, alpha=0.6, edgecolor="none", zorder=2)
            ax.plot(grid, expit(eta[j]), color=palette[j], label=task, zorder=3)
            _chance_line(ax, chance, task, color=palette[j])
            if band is not None:
                ax.fill_between(grid, band[0, j], band[1, j], color=palette[j], alpha=0.18, linewidth=0, zorder=1)
        if kind in peaks.index:
            row = peaks.loc[kind]
            if bool(row["interior"]) and np.isfinite(row["tpp_peak"]):
                ax.axvline(row["tpp_peak"], color="0.25", linestyle="--", linewidth=1.0, zorder=4,
                           label=f"peak TPP {row['tpp_peak']:.3g}")
                if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
                    ax.axvspan(row["ci_low"], row["ci_high"], color="0.5", alpha=0.15, linewidth=0, zorder=0)
            else:
                ax.text(0.03, 0.04, "no interior peak", transform=ax.transAxes, fontsize=8, color="0.3")
        log_axis(ax, "x")
        ax.set_title(f"{kind}")
        ax.set_xlabel("tokens per parameter (TPP)")
        ax.set_ylabel("accuracy (adjusted)")
        ax.legend(loc="best")
    fig.suptitle("Accuracy against tokens per parameter: fitted GLM and its peak\n"
                 "(points adjusted to the median loss and active FLOPs of the GLM)", fontsize=10)
    return fig


def _task_palette(tasks):
    import seaborn as sns

    return sns.color_palette("colorblind", max(len(tasks), 3))
