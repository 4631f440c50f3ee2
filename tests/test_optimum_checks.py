"""scaling.optimum_checks: the determination rule, lack of fit and the trend's bootstrap, on hand-made inputs."""

import numpy as np
import pandas as pd
import pytest

from scaling.errors import MoescaleError
from scaling.optimum_checks import DETERMINED_SHARE, check_widened, decide, lack_of_fit, sparsity_share, trend
from scaling.simulate import DEFAULT_GRID


def test_sparsity_share_counts_resamples_within_one_grid_step():
    grid = np.array([1, 2, 4, 8, 16, 32, 1, 4])
    # 8 is the optimum: 4, 8, 16 are within one step; 2 and 32 are not
    boot = np.array([8, 8, 4, 16, 2, 32, 8, 8, 16, 4])
    assert sparsity_share(boot, 8, grid) == pytest.approx(8 / 10)
    assert sparsity_share(boot, 1, grid) == pytest.approx(1 / 10)  # only the 2


def _row(**kw):
    base = {"sparsity": 8.0, "edge": "", "frequency": 0.9, "sparsity_share": 0.95}
    return base | kw


def test_decide_states_an_optimum_only_where_the_data_decide_it():
    assert DETERMINED_SHARE == 0.8
    ok = decide(_row(), 200, "")
    assert ok == {"determined": True, "arch_determined": True, "why": "", "arch_why": ""}
    spread = decide(_row(frequency=0.5, sparsity_share=0.5), 200, "")
    assert not spread["determined"] and spread["why"] == "within one sparsity step in 50% of resamples"
    assert spread["arch_why"] == "wins 50% of resamples"
    # the sparsity can be decided while the architecture is not
    mixed = decide(_row(frequency=0.6, sparsity_share=0.9), 200, "")
    assert mixed["determined"] and not mixed["arch_determined"]
    edge = decide(_row(sparsity=32.0, edge="highest sparsity of the grid"), 200, "")
    assert not edge["determined"] and edge["why"] == "highest sparsity of the grid"
    # dense is a natural end, and a binding memory cap is the constraint's answer, not an edge
    dense = decide(_row(sparsity=1.0, edge="lowest sparsity of the grid; largest N_total of the grid under the caps"),
                   200, "")
    assert dense["determined"], dense
    model = decide(_row(), 200, "not identified: gamma (on bound)")
    assert not model["determined"] and model["why"] == "model not identified: gamma (on bound)"
    none = decide(_row(), 0, "")
    assert not none["determined"] and "no bootstrap resamples" in none["why"]


def _runs_pi():
    # one budget 1e14: the best observed run is E1 (1.917), the predicted optimum E16 observed at 2.107
    return pd.DataFrame({"run_id": ["a", "b", "c", "d"], "arch": ["E1", "E16", "E4", "E1"],
                         "budget": [1.0e14, 1.01e14, 0.99e14, 3e14], "observed": [1.917, 2.107, 2.0, 1.5],
                         "predicted": [1.95, 1.951, 2.0, 1.5], "pi_low": [1.85, 1.876, 1.9, 1.4],
                         "pi_high": [2.05, 2.09, 2.1, 1.6]}).assign(
        outside=lambda d: (d.observed < d.pi_low) | (d.observed > d.pi_high))


def test_lack_of_fit_when_the_observed_best_differs_beyond_the_interval():
    # issue 22's demo case: the predicted optimum E16, 1.951 [1.876, 2.09], observed at 2.107; the best run is E1
    got = lack_of_fit({"compute": 1e14, "arch": "E16"}, _runs_pi())
    assert got["observed_best"] == "E1" and got["observed_loss"] == 1.917 and got["lack_of_fit"]
    assert "E16 observed 2.107 outside its prediction interval 1.951 [1.876, 2.09]" in got["lack_of_fit_reason"]
    opt = {"compute": 1e14, "arch": "E16", "predicted": 1.951, "pred_low": 1.876, "pred_high": 2.09}
    got = lack_of_fit(opt, _runs_pi().assign(pi_high=2.2, outside=False))
    assert got["lack_of_fit"] and "outside the optimum's predicted 1.951 [1.876, 2.09]" in got["lack_of_fit_reason"]
    # the same disagreement inside the intervals is noise, not lack of fit
    inside = _runs_pi().assign(pi_high=2.2, outside=False)
    assert not lack_of_fit({"compute": 1e14, "arch": "E16"}, inside)["lack_of_fit"]
    assert not lack_of_fit(opt | {"pred_high": 2.2}, inside)["lack_of_fit"]
    # the observed best is the predicted optimum: nothing to flag; no run at the budget: nothing known
    assert not lack_of_fit({"compute": 1e14, "arch": "E1"}, _runs_pi())["lack_of_fit"]
    assert lack_of_fit({"compute": 1e16, "arch": "E1"}, _runs_pi())["observed_best"] is None


def test_trend_interval_is_the_percentile_of_refitted_exponents():
    C = [1e13, 1e14, 1e15]
    best = pd.DataFrame({"objective": "loss", "compute": C, "sparsity": [2.0, 4.0, 8.0], "n_total": [1e6, 2e6, 4e6],
                         "tpp": [1.0, 1.0, 1.0]})
    rng = np.random.default_rng(0)
    boot = {("loss", c): {q: best[q].to_numpy()[i] * np.exp(rng.normal(0, 0.3, 50)) for q in ("sparsity", "n_total", "tpp")}
            for i, c in enumerate(C)}
    boot[("loss", 1e13)]["sparsity"][0] = np.nan  # a dropped resample is left out
    t = trend(best, boot).set_index("quantity")
    assert t.loc["sparsity", "exponent"] == pytest.approx(np.log(2) / np.log(10))
    # reference: a loop of np.polyfit over the kept resamples
    slopes = [np.polyfit(np.log(C), np.log([boot[("loss", c)]["sparsity"][b] for c in C]), 1)[0] for b in range(1, 50)]
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    assert t.loc["sparsity", "exponent_lo"] == pytest.approx(lo) and t.loc["sparsity", "exponent_hi"] == pytest.approx(hi)
    assert t.loc["sparsity", "n_boot"] == 49 and t.loc["sparsity", "exponent_hi"] > t.loc["sparsity", "exponent_lo"]
    # without resamples: no interval (never a zero-width one)
    assert trend(best, {})["exponent_lo"].isna().all()


def test_widened_values_without_a_valid_candidate_are_refused():
    from scaling.optimum import candidate_table

    cand = candidate_table(DEFAULT_GRID)
    with pytest.raises(MoescaleError, match="top_k 64 exceeds every n_experts of the grid"):
        check_widened(DEFAULT_GRID, {"top_k": [64]}, cand, 1e8)
    with pytest.raises(MoescaleError, match="d_model 100 is not a multiple of the head dim 32"):
        check_widened(DEFAULT_GRID, {"d_model": [100]}, cand, 1e8)
    with pytest.raises(MoescaleError, match="widen n_experts: 'a' is not a positive integer"):
        check_widened(DEFAULT_GRID, {"n_experts": ["a"]}, cand, 1e8)
    with pytest.raises(MoescaleError, match="over 1000 times the runs' largest"):
        check_widened(DEFAULT_GRID, {"n_experts": [32]}, cand, 1e3)
    check_widened(DEFAULT_GRID, {"n_experts": [32], "d_model": [128]}, cand, 1e8)  # values the grid has pass
