"""Objectives, exact gradients and the batched optimizer, checked against finite differences and scipy."""

import math

import numpy as np
import pytest
from scipy.optimize import approx_fprime, minimize
from scipy.special import huber

from scaling.laws import get_law
from scaling.objectives import LossProblem, Objective
from scaling.optimize import BEHIND, MERGED, distinct_best, dominated, minimize_batch, polish

rng = np.random.default_rng(1)
N = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 40))
D = N * np.exp(rng.uniform(np.log(5), np.log(100), 40))
Y = (1.8 + 480 * N**-0.35 + 2100 * D**-0.37) * np.exp(rng.normal(0, 0.01, 40))


def test_objective_values_match_scipy_and_numpy():
    r = rng.normal(0, 0.003, (2, 40))
    w = rng.integers(0, 3, 40).astype(float)
    val, _ = Objective("huber", 1e-3).value_dr(r, w)
    np.testing.assert_allclose(val, (w * huber(1e-3, r)).sum(axis=1), rtol=1e-12)
    val, _ = Objective("mse-log10").value_dr(r, w)
    np.testing.assert_allclose(val, (w * (r / math.log(10)) ** 2).sum(axis=1) / w.sum(), rtol=1e-12)


CASES = [
    ("chinchilla", "huber", {"N": N, "D": D}, None),
    ("chinchilla", "mse", {"N": N, "D": D}, {"e": 0.6}),
    ("moe", "mse-log", {"N": N, "D": D, "s": np.ones(40) * 4, "n_exp": np.ones(40) * 8}, {"lam": 0.0}),
    ("clark", "mse-log10", {"N": N, "E": np.round(np.exp(rng.uniform(0, 5, 40)))}, None),
    ("E + A*N**-alpha + B*D**-beta", "huber", {"N": N, "D": D}, None),
    ("power", "mse", {"x": N}, None),
]


@pytest.mark.parametrize("law_name, loss, X, fix", CASES)
def test_gradient_matches_finite_differences(law_name, loss, X, fix):
    law = get_law(law_name, variables=list(X))
    w = rng.integers(0, 3, (2, 40)).astype(float)
    prob = LossProblem(law, X, Y, Objective(loss, 1e-2), weights=w, fixed=fix)
    base = {"e": 0.55, "a": 6.0, "b": 7.6, "alpha": 0.33, "beta": 0.36, "gamma": 0.1, "lam": 0.05,
            "c": 0.01, "d": 1.1, "p_start": 1.0, "p_max": 8.0, "E": 1.7, "A": 450.0, "B": 2000.0}
    if law_name == "clark":
        base.update(a=-0.08, b=-0.12)
    if law_name == "power":
        base.update(A=30.0, alpha=0.2)
    theta = np.array([[base[p] for p in prob.free]] * 2) * np.array([[1.0], [1.02]])
    val, grad = prob.value_grad(theta, np.array([0, 1]))
    for row in range(2):
        f = lambda t, row=row: prob.value_grad(t[None, :], np.array([row]), need_grad=False)[0][0]
        assert val[row] == pytest.approx(f(theta[row]), rel=1e-14)
        eps = 1e-7 * np.maximum(np.abs(theta[row]), 1.0)
        fd = np.array([(f(theta[row] + e) - f(theta[row] - e)) / (2 * e[j]) for j, e in enumerate(np.diag(eps))])
        np.testing.assert_allclose(grad[row], fd, rtol=2e-5, atol=1e-9 * max(1.0, np.abs(fd).max()))


def test_batched_optimizer_finds_the_same_minima_as_a_scipy_loop():
    law = get_law("chinchilla")
    prob = LossProblem(law, {"N": N, "D": D}, Y, Objective("mse-log"))
    starts = law.starts({"e": [0.0, 1.0], "a": [0.0, 10.0], "b": [5.0, 20.0], "alpha": [0.5], "beta": [0.5, 1.0]})
    res = minimize_batch(prob.value_grad, starts)
    assert res.converged.all()

    def fg(t):
        v, g = prob.value_grad(t[None, :], np.array([0]))
        return v[0], g[0]

    ref = np.array([minimize(fg, s, jac=True, method="L-BFGS-B", options={"ftol": 1e-12, "gtol": 1e-10, "maxiter": 1000}).fun
                    for s in starts])
    # The surface is not convex: a start may fall in another basin in either method, so compare
    # the best minimum (to 1e-9) and require the batch to be as good as scipy from most starts.
    assert res.fun.min() == pytest.approx(ref.min(), rel=1e-9)
    assert np.mean(res.fun <= ref * (1 + 1e-7)) >= 0.75
    best = polish(prob.value_grad, res.x[res.best()], prob.lower, prob.upper)
    assert best.fun <= res.fun.min()


def test_bounds_are_respected_and_active_bound_is_reached():
    # Minimum of (t - 3)^2 + (u + 1)^2 on [0, 2] x [0, 5] is at (2, 0).
    def fun(x, rows, need_grad):
        return (x[:, 0] - 3) ** 2 + (x[:, 1] + 1) ** 2, np.stack([2 * (x[:, 0] - 3), 2 * (x[:, 1] + 1)], axis=1)

    res = minimize_batch(fun, np.array([[0.5, 4.0], [1.9, 0.1], [0.0, 0.0]]), [0.0, 0.0], [2.0, 5.0])
    np.testing.assert_allclose(res.x, [[2.0, 0.0]] * 3, atol=1e-12)
    assert res.converged.all()


def test_non_finite_starts_are_marked_invalid():
    def fun(x, rows, need_grad):
        v = np.where(x[:, 0] > 0, (x[:, 0] - 1) ** 2, np.inf)
        return v, (2 * (x[:, :1] - 1))

    res = minimize_batch(fun, np.array([[-1.0], [3.0]]))
    assert not res.converged[0] and res.converged[1] and res.x[1, 0] == pytest.approx(1.0)


def test_each_start_runs_as_if_alone():
    # Starts finish at different iterations and leave the compacted running set; the others
    # must not notice: a start's result is the same in the batch as on its own.
    law = get_law("chinchilla")
    prob = LossProblem(law, {"N": N, "D": D}, Y, Objective("huber", 1e-3))
    starts = law.starts({"e": [0.0, 1.0], "a": [0.0, 10.0], "b": [5.0, 20.0], "alpha": [0.5], "beta": [0.5, 1.5]})
    res = minimize_batch(prob.value_grad, starts, ftol=1e-9, max_iter=300)
    assert len(set(res.n_iter)) > 1
    for i, s in enumerate(starts):
        one = minimize_batch(prob.value_grad, s[None, :], ftol=1e-9, max_iter=300)
        assert one.status[0] == res.status[i] and one.n_iter[0] == res.n_iter[i]
        np.testing.assert_allclose(one.x[0], res.x[i], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, X", [("chinchilla", {"N": N, "D": D}),
                                     ("moe", {"N": N, "D": D, "s": np.full(40, 4.0), "n_exp": np.full(40, 8.0)})])
def test_vjp_is_the_jacobian_transpose_product(name, X):
    law = get_law(name)
    Xp = law.prepared(X)
    theta = np.array([[0.5, 6.0, 7.0, 0.35, 0.37, 0.1, 0.05][: law.n_params]]) * np.array([[1.0], [1.03]])
    T = [theta[:, j : j + 1] for j in range(law.n_params)]
    v = rng.normal(size=(2, 40))
    f, pull = law.vjp(T, Xp)
    f_ref, J = law.jacobian(T, Xp)
    np.testing.assert_allclose(f, f_ref, rtol=1e-14)
    np.testing.assert_allclose(pull(v), np.stack([(v * j).sum(axis=1) for j in J], axis=1), rtol=1e-11, atol=1e-13)


def test_dominated_keeps_the_lowest_start_of_each_cell():
    # Reference: group the rows by their cell with a dict, keep the lowest f (earliest on a tie).
    x = rng.uniform(-1, 1, (400, 3))
    f = np.round(rng.uniform(0, 1, 400), 2)  # ties on purpose
    side = np.array([0.5, 0.25, 1.0])
    keeper = {}
    for i, row in enumerate(x):
        cell = tuple(math.floor(v / s) for v, s in zip(row, side))
        if cell not in keeper or f[i] < f[keeper[cell]]:
            keeper[cell] = i
    expected = np.ones(400, dtype=bool)
    expected[list(keeper.values())] = False
    got = dominated(x, f, side)
    np.testing.assert_array_equal(got, expected)
    assert 0 < got.sum() < 400


def _two_basins(x, rows, need_grad):
    """f = (x0² − 1)² + 0.3·x0 + (x1 − 0.5)² + 1: minima near x0 = −1.04 (global, f ≈ 0.69) and x0 = 0.96 (f ≈ 1.29)."""
    u = x[:, 0] ** 2 - 1
    val = u**2 + 0.3 * x[:, 0] + (x[:, 1] - 0.5) ** 2 + 1.0
    return val, np.stack([4 * x[:, 0] * u + 0.3, 2 * (x[:, 1] - 0.5)], axis=1)


def test_pruned_multi_start_finds_the_same_minimum_with_fewer_iterations():
    starts = np.array(np.meshgrid(np.linspace(-2, 2, 21), np.linspace(-2, 2, 21))).reshape(2, -1).T
    full = minimize_batch(_two_basins, starts, gtol=1e-12)
    pruned = minimize_batch(_two_basins, starts, gtol=1e-12, prune=True)
    assert full.converged.all() and not full.pruned.any()
    assert pruned.pruned.sum() > 200 and (pruned.converged | pruned.pruned).all()
    assert pruned.n_iter.sum() < 0.8 * full.n_iter.sum()
    # The global minimum is reached at the same point as without pruning.
    i_full, i_pruned = full.best(), pruned.best()
    assert pruned.converged[i_pruned] and pruned.fun[i_pruned] == pytest.approx(full.fun[i_full], rel=1e-12)
    np.testing.assert_allclose(pruned.x[i_pruned], full.x[i_full], atol=1e-6)
    # A start that fell behind is never a candidate for the polish; merged ones may be.
    assert all(pruned.status[i] != BEHIND for i in distinct_best(pruned, 5))
    assert (pruned.status == MERGED).any()
    again = minimize_batch(_two_basins, starts, gtol=1e-12, prune=True)
    np.testing.assert_array_equal(again.x, pruned.x)
    np.testing.assert_array_equal(again.status, pruned.status)


def _plateau(x, rows, need_grad):
    """f = 1 + x²/(1 + x²): the minimum 1 at x = 0, and a plateau rising to 2 where the gradient ~ 2/x³."""
    u = x[:, 0] ** 2
    return 1 + u / (1 + u), 2 * x[:, :1] / (1 + x[:, :1] ** 2) ** 2


def test_starts_crawling_on_a_plateau_fall_behind():
    # Starts far out crawl (f near 2, decreases ~1e-5 an iteration) and would need far more than
    # max_iter iterations to reach the best start's f = 1: they are stopped as BEHIND.
    starts = np.linspace(-40, 40, 81)[:, None]
    full = minimize_batch(_plateau, starts, max_iter=500)
    pruned = minimize_batch(_plateau, starts, max_iter=500, prune=True)
    assert (full.status == 3).sum() > 50  # MAX_ITER: without pruning they run to the limit
    behind = pruned.status == BEHIND
    assert behind.sum() > 50 and (np.abs(starts[behind, 0]) >= 3).all() and (pruned.fun[behind] > 1.85).all()
    assert pruned.n_iter.sum() < 0.05 * full.n_iter.sum()
    assert pruned.fun[pruned.best()] == pytest.approx(1.0, abs=1e-20) and full.fun.min() == pytest.approx(1.0, abs=1e-20)
    assert not set(np.flatnonzero(behind)) & set(distinct_best(pruned, 5))
