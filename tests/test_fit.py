"""fit(): selection with DuckDB, recovery of known parameters, fixed parameters, bootstrap, errors."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from scaling.bootstrap import resample_weights
from scaling.errors import MoescaleError
from scaling.fitting import fingerprint, fit

rng = np.random.default_rng(7)
TRUE = {"E": 1.8, "A": 480.0, "alpha": 0.35, "B": 2100.0, "beta": 0.37}
SMALL_GRID = {"e": [0.0, 1.0], "a": [5.0, 10.0], "b": [5.0, 10.0], "alpha": [0.5], "beta": [0.5]}


def _table(n=60, noise=0.0):
    n_total = np.exp(rng.uniform(np.log(1e7), np.log(1e10), n))
    tokens = n_total * np.exp(rng.uniform(np.log(5), np.log(200), n))
    loss = TRUE["E"] + TRUE["A"] * n_total ** -TRUE["alpha"] + TRUE["B"] * tokens ** -TRUE["beta"]
    loss *= np.exp(rng.normal(0, noise, n)) if noise else 1.0
    return pd.DataFrame({"n_total": n_total, "tokens": tokens, "val_loss": loss, "run_id": [f"r{i}" for i in range(n)]})


DF = _table()
NOISY = _table(40, noise=0.01)
X = {"N": "n_total", "D": "tokens"}


def test_recovers_known_parameters_from_noiseless_data():
    res = fit(DF, "chinchilla", x=X, y="val_loss", starts=SMALL_GRID)
    for k in ("E", "A", "alpha", "B", "beta"):
        assert res.params[k] == pytest.approx(TRUE[k], rel=1e-6)
    assert res.objective < 1e-15 and res.converged and res.n_points == 60 and not res.at_bound
    np.testing.assert_allclose(res.predict({"N": DF.n_total, "D": DF.tokens}), DF.val_loss, rtol=1e-8)
    assert list(res.data.columns) == ["N", "D", "y"]


def test_where_and_sql_expressions_select_rows():
    res = fit(DF, "chinchilla", x={"N": "n_total", "D": "tokens / 1"}, y="val_loss", where="n_total > 1e8", starts=SMALL_GRID)
    assert res.n_points == int((DF.n_total > 1e8).sum())


def test_user_formula_with_plain_least_squares():
    res = fit(DF, "E + A*N**-alpha + B*D**-beta", x=X, y="val_loss", loss="mse",
              starts={"E": [1.0, 2.0], "A": [100.0, 1000.0], "alpha": [0.3], "B": [1000.0], "beta": [0.3]})
    for k in TRUE:
        assert res.params[k] == pytest.approx(TRUE[k], rel=1e-4)


def test_fixed_parameters_are_held_and_not_free():
    df = DF.assign(s=1.0, n_exp=1.0)
    res = fit(df, "moe", x={**X, "s": "s", "n_exp": "n_exp"}, y="val_loss", fix={"lam": 0.0, "gamma": 0.0},
              starts=SMALL_GRID)
    assert res.params["lam"] == 0.0 and res.params["gamma"] == 0.0 and res.n_free == 5
    assert res.params["alpha"] == pytest.approx(0.35, rel=1e-6)
    assert res.to_json()["fixed"] == {"lam": 0.0, "gamma": 0.0}
    assert "fixed" in res.summary()


def test_json_summary_and_store():
    class FakeStore:
        def add_fit(self, *args):
            self.args = args
            return "fit-1"

    store = FakeStore()
    res = fit(NOISY, "chinchilla", x=X, y="val_loss", starts=SMALL_GRID, store=store, bootstrap=20, seed=3)
    out = res.to_json()
    assert {"law", "params", "ci", "objective", "n_points", "loss", "delta", "converged"} <= set(out)
    json.dumps(out)
    assert out["law"] == "chinchilla" and out["loss"] == "huber" and out["delta"] == 1e-3 and out["n_points"] == 40
    law, spec, params, ci, objective, n_points, fp = store.args
    assert res.fit_id == "fit-1" and law == "chinchilla" and spec["x"] == X and spec["seed"] == 3 and spec["bootstrap"] == 20
    assert objective == res.objective and n_points == 40 and fp == fingerprint(res.data) and len(fp) == 64
    text = res.summary()
    for word in ("chinchilla", "Objective", "alpha", "0.975]", "Converged:  yes"):
        assert word in text


def test_bootstrap_is_deterministic_with_a_seed_and_brackets_the_estimate():
    a = fit(NOISY, "chinchilla", x=X, y="val_loss", starts=SMALL_GRID, bootstrap=50, seed=11, stderr=False)
    b = fit(NOISY, "chinchilla", x=X, y="val_loss", starts=SMALL_GRID, bootstrap=50, seed=11, stderr=False)
    c = fit(NOISY, "chinchilla", x=X, y="val_loss", starts=SMALL_GRID, bootstrap=50, seed=12, stderr=False)
    assert a.ci == b.ci and a.ci != c.ci
    for k in ("E", "alpha", "beta"):
        lo, hi = a.ci[k]
        assert lo < hi


def test_bootstrap_resamples_runs_not_rows():
    runs = np.array(["a", "a", "a", "b", "b", "c"])
    w = resample_weights(runs, 6, 500, seed=0)
    # All points of one run share the run's count, and counts over runs sum to the number of runs.
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 1] == w[:, 2]).all() and (w[:, 3] == w[:, 4]).all()
    assert (w[:, [0, 3, 5]].sum(axis=1) == 3).all()
    np.testing.assert_array_equal(w, resample_weights(runs, 6, 500, seed=0))
    assert resample_weights(None, 4, 10, 1).sum(axis=1).tolist() == [4.0] * 10


def test_fingerprint_ignores_row_order():
    sel = pd.DataFrame({"N": [1.0, 2.0, 3.0], "y": [0.1, 0.2, 0.3]})
    assert fingerprint(sel) == fingerprint(sel.iloc[::-1]) != fingerprint(sel.assign(y=[0.1, 0.2, 0.30001]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(law="chinchilla", where="n_total > 5e9 AND n_total < 6e9"), r"points selected but law 'chinchilla' has 5 free parameters"),
        (dict(law="chinchilla", x={"N": "n_total - 1e12", "D": "tokens"}), r"N = 'n_total - 1e12' must be > 0 .* in data row 0"),
        (dict(law="chinchilla", y="val_loss - 100"), r"y = 'val_loss - 100' must be > 0"),
        (dict(law="chinchilla", x={"N": "CASE WHEN n_total > 1e9 THEN 'nan'::DOUBLE ELSE n_total END", "D": "tokens"}), r"NaN or infinite"),
        (dict(law="chinchila"), r"unknown law 'chinchila'"),
        (dict(law="chinchilla", x={"N": "n_total", "T": "tokens"}), r"unknown variable\(s\) T .* N, D"),
        (dict(law="chinchilla", x={"N": "n_totl", "D": "tokens"}), r"^mapping does not evaluate: .*n_totl"),
        (dict(law="chinchilla", fix={"zeta": 1.0}), r"cannot fix zeta"),
        (dict(law="chinchilla", loss="l1"), r"unknown loss 'l1'"),
    ],
)
def test_bad_input_raises_one_line_errors(kwargs, message):
    kwargs = {"x": X, "y": "val_loss", **kwargs}
    with pytest.raises(MoescaleError, match=message) as exc:
        fit(DF, **kwargs)
    assert "\n" not in str(exc.value)


def test_reads_files(tmp_path):
    path = tmp_path / "runs.csv"
    DF.to_csv(path, index=False)
    res = fit(str(path), "chinchilla", x=X, y="val_loss", starts=SMALL_GRID, stderr=False)
    assert res.params["alpha"] == pytest.approx(0.35, rel=1e-6) and res.spec["data"] == str(path)


def test_unmapped_variable_is_named():
    with pytest.raises(MoescaleError, match=r"variable\(s\) D of law 'chinchilla' not mapped"):
        fit(DF, "chinchilla", x={"N": "n_total"}, y="val_loss")


def test_saved_to_a_real_store_and_read_from_its_tables(tmp_path):
    from scaling.store import Store

    with Store(tmp_path / "s.duckdb") as store:
        store.import_table(NOISY, "sweep")
        res = fit("sweep", "chinchilla", x=X, y="val_loss", starts=SMALL_GRID, store=store, stderr=False)
        fits = store.table("fits")
    assert len(fits) == 1 and res.fit_id == fits.iloc[0]["fit_id"]
    row = fits.iloc[0]
    assert row["law"] == "chinchilla" and row["n_points"] == 40 and row["fingerprint"] == res.fingerprint
    assert json.loads(row["params"])["alpha"] == pytest.approx(res.params["alpha"])
    assert json.loads(row["spec"])["x"] == X


def test_parameter_at_a_bound_is_reported():
    res = fit(DF, "chinchilla", x=X, y="val_loss", starts=SMALL_GRID, bounds={"alpha": (0.0, 0.3)}, stderr=False)
    assert res.params["alpha"] == 0.3 and res.at_bound == ["alpha"]
    assert res.to_json()["at_bound"] == ["alpha"] and "AT BOUND" in res.summary()
    assert "parameter(s) at a bound: alpha" in res.summary()


def test_error_names_the_input_row():
    df = DF.copy()
    df.loc[5, "val_loss"] = np.nan
    with pytest.raises(MoescaleError, match=r"y = 'val_loss' is NaN or infinite in data row 5 \(1 rows\)"):
        fit(df, "chinchilla", x=X, y="val_loss")
    with pytest.raises(MoescaleError, match=r"in data row 7 "):
        fit(DF.assign(tokens=np.where(np.arange(60) == 7, 0.0, DF.tokens)), "chinchilla", x=X, y="val_loss", where="n_total > 0")


_r = np.random.default_rng(0)
LAW_CASES = {
    "power": (dict(E=1.7, A=50.0, alpha=0.1), {"x": np.exp(_r.uniform(np.log(1e18), np.log(1e22), 30))}),
    "power_pure": (dict(a=-2.0, alpha=0.5), {"x": np.exp(_r.uniform(np.log(1e18), np.log(1e22), 30))}),
    "krajewski": (dict(c=0.5, g=20.0, gamma=0.5, a=30.0, alpha=0.2, b=400.0, beta=0.25),
                  {"N": np.exp(_r.uniform(16, 22, 80)), "D": np.exp(_r.uniform(19, 25, 80)), "G": _r.choice([1.0, 2, 4, 8, 16], 80)}),
    "exp_error": (dict(eps=0.857, k=2.2, gamma=0.71), {"L": _r.uniform(2, 6, 30)}),
    "sigmoid": (dict(a=-0.6, k=3.0, x0=2.5, b=0.8), {"x": _r.uniform(1, 4, 30)}),
}


@pytest.mark.parametrize("name", list(LAW_CASES))
def test_each_law_recovers_its_parameters_from_its_default_grid(name):
    from scaling.laws import get_law

    p, X = LAW_CASES[name]
    law = get_law(name)
    df = pd.DataFrame(X).assign(y=law.predict(p, X))
    res = fit(df, name, x={v: v for v in law.variables}, y="y", stderr=False)
    assert res.converged
    for k, v in p.items():
        assert res.params[k] == pytest.approx(v, rel=1e-7), k



def test_standard_errors_equal_the_gauss_newton_covariance():
    """SE = sqrt(diag(s^2 (J^T J)^-1)), s^2 = RSS/(n - k), J the Jacobian of the log residuals
    by central differences in float64: the textbook least-squares covariance, computed here
    independently of lmfit."""
    from scaling.bootstrap import standard_errors
    from scaling.laws import get_law
    from scaling.objectives import LossProblem, Objective

    res = fit(NOISY, "chinchilla", x=X, y="val_loss", starts=SMALL_GRID, loss="mse-log", stderr=False)
    law = get_law("chinchilla")
    n_total, tokens, y = NOISY.n_total.to_numpy(), NOISY.tokens.to_numpy(), NOISY.val_loss.to_numpy()
    problem = LossProblem(law, {"N": n_total, "D": tokens}, y, Objective("mse-log", 1e-3))
    theta = res.vector()
    se, correl = standard_errors(problem, theta)

    def residuals(t):
        e, a, b, alpha, beta = t
        return np.log(y) - np.logaddexp(np.logaddexp(a - alpha * np.log(n_total), b - beta * np.log(tokens)), e)

    h = 1e-6
    J = np.column_stack([(residuals(theta + h * np.eye(5)[j]) - residuals(theta - h * np.eye(5)[j])) / (2 * h) for j in range(5)])
    r = residuals(theta)
    cov = np.linalg.inv(J.T @ J) * (r @ r) / (len(r) - 5)
    want = np.sqrt(np.diag(cov))
    corr = cov / np.outer(want, want)
    for i, p in enumerate(law.params):
        assert se[p] == pytest.approx(want[i], rel=1e-4), p
        for j, q in enumerate(law.params):
            if i != j:
                assert correl[p][q] == pytest.approx(corr[i, j], abs=1e-4), (p, q)
    assert {"E", "A", "B"} <= set(se)


# ----------------------------------------------------------------------------- identifiable laws (issue 8, point 1)


def test_sigmoid_is_identifiable_by_construction():
    """The mirror image (a, k, x0, b) -> (-a, -k, x0, a + b) is the same curve; the law's bounds
    admit only k >= 0, so a fit to data made with the mirrored parameters returns the one representative."""
    from scaling.laws import get_law

    law = get_law("sigmoid")
    assert law.bound("k") == (0.0, math.inf) and law.bound("b") == (0.0, 1.0) and law.bound("a") == (-1.0, 1.0)
    x = np.linspace(1.0, 4.0, 30)
    y = law.predict(dict(a=0.6, k=-3.0, x0=2.5, b=0.2), {"x": x})  # the mirrored parameters
    np.testing.assert_allclose(y, law.predict(dict(a=-0.6, k=3.0, x0=2.5, b=0.8), {"x": x}), rtol=1e-13)
    res = fit(pd.DataFrame({"x": x, "y": y}), "sigmoid", x={"x": "x"}, y="y", stderr=False)
    for k, v in dict(a=-0.6, k=3.0, x0=2.5, b=0.8).items():
        assert res.params[k] == pytest.approx(v, rel=1e-6), k


def _ladder(seed):
    """Accuracy against task loss of a model ladder (24 models), ceiling 1.0, noise 0.03."""
    rng = np.random.default_rng(seed)
    loss = np.sort(rng.uniform(1.4, 3.4, 24))
    acc = -0.75 / (1 + np.exp(-2.5 * (loss - 2.4))) + 1.0
    return pd.DataFrame({"task_loss": loss, "accuracy": np.clip(acc + rng.normal(0, 0.03, loss.size), 0, 1)})


@pytest.mark.parametrize("seed", [4, 5])
def test_sigmoid_ceiling_on_ladder_data_is_at_most_one_without_bounds(seed):
    # Without bounds these two data sets gave a ceiling of 1.126 and 1.036 (beyond any accuracy).
    df = _ladder(seed)
    res = fit(df, "sigmoid", x={"x": "task_loss"}, y="accuracy", stderr=False)
    p = res.params
    ceiling = max(p["b"], p["a"] + p["b"])  # the curve's supremum over x
    assert p["k"] >= 0 and ceiling <= 1.0
    # the constrained fit still follows the data: rms residual within 1.5x the noise
    assert np.sqrt(np.mean((res.predict(df) - df["accuracy"]) ** 2)) < 0.045


def test_sigmoid_reports_its_asymptotes_and_warns_when_the_ceiling_exceeds_one():
    # Accuracy rising with x (a > 0): the ceiling is a + b, which box bounds cannot hold to 1.
    x = np.linspace(0.0, 4.0, 30)
    y = 0.7 / (1 + np.exp(-2.0 * (x - 2.0))) + 0.5  # ceiling 1.2: not an accuracy
    res = fit(pd.DataFrame({"x": x, "y": y}), "sigmoid", x={"x": "x"}, y="y", stderr=False)
    reported = res.law.report(res.params)
    assert reported["ceiling"] == pytest.approx(1.2, abs=1e-5) and reported["floor"] == pytest.approx(0.5, abs=1e-5)
    assert "ceiling max(b, a + b) = 1.2 exceeds 1" in res.summary()
    ok = fit(_ladder(4), "sigmoid", x={"x": "task_loss"}, y="accuracy", stderr=False)
    assert "exceeds 1" not in ok.summary() and "below 0" not in ok.summary()


def test_clark_notes_report_its_weakly_identified_pair():
    from scaling.laws import get_law

    assert "E_start and E_max" in get_law("clark").notes and "weakly identified" in get_law("clark").notes


# ----------------------------------------------------------------------------- predict on the fitted data (point 5)


def test_predict_applies_the_fits_own_mapping_to_the_source_table():
    df = pd.DataFrame({"tok_mult": np.exp(_r.uniform(np.log(1e18), np.log(1e22), 30))})
    df["y"] = 1.7 + 50.0 * df["tok_mult"] ** -0.1
    res = fit(df, "power", x={"x": "tok_mult"}, y="y", stderr=False)
    want = 1.7 + 50.0 * df["tok_mult"].to_numpy() ** -0.1
    np.testing.assert_allclose(res.predict(df), want, rtol=1e-8)  # a table of the source columns
    np.testing.assert_allclose(res.predict({"x": df["tok_mult"]}), want, rtol=1e-8)  # a dict of law variables
    both = fit(DF, "chinchilla", x={"N": "n_total", "D": "tokens * 2"}, y="val_loss", starts=SMALL_GRID, stderr=False)
    np.testing.assert_allclose(both.predict(DF), both.law.predict(both.params, {"N": DF.n_total, "D": 2 * DF.tokens}), rtol=1e-13)
    with pytest.raises(MoescaleError, match="predict needs the law's variable"):
        res.predict({"tok_mult": [1e20]})


def test_a_fit_saved_in_the_store_loads_back_and_predicts_identically(tmp_path):
    from scaling.fitting import load_fit
    from scaling.store import Store

    with Store(tmp_path / "s.duckdb") as store:
        store.import_table(NOISY, "sweep")
        res = fit("sweep", "chinchilla", x={"N": "n_total", "D": "tokens / 1"}, y="val_loss", starts=SMALL_GRID,
                  store=store, bootstrap=20, seed=2, fix={"e": 0.6})
        back = load_fit(store, res.fit_id)
        formula = fit(NOISY, "E + A*N**-alpha", x={"N": "n_total"}, y="val_loss", loss="mse", store=store,
                      starts={"E": [1.0, 2.0], "A": [10.0, 100.0], "alpha": [0.1, 0.3]}, stderr=False)
        formula_back = load_fit(store, formula.fit_id)
        with pytest.raises(MoescaleError, match="no fit 'nope'"):
            load_fit(store, "nope")
    np.testing.assert_array_equal(back.predict(NOISY), res.predict(NOISY))
    np.testing.assert_array_equal(formula_back.predict(NOISY), formula.predict(NOISY))
    assert back.params == res.params and back.ci == res.ci and back.fixed == {"e": 0.6}
    assert back.law.name == "chinchilla" and back.fingerprint == res.fingerprint and back.converged == res.converged
    assert back.stderr == pytest.approx(res.stderr) and back.to_json() == res.to_json()


# ----------------------------------------------------------------------------- mappings run on the data only (point 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(where="n_total > 0; ATTACH '{db}' AS s; DELETE FROM s.runs"), "is not one SQL expression"),
        (dict(where="n_total > 0) UNION ALL SELECT * FROM data WHERE (1 = 1"), "not one|does not evaluate"),
        (dict(x={"N": "n_total); DELETE FROM runs; SELECT (1", "D": "tokens"}), "is not one SQL expression"),
        (dict(x={"N": "n_total) AS a, (tokens", "D": "tokens"}), "each --map and --y must be one expression|not one"),
        (dict(y="(SELECT count(*) FROM read_csv('{csv}'))"), "mapping does not evaluate: Permission Error"),
        (dict(where="n_total > (SELECT count(*) FROM s.runs)"), "mapping does not evaluate"),
    ],
)
def test_mappings_cannot_reach_the_store_or_files(tmp_path, kwargs, message):
    from scaling.ingest import ingest
    from scaling.rundir import RunWriter
    from scaling.store import Store

    db = tmp_path / "s.duckdb"
    with RunWriter(tmp_path / "r", "r", {"n_experts": 1, "top_k": 1}) as w:
        w.log(1, 10, val_loss=2.0)
    ingest(db, [tmp_path / "r"], progress=False)
    (tmp_path / "t.csv").write_text("a\n1\n")
    kwargs = {k: (v.format(db=db, csv=tmp_path / "t.csv") if isinstance(v, str) else v) for k, v in kwargs.items()}
    kwargs = {"x": X, "y": "val_loss", **kwargs}
    with pytest.raises(MoescaleError, match=message) as exc:
        fit(DF, "chinchilla", starts=SMALL_GRID, stderr=False, **kwargs)
    assert "\n" not in str(exc.value)
    with Store(db) as s:
        assert s.sql("SELECT count(*) AS n FROM runs").n[0] == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bootstrap=-1), r"bootstrap must be 0 \(none\) or 2"),
        (dict(bootstrap=1), r"bootstrap must be 0 \(none\) or 2"),
        (dict(bootstrap=10**10), r"bootstrap must be 0 \(none\) or 2"),
        (dict(bootstrap=900_000), r"exceeds 50,000,000 weights"),
        (dict(seed=-1), r"seed must be an integer in 0"),
        (dict(bounds={"alpha": (1.0, 0.0)}), r"bound of alpha: lower 1.0 must be below upper 0.0"),
        (dict(fix={"e": 0.0, "a": 1.0, "b": 1.0, "alpha": 0.3, "beta": 0.3}), r"every parameter of law 'chinchilla' is fixed"),
        (dict(fix={"e": math.nan}), r"fixed value of e must be a finite number"),
        (dict(starts={"e": [math.inf]}), r"start values of e must be finite"),
    ],
)
def test_arguments_are_validated_before_any_work(kwargs, message):
    with pytest.raises(MoescaleError, match=message):
        fit(DF, "chinchilla", x=X, y="val_loss", stderr=False, **kwargs)


def test_a_few_bootstrap_resamples_are_flagged():
    res = fit(NOISY, "chinchilla", x=X, y="val_loss", starts=SMALL_GRID, bootstrap=5, stderr=False)
    assert "WARNING: only 5 bootstrap resamples" in res.summary()


def test_open_fit_store_opens_a_named_store_or_the_default_for_a_table_name(tmp_path, monkeypatch):
    from conftest import dataset_path

    from scaling.fitting import open_fit_store
    from scaling.store import Store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOESCALE_STORE", raising=False)
    csv = dataset_path("chinchilla_epoch.csv")
    assert open_fit_store(csv) is None and open_fit_store("chinchilla_epoch") is None  # a file, a dataset
    with pytest.raises(MoescaleError, match=r"'runs_table' is neither a file, a dataset \(chinchilla_epoch, .*\) nor a store table: "
                                            r"moescale.duckdb: no store there"):
        open_fit_store("runs_table")
    with pytest.raises(MoescaleError, match="other.duckdb: no store there"):
        open_fit_store(csv, tmp_path / "other.duckdb")
    Store(tmp_path / "moescale.duckdb").close()
    store = open_fit_store("runs_table")
    assert store.path == "moescale.duckdb" and open_fit_store(csv, "moescale.duckdb").path == "moescale.duckdb"
    assert not (tmp_path / "other.duckdb").exists()  # a fit never creates a store


def test_selection_lives_in_its_own_module_and_is_re_exported():
    from scaling import fitting, selection

    assert fitting.select is selection.select and fitting.fingerprint is selection.fingerprint
    sel, runs = selection.select(pd.DataFrame({"a": [1.0, 4.0], "run_id": ["r1", "r2"]}), {"x": "a * 2"}, "a", "a > 1")
    assert sel["x"].tolist() == [8.0] and sel["y"].tolist() == [4.0] and runs.tolist() == ["r2"]
    assert sel.attrs["source_rows"].tolist() == [1]


# --------------------------------------------------------------------------- pruned multi-start


def _full_engine(problem, starts):
    """The multi-start without pruning (the engine before it): every start run to its end, then
    the 5 best distinct candidates polished with scipy. Returns (free parameters, objective)."""
    from scaling.optimize import distinct_best, minimize_batch, polish

    fun = problem.value_grad_z
    batch = minimize_batch(fun, problem.to_z(starts), problem.lower, problem.upper, ftol=1e-7, max_iter=500)
    assert not batch.pruned.any()
    best = min((polish(fun, batch.x[i], problem.lower, problem.upper) for i in distinct_best(batch, 5)), key=lambda p: p.fun)
    return problem.from_z(best.x)[0], best.fun


def _same_optimum_as_the_full_engine(df, law_name, x, y, where=None):
    from scaling.fitting import optimize_law, select
    from scaling.laws import get_law
    from scaling.objectives import LossProblem, Objective

    law = get_law(law_name)
    sel, _ = select(df, x, y, where)
    problem = LossProblem(law, {v: sel[v].to_numpy() for v in law.variables}, sel["y"].to_numpy(), Objective(law.default_loss))
    starts = np.unique(np.clip(law.starts(), problem.lower, problem.upper), axis=0)
    theta, value, converged, _, batch = optimize_law(problem, starts)
    ref_theta, ref_value = _full_engine(problem, starts)
    assert converged and batch.pruned.sum() > len(starts) // 2  # pruning did take place
    assert value <= ref_value * (1 + 1e-12) and value >= ref_value * (1 - 1e-9)
    np.testing.assert_allclose(theta, ref_theta, rtol=1e-6, atol=1e-8)
    return value


@pytest.mark.slow
def test_pruned_multi_start_finds_the_full_engines_optimum_on_epochs_data():
    from conftest import dataset_path

    df = pd.read_csv(dataset_path("chinchilla_epoch.csv"))
    x = {"N": '"Model Size"', "D": '"Training FLOP"/(6*"Model Size")'}
    where = "loss < (SELECT loss FROM data ORDER BY loss DESC LIMIT 1 OFFSET 4)"
    assert abs(_same_optimum_as_the_full_engine(df, "chinchilla", x, "loss", where) - 1.01827e-3) <= 1e-8


@pytest.mark.slow
def test_pruned_multi_start_finds_the_full_engines_optimum_on_a_simulated_moe_sweep():
    import itertools

    r = np.random.default_rng(11)
    grid = itertools.product(np.logspace(7.5, 10.0, 6), [1.0, 2.0, 4.0, 8.0, 16.0], [1.0, 2.0], np.logspace(9, 11.5, 5))
    df = pd.DataFrame(list(grid), columns=["N", "s", "top_k", "D"]).assign(n_exp=lambda d: d.s * d.top_k)
    truth = 1.8 + 480.0 * df.N**-0.35 * df.s**0.1 * df.n_exp**0.03 + 2100.0 * df.D**-0.37
    df["loss"] = truth * np.exp(r.normal(0, 0.005, len(df)))
    _same_optimum_as_the_full_engine(df, "moe", {v: v for v in ("N", "s", "n_exp", "D")}, "loss")
