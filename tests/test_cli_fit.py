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
