import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import dataset_path

from scaling.rundir import RunWriter
from scaling.store import Store


def moescale(*args, store=None, env=None):
    """Run the CLI in a subprocess; returns (exit code, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    if store is not None:
        full_env["MOESCALE_STORE"] = str(store)
    out = subprocess.run([sys.executable, "-m", "scaling.cli", *map(str, args)], capture_output=True, text=True, env=full_env)
    return out.returncode, out.stdout, out.stderr


def rows_of(path):
    with Store(path) as s, s.connect():
        return {t: s.table(t).to_csv(index=False) for t in s.tables()}


@pytest.mark.slow
def test_import_tables_sql_export(tmp_path):
    dataset_path("chinchilla_epoch.csv")
    store = tmp_path / "s.duckdb"
    code, out, err = moescale("db", "import", "chinchilla_epoch", "--name", "chin", "--store", store)
    assert (code, out.strip(), err) == (0, "imported 245 rows into chin", "")
    code, out, _ = moescale("db", "tables", store=store)
    assert code == 0
    listed = {line.split()[0]: line.split()[1:] for line in out.strip().splitlines()[1:]}
    assert listed["chin"] == ["table", "245"] and listed["final"] == ["view", "0"]

    query = 'SELECT "Model Size" AS n, loss FROM chin ORDER BY loss LIMIT 2'
    reference = pd.read_csv(dataset_path("chinchilla_epoch.csv")).sort_values("loss").head(2)
    code, out, _ = moescale("db", "sql", query, "--csv", store=store)
    got = pd.read_csv(pd.io.common.StringIO(out))
    assert code == 0 and got.loss.tolist() == reference.loss.tolist()
    code, out, _ = moescale("db", "sql", query, "--json", store=store)
    assert [r["loss"] for r in json.loads(out)] == reference.loss.tolist()
    code, out, _ = moescale("db", "sql", query, store=store)
    assert out.split("\n")[0].split() == ["n", "loss"] and len(out.strip().splitlines()) == 3

    code, out, _ = moescale("db", "export", "chin", "--out", tmp_path / "c.parquet", store=store)
    assert (code, out.strip()) == (0, f"wrote 245 rows of chin to {tmp_path / 'c.parquet'}")
    assert pd.read_parquet(tmp_path / "c.parquet").shape == (245, 7)


def test_ingest_command(tmp_path):
    for i in range(2):
        with RunWriter(tmp_path / "runs" / f"r{i}", f"r{i}", {"n_experts": 4, "top_k": 1, "n_total": 10}) as w:
            w.log(1, 100, val_loss=3.0 + i)
    with open(tmp_path / "runs" / "r1" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 2, "tok')
    store = tmp_path / "s.duckdb"
    code, out, err = moescale("ingest", tmp_path / "runs", "--store", store)
    assert code == 0 and out.strip() == "added 2, replaced 0, unchanged 0 runs"
    assert err.strip().startswith("warning: ") and "r1/metrics.jsonl:2: ignored a truncated last line" in err
    code, out, _ = moescale("ingest", tmp_path / "runs" / "r0", "--store", store)
    assert out.strip() == "added 0, replaced 0, unchanged 1 runs"
    code, out, _ = moescale("db", "sql", "SELECT run_id, sparsity, val_loss FROM final", "--csv", "--store", store)
    assert out.splitlines() == ["run_id,sparsity,val_loss", "r0,4.0,3.0", "r1,4.0,4.0"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["db", "import", "{tmp}/nope.csv", "--name", "x"], "nope.csv: file not found"),
        (["db", "import", "{tmp}/t.txt", "--name", "x"], "unknown table format '.txt'"),
        (["db", "import", "{tmp}/t.csv", "--name", "runs"], "reserved"),
        (["db", "sql", "SELEC 1"], "SQL error"),
        (["db", "export", "nope", "--out", "{tmp}/x.csv"], "no table or view 'nope'"),
        (["db", "export", "runs", "--out", "{tmp}/x.xlsx"], "unknown table format '.xlsx'"),
        (["ingest", "{tmp}/empty"], "empty: not a run directory"),
        (["ingest", "{tmp}/bad"], "bad/metrics.jsonl:1: column 'loss': value 'x' is not a number"),
        (["datasets", "path", "nope"], "unknown dataset 'nope'"),
    ],
)
def test_bad_input_one_line_exit_2_store_unchanged(tmp_path, args, message):
    store = tmp_path / "s.duckdb"
    (tmp_path / "t.txt").write_text("a\n1\n")
    (tmp_path / "t.csv").write_text("a\n1\n")
    (tmp_path / "empty").mkdir()
    with RunWriter(tmp_path / "bad", "bad", {}) as w:
        w.log(1, 1, loss=1.0)
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"step": 1, "tokens": 1, "loss": "x"}\n')
    Store(store).import_table(tmp_path / "t.csv", "t")
    before = rows_of(store)
    code, out, err = moescale(*[a.format(tmp=tmp_path) for a in args], store=store)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert rows_of(store) == before


def test_datasets_list_and_path():
    file = dataset_path("clark_routing_curves.csv.gz")
    code, out, _ = moescale("datasets", "list")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert names == ["chinchilla_epoch", "clark_routing", "gadre_overtraining", "optimal_sparsity_models"]
    code, out, _ = moescale("datasets", "path", "clark_routing")
    assert (code, out.strip()) == (0, str(file))


# ----------------------------------------------------------------------------- issue 8, points 2 and 3 through the CLI


def _main(args, capsys):
    from scaling.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    return (code, *capsys.readouterr())


@pytest.fixture
def store_with_run(tmp_path):
    with RunWriter(tmp_path / "r0", "r0", {"n_experts": 4, "top_k": 1, "n_total": 10}) as w:
        w.log(1, 100, val_loss=3.0)
    from scaling.ingest import ingest

    ingest(tmp_path / "s.duckdb", [tmp_path / "r0"], progress=False)
    return tmp_path / "s.duckdb"


@pytest.mark.parametrize(
    "query, message",
    [
        ("DELETE FROM runs", "DELETE statement refused"),
        ("DROP VIEW final", "DROP statement refused"),
        ("UPDATE meta SET value='99'", "UPDATE statement refused"),
        ("SELECT 1; DELETE FROM metrics", "2 statements"),
        ("COPY runs TO '{tmp}/out.csv'", "COPY statement refused"),
        ("ATTACH '{tmp}/o.duckdb' AS o", "ATTACH statement refused"),
    ],
)
def test_db_sql_is_read_only_unless_write(store_with_run, capsys, query, message):
    tmp = store_with_run.parent
    before = rows_of(store_with_run)
    code, out, err = _main(["db", "sql", query.format(tmp=tmp), "--store", store_with_run], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert rows_of(store_with_run) == before and out == ""
    assert not (tmp / "out.csv").exists() and not (tmp / "o.duckdb").exists()


def test_db_sql_write_and_rebuild(store_with_run, capsys):
    code, out, _ = _main(["db", "sql", "--write", "DROP VIEW final", "--store", store_with_run], capsys)
    assert code == 0
    code, _, err = _main(["db", "sql", "SELECT * FROM final", "--store", store_with_run], capsys)
    assert code == 2 and "rebuild it with `moescale db rebuild`" in err
    code, out, _ = _main(["db", "rebuild", "--store", store_with_run], capsys)
    assert (code, out.strip()) == (0, "rebuilt final (missing before: final)")
    code, out, _ = _main(["db", "sql", "SELECT run_id, sparsity FROM final", "--csv", "--store", store_with_run], capsys)
    assert out.splitlines() == ["run_id,sparsity", "r0,4.0"]


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "notes.txt"])
def test_store_that_is_not_a_store_is_refused(tmp_path, capsys, name):
    target = tmp_path / name
    if name.endswith(".parquet"):
        pd.DataFrame({"a": [1]}).to_parquet(target)
    else:
        target.write_text("a,b\n1,2\n")
    data = target.read_bytes()
    (tmp_path / "in.csv").write_text("a\n1\n")
    for args in (["db", "tables"], ["db", "import", tmp_path / "in.csv", "--name", "x"], ["db", "sql", "SELECT 1"]):
        code, _, err = _main([*args, "--store", target], capsys)
        assert code == 2 and err.count("\n") == 1 and ("not a DuckDB store" in err or "is a table file name" in err), err
    assert target.read_bytes() == data


def test_import_of_a_lossy_csv_is_refused_through_the_cli(store_with_run, capsys):
    bad = store_with_run.parent / "lost.csv"
    bad.write_text("a,b\n1,2\n3\n4,5,6\n")
    before = rows_of(store_with_run)
    code, _, err = _main(["db", "import", bad, "--name", "lost", "--store", store_with_run], capsys)
    assert code == 2 and f"{bad}:3: 1 fields, but the header on line 1 has 2" in err and err.count("\n") == 1
    assert rows_of(store_with_run) == before


def test_reading_commands_never_create_a_store(tmp_path, capsys):
    missing = tmp_path / "nope.duckdb"
    for args in (["db", "tables"], ["db", "sql", "SELECT 1"], ["db", "export", "runs", "--out", tmp_path / "x.csv"]):
        code, _, err = _main([*args, "--store", missing], capsys)
        assert code == 2 and "no store there" in err
    assert list(tmp_path.iterdir()) == []


def test_a_refused_ingest_or_import_leaves_no_new_store(tmp_path, capsys):
    with RunWriter(tmp_path / "bad", "bad", {"n_experts": 4, "top_k": 1}) as w:
        w.log(1, 10, val_loss=3.0)
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"step": 1, "tokens": -10, "loss": 1.0}\n')
    (tmp_path / "lost.csv").write_text("a,b\n1,2\n3\n")
    new = tmp_path / "new.duckdb"
    for args in (["ingest", tmp_path / "bad"], ["db", "import", tmp_path / "lost.csv", "--name", "t"]):
        code, _, err = _main([*args, "--store", new], capsys)
        assert code == 2 and err.count("\n") == 1
        assert not new.exists() and not list(tmp_path.glob(".new.duckdb*"))
