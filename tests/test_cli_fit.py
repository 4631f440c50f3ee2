"""`moescale fit` through a subprocess: summary, JSON, errors with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "scaling.cli", "fit", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    rng = np.random.default_rng(3)
    c = np.exp(rng.uniform(np.log(1e18), np.log(1e22), 30))
    loss = 1.7 + 50.0 * c**-0.1 * np.exp(rng.normal(0, 0.002, 30))
    path = tmp_path_factory.mktemp("cli") / "runs.csv"
    pd.DataFrame({"flops": c, "val_loss": loss, "run_id": range(30)}).to_csv(path, index=False)
    return path


def test_fit_prints_summary_and_writes_json(csv, tmp_path):
    out = tmp_path / "fit.json"
    proc = _run(str(csv), "--law", "power", "--map", "x=flops", "--loss", "mse", "--start", "A=10,100",
                "--start", "alpha=0.05,0.2", "--start", "E=1,2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Scaling-law fit" in proc.stdout and "power" in proc.stdout and "alpha" in proc.stdout
    data = json.loads(out.read_text())
    assert set(data) >= {"law", "params", "ci", "objective", "n_points", "loss", "delta", "converged"}
    assert data["n_points"] == 30 and data["loss"] == "mse" and data["converged"] is True
    assert data["params"]["alpha"] == pytest.approx(0.1, abs=0.02)


def test_json_to_stdout_with_bootstrap_fix_and_where(csv):
    proc = _run(str(csv), "--law", "E + A*C**-alpha", "--map", "C=flops", "--y", "val_loss", "--where", "flops > 1e19",
                "--fix", "E=1.7", "--start", "A=10,100", "--start", "alpha=0.05,0.2", "--bootstrap", "30", "--seed", "1",
                "--json", "-")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["params"]["E"] == 1.7 and data["fixed"] == {"E": 1.7} and set(data["ci"]) == {"A", "alpha"}
    lo, hi = data["ci"]["alpha"]
    assert lo < data["params"]["alpha"] < hi


@pytest.mark.parametrize(
    "args, message",
    [
        (["--law", "nope", "--map", "x=flops"], "unknown law 'nope'"),
        (["--law", "power", "--map", "x=flopz"], "mapping does not evaluate"),
        (["--law", "power", "--map", "x=flops - 1e30"], "must be > 0"),
        (["--law", "power", "--map", "x=flops", "--where", "flops < 0"], "0 points selected"),
        (["--law", "power", "--map", "x"], "--map 'x' is not NAME=VALUE"),
        (["--law", "power", "--map", "x=flops", "--fix", "E=abc"], "is not a number"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(csv, args, message):
    proc = _run(str(csv), *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_fit_a_store_table_and_save_the_fit(csv, tmp_path):
    from scaling.store import Store

    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        store.import_table(str(csv), "sweep")
    proc = _run("sweep", "--store", str(path), "--law", "power", "--map", "x=flops", "--loss", "mse",
                "--start", "A=10,100", "--start", "alpha=0.05,0.2", "--start", "E=1,2")
    assert proc.returncode == 0, proc.stderr
    assert "saved fit" in proc.stdout
    with Store(path) as store:
        fits = store.table("fits")
    assert len(fits) == 1 and fits.iloc[0]["law"] == "power" and fits.iloc[0]["n_points"] == 30


# ----------------------------------------------------------------------------- issue 8, point 6: validated before any work


def _main(args, capsys, cwd=None, monkeypatch=None):
    from scaling.cli import main

    if cwd is not None:
        monkeypatch.chdir(cwd)
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


POWER = ["--law", "power", "--map", "x=flops", "--loss", "mse", "--start", "A=10,100", "--start", "alpha=0.05,0.2",
         "--start", "E=1,2"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bootstrap", "-1"], "--bootstrap: -1 must be >= 0"),
        (["--bootstrap", "10000000000"], "bootstrap must be 0 (none) or 2"),
        (["--bootstrap", "1"], "bootstrap must be 0 (none) or 2"),
        (["--bound", "alpha=1:0"], "bound of alpha: lower 1.0 must be below upper 0.0"),
        (["--seed", "-1"], "--seed: -1 must be >= 0"),
        (["--fix", "E=1", "--fix", "A=1", "--fix", "alpha=0.1"], "every parameter of law 'power' is fixed"),
        (["--fix", "E=nan"], "--fix E: 'nan' is not a number"),
        (["--where", "flops > 0; DELETE FROM runs"], "is not one SQL expression"),
        (["--json", "/missing/x.json"], "--json /missing/x.json: folder /missing does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_no_fit_saved(csv, tmp_path, capsys, extra, message):
    from scaling.store import Store

    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        store.import_table(str(csv), "sweep")
    code, out, err = _main(["fit", "sweep", "--store", path, *POWER, *extra], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    with Store(path) as store:
        assert store.table("fits").empty


def test_json_is_written_before_the_fit_is_saved(csv, tmp_path, capsys):
    from scaling.store import Store

    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        store.import_table(str(csv), "sweep")
    code, out, _ = _main(["fit", "sweep", "--store", path, *POWER, "--json", tmp_path / "fit.json"], capsys)
    assert code == 0 and json.loads((tmp_path / "fit.json").read_text())["n_points"] == 30
    with Store(path) as store:
        assert len(store.table("fits")) == 1


def test_a_misspelled_data_name_creates_no_store(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MOESCALE_STORE", raising=False)
    code, _, err = _main(["fit", "chinchila_epoch", "--law", "power", "--map", "x=a"], capsys, cwd=tmp_path, monkeypatch=monkeypatch)
    assert code == 2 and "'chinchila_epoch' is neither a file, a dataset" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["plan", "grid", "--d-model", "64", "--n-layers", "2", "--total-params", "abc"], "argument --total-params: count 'abc'"),
        (["plan", "grid", "--d-model", "64", "--n-layers", "2", "--tokens", "-5"], "argument --tokens"),
        (["plan", "grid", "--d-model", "64", "--n-layers", "2", "--tokens", "1e6", "--out", "{tmp}/missing/s.yaml"],
         "folder {tmp}/missing does not exist"),
        (["plan", "count", "--d-model", "0", "--n-layers", "1", "--n-heads", "1", "--d-ff", "1"], "argument --d-model: 0 must be >= 1"),
    ],
)
def test_plan_arguments_are_one_line_errors(tmp_path, capsys, args, message):
    code, out, err = _main([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message.format(tmp=tmp_path) in err, err
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_and_track_are_silent_when_disabled(capsys):
    from scaling.progress import progress_bar, track

    with progress_bar(10, "bootstrap refits", enabled=False) as update:
        assert update is None
    items = [1, 2, 3]
    assert track(items, "parsing", enabled=False) is items
    with progress_bar(3, "bootstrap refits") as update:  # enabled: a callback, drawn on stderr only
        for done in range(1, 4):
            update(done, 3)
    assert list(track(items, "parsing")) == items
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- issue 18: fit final --law moe without --map


def test_moe_on_final_without_map_uses_the_documented_mapping(tmp_path, capsys):
    from scaling.fitting import default_x
    from scaling.laws import MOE_X, get_law
    from scaling.simulate import write_store

    path = tmp_path / "s.duckdb"
    write_store(path, n_runs=24, seed=2).close()
    code, out, err = _main(["fit", "final", "--store", path, "--law", "moe", "--json", tmp_path / "f.json"], capsys)
    assert code == 0, err
    from scaling.store import Store

    fits = Store(path).sql("SELECT spec, params FROM fits")
    assert len(fits) == 1 and json.loads(fits.spec[0])["x"] == MOE_X
    assert MOE_X == {"N": "n_total", "s": "sparsity", "n_exp": "n_experts", "D": "tokens"}
    # the same fit with the mapping spelled out gives the same parameters
    code, out2, err = _main(["fit", "final", "--store", path, "--law", "moe", *[f"--map={k}={v}" for k, v in MOE_X.items()],
                             "--json", tmp_path / "g.json"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "g.json").read_text())["params"] == json.loads((tmp_path / "f.json").read_text())["params"]
    # a law without a documented mapping onto final: say which --map is missing, one line
    code, out, err = _main(["fit", "final", "--store", path, "--law", "chinchilla"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "law 'chinchilla': no column named N, D in final and no mapping given: give --map N=SQL --map D=SQL" in err
    # a variable's own column still wins over the final mapping
    assert default_x(get_law("moe"), ["N", "s", "n_exp", "D", "n_total", "sparsity", "n_experts", "tokens"]) == {
        "N": '"N"', "s": '"s"', "n_exp": '"n_exp"', "D": '"D"'}
