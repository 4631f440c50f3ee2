"""The scaling laws fitted to the public reference datasets (``scaling.datasets``; found through MOESCALE_DATA).

- ``chinchilla_epoch_fit``: the ``chinchilla`` law L = E + A·N^-alpha + B·D^-beta fitted to Epoch AI's
  extraction of Hoffmann et al.'s data (Besiroglu et al. 2024, arXiv 2404.10102), as they fit it:
  Huber loss with delta = 1e-3 on log L, the five highest losses dropped.
- ``clark_fits``: Clark et al. 2022's ``clark`` law log10 L = a·log10 N + b·log10 Ê + c·log10 N·log10 Ê + d
  (saturating expert count Ê), fitted per router to the final validation losses (arXiv 2202.01169).

These are the fits of README "Fitting scaling laws" and tests/test_published_fits.py; the figures
(``figures.public``) draw their results and the report sets them against the published values
(``EPOCH_PUBLISHED``). Nothing is downloaded: a missing file is a MoescaleError saying where to put it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["dataset_file", "chinchilla_epoch_fit", "clark_fits", "EPOCH_PUBLISHED", "CHINCHILLA_X",
           "CHINCHILLA_WHERE", "CLARK_ROUTERS", "CLARK_X"]

#: Epoch AI's published Chinchilla estimates (Besiroglu et al. 2024), set against ours in the report.
EPOCH_PUBLISHED = {"E": 1.8172, "A": 477.84, "B": 2143.86, "alpha": 0.3473, "beta": 0.3672}
CHINCHILLA_X = {"N": '"Model Size"', "D": '"Training FLOP"/(6*"Model Size")'}
# Epoch AI drop the five highest losses (README "Fitting scaling laws").
CHINCHILLA_WHERE = "loss < (SELECT loss FROM data ORDER BY loss DESC LIMIT 1 OFFSET 4)"
CLARK_ROUTERS = ("S-Base", "RL-R", "Hash")
CLARK_X = {"N": "dense_parameter_count", "E": "CASE WHEN router_type = 'Dense' THEN 1 ELSE num_experts END"}


def _clark_where(router: str) -> str:
    return ("step = (SELECT max(step) FROM data d2 WHERE d2.hyper_id = data.hyper_id) "
            f"AND routing_frequency = 0.5 AND k = 1 AND seed = 42 AND router_type IN ('Dense', '{router}')")


def dataset_file(name: str):
    """The local file of a registered dataset, never downloading; a MoescaleError saying where to put it
    when absent."""
    from scaling import datasets

    return datasets.path(name, download_missing=False)


def chinchilla_epoch_fit(bootstrap: int = 0, seed: int = 0, samples: int = 0):
    """Epoch AI's Chinchilla replication: the ``chinchilla`` law fitted to ``chinchilla_epoch`` with Huber
    δ = 1e-3 on 4,500 starts, the 5 highest losses dropped. Returns (FitResult, bootstrap parameter
    samples (samples, n_params) from ``samples`` refits on resampled points, or None)."""
    from scaling.fitting import fit

    path = dataset_file("chinchilla_epoch")
    res = fit(str(path), "chinchilla", x=CHINCHILLA_X, y="loss", where=CHINCHILLA_WHERE, bootstrap=bootstrap,
              seed=seed, stderr=False)
    return res, (_refit_samples(res, samples, seed) if samples else None)


def _refit_samples(res, n: int, seed: int):
    from scaling.bootstrap import refit_weighted, resample_runs

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
