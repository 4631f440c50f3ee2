"""Loss figures: loss against N_total at fixed sparsity (Liew et al. 2026, arXiv 2601.08215), isoFLOP
curves with their minima and the optima against compute (Hoffmann et al. 2022, Approach 2; Porian et
al. 2024's Akima-spline minima), and any fitted law against its data with a bootstrap band and
residuals.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from figures.style import (TOP_K_MARKERS, NoData, budget_colors, clip_band, format_flops, level_colors, log2_axis,
                           log_axis, new_figure, plotted_range, styled)

__all__ = ["loss_vs_total", "isoflop_curves", "optima_vs_compute", "law_fit", "budget_labels", "families",
           "lower_envelope"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def budget_labels(final: pd.DataFrame) -> np.ndarray:
    """The isoFLOP budget of each run: active FLOPs grouped within 5% (``scaling.claims.budget_groups``)."""
    from scaling.budgets import budget_groups

    return budget_groups(final["active_flops"].to_numpy(dtype=float))


def _finished(final: pd.DataFrame) -> pd.DataFrame:
    if final is None or not len(final):
        raise NoData("the store has no finished runs")
    need = ["n_total", "sparsity", "n_experts", "val_loss", "active_flops"]
    missing = [c for c in need if c not in final.columns]
    if missing:
        raise NoData(f"the final view lacks {', '.join(missing)}")
    f = final.dropna(subset=need)
    if f.empty:
        raise NoData("no finished run has a val_loss")
    return f.assign(budget=budget_labels(f))


def _nearest(values, target, rtol=0.1):
    values = np.asarray(values, dtype=float)
    if not len(values):
        return None
    i = int(np.argmin(np.abs(np.log(values) - np.log(target))))
    return i if abs(values[i] / target - 1) <= rtol else None


def _budget_handles(colors):
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=c, marker="o", linestyle="-", label=f"C = {format_flops(b)}") for b, c in colors.items()]


@styled
def loss_vs_total(final: pd.DataFrame, *, max_panels: int = 6):
    """Final loss against total parameters N_total, one panel per sparsity s = n_experts/top_k, markers by
    n_experts and colours by isoFLOP budget (Liew et al. 2026: at fixed N_total and s, more experts
    should cost a little loss). A line joins the runs of one (budget, n_experts) across N_total."""
    f = _finished(final)
    sizes = f.groupby("sparsity")["n_total"].nunique()
    if sizes.max() < 2:
        raise NoData(f"each sparsity has runs at a single N_total ({len(sizes)} sparsities, one size each), so loss "
                     "cannot be drawn against N_total at fixed sparsity")
    sparsities = sorted(f["sparsity"].unique())[:max_panels]
    colors = budget_colors(f["budget"])
    experts = sorted(f["n_experts"].astype(int).unique())
    marker = {e: _MARKERS[i % len(_MARKERS)] for i, e in enumerate(experts)}
    fig, axes = new_figure(len(sparsities), sharey=True, panel_size=(3.3, 3.0))
    for ax, s in zip(axes, sparsities):
        sub = f[f["sparsity"] == s]
        for (b, e), g in sub.groupby(["budget", "n_experts"], sort=True):
            g = g.sort_values("n_total")
            ax.plot(g["n_total"], g["val_loss"], linestyle="-", marker=marker[int(e)], color=colors[float(b)],
                    markeredgecolor="white", markeredgewidth=0.4, markersize=6, alpha=0.9)
        log_axis(ax, "x", "count")
        ax.set_title(f"sparsity s = {s:g}")
        ax.set_xlabel("total parameters N_total")
        ax.set_ylabel("final loss (val_loss)")
    from matplotlib.lines import Line2D

    handles = _budget_handles(colors) + [Line2D([], [], color="0.35", marker=marker[e], linestyle="none",
                                                label=f"E = {e}") for e in experts]
    fig.legend(handles=handles, loc="outside right center", title="budget / n_experts")
    fig.suptitle("Loss against N_total at fixed sparsity", fontsize=11)
    return fig


def _akima_curve(x, y, n=25):
    """Akima spline of ln loss against ln N through the mean profile (as ``isoflop_minima(method="smooth")``)."""
    from scipy.interpolate import Akima1DInterpolator

    lx, ly = np.log(x), np.log(y)
    grid = np.concatenate([np.linspace(lx[i], lx[i + 1], n, endpoint=False) for i in range(len(lx) - 1)] + [lx[-1:]])
    return np.exp(grid), np.exp(Akima1DInterpolator(lx, ly)(grid))


def families(final: pd.DataFrame) -> pd.Series:
    """The architecture family of each run, "E{n_experts} k{top_k}": runs of different (E, k) are never
    averaged, even where they share an N_total (top_k does not change N_total)."""
    return "E" + final["n_experts"].astype(int).astype(str) + " k" + final["top_k"].astype(int).astype(str)


def lower_envelope(runs: pd.DataFrame, x: str = "n_total", y: str = "val_loss") -> pd.Series:
    """The lowest ``y`` at each ``x`` over the runs given (the best run there, never a mean), sorted by ``x``."""
    return runs.groupby(x)[y].min().sort_index()


@styled
def isoflop_curves(final: pd.DataFrame, minima: pd.DataFrame | None = None, optimum=None):
    """IsoFLOP curves: final loss against N_total (left) and against sparsity (right), one colour per
    compute budget, with their minima.

    Left: each architecture family (n_experts, top_k) of a budget is its own thin line through its runs
    (markers by top_k), and the thick line is an Akima spline of ln loss against ln N_total through the
    budget's lower envelope (the best run at each N_total: runs of different (E, k) that share an N_total
    are never averaged); stars are the interpolated minima of ``minima`` (``scaling.allocation.isoflop_minima``,
    Porian et al. 2024; every row near the budget, one per family when it has a ``family`` column; a
    hollow star marks an edge minimum). Right: the best run at each sparsity, the fitted law's best
    predicted loss at each sparsity (dashed, from ``optimum.candidates``) and its optimum (star,
    ``optimum.best`` for the loss objective).
    """
    f = _finished(final)
    if "top_k" not in f.columns:
        f = f.assign(top_k=1)
    f = f.assign(family=families(f))
    colors = budget_colors(f["budget"])
    fig, (ax, bx) = new_figure(2, panel_size=(4.4, 3.4))
    mins = minima if minima is not None and len(minima) else None
    bcol = None
    if mins is not None:
        bcol = next((c for c in ("budget", "C", "compute") if c in mins.columns), mins.columns[0])
    cand = getattr(optimum, "candidates", None)
    best = getattr(optimum, "best", None)
    for b, g in f.groupby("budget", sort=True):
        c = colors[float(b)]
        for fam, h in g.groupby("family", sort=True):
            h = h.sort_values("n_total")
            k = int(h["top_k"].iloc[0])
            ax.plot(h["n_total"], h["val_loss"], color=c, linewidth=0.7, alpha=0.55, marker=TOP_K_MARKERS.get(k, "o"),
                    markersize=4, markeredgecolor="white", markeredgewidth=0.4, zorder=3, label=f"_family {fam}")
        env = lower_envelope(g)
        if len(env) >= 3:
            xs, ys = _akima_curve(env.index.to_numpy(dtype=float), env.to_numpy())
            ax.plot(xs, ys, color=c, linewidth=2.0, label=f"C = {format_flops(b)}", zorder=2)
        else:
            ax.plot(env.index, env.to_numpy(), color=c, linestyle=":", label=f"C = {format_flops(b)} (< 3 sizes)")
        if mins is not None:
            near = [i for i, v in enumerate(mins[bcol].to_numpy(dtype=float)) if abs(v / b - 1) <= 0.1]
            for i in near:
                m = mins.iloc[i]
                edge = bool(m.get("at_edge", False))
                ax.scatter([m["N_opt"]], [m["loss_opt"]], marker="*", s=170, zorder=5, color="white" if edge else c,
                           edgecolor="black", linewidth=0.8)
        env_s = lower_envelope(g, "sparsity")
        bx.plot(env_s.index, env_s.to_numpy(), "o-", color=c, zorder=3, label=f"C = {format_flops(b)}")
        if cand is not None and len(cand) and best is not None:
            j = _nearest(cand["compute"].unique(), b)
            if j is not None:
                cc = cand["compute"].unique()[j]
                pred = cand[cand["compute"] == cc].groupby("sparsity")["loss"].min().sort_index()
                pred = pred[(pred.index >= env_s.index.min()) & (pred.index <= env_s.index.max())]
                bx.plot(pred.index, pred.to_numpy(), linestyle="--", color=c, linewidth=1.1, zorder=2)
                bl = best[(best["objective"] == "loss") & np.isclose(best["compute"], cc)]
                if len(bl):
                    r = bl.iloc[0]
                    bx.scatter([r["sparsity"]], [r["predicted"]], marker="*", s=170, color=c, edgecolor="black",
                               linewidth=0.8, zorder=5)
    log_axis(ax, "x", "count")
    pad = 0.08 * (f["val_loss"].max() - f["val_loss"].min())
    ax.set_ylim(f["val_loss"].min() - pad, f["val_loss"].max() + pad)
    ax.set_xlabel("total parameters N_total")
    ax.set_ylabel("final loss (val_loss)")
    ax.set_title("loss against N_total (thin: one family (E, k);\nthick: lower envelope; star: minimum)")
    from matplotlib.lines import Line2D

    ks = sorted(f["top_k"].astype(int).unique())
    handles = [h for h in ax.get_legend_handles_labels()[0]]
    handles += [Line2D([], [], color="0.35", marker=TOP_K_MARKERS.get(k, "o"), linewidth=0.7, label=f"top_k = {k}")
                for k in ks]
    ax.legend(handles=handles, loc="best")
    log2_axis(bx, "x", f["sparsity"].unique())
    bx.set_xlabel("sparsity s = n_experts / top_k")
    bx.set_ylabel("final loss (best run per sparsity)")
    bx.set_title("loss against sparsity (dashed, star: fitted law)")
    bx.legend(loc="best")
    fig.suptitle("IsoFLOP curves", fontsize=11)
    return fig


@styled
def optima_vs_compute(minima: pd.DataFrame | None, optimum=None):
    """The optima against compute: the isoFLOP minimum N_opt(C) with its power-law fit N_opt = k C^a
    (``scaling.allocation.scaling_exponents``, edge budgets hollow and left out of the fit), the fitted
    law's optimal N_total per budget (left); the optimal sparsity per budget and objective with its
    bootstrap range (right; from ``scaling.optimum.find_optimum``)."""
    import warnings

    if minima is not None and "family" in minima and (minima["family"] == "envelope").any():
        minima = minima[minima["family"] == "envelope"]  # the lower envelope over families: one optimum a budget
    has_min = minima is not None and len(minima) > 0
    best = getattr(optimum, "best", None)
    if not has_min and (best is None or not len(best)):
        raise NoData("no isoFLOP minima and no optimum to plot")
    fig, (ax, bx) = new_figure(2, panel_size=(4.2, 3.4))
    if has_min:
        bcol = next((c for c in ("budget", "C", "compute") if c in minima.columns), minima.columns[0])
        edge = minima["at_edge"].astype(bool) if "at_edge" in minima else pd.Series(False, index=minima.index)
        ax.scatter(minima.loc[~edge, bcol], minima.loc[~edge, "N_opt"], color="C0", s=40, zorder=3,
                   label="isoFLOP minimum (data)")
        if edge.any():
            ax.scatter(minima.loc[edge, bcol], minima.loc[edge, "N_opt"], facecolor="white", edgecolor="C0", s=40,
                       zorder=3, label="edge minimum")
        if (~edge).sum() >= 2:
            from scaling.allocation import scaling_exponents

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ex = scaling_exponents(minima, budget=bcol, size="N_opt", tokens=None)
            row = ex.loc["N_opt"]
            cs = np.geomspace(minima[bcol].min(), minima[bcol].max(), 50)
            ax.plot(cs, row["coefficient"] * cs ** row["exponent"], color="C0", linewidth=1.0,
                    label=f"N_opt ∝ C^{row['exponent']:.2f} [{row['exponent_lo']:.2f}, {row['exponent_hi']:.2f}]")
    if best is not None and len(best):
        bl = best[best["objective"] == "loss"]
        if len(bl):
            ax.plot(bl["compute"], bl["n_total"], "D--", color="C3", markersize=5, label="fitted law's optimum")
        objs = list(dict.fromkeys(best["objective"]))
        palette = {"loss": "C3", "memorization": "C1", "reasoning": "C2"}
        for i, o in enumerate(objs):
            g = best[best["objective"] == o].sort_values("compute")
            jitter = 1 + 0.04 * (i - (len(objs) - 1) / 2)
            lo = (g["sparsity"] - g["sparsity_low"]).clip(lower=0) if "sparsity_low" in g else None
            hi = (g["sparsity_high"] - g["sparsity"]).clip(lower=0) if "sparsity_high" in g else None
            yerr = np.vstack([lo, hi]) if lo is not None and np.isfinite(np.vstack([lo, hi])).all() else None
            bx.errorbar(g["compute"] * jitter, g["sparsity"], yerr=yerr, fmt="o-", capsize=3,
                        color=palette.get(o, f"C{i + 4}"), label=o)
        ticks = set(best["sparsity"]) | set(best.get("sparsity_low", [])) | set(best.get("sparsity_high", []))
        cand = getattr(optimum, "candidates", None)
        if cand is not None and "sparsity" in cand:
            ticks |= set(cand["sparsity"])
        ticks = sorted(t for t in ticks if np.isfinite(t) and t > 0)
        log2_axis(bx, "y", ticks)
        bx.set_ylim(ticks[0] / 1.5, ticks[-1] * 1.5)
        log_axis(bx, "x", "flops")
        bx.legend(title="objective", loc="best")
    else:
        bx.text(0.5, 0.5, "no optimum (fit failed or skipped)", ha="center", va="center", transform=bx.transAxes)
    log_axis(ax, "x", "flops")
    log_axis(ax, "y", "count")
    ax.set_xlabel("compute C (active FLOPs)")
    ax.set_ylabel("optimal N_total")
    ax.set_title("optimal model size against compute")
    ax.legend(loc="best")
    bx.set_xlabel("compute C (FLOPs)")
    bx.set_ylabel("optimal sparsity (bootstrap range)")
    bx.set_title("optimal sparsity against compute")
    fig.suptitle("Optima against compute", fontsize=11)
    return fig


def _samples_matrix(result, samples):
    if samples is None:
        return None
    if isinstance(samples, pd.DataFrame):
        samples = samples[list(result.law.params)].to_numpy(dtype=float)
    samples = np.atleast_2d(np.asarray(samples, dtype=float))
    ok = np.isfinite(samples).all(axis=1)
    return samples[ok] if ok.sum() >= 10 else None


def _predict(result, P, X):
    return np.asarray(result.law.predict(P, X), dtype=float)


def _band_label(level: float, clipped: bool) -> str:
    return f"{level:.0%} bootstrap band" + (" (clipped to the plotted range)" if clipped else "")


def _as_array(v, n, what):
    arr = np.asarray(v)
    if arr.shape[0] != n:
        raise NoData(f"law_fit: {what} has {arr.shape[0]} values for {n} fitted points")
    return arr


@styled
def law_fit(result, x: str | None = None, *, groups=None, group_label: str = "group", samples=None,
            title: str | None = None, level: float = 0.95, group_format=None, colors: dict | None = None):
    """A fitted law against its data, a bootstrap band, and the residuals ln(observed / fitted) below.

    ``result``: a ``scaling.FitResult`` (its ``data`` holds the law's variables and y).
    ``x``: a law variable for the horizontal axis; the curve of each group then follows x with the
    other variables interpolated (in logs) along the group's own points. ``x=None`` draws observed
    against fitted values (any number of variables), the band around the identity.
    ``groups``: one label per fitted point (or a column of ``result.data``), one colour each.
    ``samples``: bootstrap parameter vectors (B, n_params) in ``law.params`` order or a DataFrame
    (e.g. ``ClaimsResult.bootstrap_params``); the band is their (1 - level) percentile interval,
    clipped to the plotted range (the observed and fitted values, padded by 15% of their span; the legend
    says when it was clipped) so that the resamples of a poorly identified fit cannot squash the data.
    ``colors``: group -> colour (default: viridis over the sorted groups).
    """
    data = result.data
    n = len(data)
    if n == 0:
        raise NoData("law_fit: the fit has no data points")
    variables = list(result.law.variables)
    if x is not None and x not in variables:
        raise NoData(f"law_fit: {x!r} is not a variable of law {result.law.name} ({', '.join(variables)})")
    if groups is None:
        g = np.zeros(n)
    elif isinstance(groups, str):
        g = data[groups].to_numpy()
    else:
        g = _as_array(groups, n, "groups")
    levels = list(pd.unique(np.sort(g)))
    try:
        if colors is None:
            colors = level_colors(levels, "viridis") if groups is not None else {levels[0]: "C0"}
    except (TypeError, ValueError):
        import seaborn as sns

        colors = dict(zip(levels, sns.color_palette("colorblind", len(levels))))
    X = {v: data[v].to_numpy(dtype=float) for v in variables}
    y = data["y"].to_numpy(dtype=float)
    theta = result.vector()
    yhat = _predict(result, theta, X)
    P = _samples_matrix(result, samples)
    q = [50 * (1 - level), 100 - 50 * (1 - level)]
    logy = bool((y > 0).all() and y.max() / y.min() > 10)
    limits = plotted_range(y, yhat, log=logy)
    clipped = False
    fig, (ax, rx) = new_figure(2, nrows=2, ncols=1, height_ratios=[3, 1.15], panel_size=(5.6, 2.6), sharex=True)
    fmt = group_format or (lambda v: f"{v:g}" if isinstance(v, (float, int, np.floating, np.integer)) else str(v))
    for lv in levels:
        m = g == lv
        c = colors[lv]
        label = f"{group_label} = {fmt(lv)}" if groups is not None else "data"
        if x is None:
            xs = yhat[m]
        else:
            xs = X[x][m]
        ax.scatter(xs, y[m], color=c, s=22, edgecolor="white", linewidth=0.4, zorder=3, label=label)
        rx.scatter(xs, np.log(y[m] / yhat[m]), color=c, s=14, zorder=3)
        if x is None:
            continue
        # curve along x, the other variables interpolated in logs along this group's points
        order = np.argsort(X[x][m])
        xv = X[x][m][order]
        if len(np.unique(xv)) < 2:
            ax.scatter(xv, yhat[m][order], marker="_", s=120, color=c, zorder=4)
            continue
        ux = np.unique(xv)
        grid = np.geomspace(ux[0], ux[-1], 80) if ux[0] > 0 else np.linspace(ux[0], ux[-1], 80)
        Xg = {}
        for v in variables:
            if v == x:
                Xg[v] = grid
                continue
            vals = X[v][m][order]
            means = np.array([np.exp(np.mean(np.log(vals[xv == u]))) if (vals > 0).all() else np.mean(vals[xv == u])
                              for u in ux])
            if (means > 0).all() and ux[0] > 0:
                Xg[v] = np.exp(np.interp(np.log(grid), np.log(ux), np.log(means)))
            else:
                Xg[v] = np.interp(grid, ux, means)
        ax.plot(grid, _predict(result, theta, Xg), color=c, zorder=2)
        if P is not None:
            with np.errstate(all="ignore"):
                preds = np.stack([_predict(result, p, Xg) for p in P])
                lo, hi = np.nanpercentile(preds, q, axis=0)
            lo, hi, cut = clip_band(lo, hi, limits)
            clipped |= cut
            ax.fill_between(grid, lo, hi, color=c, alpha=0.2, linewidth=0, zorder=1)
    if x is None:
        order = np.argsort(yhat)
        ax.plot(yhat[order], yhat[order], color="0.2", linewidth=1.0, zorder=2, label="fitted = observed")
        if P is not None:
            with np.errstate(all="ignore"):
                preds = np.stack([_predict(result, p, X) for p in P])
                lo, hi = np.nanpercentile(preds, q, axis=0)
            lo, hi, clipped = clip_band(lo, hi, limits)
            ax.fill_between(yhat[order], lo[order], hi[order], color="0.4", alpha=0.25, linewidth=0, zorder=1,
                            label=_band_label(level, clipped))
        xlabel = f"fitted {result.law.name} law"
    else:
        xlabel = x
        if P is not None:
            ax.fill_between([], [], [], color="0.5", alpha=0.2, label=_band_label(level, clipped))
    kind = "count" if x is not None and x in ("N", "D") else "plain"
    if x is not None and (X[x] > 0).all():
        log_axis(ax, "x", kind)
    if logy:
        log_axis(ax, "y")
    ax.set_ylim(*limits)
    ax.set_ylabel("observed")
    ax.legend(loc="best", fontsize=7.5)
    rx.axhline(0, color="0.3", linewidth=0.8)
    rx.set_xlabel(xlabel)
    rx.set_ylabel("ln(obs / fit)")
    ax.set_title(title or f"{result.law.name} law against its {n} points")
    return fig

