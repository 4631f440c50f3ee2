import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

from scaling import store as store_module
from scaling.errors import MoescaleError
from scaling.ingest import ingest
from scaling.rundir import RunWriter
from scaling.store import SCHEMA_VERSION, Store, eval_column_names, final_view_sql


def snapshot(store):
    with store.connect():
        return {t: store.table(t).to_csv(index=False) for t in store.tables()}


def test_new_store_has_schema_and_version(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        assert s.tables() == ["evals", "final", "fits", "meta", "metrics", "runs"]
        assert s.sql("SELECT value FROM meta WHERE key = 'schema_version'").value[0] == str(SCHEMA_VERSION)
        types = dict(s.sql("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'runs'").values)
        assert types["n_total"] == "BIGINT" and types["flops_per_token"] == "DOUBLE" and types["config"] == "JSON"
        assert types["d_model"] == "INTEGER" and types["created_at"] == "TIMESTAMP"


def test_default_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESCALE_STORE", str(tmp_path / "env.duckdb"))
    assert Store().path == str(tmp_path / "env.duckdb")
    monkeypatch.delenv("MOESCALE_STORE")
    assert store_module.default_path() == "moescale.duckdb"


def test_migrates_a_version_0_store(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # the pre-versioning layout: no meta, no ingest bookkeeping
    con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, sweep VARCHAR, status VARCHAR, created_at TIMESTAMP, "
                "code_version VARCHAR, config JSON, d_model INTEGER, n_layers INTEGER, n_heads INTEGER, d_ff INTEGER, "
                "n_experts INTEGER, top_k INTEGER, vocab_size INTEGER, seq_len INTEGER, n_total BIGINT, n_active BIGINT, "
                "n_total_nonembed BIGINT, n_active_nonembed BIGINT, flops_per_token DOUBLE, tokens_planned BIGINT, seed BIGINT)")  # fmt: skip
    con.execute("CREATE TABLE metrics (run_id VARCHAR, step BIGINT, tokens BIGINT, name VARCHAR, value DOUBLE)")
    con.execute("INSERT INTO runs (run_id, status, config, n_experts, top_k, n_total) VALUES ('old', 'finished', '{}', 8, 2, 100)")
    con.execute("INSERT INTO metrics VALUES ('old', 5, 500, 'val_loss', 2.5)")
    con.close()
    with Store(path) as s:
        assert s.sql("SELECT value FROM meta").value[0] == "1"
        assert "content_hash" in s.sql("SELECT * FROM runs").columns
        row = s.sql("SELECT run_id, sparsity, tokens, tpp, val_loss FROM final").iloc[0]
        assert (row.run_id, row.sparsity, row.tokens, row.tpp, row.val_loss) == ("old", 4.0, 500, 5.0, 2.5)


def test_newer_store_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "new.duckdb"
    Store(path).sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'", write=True)
    with pytest.raises(MoescaleError, match=r"store schema version 99 is newer than this moe-scaling supports \(version 1\); upgrade"):
        Store(path)


def test_missing_migration_step_says_so(tmp_path, monkeypatch):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE runs (run_id VARCHAR)")
    con.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", {})
    with pytest.raises(MoescaleError, match="no migration from store schema version 0 to 1"):
        Store(path)
    con = duckdb.connect(str(path))
    assert [r[0] for r in con.execute("SHOW TABLES").fetchall()] == ["runs"]  # rolled back
    con.close()


def test_sql_and_errors():
    with Store(":memory:") as s:
        assert s.sql("SELECT 1 AS one").one.tolist() == [1]
        assert s.sql("SELECT ? + 1 AS x", [41]).x[0] == 42
        with pytest.raises(MoescaleError, match="SQL error: Parser Error"):
            s.sql("SELEC 1")
        with pytest.raises(MoescaleError, match="no table or view 'nope'"):
            s.table("nope")
        with pytest.raises(MoescaleError, match="CREATE statement refused: queries are read-only"):
            s.sql("CREATE TABLE t (a INT)")
        assert "t" not in s.tables()
        assert s.sql("CREATE TABLE t (a INT); INSERT INTO t VALUES (7)", write=True).Count.tolist() == [1]
        assert s.sql("SELECT a FROM t").a.tolist() == [7]


def _store_with_a_run(tmp_path):
    path = tmp_path / "s.duckdb"
    with RunWriter(tmp_path / "r", "r", {"n_experts": 4, "top_k": 1, "n_total": 10}) as w:
        w.log(1, 100, val_loss=3.0)
    with Store(path) as s:
        ingest(s, [tmp_path / "r"])
    return path


@pytest.mark.parametrize(
    "query, message",
    [
        ("DELETE FROM runs", "DELETE statement refused"),
        ("DROP VIEW final", "DROP statement refused"),
        ("UPDATE meta SET value = '99'", "UPDATE statement refused"),
        ("SELECT 1; DELETE FROM metrics", "2 statements; a read-only query is one statement"),
        ("COPY runs TO 'out.csv'", "COPY statement refused"),
        ("ATTACH 'other.duckdb' AS o", "ATTACH statement refused"),
        ("INSERT INTO runs (run_id, status, config) VALUES ('x', 'finished', '{}')", "INSERT statement refused"),
        ("CALL pragma_version()", "CALL statement refused"),
    ],
)
def test_queries_cannot_change_the_store_unless_asked(tmp_path, query, message):
    path = _store_with_a_run(tmp_path)
    with Store(path) as s:
        before = snapshot(s)
        with pytest.raises(MoescaleError, match=message) as exc:
            s.sql(query)
        assert "\n" not in str(exc.value)
        assert snapshot(s) == before
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_read_only_connection_refuses_a_write_hidden_in_a_select(tmp_path):
    """A SELECT runs on a read-only DuckDB connection: a side effect in it (advancing a
    sequence) is refused, and the sequence is where it was."""
    path = _store_with_a_run(tmp_path)
    with Store(path) as s:
        s.sql("CREATE SEQUENCE seq", write=True)
        with pytest.raises(MoescaleError, match="read-only"):
            s.sql("SELECT nextval('seq') AS v")
        assert s.sql("SELECT nextval('seq') AS v", write=True).v.tolist() == [1]


def test_dropped_final_is_reported_and_rebuilt(tmp_path):
    path = _store_with_a_run(tmp_path)
    with Store(path) as s:
        want = s.table("final")
        s.sql("DROP VIEW final", write=True)
        assert s.missing_views() == ["final"]
        with pytest.raises(MoescaleError, match=r"no table or view 'final' .*rebuild it with `moescale db rebuild`"):
            s.table("final")
        with pytest.raises(MoescaleError, match=r"view final is missing: rebuild it"):
            s.sql("SELECT * FROM final")
        assert s.rebuild_views() == ["final"]
        pd.testing.assert_frame_equal(s.table("final"), want)
        assert s.missing_views() == []


def test_missing_core_table_is_named(tmp_path):
    path = _store_with_a_run(tmp_path)
    Store(path).sql("DROP VIEW final; DROP TABLE evals", write=True)
    with pytest.raises(MoescaleError, match=r"core table\(s\) evals missing"):
        Store(path)


@pytest.mark.parametrize("name, content", [("t.csv", b"a,b\n1,2\n"), ("t.parquet", None), ("notes.txt", b"hello"),
                                           ("empty.db", b""), ("x.duckdb", b"SQLite format 3\x00" + b"\x00" * 100)])
def test_a_file_that_is_not_a_store_is_refused(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        pd.DataFrame({"a": [1]}).to_parquet(path)
    else:
        path.write_bytes(content)
    data = path.read_bytes()
    with pytest.raises(MoescaleError, match=r"(is not a DuckDB store|is a table file name|is an empty file)"):
        Store(path)
    assert path.read_bytes() == data


def test_a_foreign_duckdb_database_is_not_taken_over(tmp_path):
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE mine (x INT)")
    con.close()
    with pytest.raises(MoescaleError, match="DuckDB database without the store's tables"):
        Store(path)
    con = duckdb.connect(str(path))
    assert [r[0] for r in con.execute("SHOW TABLES").fetchall()] == ["mine"]
    con.close()


def test_a_reading_open_never_creates_a_store(tmp_path):
    with pytest.raises(MoescaleError, match="no store there"):
        Store(tmp_path / "missing.duckdb", create=False)
    assert list(tmp_path.iterdir()) == []


def test_import_export_round_trip(tmp_path):
    df = pd.DataFrame({"N": [1e6, 2e6], "loss": [3.5, 3.25]})
    df.to_csv(tmp_path / "p.csv", index=False)
    with Store(tmp_path / "s.duckdb") as s:
        assert s.import_table(tmp_path / "p.csv", "points") == 2
        for suffix in (".csv", ".csv.gz", ".parquet", ".json", ".jsonl"):
            out = tmp_path / f"out{suffix}"
            assert s.export("points", out) == 2
            assert s.import_table(out, "back", replace=True) == 2
            np.testing.assert_array_equal(s.table("back").loss.to_numpy(), [3.5, 3.25])


def test_import_errors_leave_store_unchanged(tmp_path):
    (tmp_path / "bad.parquet").write_text("not parquet")
    (tmp_path / "ok.csv").write_text("a\n1\n")
    with Store(tmp_path / "s.duckdb") as s:
        s.import_table(tmp_path / "ok.csv", "ok")
        before = snapshot(s)
        for source, name, message in [
            (tmp_path / "nope.csv", "t", "file not found"),
            (tmp_path / "ok.txt", "t", "unknown table format '.txt'"),
            (tmp_path / "bad.parquet", "t", "bad.parquet: cannot import"),
            (tmp_path / "ok.csv", "runs", "reserved"),
            (tmp_path / "ok.csv", "1x", "not an identifier"),
            (tmp_path / "ok.csv", "ok", "already exists"),
        ]:
            with pytest.raises(MoescaleError, match=message):
                s.import_table(source, name)
            assert snapshot(s) == before


def test_add_fit_stores_json():
    with Store(":memory:") as s:
        fit_id = s.add_fit("chinchilla", {"data": "chinchilla_epoch"}, {"A": np.float64(477.8), "E": math.nan},
                           {"A": (476.6, 479.3)}, 1.01827e-3, 240, "abc")  # fmt: skip
        row = s.sql("SELECT * FROM fits").iloc[0]
        assert row.fit_id == fit_id and row.law == "chinchilla" and row.n_points == 240
        assert json.loads(row.params) == {"A": 477.8, "E": None}
        assert json.loads(row.ci) == {"A": [476.6, 479.3]}
        assert row.objective == 1.01827e-3


def test_eval_column_names_are_identifiers_and_unique():
    names = eval_column_names([("arith-add", "accuracy"), ("arith_add", "accuracy"), ("2wiki", "F1"), ("val", "loss")],
                              taken=("val_loss",))  # fmt: skip
    assert names == ["arith_add_accuracy", "arith_add_accuracy_2", "e_2wiki_f1", "val_loss_2"]
    assert "max(value) FILTER (WHERE task = 'it''s' AND metric = 'acc')" in final_view_sql([("it's", "acc")])


def test_final_view_values(tmp_path):
    # Independent reference: the numbers are written out by hand from the inputs below.
    with RunWriter(tmp_path / "a", "a", {"n_experts": 8, "top_k": 2, "n_total": 1000, "flops_per_token": 6.0}) as w:
        w.log(1, 100, train_loss=4.0, val_loss=4.5)
        w.log(2, 200, train_loss=3.0, val_loss=3.5)
        w.log(3, 300, train_loss=2.5)
        w.log_eval(2, 200, "arith", "accuracy", 0.25, task_kind="reasoning")
        w.log_eval(3, 300, "arith", "accuracy", 0.5, task_kind="reasoning")
        w.log_eval(3, 300, "facts", "task_loss", 1.5, task_kind="memorization")
    RunWriter(tmp_path / "b", "b", {"n_experts": 1, "top_k": 1, "n_total": 50, "tokens_planned": 5000}).finish()
    RunWriter(tmp_path / "c", "c", {"n_experts": 1, "top_k": 1}).finish("diverged")
    with Store(":memory:") as s:
        ingest(s, [tmp_path / "a", tmp_path / "b", tmp_path / "c"])
        f = s.table("final").set_index("run_id")
        assert list(f.index) == ["a", "b"]
        a = f.loc["a"]
        assert (a.sparsity, a.density, a.tokens, a.tpp, a.active_flops, a.val_loss) == (4.0, 0.25, 300, 0.3, 1800.0, 3.5)
        assert (a.arith_accuracy, a.facts_task_loss) == (0.5, 1.5)
        b = f.loc["b"]
        assert (b.sparsity, b.density, b.tokens, b.tpp) == (1.0, 1.0, 5000, 100.0)
        assert pd.isna(b.val_loss) and pd.isna(b.arith_accuracy)


def test_busy_store_times_out_with_a_clear_error(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path)
    lock = FileLock(str(path) + ".lock")
    lock.acquire()
    try:
        import subprocess
        import sys

        code = f"from scaling.store import Store; Store({str(path)!r}, timeout=0.3)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert "store is busy" in out.stderr
    finally:
        lock.release()


def test_waits_for_a_foreign_duckdb_holder_then_opens(tmp_path):
    """Another process holding the DuckDB file itself (not our lock): open retries with backoff."""
    import subprocess
    import sys
    import time

    path = tmp_path / "s.duckdb"
    Store(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep(1.0)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        assert "runs" in Store(path, timeout=30).tables()
        assert time.monotonic() - start > 0.3  # it did wait for the holder
    finally:
        holder.wait(timeout=30)
    with pytest.raises(MoescaleError, match="cannot open store: IO Error"):
        blocker = subprocess.Popen(
            [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep(1.0)"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert blocker.stdout.readline().strip() == "held"
            Store(path, timeout=0.2).tables()
        finally:
            blocker.wait(timeout=30)


def test_a_new_store_appears_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "new.duckdb"
    with pytest.raises(MoescaleError, match="already exists"):
        with Store.create_on_success(path) as s:
            s.import_table(pd.DataFrame({"x": [1]}), "t")
            s.import_table(pd.DataFrame({"x": [2]}), "t")  # refused: the block fails
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.duckdb.lock"]  # no store, no temp files
    with Store.create_on_success(path) as s:
        assert s.import_table(pd.DataFrame({"x": [1, 2]}), "t") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.duckdb", "new.duckdb.lock"]
    with Store.create_on_success(path) as s:  # an existing store is opened as it is
        assert s.path == str(path) and s.sql("SELECT sum(x) AS s FROM t").s[0] == 3
    with pytest.raises(MoescaleError, match="folder .* does not exist"):
        with Store.create_on_success(tmp_path / "no" / "s.duckdb"):
            pass


def test_table_counts_and_exact_json_records(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        s.import_table(pd.DataFrame({"x": [0.1 + 0.2, math.nan, math.inf]}), "t")
        counts = s.table_counts()
        assert counts.columns.tolist() == ["name", "kind", "rows"]
        assert dict(zip(counts.name, zip(counts.kind, counts.rows))) == {
            "evals": ("table", 0), "final": ("view", 0), "fits": ("table", 0), "meta": ("table", 1),
            "metrics": ("table", 0), "runs": ("table", 0), "t": ("table", 3),
        }  # fmt: skip
        records = store_module.json_records(s.sql("SELECT x, TIMESTAMP '2024-01-02 03:04:05' AS at FROM t"))
    assert records[0] == {"x": 0.30000000000000004, "at": "2024-01-02T03:04:05"}
    assert [r["x"] for r in records[1:]] == [None, None]
    assert json.loads(json.dumps(records)) == records


def test_export_paths_are_checked_and_an_export_leaves_no_temp_file(tmp_path):
    assert store_module.check_export_path(tmp_path / "a.csv.gz") == ".csv.gz"
    with pytest.raises(MoescaleError, match="folder .* does not exist"):
        store_module.check_export_path(tmp_path / "no" / "a.csv")
    with Store(tmp_path / "s.duckdb") as s:
        s.import_table(pd.DataFrame({"x": [1, 2]}), "t")
        assert s.export("t", tmp_path / "t.csv") == 2
    assert (tmp_path / "t.csv").read_text() == "x\n1\n2\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_sql_text_helpers_double_their_quotes():
    assert store_module.quote('a"b') == '"a""b"'
    assert store_module.sql_literal("it's") == "'it''s'"
    with duckdb.connect() as con:
        assert con.execute(f"SELECT {store_module.sql_literal(chr(39) * 3)} AS {store_module.quote('x y')}").fetchall() == [("'''",)]


# ----------------------------------------------------------------------------- issue 18: read-only and damaged stores


def _make_read_only(monkeypatch, path):
    """Simulate a store file in a folder nobody may write to (a chmod that root would ignore):
    the lock file cannot be created, and DuckDB cannot open the store for writing."""
    real_connect = duckdb.connect

    def connect(database=":memory:", read_only=False, *args, **kwargs):
        if str(database) == str(path) and not read_only:
            raise duckdb.IOException(f'IO Error: Cannot open file "{database}": Permission denied')
        return real_connect(database, read_only, *args, **kwargs)

    class NoLockFile(FileLock):
        def acquire(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path) + ".lock")

    monkeypatch.setattr(duckdb, "connect", connect)
    monkeypatch.setattr(store_module, "FileLock", NoLockFile)


def test_reading_a_read_only_store_needs_no_lock_file_and_no_write_access(tmp_path, monkeypatch):
    path = _store_with_a_run(tmp_path)
    (tmp_path / "s.duckdb.lock").unlink()
    _make_read_only(monkeypatch, path)
    s = Store(path, create=False)
    assert s.sql("SELECT run_id, val_loss FROM final").values.tolist() == [["r", 3.0]]
    assert s.tables() == ["evals", "final", "fits", "meta", "metrics", "runs"]
    assert s.table_counts().set_index("name")["rows"].to_dict()["metrics"] == 1
    assert s.export("final", tmp_path / "final.csv") == 1
    assert not (tmp_path / "s.duckdb.lock").exists()
    from scaling.final import final_runs  # what `moescale optimum --store` reads through

    assert final_runs(path, need=("run_id", "val_loss"))[0]["run_id"].tolist() == ["r"]
    with pytest.raises(OSError, match="Permission denied"):  # writing still needs the lock
        s.sql("DELETE FROM runs", write=True)


def test_read_only_store_file_with_chmod(tmp_path):
    import os

    path = _store_with_a_run(tmp_path)
    (tmp_path / "s.duckdb.lock").unlink()
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as root: chmod does not make the folder read-only")
        s = Store(path, create=False)
        assert s.sql("SELECT run_id FROM final")["run_id"].tolist() == ["r"]
        assert s.tables()[0] == "evals" and not (tmp_path / "s.duckdb.lock").exists()
    finally:
        tmp_path.chmod(0o755)


def _truncated(tmp_path):
    path = _store_with_a_run(tmp_path)
    with RunWriter(tmp_path / "r2", "r2", {"n_experts": 4, "top_k": 1, "n_total": 10}) as w:
        for step in range(1, 3000):
            w.log(step, 100 * step, val_loss=3.0, train_loss=2.0 + 1.0 / step, lr=1e-3)
    ingest(path, [tmp_path / "r2"], progress=False)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    return path


def test_a_truncated_store_is_one_line_naming_it(tmp_path):
    path = _truncated(tmp_path)
    s = Store(path, create=False)  # DuckDB opens it: the catalog is at the start of the file
    with pytest.raises(MoescaleError, match=r"damaged or truncated") as info:
        s.verify()
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(MoescaleError, match=r"ingest failed|damaged or truncated"):
        ingest(s, [tmp_path / "r"], progress=False)
