"""The report's study section: the five questions' headline table, seed noise and knowledge capacity.

Drawn only for a store whose runs name their study slices (``final.slice``, ``scaling.presets``);
the numbers come from ``scaling.study``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.study import capacity, seed_noise, study_questions

__all__ = ["has_slices", "study_blocks"]

#: Published knowledge capacity (Allen-Zhu & Li 2024, Part 3.3): bits per parameter at 100 exposures.
PUBLISHED_BITS_PER_PARAM = 1.0


def has_slices(runs: pd.DataFrame) -> bool:
    """Whether the runs name study slices (a study store)."""
    return "slice" in runs.columns and runs["slice"].notna().any()


def _capacity_rows(analysis) -> pd.DataFrame:
    """Bits per parameter of the dense and the sparsest run at the largest budget of the sparsity slice."""
    runs = analysis.runs
    cap = capacity(runs, analysis.evals)
    if not len(cap):
        return cap
    cap = cap.merge(runs[["run_id", "active_flops", "slice", "seed", "n_experts"]], on="run_id")
    cap = cap[cap["slice"].fillna("").str.contains("sparsity") & (cap["seed"] == 0)]
    if not len(cap):
        return cap
    top = cap[np.isclose(cap["active_flops"], cap["active_flops"].max(), rtol=0.05)]
    picks = [top[top["n_experts"] == 1], top[top["sparsity"] == top["sparsity"].max()]]
    out = pd.concat([p.nlargest(1, "n_total") for p in picks if len(p)])
    out["published_bits_per_param"] = PUBLISHED_BITS_PER_PARAM
    return out[["run_id", "n_total", "sparsity", "tokens", "knowledge_bits", "bits_per_param",
                "published_bits_per_param"]].reset_index(drop=True)


def study_blocks(analysis) -> list[tuple]:
    """Report blocks (``figures.report``'s form) for a study store: the questions' table, the
    seed noise and the knowledge capacity."""
    b: list[tuple] = [("h2", "The study's questions")]
    b.append(("p", "Each question of the study design (scaling/study.py) with its estimate, 95% interval and "
                   "verdict. Questions 1-3 are Nakamura et al. 2025's, 4 is Liew et al. 2026's, 5 the optimum; "
                   "an optimum row's interval is the range of the optimal sparsity across the bootstrap resamples."))
    b.append(("table", study_questions(analysis)))
    noise = seed_noise(analysis.runs, analysis.evals)
    if len(noise):
        sd = [c for c in noise.columns if c.startswith("sd_")]
        b.append(("p", f"Seed noise: {len(noise)} architectures trained with {int(noise['seeds'].min())} or more seeds "
                       "at one budget; the standard deviation across seeds, median (largest) over them: "
                       + ", ".join(f"{c[3:]} {noise[c].median():.3g} ({noise[c].max():.3g})" for c in sd)
                       + ". Every seed is a run of its own, so the bootstrap over runs resamples seeds too."))
        b.append(("table", noise))
    cap = _capacity_rows(analysis)
    if len(cap):
        b.append(("p", "Knowledge capacity of the dense and the sparsest model of the sparsity slice at the largest "
                       "budget (facts task's knowledge bits over N_total; Allen-Zhu & Li 2024 publish ~1 bit per "
                       "parameter at 100 exposures). The knowledge base holds far fewer bits than these models' "
                       "published capacity, so bits per parameter here measure the knowledge base's size as much "
                       "as the models."))
        b.append(("table", cap))
    return b
