"""Laws and user formulas: predictions against hand float64 math, exact Jacobians, safe parsing."""

import math

import numpy as np
import pytest

from scaling.errors import MoescaleError
from scaling.formula import parse_formula
from scaling.laws import LAWS, get_law
from scaling.objectives import COMPLEX_STEP

N = np.array([1e7, 3e8, 2e9, 7e10])
D = np.array([2e8, 6e9, 4e10, 1.4e12])


def test_chinchilla_matches_hand_math():
    law = get_law("chinchilla")
    p = {"e": math.log(1.69), "a": math.log(406.4), "b": math.log(410.7), "alpha": 0.34, "beta": 0.28}
    want = [1.69 + 406.4 * n**-0.34 + 410.7 * d**-0.28 for n, d in zip(N, D)]
    np.testing.assert_allclose(law.predict(p, {"N": N, "D": D}), want, rtol=1e-13)
    np.testing.assert_allclose(law.log_predict(p, {"N": N, "D": D}), np.log(want), rtol=1e-13)
    rep = law.report(p)
    assert rep["E"] == pytest.approx(1.69) and rep["A"] == pytest.approx(406.4) and rep["B"] == pytest.approx(410.7)


def test_moe_reduces_to_chinchilla_for_dense_and_matches_hand_math():
    moe, ch = get_law("moe"), get_law("chinchilla")
    base = {"e": 0.5, "a": 6.0, "b": 7.5, "alpha": 0.35, "beta": 0.37}
    dense = {"N": N, "D": D, "s": np.ones(4), "n_exp": np.ones(4)}
    np.testing.assert_allclose(moe.predict({**base, "gamma": 0.3, "lam": 0.1}, dense), ch.predict(base, {"N": N, "D": D}), rtol=1e-13)
    s, ne = np.array([1.0, 2.0, 8.0, 32.0]), np.array([1.0, 4.0, 16.0, 64.0])
    want = [math.exp(0.5) + math.exp(6.0) * n**-0.35 * si**-0.2 * ei**0.05 + math.exp(7.5) * d**-0.37
            for n, d, si, ei in zip(N, D, s, ne)]
    got = moe.predict({**base, "gamma": -0.2, "lam": 0.05}, {"N": N, "D": D, "s": s, "n_exp": ne})
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_clark_matches_hand_math():
    law = get_law("clark")
    p = dict(a=-0.083, b=-0.118, c=0.0099, d=1.11, p_start=1.05, p_max=7.9)
    E = np.array([1.0, 8.0, 64.0, 512.0])
    es, em = 2**1.05, 2**7.9
    want = []
    for n, e in zip(N, E):
        ehat = 1 / (1 / (e - 1 + 1 / (1 / es - 1 / em)) + 1 / em)
        want.append(10 ** (-0.083 * math.log10(n) - 0.118 * math.log10(ehat) + 0.0099 * math.log10(n) * math.log10(ehat) + 1.11))
    np.testing.assert_allclose(law.predict(p, {"N": N, "E": E}), want, rtol=1e-12)


@pytest.mark.parametrize(
    "name, p, X, hand",
    [
        ("power", dict(E=1.5, A=300.0, alpha=0.3), {"x": N}, lambda x: 1.5 + 300 * x**-0.3),
        ("power_pure", dict(a=math.log(0.1), alpha=0.5), {"x": N}, lambda x: 0.1 * x**0.5),
        ("exp_error", dict(eps=0.857, k=2.2065, gamma=0.7146), {"L": np.array([2.0, 3.0, 4.0])}, lambda L: 0.857 - 2.2065 * np.exp(-0.7146 * L)),
        ("sigmoid", dict(a=-0.6, k=3.0, x0=2.5, b=0.8), {"x": np.array([1.0, 2.5, 4.0])}, lambda x: -0.6 / (1 + np.exp(-3 * (x - 2.5))) + 0.8),
    ],
)
def test_simple_laws_match_hand_math(name, p, X, hand):
    law = get_law(name)
    np.testing.assert_allclose(law.predict(p, X), hand(next(iter(X.values()))), rtol=1e-13)


def test_krajewski_matches_hand_math():
    law = get_law("krajewski")
    p = dict(c=0.5, g=20.0, gamma=0.5, a=30.0, alpha=0.2, b=400.0, beta=0.25)
    G = np.array([1.0, 2.0, 8.0, 16.0])
    want = [0.5 + (20 / g**0.5 + 30) * n**-0.2 + 400 * d**-0.25 for n, d, g in zip(N, D, G)]
    np.testing.assert_allclose(law.predict(p, {"N": N, "D": D, "G": G}), want, rtol=1e-13)


@pytest.mark.parametrize("name", ["chinchilla", "moe"])
def test_analytic_jacobian_equals_complex_step(name):
    law = LAWS[name]
    rng = np.random.default_rng(0)
    X = law.prepared({"N": N, "D": D, "s": np.array([1.0, 2, 4, 8]), "n_exp": np.array([1.0, 4, 8, 64])})
    theta = rng.normal(size=(3, law.n_params)) * 0.3 + np.array([0.5, 6, 7, 0.35, 0.37, 0, 0][: law.n_params])
    T = [theta[:, j : j + 1] for j in range(law.n_params)]
    f, J = law.jacobian(T, X)
    np.testing.assert_allclose(f, law.model(T, X), rtol=1e-13)
    for j in range(law.n_params):
        Tc = list(T)
        Tc[j] = T[j] + 1j * COMPLEX_STEP
        np.testing.assert_allclose(J[j], np.imag(law.model(Tc, X)) / COMPLEX_STEP, rtol=1e-11, atol=1e-14)


def test_every_law_has_documented_equation_and_source():
    for law in LAWS.values():
        assert law.equation and law.citation and law.__doc__ and len(law.starts()) >= 1
        assert set(law.start_grid) <= set(law.params)


def test_chinchilla_grid_is_epochs_4500_starts():
    starts = get_law("chinchilla").starts()
    assert starts.shape == (4500, 5)


def test_formula_law_parameters_variables_and_values():
    law = get_law("E + A*N**-alpha + B*D**-beta", variables=["N", "D"])
    assert law.params == ("E", "A", "alpha", "B", "beta") and law.variables == ("N", "D")
    p = dict(E=1.69, A=406.4, alpha=0.34, B=410.7, beta=0.28)
    want = 1.69 + 406.4 * N**-0.34 + 410.7 * D**-0.28
    np.testing.assert_allclose(law.predict(p, {"N": N, "D": D}), want, rtol=1e-13)
    batch = law.predict(np.array([[1.69, 406.4, 0.34, 410.7, 0.28], [1.0, 1.0, 0.0, 0.0, 0.0]]), {"N": N, "D": D})
    np.testing.assert_allclose(batch[1], np.full(4, 2.0))
    f = get_law("a*exp(-k*x) + abs(c) + log10(x)", variables=["x"])
    np.testing.assert_allclose(f.predict({"a": 2.0, "k": 0.5, "c": -1.0}, {"x": np.array([1.0, 10.0])}),
                               [2 * math.exp(-0.5) + 1 + 0, 2 * math.exp(-5) + 1 + 1])


@pytest.mark.parametrize(
    "bad",
    ["__import__('os').system('true')", "N.real + A", "x[0] * a", "a if x else b", "lambda: 1", "open('f') * a",
     "a * 'str'", "exp(x, 2) * a", "(a, b)", "a +", "exp", "a == b"],
)
def test_formula_rejects_unsafe_or_invalid_input(bad):
    with pytest.raises(MoescaleError):
        parse_formula(bad, ["x", "N"])


def test_unknown_law_names_the_known_ones():
    with pytest.raises(MoescaleError, match="unknown law 'chinchila'.*chinchilla"):
        get_law("chinchila")


def test_derived_constants_of_a_runaway_fit_are_inf_not_an_overflow():
    from scaling.laws import get_law

    derived = get_law("moe").derived({"e": 800.0, "a": 1.0, "b": -2.0})
    assert derived["E"] == float("inf")
    assert derived["A"] == pytest.approx(2.718281828459045) and derived["B"] == pytest.approx(0.1353352832366127)
