"""Figures from the public reference datasets (``scaling.datasets``; found through MOESCALE_DATA):
the Chinchilla fit on Epoch AI's extraction of Hoffmann et al.'s data (Besiroglu et al. 2024, arXiv
2404.10102) and Clark et al. 2022's loss against expert count per model size with the fitted
``clark`` law (arXiv 2202.01169).

The ``*_fit`` functions load and fit (the same fits as README "Fitting scaling laws" and
tests/test_published_fits.py); the figure functions take the data and the results.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from figures.style import NoData, format_count, level_colors, log2_axis, log_axis, new_figure, styled

__all__ = ["dataset_file", "chinchilla_epoch_fit", "clark_fits", "chinchilla_fit", "clark_experts",
           "CHINCHILLA_X", "CHINCHILLA_WHERE", "CLARK_ROUTERS"]

CHINCHILLA_X = {"N": '"Model Size"', "D": '"Training FLOP"/(6*"Model Size")'}
# Epoch AI drop the five highest losses (README "Fitting scaling laws").
CHINCHILLA_WHERE = "loss < (SELECT loss FROM data ORDER BY loss DESC LIMIT 1 OFFSET 4)"
CLARK_ROUTERS = ("S-Base", "RL-R", "Hash")
CLARK_X = {"N": "dense_parameter_count", "E": "CASE WHEN router_type = 'Dense' THEN 1 ELSE num_experts END"}


def _clark_where(router: str) -> str:
    return ("step = (SELECT max(step) FROM data d2 WHERE d2.hyper_id = data.hyper_id) "
            f"AND routing_frequency = 0.5 AND k = 1 AND seed = 42 AND router_type IN ('Dense', '{router}')")


def dataset_file(name: str):
    """The local file of a registered dataset, never downloading; NoData saying where to put it when absent."""
    from scaling import datasets
    from scaling.errors import MoescaleError

    try:
        return datasets.path(name, download_missing=False)
    except MoescaleError as exc:
        raise NoData(str(exc)) from None


def chinchilla_epoch_fit(bootstrap: int = 0, seed: int = 0, samples: int = 0):
    """Epoch AI's Chinchilla replication: the ``chinchilla`` law fitted to ``chinchilla_epoch`` with Huber
    δ = 1e-3 on 4,500 starts, the 5 highest losses dropped. Returns (FitResult, bootstrap parameter
    samples (samples, n_params) or None)."""
    from scaling.fitting import fit

    path = dataset_file("chinchilla_epoch")
    res = fit(str(path), "chinchilla", x=CHINCHILLA_X, y="loss", where=CHINCHILLA_WHERE, bootstrap=bootstrap,
              seed=seed, stderr=False)
    return res, (_refit_samples(res, samples, seed) if samples else None)


def _refit_samples(res, n: int, seed: int):
    from scaling.claims import refit_weighted, resample_runs

    w = resample_runs(np.arange(len(res.data)), n, seed)
    P, ok = refit_weighted(res, w)
    return P[ok]


def clark_fits(routers=CLARK_ROUTERS) -> tuple[pd.DataFrame, dict]:
    """Clark et al. 2022's ``clark`` law fitted per router to the final validation loss of the
    routing-frequency-0.5, k = 1, seed-42 runs with the dense baselines (as tests/test_published_fits.py).
    Returns (those runs: router, N, E, loss, model_size_label; {router: FitResult})."""
    from scaling.fitting import fit
    from scaling.tables import read_file

    path = dataset_file("clark_routing")
    fits = {r: fit(str(path), "clark", x=CLARK_X, y="loss_validation", where=_clark_where(r), stderr=False)
            for r in routers}
    curves = read_file(path)
    last = curves[curves["step"] == curves.groupby("hyper_id")["step"].transform("max")]
    last = last[(last["routing_frequency"] == 0.5) & (last["k"] == 1) & (last["seed"] == 42)]
    rows = []
    for r in routers:
        sub = last[last["router_type"].isin(["Dense", r])]
        rows.append(pd.DataFrame({"router": r, "N": sub["dense_parameter_count"].to_numpy(dtype=float),
                                  "E": np.where(sub["router_type"] == "Dense", 1, sub["num_experts"]).astype(float),
                                  "loss": sub["loss_validation"].to_numpy(dtype=float),
                                  "model_size_label": sub["model_size_label"].to_numpy()}))
    return pd.concat(rows, ignore_index=True), fits


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
    levels = np.geomspace(C.min() * 1.5, C.max() / 1.5, n_levels)
    opt = chinchilla_optimum(result, levels)
    Ns = np.geomspace(N.min() / 1.5, N.max() * 1.5, 200)
    for c, (_, o) in zip(levels, opt.iterrows()):
        Ds = c / (6 * Ns)
        ax.plot(Ns, result.law.predict(theta, {"N": Ns, "D": Ds}), color=cmap(norm(c)), linewidth=1.2, zorder=2)
        if samples is not None and len(samples) >= 10:
            preds = np.stack([result.law.predict(p, {"N": Ns, "D": Ds}) for p in samples])
            lo, hi = np.percentile(preds, [2.5, 97.5], axis=0)
            ax.fill_between(Ns, lo, hi, color=cmap(norm(c)), alpha=0.2, linewidth=0, zorder=1)
        ax.scatter([o["N_opt"]], [o["loss"]], marker="*", s=120, color=cmap(norm(c)), edgecolor="black",
                   linewidth=0.6, zorder=4)
    fig.colorbar(sc, ax=[ax, rx], label="training compute C = 6ND (FLOPs)")
    ax.set_ylim(y.min() * 0.95, min(y.max() * 1.05, 8))
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
