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

from scaling.errors import MoescaleError

__all__ = ["FIGURES", "DrawResult", "draw_all", "store_frames"]

#: name -> caption, in drawing order (the numbers of issue 12's list in brackets).
FIGURES = {
    "error_vs_loss": "Task error against pre-training loss, coloured by density, one panel per task "
                     "(Nakamura et al. 2025, Fig. 1).",
    "accuracy_vs_density": "Accuracy against density at fixed active FLOPs, a line per budget through the best run "
                           "at each density (Nakamura et al. 2025, Fig. 5).",
    "accuracy_vs_tpp": "Accuracy against tokens per parameter with the fitted binomial GLM, its bootstrap band and "
                       "its peak (Nakamura et al. 2025, Fig. 7); points adjusted to the median loss and FLOPs.",
    "loss_vs_total": "Final loss against N_total at fixed sparsity, markers by n_experts, colours by budget "
                     "(Liew et al. 2026).",
    "isoflop_curves": "IsoFLOP curves: loss against N_total with Akima-spline minima (Porian et al. 2024), and "
                      "loss against sparsity with the fitted moe law's best prediction and optimum.",
    "optima_vs_compute": "Optima against compute: isoFLOP N_opt with its power law, the fitted law's optimal "
                         "N_total, and the optimal sparsity per objective with its bootstrap range.",
    "law_fit_moe": "The moe law against its data (observed against fitted), 95% bootstrap band, residuals below.",
    "training_curves": "Training curves (validation loss against tokens), coloured by sparsity, per budget.",
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
    ("fit": the Chinchilla FitResult, "clark": router -> FitResult)."""

    out: Path
    figures: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    analysis: object = None
    notes: list[str] = field(default_factory=list)
    public_fits: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """out, figures (name -> written paths), skipped (name -> reason) and notes; the analysis and the
        public fits serialize themselves."""
        return {"out": str(self.out), "figures": {k: [str(p) for p in v] for k, v in self.figures.items()},
                "skipped": dict(self.skipped), "notes": list(self.notes)}

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


def draw_all(store, out, analysis, *, public: bool = True, formats=("png", "pdf"), seed: int = 0,
             public_bootstrap: int = 200, say=None, no_analysis_reason: str | None = None,
             frames=None) -> DrawResult:
    """Draw every figure of ``FIGURES`` the data allow into ``out`` (PNG and PDF each).

    ``store``: a Store or store path. ``analysis``: the store's ``Analysis``, or None when it could not
    run (``no_analysis_reason`` says why, in the skipped figures' reasons). ``frames``: the store's
    (final, evals, metrics) when the caller already holds them (``store_frames``), else they are read.
    ``public``: also the public-dataset figures (skipped, saying so, when their files are absent), their
    fits made by ``scaling.public_fits`` with ``public_bootstrap`` refits for the Chinchilla band and
    ``seed``. ``say``: optional callable(str) for progress lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    from figures import accuracy as acc_fig
    from figures import curves, loss, public as pub
    from figures.style import save
    from scaling import public_fits

    out = Path(out)
    result = DrawResult(out=out, analysis=analysis)
    say = say or (lambda msg: None)
    final, evals, metrics = frames if frames is not None else store_frames(store)
    analysis_reason = "" if analysis is not None else f"no analysis: {no_analysis_reason or 'none given'}"

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

    makers = {
        "error_vs_loss": lambda: acc_fig.error_vs_loss(final, evals),
        "accuracy_vs_density": lambda: acc_fig.accuracy_vs_density(final, evals),
        "accuracy_vs_tpp": lambda: acc_fig.accuracy_vs_tpp(need_analysis("accuracy")),
        "loss_vs_total": lambda: loss.loss_vs_total(final),
        "isoflop_curves": lambda: loss.isoflop_curves(final, analysis.isoflop if analysis else None,
                                                      analysis.optimum if analysis else None),
        "optima_vs_compute": lambda: loss.optima_vs_compute(analysis.isoflop if analysis else None,
                                                            analysis.optimum if analysis else None),
        "law_fit_moe": law_fit_moe,
        "training_curves": lambda: curves.training_curves(metrics, final),
        "routing_balance": lambda: curves.routing_balance(metrics, final),
    }
    if public:
        chin = {}

        def chinchilla():
            say("Chinchilla fit on chinchilla_epoch")
            res, samples = public_fits.chinchilla_epoch_fit(samples=public_bootstrap, seed=seed)
            chin["fit"] = res
            return pub.chinchilla_fit(res, samples)

        def clark():
            say("clark law on clark_routing")
            data, fits = public_fits.clark_fits()
            chin["clark"] = fits
            return pub.clark_experts(data, fits)

        makers["chinchilla_epoch"] = chinchilla
        makers["clark_experts"] = clark
        result.public_fits = chin
    else:
        for name in ("chinchilla_epoch", "clark_experts"):
            result.skipped[name] = "public-dataset figures not asked for"
    for name, make in makers.items():
        say(f"figure {name}")
        try:
            fig = make()
        except MoescaleError as exc:
            result.skipped[name] = str(exc)
            continue
        result.figures[name] = save(fig, out, name, formats)
    return result
