"""scaling.optimum and `moescale optimum --store`: the recovered optimum against the truth's."""

import json

import numpy as np
import pandas as pd
import pytest

from scaling.errors import MoescaleError
from scaling.optimum import candidate_table, find_optimum, grid_from_runs, optimal_experts
from scaling.simulate import DEFAULT_GRID, Truth, true_accuracy, true_loss, write_store

COMPUTE = [3e13, 1e14, 3e14]


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    root = tmp_path_factory.mktemp("opt")
    out = {}
    # lam > 0 with sparsity cheap (optimum at high sparsity), and a truth whose optimum is dense
    for name, truth in (("sparse", Truth(lam=0.03)), ("dense", Truth(gamma=0.3, lam=0.03)), ("lam0", Truth(lam=0.0))):
        out[name] = write_store(root / f"{name}.duckdb", truth, n_runs=66, seed=21)
    yield out
    for s in out.values():
        s.close()


def _truth_best(store, objective):
    truth = store.simulation_truth
    cand = candidate_table(DEFAULT_GRID)
    rows = []
    for C in COMPUTE:
        D = C / cand.flops_per_token
        L = true_loss(truth, cand.n_total, cand.sparsity, cand.n_experts, D)
        if objective == "loss":
            score = L
        else:
            tasks = [t for t in truth.tasks if t.kind == objective]
            score = -np.mean([true_accuracy(t, L, C, D / cand.n_total) for t in tasks], axis=0)
        i = int(np.argmin(score))
        rows.append(cand.iloc[i])
    return pd.DataFrame(rows).reset_index(drop=True)


def _within_one_step(a, b):
    axes = {"d_model": DEFAULT_GRID.d_model, "n_experts": DEFAULT_GRID.n_experts, "top_k": DEFAULT_GRID.top_k,
            "n_layers": DEFAULT_GRID.n_layers}
    return all(abs(list(v).index(int(a[k])) - list(v).index(int(b[k]))) <= 1 for k, v in axes.items())


@pytest.mark.parametrize("name", ["sparse", "dense", "lam0"])
def test_recovered_optimum_matches_the_truth(sims, name):
    store = sims[name]
    objectives = ["loss", "reasoning", "memorization"] if name == "sparse" else ["loss"]
    res = find_optimum(store, COMPUTE, objective=objectives, bootstrap=60, seed=1)
    assert len(res.best) == len(COMPUTE) * len(objectives)
    # the sweep's own grid space is the simulation's
    assert grid_from_runs(store.sql("SELECT * FROM final")) == DEFAULT_GRID
    for obj in objectives:
        got = res.best[res.best.objective == obj].reset_index(drop=True)
        want = _truth_best(store, obj)
        for i in range(len(COMPUTE)):
            assert _within_one_step(got.iloc[i], want.iloc[i]), (obj, COMPUTE[i], got.arch[i], want.arch.iloc[i])
    if name == "dense":
        assert (res.best.sparsity == 1).all()
        assert res.best.edge.str.contains("lowest sparsity").all()
        # dense is a natural end, not a grid edge: the truth's optimum is stated, won by >= 80% of resamples
        assert res.best.determined.all() and (res.best.sparsity_share >= 0.8).all() and (res.best.why == "").all()
    if name == "sparse":
        assert (res.best[res.best.objective == "loss"].sparsity == 32).all()
        # 32 is the grid's highest sparsity: the optimum may lie beyond it, so nothing is stated
        loss = res.best[res.best.objective == "loss"]
        assert not loss.determined.any() and loss.why.str.contains("highest sparsity of the grid").all()
        assert res.summary().count("undetermined (") == (~res.best.arch_determined).sum() >= len(loss)
    # the law fits its own truth: about 5% of runs outside their 95% prediction interval, no budget misfits
    assert res.fit_check["law"] == "moe" and res.fit_check["n_runs"] == 66 and res.fit_check["flags"] == ""
    assert res.fit_check["outside_share"] <= 0.15 and not res.best.lack_of_fit.any()
    assert (res.trend.n_boot == 60).all()
    # frequencies are shares of the resamples, per budget and objective
    sums = res.frequency.groupby(["objective", "compute"])["share"].sum()
    np.testing.assert_allclose(sums, 1.0)
    b = res.best
    assert ((b.sparsity_low <= b.sparsity) & (b.sparsity <= b.sparsity_high)).all()
    assert ((b.pred_low <= b.predicted) & (b.predicted <= b.pred_high) | (b.frequency < 0.5)).all()
    assert set(res.trend.quantity) == {"sparsity", "n_total", "tpp"}


def test_point_optimum_is_brute_force_over_candidates(sims):
    """With no bootstrap, the optimum is the argmin of the fitted law over the candidates, checked by a loop."""
    from scaling.laws import MOE_X
    from scaling.fitting import fit

    store = sims["dense"]
    final = store.sql("SELECT * FROM final")
    res = find_optimum(store, [1e14], memory=3e7, active=5e6, bootstrap=0)
    f = fit(final, "moe", x=MOE_X, y="val_loss", stderr=False)
    p = f.params
    best, best_arch = np.inf, None
    for r in candidate_table(DEFAULT_GRID).itertuples():
        if r.n_total > 3e7 or r.n_active > 5e6:
            continue
        D = 1e14 / r.flops_per_token
        L = (np.exp(p["e"]) + np.exp(p["a"]) * r.n_total ** -p["alpha"] * r.sparsity ** p["gamma"]
             * r.n_experts ** p["lam"] + np.exp(p["b"]) * D ** -p["beta"])
        if L < best:
            best, best_arch = L, r.arch
    row = res.best.iloc[0]
    assert row.arch == best_arch and row.predicted == pytest.approx(best, rel=1e-9)
    assert row.n_total <= 3e7 and row.n_active <= 5e6
    # pareto front: N_total increasing, loss decreasing
    front = res.pareto
    assert (np.diff(front.n_total) > 0).all() and (np.diff(front.loss) < 0).all()


def test_extrapolation_and_widened_grid(sims):
    res = find_optimum(sims["sparse"], [3e15], widen={"n_experts": [64]}, bootstrap=0)
    row = res.best.iloc[0]
    assert row.extrapolation and "compute 3e+15 outside the data's" in row.extrapolation_reason
    assert 64 in set(res.candidates.n_experts)


def test_bad_input(sims, tmp_path):
    store = sims["sparse"]
    with pytest.raises(MoescaleError, match="buys less than one token"):
        find_optimum(store, [1.0], bootstrap=0)
    with pytest.raises(MoescaleError, match="no architecture of the grid has N_total <= 10"):
        find_optimum(store, [1e14], memory=10, bootstrap=0)
    with pytest.raises(MoescaleError, match="objective 'speed' is not one of"):
        find_optimum(store, [1e14], objective="speed")
    final = store.sql("SELECT * FROM final")
    with pytest.raises(MoescaleError, match="needs eval data"):
        find_optimum(final, [1e14], objective="reasoning", bootstrap=0, evals=store.sql("SELECT * FROM evals LIMIT 0"))
    with pytest.raises(MoescaleError, match="5 finished runs; the moe law needs at least 10"):
        find_optimum(final.iloc[:5], [1e14], bootstrap=0)


def test_no_optimum_on_a_store_that_learned_nothing(tmp_path):
    """Few runs and a loss that does not depend on size, sparsity or tokens (the demo's case): no
    optimum is stated, and each row says why."""
    store = write_store(tmp_path / "flat.duckdb", Truth(A=1e-4, B=1e-4, noise=0.03), n_runs=18, seed=5)
    try:
        res = find_optimum(store, COMPUTE, bootstrap=40, seed=0)
    finally:
        store.close()
    assert not res.best.determined.any() and not res.best.arch_determined.any()
    assert (res.best.why != "").all()
    assert "undetermined (" in res.summary()
    payload = res.to_json()
    assert all(r["determined"] is False and r["why"] for r in payload["best"])


def test_request_errors_are_one_line_before_any_fit(sims):
    store = sims["sparse"]
    with pytest.raises(MoescaleError, match="compute budget 'abc' is not a number"):
        find_optimum(store, ["abc"], bootstrap=0)
    with pytest.raises(MoescaleError, match="widen n_experts: 'a' is not a positive integer"):
        find_optimum(store, [1e14], widen={"n_experts": ["a"]}, bootstrap=0)
    with pytest.raises(MoescaleError, match="widen top_k 64: top_k 64 exceeds every n_experts"):
        find_optimum(store, [1e14], widen={"top_k": [64]}, bootstrap=0)
    assert len(find_optimum(store, 1e14, bootstrap=0).best) == 1  # a scalar budget is one budget


def _moescale(*argv):
    from scaling.cli import main

    return main(list(argv))


def test_cli_store_source(sims, tmp_path, capsys):
    path = sims["sparse"].path
    out = tmp_path / "best.json"
    assert _moescale("optimum", "--store", path, "--compute", "1e14", "3e14", "--objective", "loss", "reasoning",
                     "--bootstrap", "40", "--json", str(out)) == 0
    text = capsys.readouterr().out
    assert "C = 1e+14 loss:" in text and "C = 3e+14 reasoning:" in text and "of 40 resamples" in text
    payload = json.loads(out.read_text())
    api = find_optimum(path, [1e14, 3e14], objective=["loss", "reasoning"], bootstrap=40, seed=0)
    assert [r["arch"] for r in payload["best"]] == list(api.best.arch)
    assert [r["frequency"] for r in payload["best"]] == pytest.approx(list(api.best.frequency))
    assert [r["determined"] for r in payload["best"]] == list(api.best.determined)
    assert payload["fit_check"]["outside_share"] == pytest.approx(api.fit_check["outside_share"])


def test_cli_store_defaults_to_the_stores_budgets(sims, tmp_path, capsys):
    out = tmp_path / "best.json"
    assert _moescale("optimum", "--store", sims["dense"].path, "--bootstrap", "10", "--json", str(out),
                     "--where", "sweep = 'sim'") == 0
    assert [r["compute"] for r in json.loads(out.read_text())["best"]] == COMPUTE
    assert "C = 3e+13 loss: L4-" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--compute", "1e14", "--json", "/missing/dir/x.json"], "folder /missing/dir does not exist"),
    (["--compute", "1"], "buys less than one token"),
    (["--compute", "abc"], "--compute: 'abc' is not a number"),
    (["--compute", "1e14", "--bootstrap", "-1"], "--bootstrap: -1 must be >= 0"),
    (["--compute", "1e14", "--memory", "10"], "no architecture of the grid has N_total <= 10"),
    (["--compute", "1e14", "--memory", "-5"], "--memory: -5 must be > 0"),
    (["--compute", "1e14", "--top-k", "64"], "top_k 64 exceeds every n_experts of the grid (largest 32)"),
    (["--compute", "1e14", "--d-model", "100"], "d_model 100 is not a multiple of the head dim 32"),
    (["--compute", "1e14", "--n-experts", "1000000000"], "over 1000 times the runs' largest"),
    (["--compute", "1e14", "--sweep", "other"], "sweep 'other' is not in the store (sweeps: sim)"),
    (["--compute", "1e14", "--where", "no_such_column > 1"], "where 'no_such_column > 1':"),
])
def test_cli_store_errors(sims, tmp_path, capsys, argv, message):
    assert _moescale("optimum", "--store", sims["sparse"].path, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_fit_source_errors(tmp_path, capsys):
    fj = tmp_path / "fit.json"
    fj.write_text(json.dumps({"law": "chinchilla", "params": {"E": "abc", "A": 400.0}}))
    good = ["--param", "E=1.8", "--param", "A=400", "--param", "B=400", "--param", "alpha=0.3", "--param", "beta=0.3"]
    cases = [
        (["--fit", str(fj), "--compute", "1e21"], "parameter E = 'abc' is not a number"),
        ([*good, "--compute", "1e21", "--json", str(tmp_path / "no" / "x.json")], "does not exist"),
        ([*good, "--compute", "1e21", "--flops-per-param-token", "0"], "--flops-per-param-token: 0 must be finite and > 0"),
        ([*good, "--param", "Q=1", "--compute", "1e21"], "unknown parameter 'Q'"),
        (["--store", str(tmp_path / "none.duckdb"), "--compute", "1e21"], "no such store file"),
    ]
    for argv, message in cases:
        assert _moescale("optimum", *argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "none.duckdb").exists()
    assert _moescale("optimum", *good, "--compute", "1e21", "--json", str(tmp_path / "ok.json")) == 0
    assert json.loads((tmp_path / "ok.json").read_text())[0]["C"] == 1e21


def test_clark_optimal_experts_match_brute_force():
    """On Clark et al.'s routed-MoE data, the optimal expert count per model size from the fitted clark law
    equals a brute-force loop over the same law written out by hand."""
    from conftest import dataset_path

    from scaling.fitting import fit

    curves = dataset_path("clark_routing_curves.csv.gz")
    where = ("step = (SELECT max(step) FROM data d2 WHERE d2.hyper_id = data.hyper_id) "
             "AND routing_frequency = 0.5 AND k = 1 AND seed = 42 AND router_type IN ('Dense', 'S-Base')")
    x = {"N": "dense_parameter_count", "E": "CASE WHEN router_type = 'Dense' THEN 1 ELSE num_experts END"}
    res = fit(str(curves), "clark", x=x, y="loss_validation", where=where, stderr=False)
    sizes = np.unique(res.data["N"])
    experts = 2.0 ** np.arange(10)
    table = optimal_experts(res, sizes, experts)
    p = res.params
    e_start, e_max = 2.0 ** p["p_start"], 2.0 ** p["p_max"]
    for N, E_opt in zip(table.N, table.E_opt):
        best, arg = np.inf, None
        for E in experts:
            e_hat = 1.0 / (1.0 / (E - 1 + 1.0 / (1.0 / e_start - 1.0 / e_max)) + 1.0 / e_max)
            log10_loss = p["a"] * np.log10(N) + p["b"] * np.log10(e_hat) + p["c"] * np.log10(N) * np.log10(e_hat) + p["d"]
            if log10_loss < best:
                best, arg = log10_loss, E
        assert E_opt == arg
    assert len(table) == len(sizes) >= 3
