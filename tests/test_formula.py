"""scaling.formula: user formulas parsed against a whitelist and evaluated, batched and complex-safe."""

import math
import re

import numpy as np
import pytest

from scaling.errors import MoescaleError
from scaling.formula import DEFAULT_VARIABLES, compile_formula, parse_formula


def _columns(*values):
    """One parameter set as the (1, 1) columns a model takes."""
    return [np.array([[float(v)]]) for v in values]


def test_names_split_into_parameters_and_variables_in_order_of_appearance():
    _, params, variables = parse_formula("E + A*N**-alpha + B*D**-beta")
    assert params == ("E", "A", "alpha", "B", "beta")
    assert variables == ("N", "D")
    assert set(variables) <= set(DEFAULT_VARIABLES)
    _, params, variables = parse_formula("a*q + b", variables=["q"])  # the caller names the variables
    assert params == ("a", "b") and variables == ("q",)


def test_chinchilla_formula_matches_the_hand_computed_value():
    f = compile_formula("E + A*N**-alpha + B*D**-beta")
    E, A, alpha, B, beta = 1.69, 406.4, 0.34, 410.7, 0.28
    N, D = np.array([1e9, 7e10]), np.array([2e10, 1.4e12])
    got = f.model(_columns(E, A, alpha, B, beta), {"N": N, "D": D})
    expected = [E + A * n**-alpha + B * d**-beta for n, d in zip(N, D)]
    assert got.shape == (1, 2)
    np.testing.assert_allclose(got[0], expected, rtol=1e-14)
    # 70B parameters, 1.4T tokens: 1.69 + 406.4/70e9^0.34 + 410.7/1.4e12^0.28 by hand
    assert got[0, 1] == pytest.approx(1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28, rel=1e-14)
    assert got[0, 1] == pytest.approx(1.9370, abs=1e-3)


def test_a_batch_of_parameter_sets_gives_one_row_each():
    f = compile_formula("a + b*log(x)")
    T = [np.array([[1.0], [2.0], [0.0]]), np.array([[0.5], [1.0], [-1.0]])]
    got = f.model(T, {"x": np.array([1.0, math.e, math.e**2])})
    np.testing.assert_allclose(got, [[1.0, 1.5, 2.0], [2.0, 3.0, 4.0], [0.0, -1.0, -2.0]], rtol=1e-15, atol=1e-15)


def test_explicit_variables_keep_the_callers_order():
    f = compile_formula("c + k*G + m*N", variables=("N", "G"))
    assert f.variables == ("N", "G") and f.params == ("c", "k", "m")
    got = f.model(_columns(1.0, 2.0, 3.0), {"N": np.array([10.0]), "G": np.array([4.0])})
    assert got[0, 0] == 1.0 + 2.0 * 4.0 + 3.0 * 10.0


def test_a_formula_without_variables_broadcasts_to_one_point():
    f = compile_formula("a*2")
    assert f.variables == () and f.model(_columns(3.0), {}).tolist() == [[6.0]]


def test_functions_are_complex_safe_so_complex_step_gives_exact_derivatives():
    # d/da |a*x| = sign(a*x)*x; np.abs of a complex number would lose the sign
    f = compile_formula("abs(a*x)")
    h = 1e-30
    for a, x, slope in ((-2.0, 3.0, -3.0), (2.0, 3.0, 3.0)):
        T = [np.array([[a + 1j * h]])]
        assert np.imag(f.model(T, {"x": np.array([x])}))[0, 0] / h == pytest.approx(slope, rel=1e-15)
    # d/dk exp(-k*L) = -L*exp(-k*L)
    f = compile_formula("exp(-k*L)")
    T = [np.array([[0.5 + 1j * h]])]
    assert np.imag(f.model(T, {"L": np.array([2.0])}))[0, 0] / h == pytest.approx(-2.0 * math.exp(-1.0), rel=1e-14)


def test_start_grid_is_three_values_per_parameter_or_two_beyond_six():
    assert compile_formula("a + b*x").start_grid == {"a": (-0.5, 0.5, 2.0), "b": (-0.5, 0.5, 2.0)}
    many = compile_formula("a + b*x + c*x**2 + d*x**3 + e*x**4 + f*x**5 + g*x**6")
    assert len(many.params) == 7 and all(v == (0.5, 2.0) for v in many.start_grid.values())


@pytest.mark.parametrize(
    "text, message",
    [
        ("E + A*N**", "does not parse"),
        ("N.real + a", "Attribute is not allowed"),
        ("np.exp(N) + a", "only one-argument calls"),
        ("a[0] + N", "Subscript is not allowed"),
        ("a + 'N'", "only numeric constants"),
        ("a + True*N", "only numeric constants"),
        ("sin(N) + a", "only one-argument calls"),
        ("exp(N, a)", "only one-argument calls"),
        ("a + _x*N", "'_x' cannot be a parameter or variable name"),
        ("exp + N", "'exp' cannot be a parameter or variable name"),
        ("N*D", "has no free parameters (variables: N, D)"),
        ("a if N else b", "IfExp is not allowed"),
    ],
)
def test_anything_outside_the_whitelist_is_refused_with_the_reason(text, message):
    with pytest.raises(MoescaleError, match=re.escape(message)):
        compile_formula(text)
