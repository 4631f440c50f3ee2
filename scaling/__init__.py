"""moe-scaling: fit scaling laws of Mixture-of-Experts language models.

The Python API, for scripts and Jupyter::

    import scaling
    store = scaling.Store("moescale.duckdb")            # DuckDB experiment store
    df = store.sql("SELECT * FROM final")               # one row per finished run
    result = scaling.fit("chinchilla_epoch", "chinchilla",
                         x={"N": '"Model Size"', "D": '"Training FLOP"/(6*"Model Size")'}, y="loss")
    print(result.summary())
    scaling.Architecture(d_model=512, n_layers=16, n_heads=4, d_ff=1024, n_experts=8, top_k=2).n_active

This package never imports torch; only ``runner`` does. Names load on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "MoescaleError": "scaling.errors",
    "Store": "scaling.store",
    "read_table": "scaling.tables",
    "fit": "scaling.fitting",
    "FitResult": "scaling.fitting",
    "get_law": "scaling.laws",
    "LAWS": "scaling.laws",
    "Architecture": "scaling.architecture",
    "RunWriter": "scaling.rundir",
    "read_run_dir": "scaling.rundir",
    "load_final": "scaling.final",
    "FinalRuns": "scaling.final",
}
_MODULES = ("datasets", "compare", "allocation", "linear", "planner", "claims", "accuracy", "optimum", "simulate", "analysis", "power")

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"scaling.{name}")
    raise AttributeError(f"module 'scaling' has no attribute {name!r}")
