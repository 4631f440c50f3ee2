"""Acceptance: the engine reproduces published fits (numbers in ../shared/datasets/README.md).

1. Epoch AI's Chinchilla replication (Besiroglu et al. 2024): parameters, objective, bootstrap CIs.
2. Clark et al. 2022 routing law: objective no worse than a 2,005-start tight-tolerance reference, per router.
3. Gadre et al. 2024 two-step prediction of held-out loss and top-1 error.
"""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from scaling.fitting import fit
from conftest import dataset_path

CHINCHILLA_MAP = {"N": '"Model Size"', "D": '"Training FLOP"/(6*"Model Size")'}
CHINCHILLA_WHERE = "loss < (SELECT loss FROM data ORDER BY loss DESC LIMIT 1 OFFSET 4)"
EPOCH = {"E": 1.8172, "A": 477.84, "B": 2143.86, "alpha": 0.3473, "beta": 0.3672}
EPOCH_OBJECTIVE = 1.01827e-3
# Epoch's 95% bootstrap percentile intervals (4,000 resamples).
EPOCH_CI = {"E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415), "A": (285.2, 743.6), "B": (1042.4, 5810.3)}


def _check_chinchilla(params, objective, n_points):
    assert n_points == 240
    for k, v in EPOCH.items():
        assert params[k] == pytest.approx(v, rel=5e-3), k
    # Published to 6 digits; our optimum is 1.018274e-3 (Epoch's independent re-run: 1.018274e-3).
    assert abs(objective - EPOCH_OBJECTIVE) <= 1e-8


@pytest.mark.slow
def test_chinchilla_cli_with_bootstrap_4000():
    """The issue's exact command, with --bootstrap 4000.

    CI tolerance: each endpoint of E, alpha, beta within 0.01 of Epoch's, A and B within 10%.
    The Monte-Carlo error of a 2.5% percentile over 4,000 resamples is about 0.001 for E and
    alpha/beta (sd·sqrt(p(1-p)/B)/phi(1.96)), and Epoch's resamples are different draws, so 0.01
    (~9 Monte-Carlo SE) separates "the same procedure" from a different one (e.g. resampling rows
    of curves, or a mis-weighted objective, move the intervals by several hundredths).
    Seen with seed 0: E (1.7715, 1.8706), alpha (0.3165, 0.3716), beta (0.3336, 0.4159).
    """
    path = dataset_path("chinchilla_epoch.csv")
    env = {**os.environ, "MOESCALE_DATA": str(path.parent)}
    cmd = [sys.executable, "-m", "scaling.cli", "fit", "chinchilla_epoch", "--law", "chinchilla",
           "--map", 'N="Model Size"', "--map", 'D="Training FLOP"/(6*"Model Size")', "--y", "loss",
           "--where", CHINCHILLA_WHERE, "--bootstrap", "4000", "--json", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    _check_chinchilla(out["params"], out["objective"], out["n_points"])
    assert out["converged"] is True and out["loss"] == "huber" and out["delta"] == 1e-3
    for k in ("E", "alpha", "beta"):
        (lo, hi), (elo, ehi) = out["ci"][k], EPOCH_CI[k]
        assert abs(lo - elo) <= 0.01 and abs(hi - ehi) <= 0.01, (k, lo, hi)
    for k in ("A", "B"):
        (lo, hi), (elo, ehi) = out["ci"][k], EPOCH_CI[k]
        assert lo == pytest.approx(elo, rel=0.1) and hi == pytest.approx(ehi, rel=0.1), (k, lo, hi)


@pytest.mark.slow
def test_chinchilla_api():
    data = pd.read_csv(dataset_path("chinchilla_epoch.csv"))
    res = fit(data, "chinchilla", x=CHINCHILLA_MAP, y="loss", where=CHINCHILLA_WHERE)
    _check_chinchilla(res.params, res.objective, res.n_points)
    assert res.converged and not res.at_bound and res.n_starts == 4500
    # lmfit standard errors (Huber least squares) are of the order of Epoch's Huber-likelihood SEs.
    assert 0.01 < res.stderr["alpha"] < 0.08 and 0.01 < res.stderr["E"] < 0.1


# Reference optimum per router: 2,005-start L-BFGS at tight tolerances (README). Our own scipy
# multi-start, run once (1,000 uniform random starts, a in [-0.2, 0], b in [-0.3, 0], c in
# [-0.02, 0.03], d in [0.5, 1.5], p_start in [0, 6], p_max in [4, 14]; L-BFGS-B, ftol 1e-15,
# gtol 1e-12, numeric gradient), confirmed them: S-Base 1.041688e-05, RL-R 1.042800e-05,
# Hash 8.890276e-06. The engine (144-start grid) reaches 1.0416885e-05, 1.0428001e-05, 8.8902757e-06.
CLARK_REFERENCE = {"S-Base": (58, 1.04169e-5), "RL-R": (59, 1.04280e-5), "Hash": (56, 8.89028e-6)}


@pytest.mark.parametrize("router", list(CLARK_REFERENCE))
def test_clark_routing_law_reaches_the_reference_objective(router):
    curves = dataset_path("clark_routing_curves.csv.gz")
    where = ("step = (SELECT max(step) FROM data d2 WHERE d2.hyper_id = data.hyper_id) "
             f"AND routing_frequency = 0.5 AND k = 1 AND seed = 42 AND router_type IN ('Dense', '{router}')")
    x = {"N": "dense_parameter_count", "E": "CASE WHEN router_type = 'Dense' THEN 1 ELSE num_experts END"}
    res = fit(str(curves), "clark", x=x, y="loss_validation", where=where, stderr=False)
    n, ref = CLARK_REFERENCE[router]
    assert res.n_points == n and res.loss == "mse-log10" and res.converged
    assert res.objective <= ref * (1 + 1e-6)


GADRE_TRAIN = ("dataset_name = 'rpj' AND ((tok_mult = 20 AND model_name IN "
               "('d=96_l=8_h=4', 'd=512_l=8_h=4', 'd=576_l=24_h=8', 'd=1024_l=24_h=8')) "
               "OR (tok_mult = 320 AND model_name = 'd=96_l=8_h=4'))")


def test_gadre_two_step_prediction():
    path = str(dataset_path("gadre_overtraining.csv"))
    loss_law = fit(path, "a*N**eta + b*6**(eta/2)*(M*N)**eta + E", x={"N": "N", "M": "tok_mult"}, y="loss_c4_val",
                   where=GADRE_TRAIN, loss="mse",
                   starts={"a": [10, 100, 1000], "b": [10, 100, 1000], "eta": [-0.5, -0.3, -0.1], "E": [1.0, 2.0]})
    p = loss_law.params
    assert (p["a"], p["b"], p["eta"], p["E"]) == pytest.approx((166.2110, 366.6872, -0.272851, 1.836648), rel=1e-5)
    err_where = f"({GADRE_TRAIN}) OR (dataset_name = 'rpj' AND model_name = 'open_lm_1b' AND tok_mult = 20)"
    err_law = fit(path, "exp_error", x={"L": "loss_c4_val"}, y="err_avg_subset", where=err_where)
    assert err_law.n_points == 6 and err_law.loss == "mse"
    q = err_law.params
    assert (q["k"], q["gamma"], q["eps"]) == pytest.approx((2.206490, 0.714591, 0.856992), rel=1e-5)

    df = pd.read_csv(path)
    published = {("open_lm_1b", 640): (2.519827, 0.7103, 0.492496, 3.6365), ("open_lm_7b", 20): (2.442745, 0.7320, 0.471856, 0.0464)}
    for (name, m), (pred_loss, loss_rel, pred_err, err_rel) in published.items():
        row = df[(df.dataset_name == "rpj") & (df.model_name == name) & (df.tok_mult == m)].iloc[0]
        loss_hat = loss_law.predict({"N": [row.N], "M": [m]})[0]
        err_hat = err_law.predict({"L": [loss_hat]})[0]  # the *predicted* loss feeds the error law
        assert round(loss_hat, 6) == pred_loss and round(err_hat, 6) == pred_err
        assert round(abs(loss_hat - row.loss_c4_val) / row.loss_c4_val * 100, 4) == loss_rel
        assert round(abs(err_hat - row.err_avg_subset) / row.err_avg_subset * 100, 4) == err_rel
