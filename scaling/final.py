"""A store's finished runs, read once: the ``final`` view, the runs left out, the evals, the resamples.

Every analysis step (``scaling.claims``, ``scaling.accuracy``, ``scaling.optimum``,
``scaling.analysis``) works on one ``FinalRuns``, made by ``load_final`` from a Store, a
store path or a final-like DataFrame, and handed down: the ``final`` view is read once per
command (STYLE: load once, pass down). Runs that are not finished, or lack one of the
columns the moe law needs, are left out and counted in ``excluded``. The bootstrap
resamples of runs (``scaling.bootstrap.resample_runs``) are drawn once per (B, seed) and
shared by every step, so claims, accuracy and optimum refit on the same resamples.

One variant at a time: ``where=`` (an SQL condition over ``final``'s columns) and ``sweep=``
(a sweep name) select runs. The selected runs must share one training recipe: their stored
configs (``runs.config``, the run's run.json ``config``) are compared key by key, leaving out
what differs from run to run by design (``PER_RUN_KEYS``: the architecture, tokens, seed,
compute, the sweep name and the settings that do not change a result, such as log and
checkpoint intervals or the device). A key that still differs is allowed only where the
recipe sets it per architecture (e.g. a learning rate per size: one value for every run of
one architecture); a key with two values among runs of the same architecture marks a second
variant (``sweep --set lr=1e-3`` into the same store, a changed ``train:`` block or data spec)
and the load is refused with one line naming the differing keys (``check_variants``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError, first_line

if TYPE_CHECKING:
    from scaling.store import Store

__all__ = ["FinalRuns", "load_final", "final_runs", "open_store", "NEEDED", "PER_RUN_KEYS", "config_variants",
           "check_variants"]

#: The columns of the ``final`` view the moe law, the claims and the optimum need.
NEEDED = ("run_id", "n_total", "n_active", "sparsity", "n_experts", "top_k", "tokens", "val_loss", "active_flops")
#: Config keys (dotted prefixes) that differ from run to run by design, or that do not change a result.
PER_RUN_KEYS = ("architecture", "tokens", "seed", "compute", "simulated", "sweep", "slice", "log_interval", "eval_interval",
                "checkpoint_interval", "micro_batch_tokens", "device", "compile")
_ARCH_COLUMNS = ("d_model", "n_layers", "n_heads", "d_ff", "n_experts", "top_k", "vocab_size", "seq_len")


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
    kind = type(source)
    raise MoescaleError(f"expected a Store, a store path or a pandas DataFrame of final runs, got "
                        f"{kind.__module__.split('.')[0]}.{kind.__name__}")


def _select(df: pd.DataFrame, where: str | None, sweep: str | None) -> pd.DataFrame:
    """The rows of a final-like frame in ``sweep`` and meeting ``where`` (SQL over its columns, run by DuckDB)."""
    import duckdb

    if sweep is not None:
        if "sweep" not in df.columns:
            raise MoescaleError(f"sweep {sweep!r}: the runs have no sweep column")
        names = sorted(map(str, df["sweep"].dropna().unique()))
        if sweep not in names:
            raise MoescaleError(f"sweep {sweep!r} is not in the store (sweeps: {', '.join(names) or 'none'})")
        df = df[df["sweep"] == sweep]
    if where is None:
        return df
    if not str(where).strip():
        raise MoescaleError("where: the condition is empty")
    con = duckdb.connect()
    try:
        con.register("final", df.reset_index(drop=True))
        return con.execute(f"SELECT * FROM final WHERE {where}").df()
    except duckdb.Error as exc:
        raise MoescaleError(f"where {where!r}: {first_line(exc)}") from None
    finally:
        con.close()


def final_runs(source, *, need: tuple[str, ...] = NEEDED, where: str | None = None,
               sweep: str | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """The finished runs of a store (``final`` view) or a final-like DataFrame, and what was left out.

    Returns (runs with a finite value in every ``need`` column, {"diverged": n, "failed": n,
    "running": n, "no val_loss": n, "not selected": n}). A Store (or a path to one) has its
    ``runs`` table counted by status; a DataFrame with a ``status`` column keeps only
    ``finished`` rows. ``sweep`` and ``where`` (SQL over ``final``) select runs.
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
    if where is not None or sweep is not None:
        n = len(df)
        df = _select(df, where, sweep)
        excluded["not selected"] = n - len(df)
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


def _flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(value, sort_keys=True)}


def config_variants(final: pd.DataFrame) -> dict[str, list[str]]:
    """The training-recipe keys on which the runs of ``final`` form more than one variant:
    dotted key -> its distinct values (JSON text), for each key outside ``PER_RUN_KEYS`` that takes
    two values among runs of one architecture (see the module docstring). Empty when the runs
    share one recipe, or when ``final`` has no ``config`` column."""
    if "config" not in final.columns or len(final) < 2:
        return {}
    rows = []
    for text in final["config"]:
        try:
            cfg = json.loads(text) if isinstance(text, str) else {}
        except ValueError:
            cfg = {}
        flat = _flatten(cfg) if isinstance(cfg, dict) else {}
        rows.append({k: v for k, v in flat.items() if k.split(".")[0] not in PER_RUN_KEYS})
    table = pd.DataFrame(rows, index=final.index).fillna("(unset)")
    arch = [c for c in _ARCH_COLUMNS if c in final.columns]
    key = final[arch].astype(str).agg("-".join, axis=1) if arch else pd.Series("", index=final.index)
    out = {}
    for col in sorted(table.columns):
        if table[col].nunique() < 2:
            continue
        if (table[col].groupby(key).nunique() > 1).any():
            out[col] = sorted(table[col].unique())
    return out


def check_variants(final: pd.DataFrame) -> None:
    """Refuse runs that mix variants of a sweep (``config_variants``): one line naming the differing
    keys and their values, and how to select one variant (``where=`` / ``--where``, ``sweep=``)."""
    diff = config_variants(final)
    if diff:
        keys = "; ".join(f"{k} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})" for k, v in diff.items())
        k0, v0 = next(iter(diff.items()))
        raise MoescaleError(f"the runs mix variants of a sweep that differ in {keys}; analyze one variant with "
                            f"--where (SQL over final, e.g. \"json_extract_string(config, '$.{k0}') = "
                            f"'{v0[0].strip(chr(34))}'\") or --sweep NAME")


def load_final(source, *, evals: pd.DataFrame | None = None, where: str | None = None,
               sweep: str | None = None) -> FinalRuns:
    """Read the finished runs once: ``source`` is a FinalRuns (returned as it is), a Store, a
    store path, or a DataFrame of the ``final`` view.

    ``evals``: the evals table to use; default the store's ``evals`` table (read here, once),
    an empty frame for a DataFrame source, or the FinalRuns' own; only the selected runs' rows
    are kept. ``where`` (SQL over ``final``) and ``sweep`` select one variant of a sweep.
    Raises MoescaleError for a missing store file, missing columns, no finished run with a
    val_loss, a bad ``where`` and runs that mix variants of a sweep (``check_variants``).
    """
    if not isinstance(source, (FinalRuns, pd.DataFrame)) and callable(getattr(source, "to_pandas", None)):
        source = source.to_pandas()  # a polars DataFrame or an Arrow table of the final view
    if isinstance(source, FinalRuns):
        if where is not None or sweep is not None:
            raise MoescaleError("where= and sweep= select runs while loading; pass a store, not loaded runs")
        if evals is None:
            return source
        return FinalRuns(source.final, source.excluded, evals, source._resamples)
    if isinstance(source, pd.DataFrame):
        final, excluded = final_runs(source, where=where, sweep=sweep)
        evals = evals if evals is not None else pd.DataFrame()
    else:
        store = open_store(source)
        final, excluded = final_runs(store, where=where, sweep=sweep)
        evals = evals if evals is not None else store.sql("SELECT * FROM evals")
    check_variants(final)
    if len(evals) and "run_id" in evals.columns and (where is not None or sweep is not None):
        evals = evals[evals["run_id"].isin(set(final["run_id"]))].reset_index(drop=True)
    return FinalRuns(final, excluded, evals)
