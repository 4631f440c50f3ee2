"""scaling.identify: parameters on bounds, intervals spanning their range, degenerate fits."""

import numpy as np
import pandas as pd

from scaling.fitting import fit
from scaling.identify import check_parameters, degenerate_reasons, unidentified
from scaling.laws import MOE


def _moe_data(n=40, seed=0, gamma=0.05, lam=0.02):
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e6), np.log(1e8), n))
    D = np.exp(rng.uniform(np.log(1e8), np.log(1e10), n))
    k = rng.choice([1, 2], n)
    E = rng.choice([1, 4, 16], n) * k
    s = E / k
    L = 1.7 + 400 * N**-0.34 * s**gamma * E**lam + 2000 * D**-0.28
    return pd.DataFrame({"N": N, "s": s, "n_exp": E, "D": D, "L": L * np.exp(rng.normal(0, 0.002, n))})


def test_a_well_sampled_fit_is_identified_and_not_degenerate():
    df = _moe_data()
    res = fit(df, "moe", x={"N": "N", "s": "s", "n_exp": "n_exp", "D": "D"}, y="L", stderr=False)
    checks = {c.name: c for c in check_parameters(res, ci={"gamma": (0.03, 0.07), "lam": (0.0, 0.04)})}
    assert checks["gamma"].status == "identified" and checks["lam"].status == "identified"
    assert degenerate_reasons(res) == []


class _Fake:
    """A FitResult stand-in: the fields check_parameters and degenerate_reasons read."""

    def __init__(self, params, ci=None, y=(1.1, 2.0)):
        self.law, self.params, self.fixed = MOE, params, {}
        self.ci = ci or {}
        self.data = pd.DataFrame({"y": list(y)})


def test_bound_and_span_rules():
    params = {"e": 0.5, "a": 5.0, "b": 5.0, "alpha": 0.3, "beta": 0.3, "gamma": 1.0, "lam": 0.1}
    ci = {"gamma": (0.2, 1.0), "lam": (-0.9, 0.8), "alpha": (-0.27, 47.7), "beta": (0.25, 0.35)}
    status = {c.name: c.status for c in check_parameters(_Fake(params), ci)}
    assert status["gamma"] == "on bound"
    assert status["lam"] == "not identified"    # spans 85% of [-1, 1]
    assert status["alpha"] == "not identified"  # spans far more than the plausible [0.02, 2]
    assert status["beta"] == "identified"
    assert set(unidentified(_Fake(params), ci)) == {"gamma", "lam", "alpha"}
    ci["lam"] = (-1.0, 0.1)
    assert {c.name: c.status for c in check_parameters(_Fake(params), ci)}["lam"] == "CI reaches bound"


def test_the_demos_degenerate_fit_is_flagged():
    # the demo's moe fit: E = 2.8e-276 (e = -634.5), alpha = 3.77, against losses 1.1-4
    params = {"e": -634.5, "a": 42.1, "b": 5.0, "alpha": 3.77, "beta": 0.3, "gamma": 1.0, "lam": 1.0}
    reasons = degenerate_reasons(_Fake(params, y=(1.101, 3.9)))
    assert len(reasons) == 2
    assert "below 1/20 of the lowest observed loss 1.101" in reasons[0]
    assert "alpha = 3.77 is outside the plausible range [0.02, 2]" in reasons[1]


def test_fit_flags_is_one_line_naming_each_problem():
    from scaling.identify import fit_flags

    params = {"e": -634.5, "a": 42.1, "b": 5.0, "alpha": 3.77, "beta": 0.3, "gamma": 1.0, "lam": 0.0}
    text = fit_flags(_Fake(params, y=(1.101, 3.9)), {"lam": (-0.9, 0.8)})
    assert text.startswith("not identified: gamma (on bound), lam (not identified); degenerate: asymptote E = ")
    assert "\n" not in text
    ok = {"e": 0.5, "a": 5.0, "b": 5.0, "alpha": 0.3, "beta": 0.3, "gamma": 0.1, "lam": 0.02}
    assert fit_flags(_Fake(ok), {"gamma": (0.05, 0.15), "lam": (0.0, 0.04)}) == ""


def test_a_log_coefficient_known_only_within_a_huge_factor_is_not_identified():
    params = {"e": 0.5, "a": 5.0, "b": 5.0, "alpha": 0.3, "beta": 0.3, "gamma": 0.1, "lam": 0.02}
    status = {c.name: c.status for c in check_parameters(_Fake(params), {"e": (-22.6, 0.91), "a": (4.0, 6.0)})}
    assert status["e"] == "not identified" and status["a"] == "identified"
