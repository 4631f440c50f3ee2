"""scaling.allocation against independent references: a numeric minimisation
of L(N, C/(6N)) with scipy, the closed form on exact synthetic profiles, and
brute force over the training curves / grids."""

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from scaling.allocation import (
    chinchilla_optimum,
    envelope_minima,
    isoflop_minima,
    optimal_sparsity,
    scaling_exponents,
)
from scaling.budgets import budget_groups
from scaling.errors import MoescaleError

# Epoch AI's replication of Chinchilla (Besiroglu et al. 2024) and Hoffmann et al.'s own fit.
EPOCH = {"E": 1.8172, "A": 477.84, "B": 2143.86, "alpha": 0.3473, "beta": 0.3672}
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(p, N, D):
    return p["E"] + p["A"] * N ** -p["alpha"] + p["B"] * D ** -p["beta"]


def numeric_optimum(p, C):
    """argmin over ln N of L(N, C/(6N)), by scipy's bounded scalar minimiser."""
    res = optimize.minimize_scalar(
        lambda x: chinchilla_loss(p, np.exp(x), C / (6 * np.exp(x))),
        bounds=(np.log(1e3), np.log(C / 6 / 1e3)),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return np.exp(res.x)


@pytest.mark.parametrize("p", [EPOCH, HOFFMANN])
def test_chinchilla_optimum_matches_numeric_minimum(p):
    C = np.array([1e18, 5.76e23, 1e26])
    out = chinchilla_optimum(p, C)
    ref = np.array([numeric_optimum(p, c) for c in C])
    np.testing.assert_allclose(out.N_opt, ref, rtol=1e-6)
    np.testing.assert_allclose(out.N_opt * out.D_opt * 6, C, rtol=1e-12)
    np.testing.assert_allclose(out.loss, chinchilla_loss(p, out.N_opt, out.D_opt), rtol=1e-12)
    # exponents a = beta/(alpha+beta): log-slope of N_opt across C
    slope = np.diff(np.log(out.N_opt)) / np.diff(np.log(C))
    np.testing.assert_allclose(slope, p["beta"] / (p["alpha"] + p["beta"]), rtol=1e-12)


def test_chinchilla_optimum_log_params_and_scalar():
    logp = {"e": np.log(1.8172), "a": np.log(477.84), "b": np.log(2143.86), "alpha": 0.3473, "beta": 0.3672}
    out = chinchilla_optimum(logp, 5.76e23)
    assert len(out) == 1
    # Hand calculation: G = (165.954 / 787.225)^(1/0.7145) = exp(-1.55682 / 0.7145) = 0.11317,
    # N_opt = G * (9.6e22)^(0.3672/0.7145) = 0.11317 * exp(27.1965) = 7.33e10,
    # D_opt = 9.6e22 / 7.33e10 = 1.31e12: about 18 tokens per parameter at
    # Chinchilla's budget (5.76e23 FLOPs) under Epoch's fit
    G = (0.3473 * 477.84 / (0.3672 * 2143.86)) ** (1 / (0.3473 + 0.3672))
    assert G == pytest.approx(0.11317, abs=1e-5)
    assert out.N_opt[0] == pytest.approx(7.33e10, rel=2e-3)
    assert out.D_opt[0] == pytest.approx(1.31e12, rel=2e-3)
    assert out.tokens_per_param[0] == pytest.approx(17.9, abs=0.05)


def test_chinchilla_optimum_bad_params():
    with pytest.raises(MoescaleError, match="lack 'beta'"):
        chinchilla_optimum({"E": 1, "A": 1, "B": 1, "alpha": 0.3}, 1e20)
    with pytest.raises(MoescaleError, match="alpha = -0.1"):
        chinchilla_optimum(EPOCH | {"alpha": -0.1}, 1e20)
    with pytest.raises(MoescaleError, match="C must be finite"):
        chinchilla_optimum(EPOCH, [1e20, 0.0])


def isoflop_profiles(p, budgets, span, k, shift=0.13):
    """Exact Chinchilla isoFLOP profiles: k sizes log-spaced over +-span decades
    around the true optimum, offset by `shift` decades so no point sits on it."""
    rows = []
    for C in budgets:
        Nopt = numeric_optimum(p, C)
        for N in Nopt * np.logspace(-span, span, k) * 10**shift:
            rows.append({"C": C, "N": N, "loss": chinchilla_loss(p, N, C / (6 * N))})
    return pd.DataFrame(rows)


def test_isoflop_parabola_is_biased_on_asymmetric_profile_smooth_is_not():
    # Hoffmann's alpha=0.34 != beta=0.28 makes the profile asymmetric in ln N;
    # sampled over +-2 decades (15 sizes) a global parabola misplaces the minimum.
    budgets = [1e19, 1e21, 1e23]
    df = isoflop_profiles(HOFFMANN, budgets, span=2.0, k=15)
    truth = chinchilla_optimum(HOFFMANN, budgets).N_opt.to_numpy()
    par = isoflop_minima(df, method="parabola")
    smo = isoflop_minima(df, method="spline")
    aki = isoflop_minima(df, method="smooth")
    err_par = np.abs(np.log(par.N_opt.to_numpy() / truth))
    err_smo = np.abs(np.log(smo.N_opt.to_numpy() / truth))
    err_aki = np.abs(np.log(aki.N_opt.to_numpy() / truth))
    assert np.all(err_par > 0.10)  # > 10% off (about 13%)
    assert np.all(err_smo < 1e-3)
    # Akima: within half a step of its fine grid (25 points per interval of ln N)
    step = (np.log(10) * 4 / 14) / 25
    assert np.all(err_aki < 0.5 * step + 1e-3) and np.all(err_aki < err_par / 10)
    assert not smo.at_edge.any() and not aki.at_edge.any()
    np.testing.assert_allclose(smo.D_opt * smo.N_opt * 6, budgets, rtol=1e-12)
    # the spline's loss at its minimum is the true minimum loss
    true_loss = chinchilla_optimum(HOFFMANN, budgets).loss.to_numpy()
    np.testing.assert_allclose(smo.loss_opt, true_loss, rtol=1e-5)  # spline error ~2e-6
    # on a symmetric profile (alpha = beta, A = B) both are close
    sym = HOFFMANN | {"beta": 0.34, "B": 406.4}
    df = isoflop_profiles(sym, budgets, span=0.5, k=9, shift=0.0)
    truth = chinchilla_optimum(sym, budgets).N_opt.to_numpy()
    np.testing.assert_allclose(isoflop_minima(df, method="parabola").N_opt, truth, rtol=2e-3)


def test_isoflop_parabola_hand_example():
    # loss = 2 + 0.5 (ln N - ln 1e8)^2 exactly: vertex at N = 1e8
    N = np.array([1e7, 3e7, 1e8, 3e8, 1e9])
    df = pd.DataFrame({"C": 1e18, "N": N, "loss": 2 + 0.5 * (np.log(N) - np.log(1e8)) ** 2})
    for method in ("parabola", "spline", "smooth"):
        out = isoflop_minima(df, method=method)
        if method == "smooth":  # the Akima curve is no parabola: within one step of its fine grid
            assert abs(np.log(out.N_opt[0] / 1e8)) <= np.log(np.sqrt(10)) / 25 + 1e-12
            assert out.loss_opt[0] == pytest.approx(2.0, abs=2e-3)
            continue
        assert out.N_opt[0] == pytest.approx(1e8, rel=1e-6)
        assert out.loss_opt[0] == pytest.approx(2.0, abs=1e-9)
        assert out.n_points[0] == 5


def test_isoflop_edge_duplicates_and_errors():
    df = pd.DataFrame({"C": 1.0, "N": [1e7, 1e8, 1e8, 1e9], "loss": [3.0, 2.5, 2.7, 2.4]})
    out = isoflop_minima(df, method="smooth")
    assert out.n_points[0] == 3  # the two 1e8 runs are averaged
    assert bool(out.at_edge[0])
    with pytest.warns(UserWarning, match="C = 1 \\(2 distinct sizes\\)"), pytest.raises(MoescaleError, match="no budget has 3"):
        isoflop_minima(df.iloc[:2])
    with pytest.raises(MoescaleError, match="method must be"):
        isoflop_minima(df, method="cubic")
    with pytest.raises(MoescaleError, match="no column 'flops'"):
        isoflop_minima(df, budget="flops")
    with pytest.raises(MoescaleError, match="column 'N' row 0 is not > 0"):
        isoflop_minima(df.assign(N=[0.0, 1e8, 1e8, 1e9]))


def test_scaling_exponents_recover_closed_form():
    budgets = np.logspace(18, 24, 7)
    df = isoflop_profiles(EPOCH, budgets, span=1.0, k=11)
    minima = isoflop_minima(df, method="spline")
    exps = scaling_exponents(minima)
    a = EPOCH["beta"] / (EPOCH["alpha"] + EPOCH["beta"])
    assert exps.loc["N_opt", "exponent"] == pytest.approx(a, abs=1e-4)
    assert exps.loc["D_opt", "exponent"] == pytest.approx(1 - a, abs=1e-4)
    # b = 1 - a identically when D_opt = C / (6 N_opt)
    assert exps.loc["N_opt", "exponent"] + exps.loc["D_opt", "exponent"] == pytest.approx(1.0, abs=1e-12)
    G = (EPOCH["alpha"] * EPOCH["A"] / (EPOCH["beta"] * EPOCH["B"])) ** (1 / (EPOCH["alpha"] + EPOCH["beta"]))
    # N_opt = G (C/6)^a = (G 6^-a) C^a
    assert exps.loc["N_opt", "coefficient"] == pytest.approx(G * 6**-a, rel=1e-3)
    assert exps.loc["N_opt", "exponent_lo"] <= a <= exps.loc["N_opt", "exponent_hi"]
    assert exps.loc["N_opt", "n_points"] == 7


def chinchilla_curves(p, sizes, steps=40):
    rows = []
    for i, N in enumerate(sizes):
        for D in np.logspace(np.log10(N), np.log10(N) + 2.5, steps):  # 1 to ~300 tokens/param
            rows.append({"run_id": f"r{i}", "N": N, "tokens": D, "loss": chinchilla_loss(p, N, D)})
    return pd.DataFrame(rows)


def test_envelope_minima_matches_brute_force_and_exponent():
    sizes = np.logspace(7, 10, 31)  # 0.1-decade spacing
    curves = chinchilla_curves(EPOCH, sizes)
    env = envelope_minima(curves, n_grid=40)
    assert (env.n_runs >= 2).all()
    # brute force at each grid C: the size whose curve covers C with the lowest loss
    for _, row in env.iloc[::7].iterrows():
        C = row.C
        D = C / (6 * sizes)
        inside = (D >= sizes * (1 - 1e-9)) & (D <= sizes * 10**2.5 * (1 + 1e-9))
        # interpolation error of the curves is tiny at 40 points/run; compare with the exact law
        best = sizes[inside][np.argmin(chinchilla_loss(EPOCH, sizes[inside], D[inside]))]
        assert row.N_opt == pytest.approx(best, rel=1e-12)
        assert row.D_opt == pytest.approx(C / (6 * row.N_opt), rel=1e-3)
    # in the interior (away from the grid's ends) the envelope follows N_opt ~ C^a
    mid = env[(env.C > 1e18) & (env.C < 1e21)]
    exps = scaling_exponents(mid)
    a = EPOCH["beta"] / (EPOCH["alpha"] + EPOCH["beta"])
    assert exps.loc["N_opt", "exponent"] == pytest.approx(a, abs=0.02)


def test_envelope_minima_flops_column_and_errors():
    curves = chinchilla_curves(EPOCH, [1e8, 1e9])
    with_flops = curves.assign(F=6 * curves.N * curves.tokens)
    a = envelope_minima(curves, n_grid=10)
    b = envelope_minima(with_flops, flops="F", n_grid=10)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(MoescaleError, match="no column 'run_id'"):
        envelope_minima(curves.drop(columns="run_id"))
    with pytest.raises(MoescaleError, match="need 3"):
        envelope_minima(curves, min_runs=3)


class StubMoeLaw:
    """log L = LSE(a - alpha ln N + gamma ln s + lam ln n_exp, b - beta ln D, e)."""

    name = "moe"
    variables = ("N", "s", "n_exp", "D")

    @staticmethod
    def predict(p, X):
        t1 = p["a"] - p["alpha"] * np.log(X["N"]) + p["gamma"] * np.log(X["s"]) + p["lam"] * np.log(X["n_exp"])
        t2 = p["b"] - p["beta"] * np.log(X["D"])
        return np.exp(np.logaddexp(np.logaddexp(t1, t2), p["e"]))


class StubResult:
    law = StubMoeLaw()
    params = {"e": 0.5, "a": 6.0, "b": 7.0, "alpha": 0.35, "beta": 0.37, "gamma": 0.12, "lam": 0.02}


def moe_loss(N, s, C, top_k=1, f=0.0):
    p = StubResult.params
    NA = N * (f + (1 - f) / s)
    D = C / (6 * NA)
    return (
        np.exp(p["e"])
        + np.exp(p["a"]) * N ** -p["alpha"] * s ** p["gamma"] * (s * top_k) ** p["lam"]
        + np.exp(p["b"]) * D ** -p["beta"]
    )


def test_optimal_sparsity_grid_matches_brute_force_and_scipy():
    Ngrid = np.logspace(8, 11, 61)
    sgrid = np.arange(1, 65, dtype=float)
    out = optimal_sparsity(
        StubResult(), [1e20, 1e21], n_total_max=[3e9, 3e10], n_total=Ngrid, sparsity=sgrid, shared_fraction=0.2
    )
    assert len(out) == 4
    for _, row in out.iterrows():
        # brute force with explicit loops over the same grid
        best = min(
            (moe_loss(N, s, row.C, f=0.2), N, s) for N in Ngrid if N <= row.n_total_max for s in sgrid
        )
        assert row.loss == pytest.approx(best[0], rel=1e-12)
        assert (row.N_total, row.sparsity) == (best[1], best[2])
        assert row.N_active == pytest.approx(row.N_total * (0.2 + 0.8 / row.sparsity))
        assert row.D == pytest.approx(row.C / (6 * row.N_active))
        # the continuous optimum (scipy, in ln N and ln s) is no better than a grid step away
        res = optimize.minimize(
            lambda z: moe_loss(np.exp(z[0]), np.exp(z[1]), row.C, f=0.2),
            x0=[np.log(row.N_total), np.log(row.sparsity)],
            bounds=[(np.log(1e8), np.log(row.n_total_max)), (0.0, np.log(64))],
            method="L-BFGS-B",
        )
        assert row.loss <= res.fun * (1 + 2e-3)
        assert res.fun <= row.loss + 1e-12
    # a larger memory budget never hurts
    for C in (1e20, 1e21):
        sub = out[out.C == C].sort_values("n_total_max")
        assert sub.loss.iloc[1] <= sub.loss.iloc[0]


def test_optimal_sparsity_roles_and_errors():
    class LawNoExp(StubMoeLaw):
        variables = ("Ntot", "sp", "D")

        @staticmethod
        def predict(p, X):
            return StubMoeLaw.predict(p | {"lam": 0.0}, {"N": X["Ntot"], "s": X["sp"], "n_exp": 1.0, "D": X["D"]})

    r = StubResult()
    r.law = LawNoExp()
    out = optimal_sparsity(r, 1e20, variables={"N": "Ntot", "s": "sp"}, n_total=np.logspace(8, 10, 5))
    assert len(out) == 1 and np.isnan(out.n_total_max[0])
    with pytest.raises(MoescaleError, match="have no role"):
        optimal_sparsity(r, 1e20)
    with pytest.raises(MoescaleError, match=r"no grid point with N_total <= 1e\+06"):
        optimal_sparsity(StubResult(), 1e20, n_total_max=1e6)


def test_with_fit_results():
    """chinchilla_optimum reads a FitResult; scaling_exponents (statsmodels OLS)
    agrees with the power_pure law fitted by scaling.fitting.fit with mse-log."""
    import scaling.fitting as fit_module

    N, D = (a.ravel() for a in np.meshgrid(np.logspace(7, 10, 7), np.logspace(9, 12, 7)))
    data = pd.DataFrame({"N": N, "D": D, "loss": chinchilla_loss(EPOCH, N, D)})
    starts = {"e": [0.5], "a": [5.0], "b": [5.0, 10.0], "alpha": [0.3], "beta": [0.3]}
    result = fit_module.fit(data, "chinchilla", x={"N": "N", "D": "D"}, y="loss", loss="mse-log", starts=starts,
                            stderr=False)  # fmt: skip
    C = [1e20, 1e24]
    np.testing.assert_allclose(chinchilla_optimum(result, C).N_opt, chinchilla_optimum(EPOCH, C).N_opt, rtol=1e-5)

    rng = np.random.default_rng(2)
    minima = pd.DataFrame({"C": np.logspace(18, 23, 8)})
    minima["N_opt"] = 0.1 * minima.C**0.5 * np.exp(rng.normal(0, 0.05, 8))
    exps = scaling_exponents(minima, tokens=None)
    pp = fit_module.fit(minima, "power_pure", x={"x": "C"}, y="N_opt", loss="mse-log", stderr=False)
    assert exps.loc["N_opt", "exponent"] == pytest.approx(pp.params["alpha"], rel=1e-6)
    assert exps.loc["N_opt", "coefficient"] == pytest.approx(pp.params["A"], rel=1e-5)
    assert list(exps.index) == ["N_opt"]


def test_optimal_sparsity_with_registered_moe_law():
    from types import SimpleNamespace

    from scaling.laws import get_law

    real = SimpleNamespace(law=get_law("moe"), params=StubResult.params)
    kw = dict(n_total_max=5e9, n_total=np.logspace(8, 10, 21), sparsity=[1.0, 2.0, 4.0, 8.0, 16.0], top_k=2)
    pd.testing.assert_frame_equal(optimal_sparsity(real, [1e19, 1e21], **kw), optimal_sparsity(StubResult(), [1e19, 1e21], **kw))


def test_cli_optimum(tmp_path, capsys):
    import json

    from scaling.cli import main

    fit_json = tmp_path / "fit.json"
    # the shape `moescale fit --json` writes: derived E, A, B next to e, a, b
    params = {"e": np.log(EPOCH["E"]), "a": np.log(EPOCH["A"]), "b": np.log(EPOCH["B"]), **EPOCH}
    fit_json.write_text(json.dumps({"law": "chinchilla", "params": params, "ci": {}, "objective": 1e-3}))
    assert main(["optimum", "--fit", str(fit_json), "--compute", "5.76e23", "1e21", "--json", "-"]) == 0
    records = json.loads(capsys.readouterr().out)
    ref = chinchilla_optimum(EPOCH, [5.76e23, 1e21])
    assert [r["N_opt"] for r in records] == pytest.approx(list(ref.N_opt), rel=1e-12)
    assert main(["optimum", *[f"--param={k}={v}" for k, v in EPOCH.items()], "--compute", "1e21"]) == 0
    assert "2.794e+09" in capsys.readouterr().out  # N_opt at 1e21 FLOPs
    fit_json.write_text(json.dumps({"law": "moe", "params": params}))
    assert main(["optimum", "--fit", str(fit_json), "--compute", "1e21"]) == 2
    assert "needs a chinchilla fit" in capsys.readouterr().err
    assert main(["optimum", "--param", "E=x", "--compute", "1e21"]) == 2
    assert "error: --param E: 'x' is not a number" in capsys.readouterr().err


# --------------------------------------------------------------------------- Porian et al.'s Akima minima


def _reference_akima_minima(df, budget="C", size="N", loss="loss"):
    """Independent reference: a plain loop over budgets; per budget an Akima spline of ln loss on ln N
    (scipy), evaluated on 25 points per interval, and the argmin; edge when it is the first or last point."""
    from scipy.interpolate import Akima1DInterpolator

    out = {}
    for C in sorted(set(df[budget])):
        g = df[df[budget] == C].groupby(size)[loss].mean().sort_index()
        if len(g) < 3:
            continue
        x, y = np.log(g.index.to_numpy()), np.log(g.to_numpy())
        f = Akima1DInterpolator(x, y)
        best_x, best_v = None, np.inf
        for a, b in zip(x[:-1], x[1:]):
            for t in range(25):
                xv = a + (b - a) * t / 25
                v = float(f(xv))
                if v < best_v:
                    best_x, best_v = xv, v
        if float(f(x[-1])) < best_v:
            best_x, best_v = x[-1], float(f(x[-1]))
        out[C] = (np.exp(best_x), np.exp(best_v), best_x in (x[0], x[-1]))
    return out


def _curves():
    """Profiles with known minima: far from parabolic (a sharp asymmetric kink, a flat-bottomed quartic)
    and minima near (or beyond) the edges of the sampled range."""
    rows = []
    N = np.logspace(7, 10, 13)
    x = np.log(N)
    m = {1.0: np.log(3e8), 2.0: np.log(2e7), 3.0: np.log(1e10), 4.0: np.log(3e6), 5.0: np.log(1e9)}
    shapes = {
        1.0: 2 + 0.02 * np.where(x < m[1.0], 6 * (m[1.0] - x), np.abs(x - m[1.0]) ** 1.5),  # asymmetric kink
        2.0: 2 + 0.001 * (x - m[2.0]) ** 4,  # flat-bottomed quartic near the low edge
        3.0: 2 + 0.05 * (x - m[3.0]) ** 2,  # minimum exactly at the largest size
        4.0: 2 + 0.05 * (x - m[4.0]) ** 2,  # minimum below the sampled range
        5.0: 3 - 0.5 * np.exp(-((x - m[5.0]) ** 2) / 0.5),  # narrow Gaussian well
    }
    for C, y in shapes.items():
        rows += [{"C": C, "N": n, "loss": v} for n, v in zip(N, y)]
    return pd.DataFrame(rows), m, N


def test_akima_minima_match_independent_reference_and_truth():
    df, truth, N = _curves()
    out = isoflop_minima(df, method="smooth").set_index("C")
    ref = _reference_akima_minima(df)
    step = np.log(N[1] / N[0]) / 25
    for C, (n_ref, l_ref, edge_ref) in ref.items():
        assert out.loc[C, "N_opt"] == pytest.approx(n_ref, rel=1e-12)
        assert out.loc[C, "loss_opt"] == pytest.approx(l_ref, rel=1e-12)
        assert bool(out.loc[C, "at_edge"]) == edge_ref
    # interior known minima within a tenth of a sample interval (smooth wells); the edge cases flagged
    for C in (2.0, 5.0):
        assert abs(np.log(out.loc[C, "N_opt"]) - truth[C]) <= 0.1 * np.log(N[1] / N[0]), C
    # a kink between samples is located to within half a sample interval
    assert abs(np.log(out.loc[1.0, "N_opt"]) - truth[1.0]) <= 0.5 * np.log(N[1] / N[0])
    assert not out.loc[[1.0, 2.0, 5.0], "at_edge"].any()
    assert out.loc[3.0, "at_edge"] and out.loc[3.0, "N_opt"] == pytest.approx(1e10)
    assert out.loc[4.0, "at_edge"] and out.loc[4.0, "N_opt"] == pytest.approx(1e7)
    # the parabola is far off on the non-parabolic ones
    par = isoflop_minima(df, method="parabola").set_index("C")
    assert abs(np.log(par.loc[1.0, "N_opt"]) - truth[1.0]) > 5 * step


def test_edge_budgets_dropped_by_scaling_exponents_and_short_budgets_skipped():
    budgets = np.logspace(18, 23, 6)
    df = isoflop_profiles(EPOCH, budgets, span=1.0, k=9)
    # the last budget sampled only below its optimum: its minimum is at the edge
    last = df[df.C == budgets[-1]]
    df = pd.concat([df[df.C != budgets[-1]], last[last.N < last.N.median() * 0.8]])
    df = pd.concat([df, pd.DataFrame({"C": [7e23, 7e23], "N": [1e9, 2e9], "loss": [2.0, 2.1]})])
    with pytest.warns(UserWarning, match="skipped C = 7e\\+23 \\(2 distinct sizes\\)"):
        minima = isoflop_minima(df)
    assert len(minima) == 6 and minima.at_edge.tolist() == [False] * 5 + [True]
    with pytest.warns(UserWarning, match="dropped 1 edge budget"):
        exps = scaling_exponents(minima)
    assert exps.attrs["dropped_edge"] == 1 and exps.loc["N_opt", "n_points"] == 5
    a = EPOCH["beta"] / (EPOCH["alpha"] + EPOCH["beta"])
    assert exps.loc["N_opt", "exponent"] == pytest.approx(a, abs=0.01)
    kept = scaling_exponents(minima, drop_edge=False)
    assert kept.loc["N_opt", "n_points"] == 6


def test_seed_noise_bootstrap():
    budgets = [1e20, 1e21]
    df = isoflop_profiles(EPOCH, budgets, span=1.0, k=9)
    out = isoflop_minima(df, bootstrap=200, noise=0.002, seed=0)
    truth = chinchilla_optimum(EPOCH, budgets).N_opt.to_numpy()
    assert (out.N_opt_lo <= truth).all() and (truth <= out.N_opt_hi).all()
    assert (out.n_boot_interior > 150).all()
    again = isoflop_minima(df, bootstrap=200, noise=0.002, seed=0)
    pd.testing.assert_frame_equal(out, again)
    with pytest.raises(MoescaleError, match="needs noise="):
        isoflop_minima(df, bootstrap=10)
    # with repeated sizes the noise is estimated from the seeds
    rep = pd.concat([df, df.assign(loss=df.loss * 1.003)])
    assert "N_opt_median" in isoflop_minima(rep, bootstrap=20).columns


# --------------------------------------------------------------------------- isoFLOP budgets (scaling.budgets)


def test_budget_groups():
    v = np.array([1e14, 1.01e14, 0.99e14, 3e14, 3.02e14, 1e13])
    g = budget_groups(v)
    assert len(np.unique(g)) == 3
    assert g[0] == g[1] == g[2] and g[3] == g[4]
    assert g[0] == pytest.approx(np.exp(np.mean(np.log(v[:3]))))
