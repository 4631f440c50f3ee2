"""Draw every figure a store (and the public datasets) has data for, saying which were skipped and why.

``draw_all(store, out, analysis)`` draws from the store's views and from an ``Analysis`` it is
given (``scaling.analysis.analyze``, run once by the caller: ``scaling.demo.draw_store``, the
report, the demo); it never runs one. Figures that need the analysis (the accuracy GLM, the
isoFLOP minima, the optimum, the moe fit) are skipped with the reason when ``analysis`` is
None, and the others are still drawn. The public-dataset fits come from ``scaling.public_fits``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaling.errors import MoescaleError

__all__ = ["FIGURES", "DrawResult", "draw_all", "remove_undrawn", "store_frames"]

#: name -> caption, in drawing order (the numbers of issue 12's list in brackets). ``DrawResult.caption``
#: adds what one drawing found: the metric drawn, a fitted law's identifiability flags, a clipped band.
FIGURES = {
    "error_vs_loss": "Task error (1 - accuracy) against pre-training loss (val_loss), coloured by density, marker "
                     "by top_k, one panel per task, with 95% Wilson intervals from n_examples and the chance error "
                     "(dotted) where the task's chance rate is known (Nakamura et al. 2025, Fig. 1).",
    "accuracy_vs_density": "Accuracy against density at fixed active FLOPs, a line per budget through the best run "
                           "at each density, all runs with 95% Wilson intervals, the chance rate dotted "
                           "(Nakamura et al. 2025, Fig. 5).",
    "accuracy_vs_tpp": "Accuracy against tokens per parameter with the fitted binomial GLM, its 95% bootstrap band and "
                       "its peak (Nakamura et al. 2025, Fig. 7); points adjusted to the median loss and FLOPs; "
                       "chance rates dotted.",
    "loss_vs_total": "Final validation loss against N_total at fixed sparsity, markers by n_experts, colours by "
                     "budget (Liew et al. 2026).",
    "isoflop_curves": "IsoFLOP curves: validation loss against N_total, one thin line per architecture family "
                      "(n_experts, top_k) and a thick Akima spline through each budget's lower envelope (the best "
                      "run at each N_total; runs of different (E, k) are never averaged), with the isoFLOP minima "
                      "(Porian et al. 2024); and the best run at each sparsity with the fitted moe law's best "
                      "prediction and optimum.",
    "optima_vs_compute": "Optima against compute: isoFLOP N_opt (lower envelope over families) with its power "
                         "law, the fitted moe law's optimal N_total, and the optimal sparsity per objective with "
                         "its bootstrap range.",
    "law_fit_moe": "The moe law against its data (observed against fitted validation loss), 95% bootstrap band "
                   "clipped to the plotted range, residuals below.",
    "training_curves": "Training curves (the loss metric logged most often per run, named in the title) against "
                       "tokens, coloured by sparsity, line style by top_k, per budget.",
    "routing_balance": "Routing balance over training: coefficient of variation of the expert load, per MoE run.",
    "chinchilla_epoch": "The Chinchilla law fitted to Epoch AI's extraction of Hoffmann et al.'s data: isoFLOP "
                        "curves with 95% bootstrap bands and compute-optimal sizes, residuals below.",
    "clark_experts": "Clark et al. 2022: loss against expert count per model size with the fitted clark law, "
                     "per router.",
}


@dataclass
class DrawResult:
    """What ``draw_all`` did: ``figures`` name -> written paths (PNG first), ``skipped`` name -> reason,
    ``analysis`` the Analysis used (or None), ``notes``, ``public_fits`` the public-dataset fits made
    ("fit": the Chinchilla FitResult, "clark": router -> FitResult), ``captions`` name -> what this drawing
    adds to the ``FIGURES`` caption (the metric drawn, a fit's flags), ``removed`` the figure files of an
    earlier call that this call would write but did not draw."""

    out: Path
    figures: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    analysis: object = None
    notes: list[str] = field(default_factory=list)
    public_fits: dict = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    removed: list[Path] = field(default_factory=list)

    def caption(self, name: str) -> str:
        """The caption of figure ``name``: ``FIGURES[name]`` and what this drawing adds (e.g. the metric the
        training curves show; "Fit flags: not identified: gamma (on bound)" for a fit with unidentified
        parameters)."""
        return " ".join(t for t in (FIGURES.get(name, name), self.captions.get(name, "")) if t)

    def to_json(self) -> dict:
        """out, figures (name -> written paths), captions (name -> full caption of each drawn figure), skipped
        (name -> reason), removed (stale figure files deleted) and notes; the analysis and the public fits
        serialize themselves."""
        return {"out": str(self.out), "figures": {k: [str(p) for p in v] for k, v in self.figures.items()},
                "captions": {k: self.caption(k) for k in self.figures}, "skipped": dict(self.skipped),
                "removed": [str(p) for p in self.removed], "notes": list(self.notes)}

    def summary(self) -> str:
        lines = [f"figures in {self.out}/:"]
        lines += [f"  {name:<20} {', '.join(p.name for p in paths)}" for name, paths in self.figures.items()]
        if self.skipped:
            lines.append("skipped:")
            lines += [f"  {name:<20} {reason}" for name, reason in self.skipped.items()]
        return "\n".join(lines + self.notes)

    def __str__(self) -> str:
        return self.summary()


def store_frames(store):
    """(final, evals, metrics) DataFrames of a store (a Store or a store path)."""
    from scaling.final import open_store

    st = open_store(store)
    return st.sql("SELECT * FROM final"), st.sql("SELECT * FROM evals"), st.sql("SELECT * FROM metrics")


def _run_sources(store):
    """run_id and source_dir of the store's runs (where chance rates are recorded), or None."""
    from scaling.final import open_store

    try:
        return open_store(store).sql("SELECT run_id, source_dir FROM runs")
    except Exception:  # a store without the column, or a frame-only caller: no chance lines, nothing else lost
        return None


def _flags_line(flags: str) -> str:
    return f"Fit flags: {flags}." if flags else ""


def _public_flags(fit, samples=None) -> str:
    from scaling.identify import fit_flags

    ci = None
    if samples is not None and len(samples) >= 10:
        lo, hi = np.nanpercentile(np.asarray(samples, dtype=float), [2.5, 97.5], axis=0)
        ci = {n: (a, b) for n, a, b in zip(fit.law.params, lo, hi)}
    return fit_flags(fit, ci)


def remove_undrawn(out, drawn, formats) -> list[Path]:
    """Remove ``out/NAME.EXT`` for each NAME of ``FIGURES`` not in ``drawn`` and each EXT of ``formats``: the
    files this call would write but did not draw (left by an earlier call, perhaps for another store). Only
    those names are touched; returns what was removed."""
    removed = []
    for name in FIGURES:
        if name in drawn:
            continue
        for ext in formats:
            p = Path(out) / f"{name}.{ext}"
            if p.is_file():
                p.unlink()
                removed.append(p)
    return removed


def draw_all(store, out, analysis, *, public: bool = True, formats=("png", "pdf"), seed: int = 0,
             public_bootstrap: int = 200, say=None, no_analysis_reason: str | None = None,
             frames=None, public_skipped: dict[str, str] | None = None) -> DrawResult:
    """Draw every figure of ``FIGURES`` the data allow into ``out`` (PNG and PDF each).

    ``store``: a Store or store path. ``analysis``: the store's ``Analysis``, or None when it could not
    run (``no_analysis_reason`` says why, in the skipped figures' reasons). ``frames``: the store's
    (final, evals, metrics) when the caller already holds them (``store_frames``), else they are read.
    ``public``: also the public-dataset figures (skipped, saying so, when their files are absent), their
    fits made by ``scaling.public_fits`` with ``public_bootstrap`` refits for the Chinchilla band and
    ``seed``; ``public_skipped``: public figure name -> the reason it is left out (e.g. its data was not
    found), not attempted. ``say``: optional callable(str) for progress lines.

    Temp files a killed earlier call left in ``out`` are removed first (``scaling.files.remove_stale_temps``),
    and the figure files of ``FIGURES`` in ``formats`` that this call did not draw are removed at the end
    (``remove_undrawn``), saying so in a note: the folder then holds this store's figures only.
    """
    import matplotlib

    matplotlib.use("Agg")
    from figures import accuracy as acc_fig
    from figures import curves, loss, public as pub
    from figures.style import save
    from scaling import public_fits
    from scaling.files import remove_stale_temps

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MoescaleError(f"seed = {seed!r}: must be an integer >= 0")
    out = Path(out)
    remove_stale_temps(out)
    result = DrawResult(out=out, analysis=analysis)
    say = say or (lambda msg: None)
    final, evals, metrics = frames if frames is not None else store_frames(store)
    chance = acc_fig.chance_rates(evals, _run_sources(store))
    analysis_reason = "" if analysis is not None else f"no analysis: {no_analysis_reason or 'none given'}"
    moe_flags = ""
    if analysis is not None and getattr(analysis, "claims", None) is not None:
        from scaling.identify import fit_flags

        claims = analysis.claims
        moe_flags = (claims.flags or {}).get("moe")
        if moe_flags is None and "moe" in claims.fits:
            moe_flags = fit_flags(claims.fits["moe"])
        moe_flags = moe_flags or ""
    for name in ("isoflop_curves", "optima_vs_compute", "law_fit_moe"):
        if moe_flags:
            result.captions[name] = _flags_line(f"the moe law: {moe_flags}")

    def need_analysis(part: str):
        if analysis is None:
            raise MoescaleError(analysis_reason)
        value = getattr(analysis, part)
        if value is None:
            notes = "; ".join(n for n in analysis.notes if part in n or "evals" in n)
            raise MoescaleError(f"the analysis has no {part} result" + (f" ({notes})" if notes else ""))
        return value

    def law_fit_moe():
        claims = need_analysis("claims")
        fit = claims.fits["moe"]
        runs = analysis.runs
        groups = loss.budget_labels(runs) if len(runs) == len(fit.data) else None
        from figures.style import budget_colors, format_flops

        return loss.law_fit(fit, None, groups=groups, group_label="C", samples=claims.bootstrap_params,
                            group_format=format_flops, colors=budget_colors(groups) if groups is not None else None,
                            title=f"moe law against its {len(fit.data)} runs")

    def training_curves():
        fig = curves.training_curves(metrics, final)
        result.captions["training_curves"] = f"Here: {curves.curve_metric(metrics)}."
        return fig

    makers = {
        "error_vs_loss": lambda: acc_fig.error_vs_loss(final, evals, chance=chance),
        "accuracy_vs_density": lambda: acc_fig.accuracy_vs_density(final, evals, chance=chance),
        "accuracy_vs_tpp": lambda: acc_fig.accuracy_vs_tpp(need_analysis("accuracy"), chance=chance),
        "loss_vs_total": lambda: loss.loss_vs_total(final),
        "isoflop_curves": lambda: loss.isoflop_curves(final, analysis.isoflop if analysis else None,
                                                      analysis.optimum if analysis else None),
        "optima_vs_compute": lambda: loss.optima_vs_compute(analysis.isoflop if analysis else None,
                                                            analysis.optimum if analysis else None),
        "law_fit_moe": law_fit_moe,
        "training_curves": training_curves,
        "routing_balance": lambda: curves.routing_balance(metrics, final),
    }
    public_skipped = dict(public_skipped or {})
    if public:
        chin = {}

        def chinchilla():
            say("Chinchilla fit on chinchilla_epoch")
            res, samples = public_fits.chinchilla_epoch_fit(samples=public_bootstrap, seed=seed)
            chin["fit"] = res
            result.captions["chinchilla_epoch"] = _flags_line(_public_flags(res, samples))
            return pub.chinchilla_fit(res, samples)

        def clark():
            say("clark law on clark_routing")
            data, fits = public_fits.clark_fits()
            chin["clark"] = fits
            flags = [f"{r}: {f}" for r, f in ((r, _public_flags(fit)) for r, fit in fits.items()) if f]
            result.captions["clark_experts"] = _flags_line("; ".join(flags))
            return pub.clark_experts(data, fits)

        makers["chinchilla_epoch"] = chinchilla
        makers["clark_experts"] = clark
        result.public_fits = chin
    else:
        for name in ("chinchilla_epoch", "clark_experts"):
            public_skipped.setdefault(name, "public-dataset figures not asked for")
    for name, make in makers.items():
        if name in public_skipped:
            result.skipped[name] = public_skipped[name]
            continue
        say(f"figure {name}")
        try:
            fig = make()
        except MoescaleError as exc:
            result.skipped[name] = str(exc)
            continue
        result.figures[name] = save(fig, out, name, formats)
    for name, reason in public_skipped.items():
        result.skipped.setdefault(name, reason)
    result.captions = {k: v for k, v in result.captions.items() if v and k in result.figures}
    result.removed = remove_undrawn(out, result.figures, formats)
    if result.removed:
        result.notes.append(f"note: removed {len(result.removed)} figure file(s) of an earlier call that this call "
                            f"did not draw: {', '.join(p.name for p in result.removed)}")
    return result
