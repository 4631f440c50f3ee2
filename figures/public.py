"""Figures from the public reference datasets: the Chinchilla fit on Epoch AI's extraction of Hoffmann et
al.'s data (Besiroglu et al. 2024, arXiv 2404.10102) and Clark et al. 2022's loss against expert count per
model size with the fitted ``clark`` law (arXiv 2202.01169).

The fits are made by ``scaling.public_fits`` (``chinchilla_epoch_fit``, ``clark_fits``); the figure
functions here take their data and results and only draw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from figures.style import NoData, clip_band, format_count, level_colors, log2_axis, log_axis, new_figure, styled

__all__ = ["chinchilla_fit", "clark_experts"]


@styled
def chinchilla_fit(result, samples=None, *, n_levels: int = 6):
    """The Chinchilla law L = E + A N^-α + B D^-β on Epoch AI's data: loss against model size coloured
    by training compute, the fitted isoFLOP curves L(N, D = C / 6N) at ``n_levels`` budgets spanning the
    data (bootstrap band when ``samples`` are given) with their compute-optimal N (Hoffmann et al. 2022,
    Approach 3), and residuals ln(observed / fitted) below."""
    import matplotlib

    from scaling.allocation import chinchilla_optimum

    d = result.data
    if not {"N", "D", "y"} <= set(d.columns):
        raise NoData("chinchilla_fit: the fit's data lacks N, D or y")
    N, D, y = (d[c].to_numpy(dtype=float) for c in ("N", "D", "y"))
    C = 6 * N * D
    theta = result.vector()
    yhat = result.law.predict(theta, {"N": N, "D": D})
    norm = matplotlib.colors.LogNorm(C.min(), C.max())
    cmap = matplotlib.colormaps["viridis"]
    fig, (ax, rx) = new_figure(2, nrows=2, ncols=1, height_ratios=[3, 1.1], panel_size=(6.0, 2.7), sharex=True)
    sc = ax.scatter(N, y, c=C, cmap=cmap, norm=norm, s=14, edgecolor="none", zorder=3)
    limits = (y.min() * 0.95, min(y.max() * 1.05, 8))  # the band is clipped to it: the data stay visible
    levels = np.geomspace(C.min() * 1.5, C.max() / 1.5, n_levels)
    opt = chinchilla_optimum(result, levels)
    Ns = np.geomspace(N.min() / 1.5, N.max() * 1.5, 200)
    for c, (_, o) in zip(levels, opt.iterrows()):
        Ds = c / (6 * Ns)
        ax.plot(Ns, result.law.predict(theta, {"N": Ns, "D": Ds}), color=cmap(norm(c)), linewidth=1.2, zorder=2)
        if samples is not None and len(samples) >= 10:
            preds = np.stack([result.law.predict(p, {"N": Ns, "D": Ds}) for p in samples])
            lo, hi, _ = clip_band(*np.percentile(preds, [2.5, 97.5], axis=0), limits)
            ax.fill_between(Ns, lo, hi, color=cmap(norm(c)), alpha=0.2, linewidth=0, zorder=1)
        ax.scatter([o["N_opt"]], [o["loss"]], marker="*", s=120, color=cmap(norm(c)), edgecolor="black",
                   linewidth=0.6, zorder=4)
    fig.colorbar(sc, ax=[ax, rx], label="training compute C = 6ND (FLOPs)")
    ax.set_ylim(*limits)
    log_axis(ax, "x", "count")
    log_axis(ax, "y")
    ax.set_ylabel("loss")
    p = result.params
    ax.set_title(f"Chinchilla fit on Epoch AI's data: E = {p['E']:.3g}, α = {p['alpha']:.3f}, β = {p['beta']:.3f}"
                 f" (star: compute-optimal N)", fontsize=9.5)
    rx.scatter(N, np.log(y / yhat), c=C, cmap=cmap, norm=norm, s=10, edgecolor="none")
    rx.axhline(0, color="0.3", linewidth=0.8)
    rx.set_xlabel("model size N (parameters)")
    rx.set_ylabel("ln(obs / fit)")
    return fig


@styled
def clark_experts(data: pd.DataFrame, fits: dict):
    """Clark et al. 2022: final validation loss against expert count, one colour per (dense) model size,
    one panel per router, with the fitted ``clark`` law log10 L = a log10 N + b log10 Ê + c log10 N
    log10 Ê + d (saturating Ê) as lines."""
    if data is None or data.empty or not fits:
        raise NoData("clark_experts: no Clark et al. data or fits")
    routers = [r for r in fits if (data["router"] == r).any()]
    sizes = sorted(data["N"].unique())
    colors = level_colors(sizes, "viridis")
    fig, axes = new_figure(len(routers), sharey=True, panel_size=(3.7, 3.2))
    E_grid = np.geomspace(1, max(512, data["E"].max()), 120)
    for ax, r in zip(axes, routers):
        sub = data[data["router"] == r]
        res = fits[r]
        theta = res.vector()
        for n in sizes:
            s = sub[sub["N"] == n].sort_values("E")
            if s.empty:
                continue
            label = str(s["model_size_label"].iloc[0]) if "model_size_label" in s else format_count(n)
            ax.scatter(s["E"], s["loss"], color=colors[n], s=18, zorder=3, label=label)
            ax.plot(E_grid, res.law.predict(theta, {"N": np.full_like(E_grid, n), "E": E_grid}), color=colors[n],
                    linewidth=1.1, zorder=2)
        log2_axis(ax, "x", [1, 4, 16, 64, 256, 512])
        ax.set_title(f"{r} (fit MSE {res.objective:.3g})", fontsize=9.5)
        ax.set_xlabel("expert count E (1 = dense)")
        ax.set_ylabel("validation loss")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", title="dense size")
    fig.suptitle("Clark et al. 2022: loss against expert count, fitted clark law", fontsize=11)
    return fig
