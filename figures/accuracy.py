"""Task accuracy figures after Nakamura et al. 2025 ("Optimal Sparsity of Mixture-of-Experts Language
Models", arXiv 2508.18672): error against pre-training loss (their Fig. 1), accuracy against density
at fixed active FLOPs (their Fig. 5), accuracy against tokens per parameter with the fitted peak
(their Fig. 7).

Task names and kinds come from the ``evals`` table (``task_kind``), never from fixed names.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from figures.style import NoData, budget_colors, format_flops, log2_axis, log_axis, new_figure, sparsity_colors, styled

__all__ = ["error_vs_loss", "accuracy_vs_density", "accuracy_vs_tpp", "task_table"]


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
def error_vs_loss(final: pd.DataFrame, evals: pd.DataFrame, metric: str = "accuracy"):
    """Task error (1 - accuracy) against pre-training loss, coloured by density top_k/n_experts, one
    panel per task (Nakamura et al. 2025, Fig. 1: memorization error follows the loss whatever the
    density; reasoning error at equal loss depends on it). One scatter series per density."""
    data = task_table(final, evals, metric)
    tasks = _tasks(data)
    colors = sparsity_colors(data["density"])
    fig, axes = new_figure(len(tasks), sharey=False)
    for ax, (task, kind) in zip(axes, tasks):
        sub = data[data["task"] == task]
        for d in sorted(sub["density"].unique(), reverse=True):
            s = sub[sub["density"] == d]
            ax.scatter(s["val_loss"], 1 - s["accuracy"], color=colors[float(d)], s=26, edgecolor="white",
                       linewidth=0.4, label=_density_label(float(d)), zorder=3)
        ax.set_title(f"{task} ({kind})")
        ax.set_xlabel("pre-training loss (val_loss)")
        ax.set_ylabel(f"task error (1 - {metric})")
    axes[-1].legend(title="density k/E", loc="best")
    fig.suptitle("Task error against pre-training loss, by density", fontsize=11)
    return fig


@styled
def accuracy_vs_density(final: pd.DataFrame, evals: pd.DataFrame, metric: str = "accuracy"):
    """Accuracy against density top_k/n_experts at fixed active FLOPs (isoFLOP budgets), one line per
    budget, one panel per task (Nakamura et al. 2025, Fig. 5). The line joins the best run at each
    density (the architectures of a budget differ in more than density); all runs are the faint points."""
    data = task_table(final, evals, metric)
    tasks = _tasks(data)
    colors = budget_colors(data["budget"])
    fig, axes = new_figure(len(tasks))
    for ax, (task, kind) in zip(axes, tasks):
        sub = data[data["task"] == task]
        for b in sorted(sub["budget"].unique()):
            s = sub[sub["budget"] == b]
            best = s.groupby("density")["accuracy"].max().sort_index()
            ax.scatter(s["density"], s["accuracy"], color=colors[float(b)], s=12, alpha=0.35, zorder=2)
            ax.plot(best.index, best.to_numpy(), "o-", color=colors[float(b)], label=f"C = {format_flops(b)}",
                    zorder=3)
        log2_axis(ax, "x", sub["density"].unique())
        ax.set_title(f"{task} ({kind})")
        ax.set_xlabel("density top_k / n_experts")
        ax.set_ylabel(metric)
    axes[-1].legend(title="active FLOPs", loc="best")
    fig.suptitle("Accuracy against density at fixed active FLOPs (line: best run per density)", fontsize=11)
    return fig


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


@styled
def accuracy_vs_tpp(accuracy, *, n_grid: int = 200):
    """Accuracy against tokens per parameter (TPP = tokens / N_total) with the fitted binomial GLM and
    its peak, one panel per task kind (Nakamura et al. 2025, Fig. 7: reasoning peaks near TPP = 20).

    ``accuracy``: a ``scaling.accuracy.AccuracyResult``. The curve of each task is the GLM
    logit p = c_t + b_loss L + b_flops ln(C/C_ref) + b_tpp ln TPP + b_tpp2 (ln TPP)^2 at the kind's
    median loss and median active FLOPs, with a 95% bootstrap band when the result has resamples.
    Points are the runs' accuracies adjusted to that median loss and FLOPs on the logit scale
    (a partial-residual plot), so they scatter around the curve. The vertical line is the fitted
    peak TPP* = exp(-b_tpp / (2 b_tpp2)) with its bootstrap CI shaded, or "no interior peak".
    """
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
            pb = 1 / (1 + np.exp(-eb))
            band = np.percentile(pb, [2.5, 97.5], axis=0)  # (2, n_tasks, n)
        palette = _task_palette(model.tasks)
        for j, task in enumerate(model.tasks):
            s = data[data["task"] == task]
            shift = b.get("loss", 0.0) * (s["val_loss"] - l_med)
            if model.with_flops and "log_active_flops" in b:
                shift = shift + b["log_active_flops"] * np.log(s["active_flops"] / c_med)
            adj = 1 / (1 + np.exp(-(_logit(s["accuracy"]) - shift)))
            ax.scatter(s["tpp"], adj, color=palette[j], s=16, alpha=0.6, edgecolor="none", zorder=2)
            ax.plot(grid, 1 / (1 + np.exp(-eta[j])), color=palette[j], label=task, zorder=3)
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
