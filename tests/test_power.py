"""scaling.power: the power of a planned sweep by simulation, checked against the claims' bootstrap."""

import json

import numpy as np
import pandas as pd
import pytest

from scaling.bootstrap import refit_weighted, resample_runs
from scaling.cli import main
from scaling.errors import MoescaleError
from scaling.laws import MOE, MOE_X
from scaling.planner import Constraints, GridSpace, plan
from scaling.power import fit_simulated, planned_runs, power, power_report, seed_noise
from scaling.simulate import Truth, simulate_sweep, task_truths, true_loss


# d_model 64/128 x (dense, E4 k1, E4 k2, E16 k1, E16 k2) x 3 budgets = 30 runs: small, and gamma and lam identified
GRID = GridSpace(n_layers=(2,), d_model=(64, 128), n_experts=(1, 4, 16), top_k=(1, 2), granularity=(0.5,),
                 head_dim=32, vocab_size=512, seq_len=128)
COMPUTE = (2e11, 4e11, 8e11)


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("power") / "sweep.yaml"
    plan(GRID, Constraints(compute=COMPUTE), name="power-test").to_yaml(path)
    return path


@pytest.fixture(scope="module")
def predicted(sweep_file):
    return power(sweep_file, n_sim=40, bootstrap=100, seed=1)


def _claims_widths(runs, truth, n, seed):
    """Median 95% half-widths of gamma and lam on ``n`` independently simulated sweeps, each fitted
    with the multi-start ``fit`` and a percentile bootstrap of runs as ``scaling.claims`` does."""
    from scaling.fitting import fit

    rng = np.random.default_rng(seed)
    mu = true_loss(truth, runs["n_total"], runs["sparsity"], runs["n_experts"], runs["tokens"])
    widths, fits = {"gamma": [], "lam": []}, []
    for i in range(n):
        df = runs.assign(val_loss=mu * np.exp(truth.noise * rng.standard_normal(len(runs))))
        res = fit(df, "moe", x=MOE_X, y="val_loss", stderr=False)
        full, ok = refit_weighted(res, resample_runs(df["run_id"], 100, 1000 + i))
        for p in widths:
            lo, hi = np.percentile(full[ok, MOE.params.index(p)], [2.5, 97.5])
            widths[p].append((hi - lo) / 2)
        fits.append((df, res))
    return {p: float(np.median(v)) for p, v in widths.items()}, fits


def test_predicted_widths_match_independent_bootstrap(sweep_file, predicted):
    runs = planned_runs(sweep_file)
    measured, fits = _claims_widths(runs, Truth(), 15, seed=99)
    table = predicted.set_index("quantity")
    for p in ("gamma", "lam"):
        assert table.loc[p, "half_width"] == pytest.approx(measured[p], rel=0.25), p
        assert table.loc[p, "true_value"] == Truth().moe_params[p]
    # the shortcut of power (each simulated sweep fitted from the truth) reaches fit's multi-start optimum
    X = {v: runs[c].to_numpy(float) for v, c in MOE_X.items()}
    Y = np.stack([df["val_loss"].to_numpy(float) for df, _ in fits[:3]])
    start = np.array([Truth().moe_params[p] for p in MOE.params])
    points, _, _ = fit_simulated(X, Y, start, {}, 10, [0, 1, 2])
    for j, (_, res) in enumerate(fits[:3]):
        assert points[j, MOE.params.index("gamma")] == pytest.approx(res.params["gamma"], abs=2e-3)
        assert points[j, MOE.params.index("lam")] == pytest.approx(res.params["lam"], abs=2e-3)


def test_table_and_report(predicted):
    assert list(predicted["quantity"]) == ["gamma", "lam", "optimum", "optimum", "optimum"]
    assert predicted["p_decided"].between(0, 1).all() and predicted["p_identified"].between(0, 1).all()
    opt = predicted[predicted["quantity"] == "optimum"]
    assert list(opt["compute"]) == list(COMPUTE)
    assert (opt["p_identified"] <= opt["p_decided"]).all()
    text = power_report(predicted)
    assert "40 simulated sweeps" in text and "P(identified)" in text
    assert "no accuracy tasks" in text  # the default truth has none: the TPP peaks are skipped with a note


def test_one_top_k_reports_lam_not_testable():
    grid = GridSpace(n_layers=(2,), d_model=(64, 128), n_experts=(1, 4, 16), top_k=(1,), granularity=(0.5,),
                     head_dim=32, vocab_size=512, seq_len=128)
    res = power(plan(grid, Constraints(compute=COMPUTE)), n_sim=3, bootstrap=20, seed=0).set_index("quantity")
    assert not res.loc["lam", "testable"] and res.loc["lam", "note"].startswith("not testable")
    assert np.isnan(res.loc["lam", "p_decided"])
    assert res.loc["gamma", "testable"] and np.isfinite(res.loc["gamma", "half_width"])


def test_more_noise_gives_wider_intervals_and_fewer_decisions(sweep_file):
    low = power(sweep_file, noise=0.004, n_sim=15, bootstrap=50, seed=3).set_index("quantity")
    high = power(sweep_file, noise=0.016, n_sim=15, bootstrap=50, seed=3).set_index("quantity")
    for p in ("gamma", "lam"):
        assert high.loc[p, "half_width"] > 2 * low.loc[p, "half_width"]
        assert high.loc[p, "p_decided"] <= low.loc[p, "p_decided"]
    assert high.loc[["gamma", "lam"], "p_decided"].sum() < low.loc[["gamma", "lam"], "p_decided"].sum()
    assert high.attrs["noise"] == 0.016


def test_tpp_peak_rows_with_accuracy_tasks():
    # budgets that reach TPP ~ 1-120, so the reasoning peak at TPP 20 lies inside the sampled range
    sweep = plan(GRID, Constraints(compute=(1e12, 4e12, 1.6e13)))
    res = power(sweep, truth=Truth(tasks=task_truths()), n_sim=4, bootstrap=20, seed=0).set_index("quantity")
    row = res.loc["tpp_peak:reasoning"]
    assert row["testable"] and row["true_value"] == pytest.approx(20.0)
    assert row["p_identified"] > 0 and np.isfinite(row["half_width"])
    assert "tpp_peak:memorization" in res.index


def test_truth_from_a_fit_and_its_json(sweep_file, tmp_path):
    from scaling.fitting import fit
    from scaling.power import as_truth

    runs = planned_runs(sweep_file)
    truth = Truth(noise=0.01)
    mu = true_loss(truth, runs["n_total"], runs["sparsity"], runs["n_experts"], runs["tokens"])
    df = runs.assign(val_loss=mu * np.exp(0.01 * np.random.default_rng(0).standard_normal(len(runs))))
    res = fit(df, "moe", x=MOE_X, y="val_loss", stderr=False)
    got, notes = as_truth(res)
    assert got.gamma == res.params["gamma"] and got.E == pytest.approx(res.params["E"])
    assert got.noise == pytest.approx(0.01, rel=0.5) and "residuals" in notes[0]
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(res.to_json()))
    from_json, _ = as_truth(path)
    assert from_json.lam == res.params["lam"] and from_json.noise == Truth().noise
    table = power(sweep_file, truth=path, noise=0.01, n_sim=2, bootstrap=10)
    assert table.set_index("quantity").loc["gamma", "true_value"] == res.params["gamma"]


def test_seed_noise_pools_seed_repeats():
    grid = GridSpace(n_layers=(2,), d_model=(64, 128), n_experts=(1, 4), top_k=(1,), granularity=(0.5,),
                     head_dim=32, vocab_size=512, seq_len=128)
    runs, _, _ = simulate_sweep(Truth(noise=0.01), grid=grid, compute=COMPUTE, seeds=4, curve_points=2, seed=0)
    final = runs.rename(columns={"loss": "val_loss"})
    assert seed_noise(final) == pytest.approx(0.01, rel=0.3)
    with pytest.raises(MoescaleError, match="seed repeat"):
        seed_noise(final[final["seed"] == 0])


@pytest.mark.parametrize("kwargs, match", [
    ({"n_sim": 0}, "^n_sim must be an integer >= 1"),
    ({"noise": -0.01}, "^noise must be a finite number >= 0"),
    ({"bootstrap": 1}, "^bootstrap must be an integer >= 10"),
])
def test_bad_arguments_raise_one_line(sweep_file, kwargs, match):
    with pytest.raises(MoescaleError, match=match) as info:
        power(sweep_file, **kwargs)
    assert "\n" not in str(info.value)


def test_missing_sweep_file_and_bad_sweeps(tmp_path):
    with pytest.raises(MoescaleError, match="no_such.yaml: no such file") as info:
        power(tmp_path / "no_such.yaml", n_sim=2)
    assert "\n" not in str(info.value)
    with pytest.raises(MoescaleError, match="lack column"):
        power(pd.DataFrame({"n_total": [1e6]}), n_sim=2)
    dense = pd.DataFrame({"n_total": np.geomspace(1e5, 1e6, 12), "n_experts": 1, "top_k": 1, "tokens": 1e6})
    with pytest.raises(MoescaleError, match="sparsity"):
        power(dense, n_sim=2)
    with pytest.raises(MoescaleError, match="truth .*no such file"):
        power(dense, truth=tmp_path / "fit.json", n_sim=2)


# --------------------------------------------------------------------------- moescale plan power


def _cli(argv) -> int:
    """``moescale argv`` in this process: its exit code, whether returned or raised (argparse's errors)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_cli_prints_what_the_api_returns_and_writes_json(sweep_file, tmp_path, capsys):
    out = tmp_path / "power.json"
    rc = main(["plan", "power", str(sweep_file), "--n-sim", "3", "--bootstrap", "10", "--seed", "2",
               "--json", str(out)])
    stdout = capsys.readouterr().out
    assert rc == 0
    api = power(sweep_file, n_sim=3, bootstrap=10, seed=2)
    assert stdout == power_report(api) + f"\nwrote {out}\n"
    data = json.loads(out.read_text())
    assert (data["n_runs"], data["n_sim"], data["bootstrap"], data["seed"]) == (30, 3, 10, 2)
    assert [r["quantity"] for r in data["rows"]] == list(api["quantity"])
    gamma = data["rows"][0]
    assert gamma["half_width"] == pytest.approx(api["half_width"].iloc[0], rel=1e-12)
    assert gamma["true_value"] == Truth().gamma and data["noise"] == Truth().noise
    assert data["rows"][2]["compute"] == COMPUTE[0]


def test_cli_tasks_noise_and_json_to_stdout(sweep_file, capsys):
    rc = main(["plan", "power", str(sweep_file), "--n-sim", "2", "--bootstrap", "10", "--noise", "0.01", "--tasks",
               "--json", "-"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["noise"] == 0.01
    quantities = [r["quantity"] for r in data["rows"]]
    assert "tpp_peak:reasoning" in quantities and "tpp_peak:memorization" in quantities
    peak = data["rows"][quantities.index("tpp_peak:reasoning")]
    assert peak["true_value"] == pytest.approx(20.0) and peak["testable"] is False  # TPP of these runs stays < 10
    assert peak["note"].startswith("not testable")


def test_cli_truth_from_a_store_with_seed_repeats(sweep_file, tmp_path, capsys):
    from scaling.simulate import write_store

    store = write_store(tmp_path / "s.duckdb", Truth(noise=0.01), grid=GRID, compute=COMPUTE, seeds=2,
                        curve_points=2, seed=4)
    store.close()
    rc = main(["plan", "power", str(sweep_file), "--store", str(tmp_path / "s.duckdb"), "--n-sim", "2",
               "--bootstrap", "10", "--json", "-"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert data["notes"][0] == f"note: truth fitted to the 60 finished runs of the store {tmp_path / 's.duckdb'}"
    assert any("measured from the store's seed repeats" in n for n in data["notes"])
    assert data["noise"] == pytest.approx(0.01, rel=0.35)  # the pooled seed noise, not the default 0.004
    assert data["rows"][0]["true_value"] == pytest.approx(Truth().gamma, abs=0.05)  # the store's fitted gamma


@pytest.mark.parametrize("argv, message", [
    (["--n-sim", "0"], "argument --n-sim: 0 must be >= 1"),
    (["--bootstrap", "5"], "argument --bootstrap: 5 must be >= 10"),
    (["--noise", "-0.1"], "argument --noise: '-0.1' must be a finite number >= 0"),
    (["--noise", "nan"], "argument --noise: 'nan' must be a finite number >= 0"),
    (["--truth", "{tmp}/fit.json", "--store", "{tmp}/s.duckdb"], "not allowed with argument"),
    (["--truth", "{tmp}/no_fit.json"], "truth {tmp}/no_fit.json: no such file"),
    (["--truth", "{tmp}/chinchilla.json"], "a fit of law 'chinchilla'; power needs a moe fit"),
    (["--truth", "{tmp}/bad.json"], "not valid JSON"),
    (["--store", "{tmp}/no.duckdb"], "no.duckdb: no such store file"),
    (["--json", "{tmp}/no_dir/p.json"], "--json {tmp}/no_dir/p.json: folder {tmp}/no_dir does not exist"),
])
def test_cli_errors_are_one_line_and_exit_2(sweep_file, tmp_path, capsys, argv, message):
    (tmp_path / "chinchilla.json").write_text(json.dumps({"law": "chinchilla", "params": {"e": 1.0}}))
    (tmp_path / "bad.json").write_text("{not json")
    argv = [a.format(tmp=tmp_path) for a in argv]
    rc = _cli(["plan", "power", str(sweep_file), "--n-sim", "2", "--bootstrap", "10", *argv])  # the last one wins
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message.format(tmp=tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "chinchilla.json"]  # nothing written


def test_cli_missing_or_bad_sweep_file(tmp_path, capsys):
    rc = _cli(["plan", "power", str(tmp_path / "none.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"error: sweep {tmp_path / 'none.yaml'}: no such file\n"
    (tmp_path / "bad.yaml").write_text("runs: [1, 2\n")
    rc = _cli(["plan", "power", str(tmp_path / "bad.yaml")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "bad.yaml" in err
