"""One look for every figure: the seaborn-based style, colour scales and saving (PNG and PDF).

Figures are built on ``matplotlib.figure.Figure`` objects, never through pyplot's global
state, so they render the same under any backend (the CLI forces Agg) and a notebook can
display the returned figure. ``styled`` wraps a figure function in the style's rc context
(matplotlib reads rc parameters when an artist is made, so the whole body must run in it).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from scaling.errors import MoescaleError
from scaling.files import atomic_path

__all__ = ["NoData", "styled", "new_figure", "save", "rc", "level_colors", "format_flops", "format_count", "log_axis",
           "log2_axis", "budget_colors", "sparsity_colors", "FORMATS", "plotted_range", "clip_band", "wilson_interval",
           "TOP_K_MARKERS", "TOP_K_STYLES"]

FORMATS = ("png", "pdf")
DPI = 150
#: Marker and line style per top_k, so two architectures of one sparsity (E 8 k 1, E 16 k 2) differ.
TOP_K_MARKERS = {1: "o", 2: "s", 4: "^", 8: "D"}
TOP_K_STYLES = {1: "-", 2: "--", 4: ":", 8: "-."}


class NoData(MoescaleError):
    """A figure's data is absent from the store or results; the message says what is missing."""


@functools.lru_cache(maxsize=1)
def rc() -> dict:
    """The rc parameters of the style: seaborn's "ticks" axes, "paper" context, a light grid."""
    import seaborn as sns

    params = {**sns.axes_style("ticks"), **sns.plotting_context("paper", font_scale=1.15)}
    params.update({
        "axes.grid": True, "grid.color": "#e6e6e6", "grid.linewidth": 0.6, "axes.spines.top": False,
        "axes.spines.right": False, "legend.frameon": False, "legend.fontsize": 8, "legend.title_fontsize": 8.5,
        "figure.dpi": 100, "savefig.dpi": DPI, "savefig.bbox": "tight", "lines.linewidth": 1.6,
        "lines.markersize": 5, "axes.titlesize": 10.5, "axes.titleweight": "bold", "font.family": "sans-serif",
        "pdf.fonttype": 42, "image.cmap": "viridis",
    })
    return params


def styled(func):
    """Run a figure function inside the style's rc context."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(rc()):
            return func(*args, **kwargs)

    return wrapper


def new_figure(n_panels: int = 1, *, ncols: int | None = None, panel_size=(3.6, 3.0), sharey: bool = False,
               sharex: bool = False, height_ratios=None, nrows: int | None = None):
    """A Figure with a grid of ``n_panels`` axes (row-major; unused cells removed).

    Returns (fig, list of axes). ``height_ratios`` with ``nrows`` gives stacked panels
    (e.g. a law above its residuals).
    """
    from matplotlib.figure import Figure

    if nrows is None:
        ncols = ncols or min(n_panels, 3)
        nrows = math.ceil(n_panels / ncols)
    else:
        ncols = ncols or math.ceil(n_panels / nrows)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey, sharex=sharex,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.remove()
    return fig, flat[:n_panels]


def save(fig, out, name: str, formats=FORMATS) -> list[Path]:
    """Write ``fig`` as ``out/name.png`` and ``out/name.pdf``, each atomically (``scaling.files.atomic_path``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in formats:
        target = out / f"{name}.{ext}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=DPI, bbox_inches="tight")
        paths.append(target)
    return paths


def level_colors(values, cmap: str = "viridis", *, log: bool = True, lo: float = 0.08, hi: float = 0.88) -> dict:
    """A colour per distinct value, ordered along a sequential colormap (log-spaced by default).

    Sequential, not categorical: density, sparsity and compute are ordered quantities.
    """
    import matplotlib

    vals = sorted({float(v) for v in values})
    cm = matplotlib.colormaps[cmap]
    if len(vals) == 1:
        return {vals[0]: cm(0.5 * (lo + hi))}
    t = np.log(vals) if log else np.asarray(vals)
    span = (t - t.min()) / (t.max() - t.min())
    return {v: cm(lo + (hi - lo) * s) for v, s in zip(vals, span)}


def format_flops(c: float) -> str:
    """A compute budget as a short label, e.g. 3e+13 -> "3e13"."""
    mant, exp = f"{c:.2g}".split("e") if "e" in f"{c:.2g}" else (f"{c:.2g}", None)
    if exp is None:
        return mant
    return f"{mant}e{int(exp)}"


def format_count(n: float) -> str:
    """A parameter count as 1.2M, 340K, 3.1B."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


def log2_axis(ax, axis: str = "x", values=None) -> None:
    """Log-2 scale with plain tick labels at ``values`` (e.g. densities 1, 1/2, 1/4 or sparsities 1..16)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    set_scale = ax.set_xscale if axis == "x" else ax.set_yscale
    set_scale("log", base=2)
    target = ax.xaxis if axis == "x" else ax.yaxis
    if values is not None:
        vals = sorted({float(v) for v in values})
        target.set_major_locator(FixedLocator(vals))
        target.set_minor_locator(NullLocator())

    def label(v, _pos):
        if v >= 1:
            return f"{v:g}"
        inv = 1 / v
        return f"1/{inv:g}" if abs(inv - round(inv)) < 1e-9 else f"{v:.2g}"

    target.set_major_formatter(FuncFormatter(label))


def log_axis(ax, axis: str = "x", kind: str = "plain") -> None:
    """Log-10 scale with readable labels: ``kind`` "count" (300K, 1M), "flops" (3e13) or "plain" (0.1, 3).

    Call after plotting: the tick density follows the data's span (1, 2, 5 per decade up to 1.5 decades, 1, 3
    up to five, else decades only); minor ticks carry no labels.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fmt = {"count": format_count, "flops": format_flops}.get(kind, lambda v: f"{v:g}")
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    ax.autoscale_view()
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    span = np.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0, 2.0, 5.0) if span <= 1.5 else (1.0, 3.0) if span <= 5 else (1.0,)
    if span < 0.5:
        subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: fmt(v)))
    target.set_minor_formatter(NullFormatter())


def budget_colors(values) -> dict:
    """Colours of compute budgets (plasma, dark to orange): one scale for compute in every figure."""
    return level_colors(values, "plasma", lo=0.05, hi=0.78)


def sparsity_colors(values) -> dict:
    """Colours of sparsity or density levels (viridis): one scale for sparsity in every figure."""
    return level_colors(values, "viridis")


def plotted_range(*values, pad: float = 0.15, log: bool = False) -> tuple[float, float]:
    """The range a panel shows: the finite values' span (data, fitted curve) widened by ``pad`` of it on each
    side (in logs when ``log``). A bootstrap band is clipped to it (``clip_band``) so that resamples of a
    poorly identified fit (a band reaching 2e13) cannot squash the data flat."""
    v = np.concatenate([np.ravel(np.asarray(x, dtype=float)) for x in values])
    v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
    if not len(v):
        return (0.0, 1.0)
    t = np.log(v) if log else v
    lo, hi = float(t.min()), float(t.max())
    span = (hi - lo) or max(abs(hi), 1.0) * 0.1
    lo, hi = lo - pad * span, hi + pad * span
    return (float(np.exp(lo)), float(np.exp(hi))) if log else (lo, hi)


def clip_band(lo, hi, limits) -> tuple[np.ndarray, np.ndarray, bool]:
    """(lo, hi) of a band clipped to ``limits`` (``plotted_range``), and whether anything was clipped."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    a, b = limits
    clipped = bool(np.any(lo < a) or np.any(hi > b) or not (np.isfinite(lo).all() and np.isfinite(hi).all()))
    lo = np.clip(np.nan_to_num(lo, nan=a, posinf=b, neginf=a), a, b)
    hi = np.clip(np.nan_to_num(hi, nan=b, posinf=b, neginf=a), a, b)
    return lo, hi, clipped


def wilson_interval(accuracy, n_examples, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a binomial proportion (Wilson 1927; statsmodels' ``proportion_confint``,
    method "wilson"): p_hat = k / n, centre (p_hat + z^2/2n) / (1 + z^2/n), half-width
    z / (1 + z^2/n) * sqrt(p_hat (1 - p_hat) / n + z^2 / 4n^2). Unlike the normal interval it stays in
    [0, 1] and is not zero-width at an accuracy of 0 or 1."""
    from statsmodels.stats.proportion import proportion_confint

    n = np.asarray(n_examples, dtype=float)
    k = np.round(np.asarray(accuracy, dtype=float) * n)
    lo, hi = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
