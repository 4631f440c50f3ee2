"""IsoFLOP budgets of a sweep's runs: runs of (about) equal active compute form one budget.

A planned budget C comes back from a run only approximately: its tokens are
D = round(C / flops_per_token), so its active FLOPs = flops_per_token * D differ from C by up to
one token's FLOPs. ``budget_groups`` chains runs whose active FLOPs lie within ``rtol`` of each
other into one isoFLOP profile (Hoffmann et al. 2022's Approach 2; ``scaling.allocation``),
labelled by the group's geometric mean.
"""

from __future__ import annotations

import numpy as np

__all__ = ["budget_groups", "store_budgets"]


def budget_groups(flops, rtol: float = 0.05) -> np.ndarray:
    """A budget label per run: active FLOPs within ``rtol`` of each other (chained in sorted order)
    are one isoFLOP budget, labelled by their geometric mean exp(mean(ln C_i))."""
    v = np.asarray(flops, dtype=float)
    order = np.argsort(v)
    labels = np.empty(len(v))
    start = 0
    for i in range(1, len(v) + 1):
        if i == len(v) or v[order[i]] > v[order[i - 1]] * (1 + rtol):
            idx = order[start:i]
            labels[idx] = float(np.exp(np.mean(np.log(v[idx]))))
            start = i
    return labels


def store_budgets(runs) -> list[float]:
    """The sweep's own budgets: the distinct ``budget_groups`` labels of the runs' active FLOPs
    (``runs``: a ``scaling.final.FinalRuns`` or a final-like DataFrame), rounded to 3 significant
    digits, ascending."""
    final = getattr(runs, "final", runs)
    return sorted({float(f"{v:.3g}") for v in budget_groups(final["active_flops"])})
