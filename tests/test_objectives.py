"""scaling.objectives: objective values and gradients against independent float64 references.

Values are recomputed from the law's predictions with plain numpy; gradients are checked
against central finite differences of the objective value.
"""

import math

import numpy as np
import pytest

from scaling.errors import MoescaleError
from scaling.laws import get_law
from scaling.objectives import LOSSES, LossProblem, Objective

RNG = np.random.default_rng(0)
N = np.geomspace(1e8, 1e10, 12)
D = np.geomspace(2e9, 2e11, 12)[RNG.permutation(12)]
CHIN = get_law("chinchilla")
CHIN_THETA = np.array([0.5, 6.0, 7.0, 0.34, 0.28])  # e, a, b, alpha, beta
Y = CHIN.predict(CHIN_THETA, {"N": N, "D": D}) * np.exp(RNG.normal(0, 0.01, N.size))


def _huber(r, delta):
    return np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))


def _fd_grad(problem, theta, h=1e-6):
    """Central finite differences of the objective value, float64."""
    grad = np.zeros_like(theta)
    for j in range(theta.size):
        step = h * max(1.0, abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += step
        down[j] -= step
        grad[j] = (problem.value(up) - problem.value(down)) / (2 * step)
    return grad


def test_objective_names_and_delta_are_checked():
    assert LOSSES == ("huber", "mse", "mse-log", "mse-log10")
    with pytest.raises(MoescaleError, match="unknown loss 'l1'"):
        Objective("l1")
    with pytest.raises(MoescaleError, match="huber delta must be > 0, got 0"):
        Objective("huber", 0.0)
    assert Objective("mse").space == "linear" and Objective("mse-log").space == "log"


def test_value_dr_matches_the_formulas_and_its_derivative():
    r = np.array([[-0.3, -1e-3, 2e-4, 0.05, 0.0]])
    w = np.array([1.0, 2.0, 1.0, 3.0, 1.0])
    val, dr = Objective("huber", 1e-2).value_dr(r, w)
    assert val[0] == pytest.approx(np.sum(w * _huber(r[0], 1e-2)), rel=1e-14)
    np.testing.assert_allclose(dr[0], w * np.clip(r[0], -1e-2, 1e-2), rtol=1e-14)
    for name, scale in (("mse", 1.0), ("mse-log", 1.0), ("mse-log10", 1 / math.log(10) ** 2)):
        val, dr = Objective(name).value_dr(r, w)
        assert val[0] == pytest.approx(scale * np.sum(w * r[0] ** 2) / w.sum(), rel=1e-14)
        np.testing.assert_allclose(dr[0], 2 * scale * w * r[0] / w.sum(), rtol=1e-14)
    # d value / d r by central differences, away from Huber's kinks at |r| = delta
    for obj in (Objective("huber", 0.1), Objective("mse-log10")):
        h = 1e-7
        for j in range(r.shape[1]):
            up, down = r.copy(), r.copy()
            up[0, j] += h
            down[0, j] -= h
            fd = (obj.value_dr(up, w)[0][0] - obj.value_dr(down, w)[0][0]) / (2 * h)
            assert obj.value_dr(r, w)[1][0, j] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_huber_value_is_the_sum_over_points_of_log_residuals():
    problem = LossProblem(CHIN, {"N": N, "D": D}, Y, Objective("huber", 1e-3))
    theta = CHIN_THETA + [0.05, -0.1, 0.1, 0.01, -0.01]
    r = np.log(Y) - np.log(CHIN.predict(theta, {"N": N, "D": D}))
    assert problem.value(theta) == pytest.approx(np.sum(_huber(r, 1e-3)), rel=1e-12)


@pytest.mark.parametrize(
    "law, theta, loss, y_of",
    [
        # log law (analytic vjp), log objective
        ("chinchilla", CHIN_THETA + [0.05, -0.1, 0.1, 0.01, -0.01], "huber", None),
        # log law, linear objective: the prediction goes through exp
        ("chinchilla", CHIN_THETA + [0.05, -0.1, 0.1, 0.01, -0.01], "mse", None),
        # linear law without a Jacobian (complex step), log objective: the prediction goes through log
        ("power", np.array([1.5, 80.0, 0.25]), "mse-log", "power"),
        ("power", np.array([1.5, 80.0, 0.25]), "mse-log10", "power"),
    ],
)
def test_gradient_matches_central_finite_differences(law, theta, loss, y_of):
    law = get_law(law)
    if y_of == "power":
        X = {"x": N}
        y = 1.8 + 60.0 * N**-0.2 * np.exp(RNG.normal(0, 0.01, N.size))
    else:
        X, y = {"N": N, "D": D}, Y
    problem = LossProblem(law, X, y, Objective(loss, 1e-3))
    val, grad = problem.value_grad(theta[None, :])
    assert val[0] == pytest.approx(problem.value(theta), rel=1e-14)
    np.testing.assert_allclose(grad[0], _fd_grad(problem, theta), rtol=2e-5, atol=1e-8 * max(1.0, abs(val[0])))


def test_fixed_parameters_and_weights():
    weights = RNG.integers(0, 3, N.size).astype(float)
    problem = LossProblem(CHIN, {"N": N, "D": D}, Y, Objective("mse-log"), weights=weights, fixed={"e": 0.5})
    assert problem.free == ("a", "b", "alpha", "beta") and problem.k == 4
    theta = np.array([6.2, 6.8, 0.35, 0.27])
    full = problem.full(theta[None, :])[0]
    assert full.tolist() == [0.5, *theta.tolist()]
    r = np.log(Y) - np.log(CHIN.predict(full, {"N": N, "D": D}))
    assert problem.value(theta) == pytest.approx(np.sum(weights * r**2) / weights.sum(), rel=1e-12)
    _, grad = problem.value_grad(theta[None, :])
    np.testing.assert_allclose(grad[0], _fd_grad(problem, theta), rtol=2e-5, atol=1e-10)
    with pytest.raises(MoescaleError, match="cannot fix zeta"):
        LossProblem(CHIN, {"N": N, "D": D}, Y, Objective("mse-log"), fixed={"zeta": 1.0})


def test_per_row_weights_select_a_row_per_batch_member():
    problem = LossProblem(CHIN, {"N": N, "D": D}, Y, Objective("huber"))
    W = np.stack([np.ones(N.size), np.r_[np.zeros(6), np.ones(6)]])
    boot = problem.with_weights(W)
    thetas = np.stack([CHIN_THETA, CHIN_THETA + 0.01])
    val, _ = boot.value_grad(thetas, rows=np.array([1, 0]))
    r1 = np.log(Y) - np.log(CHIN.predict(thetas[0], {"N": N, "D": D}))
    r2 = np.log(Y) - np.log(CHIN.predict(thetas[1], {"N": N, "D": D}))
    assert val[0] == pytest.approx(np.sum(W[1] * _huber(r1, 1e-3)), rel=1e-12)
    assert val[1] == pytest.approx(np.sum(_huber(r2, 1e-3)), rel=1e-12)
    assert problem.weights.ndim == 1  # with_weights copies


def test_sheared_coordinates_round_trip_and_chain_the_gradient():
    problem = LossProblem(CHIN, {"N": N, "D": D}, Y, Objective("huber"))
    assert problem.shear[1, 3] == pytest.approx(np.log(N).mean())  # a = z_a + mean(log N)·z_alpha
    theta = CHIN_THETA[None, :]
    z = problem.to_z(theta)
    np.testing.assert_allclose(problem.from_z(z), theta, rtol=1e-12)
    val_z, grad_z = problem.value_grad_z(z)
    val, grad = problem.value_grad(theta)
    assert val_z[0] == pytest.approx(val[0], rel=1e-12)
    np.testing.assert_allclose(grad_z, grad @ problem.shear, rtol=1e-12)


def test_a_large_batch_is_evaluated_in_blocks_with_the_same_result():
    n = 2000  # block = 32768 // 2000 = 16 rows
    x = np.geomspace(1e8, 1e11, n)
    y = 1.8 + 60.0 * x**-0.2
    problem = LossProblem(get_law("power"), {"x": x}, y, Objective("mse"))
    thetas = np.column_stack([np.linspace(1.0, 2.0, 40), np.full(40, 60.0), np.linspace(0.1, 0.3, 40)])
    val, grad = problem.value_grad(thetas)
    for i in (0, 17, 39):
        v1, g1 = problem.value_grad(thetas[i : i + 1])
        assert val[i] == pytest.approx(v1[0], rel=1e-13)
        np.testing.assert_allclose(grad[i], g1[0], rtol=1e-12)


def test_a_non_finite_objective_is_inf_with_a_zero_gradient():
    # E = -10 makes the power law's prediction negative: its log is NaN
    problem = LossProblem(get_law("power"), {"x": N}, 1.8 + 60.0 * N**-0.2, Objective("mse-log"))
    val, grad = problem.value_grad(np.array([[-10.0, 1.0, 0.5], [1.5, 60.0, 0.2]]))
    assert val[0] == np.inf and np.all(grad[0] == 0.0)
    assert np.isfinite(val[1]) and np.isfinite(grad[1]).all()
    assert problem.value(np.array([-10.0, 1.0, 0.5])) == np.inf
