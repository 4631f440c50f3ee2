"""scaling/papers.py: the seed papers' claims set against an analysis, with plain verdicts."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from figure_store import fixture_store
from scaling.papers import format_ci, format_value, paper_comparison


def test_paper_comparison_agrees_on_the_simulated_truth():
    fx = fixture_store()
    # the truth: gamma, lam > 0; reasoning accuracy rises with active FLOPs, peaks at TPP 20; facts does neither
    table = paper_comparison(fx.analysis)
    assert list(table["verdict"]) == ["agrees"] * 6, table.to_string()


def _fake(lam_p=0.4, mem_ci=(0.1, 0.3), reason_ci=(-0.2, 0.1), interior=False):
    claims = SimpleNamespace(alpha=0.05, table=pd.DataFrame([
        {"claim": "sparsity adds nothing", "parameter": "gamma", "estimate": 0.1, "ci_low": 0.05, "ci_high": 0.2,
         "p_value": 1e-4, "delta_aic": 10.0},
        {"claim": "cancel", "parameter": "lam", "estimate": 0.01, "ci_low": -0.02, "ci_high": 0.03,
         "p_value": lam_p, "delta_aic": -1.0},
        {"claim": "N_active instead of s", "parameter": "alpha_active", "estimate": 0.3, "ci_low": np.nan,
         "ci_high": np.nan, "p_value": np.nan, "delta_aic": -3.0}]))
    q = pd.DataFrame([{"kind": "memorization", "question": "active_flops", "estimate": 0.2, "ci_low": mem_ci[0],
                       "ci_high": mem_ci[1]},
                      {"kind": "reasoning", "question": "active_flops", "estimate": 0.0, "ci_low": reason_ci[0],
                       "ci_high": reason_ci[1]}])
    peaks = pd.DataFrame([{"kind": "reasoning", "tpp_peak": 300.0 if interior else np.nan,
                           "ci_low": 200.0 if interior else np.nan, "ci_high": 400.0 if interior else np.nan,
                           "interior": interior, "tpp_min": 1.0, "tpp_max": 1000.0}])
    return SimpleNamespace(claims=claims, accuracy=SimpleNamespace(questions=q, peaks=peaks))


def test_paper_comparison_says_where_runs_disagree():
    v = list(paper_comparison(_fake())["verdict"])
    assert v == ["agrees", "disagrees (not significant)", "disagrees", "disagrees", "disagrees (CI includes 0)",
                 "disagrees (no interior peak)"]
    v = list(paper_comparison(_fake(interior=True, reason_ci=(-0.3, -0.1)))["verdict"])
    assert v[4:] == ["disagrees", "disagrees (peak elsewhere)"]
    no_acc = paper_comparison(SimpleNamespace(claims=None, accuracy=None))
    assert list(no_acc["verdict"]) == ["not testable"]


def test_number_formats():
    assert format_value(None) == "" and format_value(float("nan")) == "" and format_value(np.inf) == "inf"
    assert format_value(True) == "yes" and format_value(12345) == "12,345" and format_value(42) == "42"
    assert format_value(0.000123) == "1.230e-04" and format_value(3.14159) == "3.142" and format_value("x") == "x"
    assert format_ci(1.0, 0.5, 2.0) == "1 [0.5, 2]" and format_ci(1.0, np.nan, 2.0) == "1"
