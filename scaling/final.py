"""A store's finished runs, read once: the ``final`` view, the runs left out, the evals, the resamples.

Every analysis step (``scaling.claims``, ``scaling.accuracy``, ``scaling.optimum``,
``scaling.analysis``) works on one ``FinalRuns``, made by ``load_final`` from a Store, a
store path or a final-like DataFrame, and handed down: the ``final`` view is read once per
command (STYLE: load once, pass down). Runs that are not finished, or lack one of the
columns the moe law needs, are left out and counted in ``excluded``. The bootstrap
resamples of runs (``scaling.bootstrap.resample_runs``) are drawn once per (B, seed) and
shared by every step, so claims, accuracy and optimum refit on the same resamples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError

if TYPE_CHECKING:
    from scaling.store import Store

__all__ = ["FinalRuns", "load_final", "final_runs", "open_store", "NEEDED"]

#: The columns of the ``final`` view the moe law, the claims and the optimum need.
NEEDED = ("run_id", "n_total", "n_active", "sparsity", "n_experts", "top_k", "tokens", "val_loss", "active_flops")


@dataclass
class FinalRuns:
    """The finished runs of a store, loaded once.

    ``final``: one row per finished run with a finite value in every ``NEEDED`` column,
    sorted by run_id (the order of the bootstrap weights' columns); ``excluded``: status or
    reason -> count of runs left out; ``evals``: the store's ``evals`` table (empty when the
    source has none).
    """

    final: pd.DataFrame
    excluded: dict[str, int]
    evals: pd.DataFrame
    _resamples: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.final)

    @property
    def run_ids(self) -> np.ndarray:
        """The run ids, in the order of ``final``'s rows and of the resample weights' columns."""
        return self.final["run_id"].to_numpy()

    def resample(self, n_boot: int, seed: int) -> np.ndarray:
        """Bootstrap run weights (n_boot, n_runs): ``scaling.bootstrap.resample_runs`` of the run ids.

        Drawn once per (n_boot, seed) and cached, so every step that asks gets the same array.
        """
        key = (int(n_boot), int(seed))
        if key not in self._resamples:
            from scaling.bootstrap import resample_runs

            self._resamples[key] = resample_runs(self.final["run_id"], *key)
        return self._resamples[key]


def open_store(source) -> Store:
    """A Store from a Store or an existing store path (a missing file is an error, never created)."""
    from scaling.store import Store

    if isinstance(source, Store):
        return source
    if isinstance(source, (str, Path)):
        if str(source) != ":memory:" and not Path(source).is_file():
            raise MoescaleError(f"{source}: no such store file")
        return Store(source)
    raise MoescaleError(f"expected a Store, a store path or a DataFrame of final runs, got {type(source).__name__}")


def final_runs(source, *, need: tuple[str, ...] = NEEDED) -> tuple[pd.DataFrame, dict[str, int]]:
    """The finished runs of a store (``final`` view) or a final-like DataFrame, and what was left out.

    Returns (runs with a finite value in every ``need`` column, {"diverged": n, "failed": n,
    "running": n, "no val_loss": n}). A Store (or a path to one) has its ``runs`` table counted
    by status; a DataFrame with a ``status`` column keeps only ``finished`` rows.
    """
    excluded: dict[str, int] = {}
    if isinstance(source, pd.DataFrame):
        df = source.copy()
        if "status" in df.columns:
            counts = df["status"].value_counts()
            excluded.update({str(k): int(v) for k, v in counts.items() if k != "finished"})
            df = df[df["status"] == "finished"]
    else:
        store = open_store(source)
        counts = store.sql("SELECT status, count(*) AS n FROM runs GROUP BY status")
        excluded.update({str(s): int(n) for s, n in zip(counts["status"], counts["n"]) if s != "finished"})
        df = store.sql("SELECT * FROM final")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise MoescaleError(f"final runs lack column(s) {', '.join(missing)} (columns: {', '.join(map(str, df.columns))})")
    for c in need:
        if c != "run_id":
            df[c] = pd.to_numeric(df[c], errors="coerce")
    ok = np.isfinite(df[[c for c in need if c != "run_id"]].to_numpy(dtype=float)).all(axis=1)
    if (~ok).sum():
        excluded["no val_loss"] = int((~ok).sum())
    df = df[ok].sort_values("run_id").reset_index(drop=True)
    if df.empty:
        found = ", ".join(f"{v} {k}" for k, v in excluded.items() if v) or "no runs at all"
        raise MoescaleError(f"no finished runs with a val_loss ({found}); train and ingest a sweep first")
    return df, excluded


def load_final(source, *, evals: pd.DataFrame | None = None) -> FinalRuns:
    """Read the finished runs once: ``source`` is a FinalRuns (returned as it is), a Store, a
    store path, or a DataFrame of the ``final`` view.

    ``evals``: the evals table to use; default the store's ``evals`` table (read here, once),
    an empty frame for a DataFrame source, or the FinalRuns' own. Raises MoescaleError for a
    missing store file, missing columns or no finished run with a val_loss.
    """
    if isinstance(source, FinalRuns):
        if evals is None:
            return source
        return FinalRuns(source.final, source.excluded, evals, source._resamples)
    if isinstance(source, pd.DataFrame):
        final, excluded = final_runs(source)
        return FinalRuns(final, excluded, evals if evals is not None else pd.DataFrame())
    store = open_store(source)
    final, excluded = final_runs(store)
    return FinalRuns(final, excluded, evals if evals is not None else store.sql("SELECT * FROM evals"))
