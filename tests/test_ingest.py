import json
import math
import random
import subprocess
import sys
import warnings

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling.errors import MoescaleError
from scaling.ingest import config_diff, ingest
from scaling.rundir import RunWriter, read_run_dir
from scaling.store import Store


def write_run(root, run_id, n_steps=5, status="finished", config=None, late_key=False):
    config = config or {"d_model": 64, "n_experts": 8, "top_k": 2, "n_total": 1000, "flops_per_token": 6.0}
    w = RunWriter(root / run_id, run_id, config, sweep="t")
    for s in range(1, n_steps + 1):
        extra = {"val_loss": 5.0 / s} if s % 2 == 0 else {}
        if late_key and s == n_steps:
            extra["late_metric"] = 7.0
        w.log(s, 100 * s, train_loss=4.0 / s, lr=1e-3, **extra)
    w.log_eval(n_steps, 100 * n_steps, "arith", "accuracy", 0.5, task_kind="reasoning", n_examples=10)
    w.finish(status)
    return root / run_id


def snapshot(store):
    with store.connect():
        frames = {t: store.table(t) for t in ("runs", "metrics", "evals", "final")}
    return {t: df.sort_values(list(df.columns[:4])).to_csv(index=False) for t, df in frames.items()}


def long_rows(dir):
    m = read_run_dir(dir).metrics
    return sorted(zip(m.run_id, m.step, m.tokens, m.name, m.value))


def store_rows(store):
    m = store.sql("SELECT run_id, step, tokens, name, value FROM metrics")
    return sorted(zip(m.run_id, m.step, m.tokens, m.name, m.value))


def test_ingest_is_idempotent(tmp_path):
    dirs = [write_run(tmp_path, f"r{i}") for i in range(3)]
    with Store(tmp_path / "s.duckdb") as s:
        summary = ingest(s, dirs)
        assert (sorted(summary.added), summary.replaced, summary.unchanged) == (["r0", "r1", "r2"], [], [])
        # metrics as the careful per-file reader sees them (independent path)
        assert store_rows(s) == sorted(r for d in dirs for r in long_rows(d))
        before = snapshot(s)
        again = ingest(s, dirs)
        assert (again.added, again.replaced, sorted(again.unchanged)) == ([], [], ["r0", "r1", "r2"])
        assert snapshot(s) == before


def test_folder_of_run_dirs(tmp_path):
    for i in range(2):
        write_run(tmp_path / "runs", f"r{i}")
    with Store(":memory:") as s:
        assert sorted(ingest(s, [tmp_path / "runs"]).added) == ["r0", "r1"]
        with pytest.raises(MoescaleError, match="not a run directory"):
            ingest(s, [tmp_path])


def test_updated_run_replaces_its_rows(tmp_path):
    d = write_run(tmp_path, "r0", n_steps=2, status="running")
    with Store(":memory:") as s:
        ingest(s, [d])
        assert s.sql("SELECT count(*) AS n FROM final").n[0] == 0
        with open(d / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": 3, "tokens": 300, "train_loss": 1.0}) + "\n")
        run = json.loads((d / "run.json").read_text())
        (d / "run.json").write_text(json.dumps({**run, "status": "finished"}))
        summary = ingest(s, [d])
        assert summary.replaced == ["r0"]
        assert s.sql("SELECT count(*) AS n FROM metrics").n[0] == 2 * 2 + 1 + 1
        assert s.sql("SELECT tokens FROM final").tokens.tolist() == [300]
        assert s.sql("SELECT count(*) AS n FROM runs").n[0] == 1


def test_reused_run_id_with_other_config_is_refused(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        ingest(s, [write_run(tmp_path / "a", "r0")])
        before = snapshot(s)
        other = write_run(tmp_path / "b", "r0", config={"d_model": 128, "n_experts": 8, "top_k": 4})
        fresh = write_run(tmp_path / "b", "r9")
        with pytest.raises(MoescaleError, match=r"b/r0: run_id 'r0' is already in the store with a different config \(keys differ: d_model, flops_per_token, n_total, top_k\)"):
            ingest(s, [fresh, other])
        assert snapshot(s) == before


def test_config_diff_lists_nested_keys():
    assert config_diff({"a": 1, "m": {"x": 1, "y": 2}}, {"a": 1, "m": {"x": 3}, "b": 0}) == ["b", "m.x", "m.y"]


def test_truncated_last_line_warns_and_keeps_the_rest(tmp_path):
    d = write_run(tmp_path, "r0", n_steps=3)
    with open(d / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "tokens": 4')
    with Store(":memory:") as s:
        with pytest.warns(UserWarning, match=r"r0/metrics\.jsonl:4: ignored a truncated last line"):
            summary = ingest(s, [d, write_run(tmp_path, "r1")])
        assert len(summary.warnings) == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert store_rows(s) == sorted(long_rows(d) + long_rows(tmp_path / "r1"))


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"step": 9, "tokens": 9, "train_loss": "abc"}\n', r"metrics\.jsonl:6: column 'train_loss': value 'abc' is not a number"),
        ('{"step": 9, "tokens": 9, "train_loss": true}\n', r"metrics\.jsonl:6: column 'train_loss': value True"),
        ('{"step": 9, "tokens": 9, "train_loss": [1]}\n', r"metrics\.jsonl:6: column 'train_loss': value \[1\]"),
        ('{"step": 9.5, "tokens": 9}\n', r"metrics\.jsonl:6: column 'step': value 9.5 is not an integer"),
        ('{"tokens": 9}\n', r"metrics\.jsonl:6: column 'step' is missing"),
        ("{bad json\n", r"metrics\.jsonl:6: malformed JSON"),
    ],
)
def test_bad_lines_name_file_line_column_and_leave_store_unchanged(tmp_path, line, message):
    good = write_run(tmp_path, "good")
    bad = write_run(tmp_path, "bad")
    with open(bad / "metrics.jsonl", "a") as fh:
        fh.write(line)
        fh.write(json.dumps({"step": 10, "tokens": 10, "train_loss": 1.0}) + "\n")
    with Store(tmp_path / "s.duckdb") as s:
        before = snapshot(s)
        with pytest.raises(MoescaleError, match=message):
            ingest(s, [good, bad])
        assert snapshot(s) == before


def test_late_keys_and_nonfinite_values_survive_the_bulk_reader(tmp_path):
    d = write_run(tmp_path, "r0", n_steps=400, late_key=True)
    with open(d / "metrics.jsonl", "a") as fh:  # what Python's json writes for a diverged step
        fh.write('{"step": 401, "tokens": 40100, "train_loss": NaN, "lr": Infinity, "val_loss": null}\n')
    with Store(":memory:") as s:
        ingest(s, [d, write_run(tmp_path, "r1")])
        rows = store_rows(s)
        assert ("r0", 400, 40000, "late_metric", 7.0) in rows
        tail = {r[3]: r[4] for r in rows if r[0] == "r0" and r[1] == 401}
        assert math.isnan(tail["train_loss"]) and tail["lr"] == math.inf and "val_loss" not in tail
        assert len(rows) == len(long_rows(d)) + len(long_rows(tmp_path / "r1"))


def test_duplicate_run_id_in_one_call(tmp_path):
    a = write_run(tmp_path / "a", "r0")
    b = write_run(tmp_path / "b", "r0", n_steps=3)
    with Store(":memory:") as s, pytest.raises(MoescaleError, match="also comes from"):
        ingest(s, [a, b])


@pytest.mark.slow
def test_concurrent_ingests(tmp_path):
    """4 processes ingest the same 50 run directories at once, each in its own order."""
    dirs = [str(write_run(tmp_path / "runs", f"r{i:02d}", n_steps=20)) for i in range(50)]
    path = str(tmp_path / "s.duckdb")
    code = ("import sys, json; from scaling.ingest import ingest; "
            "print(json.dumps(ingest(sys.argv[1], sys.argv[2:], progress=False).added))")  # fmt: skip
    procs = []
    for seed in range(4):
        order = dirs[:]
        random.Random(seed).shuffle(order)
        procs.append(subprocess.Popen([sys.executable, "-c", code, path, *order], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    added = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        added += json.loads(out)
    assert sorted(added) == [f"r{i:02d}" for i in range(50)]  # each run added by exactly one process
    with Store(path) as s:
        counts = s.sql("SELECT count(*) AS runs, count(DISTINCT run_id) AS ids FROM runs").iloc[0]
        assert (counts.runs, counts.ids) == (50, 50)
        per_run = 20 * 2 + 10  # train_loss and lr every step, val_loss every other step
        assert s.sql("SELECT count(*) AS n FROM metrics").n[0] == 50 * per_run
        assert s.sql("SELECT count(*) AS n FROM evals").n[0] == 50
        assert s.sql("SELECT count(*) AS n FROM final").n[0] == 50


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1000, 1000), st.none())
junk = st.sampled_from(["{", '{"step": 1', "x", '{"step": 1, "tokens": 2, "a": "s"}', '{"tokens": 1}', "[]"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.fixed_dictionaries({"loss": values}, optional={"acc": values}), min_size=1, max_size=8),
    bad_at=st.one_of(st.none(), st.integers(0, 8)),
    bad=junk,
    truncate=st.booleans(),
)
def test_property_ingest_matches_reader_or_fails_cleanly(tmp_path_factory, rows, bad_at, bad, truncate):
    root = tmp_path_factory.mktemp("p")
    lines = [json.dumps({"step": i, "tokens": 10 * i, **r}) + "\n" for i, r in enumerate(rows)]
    if bad_at is not None:
        lines.insert(min(bad_at, len(lines)), bad + "\n")
    text = "".join(lines)
    if truncate:
        text = text[:-3]
    d = write_run(root, "r0", n_steps=1)
    (d / "metrics.jsonl").write_text(text)
    with Store(":memory:") as s, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ingest(s, [write_run(root, "other")])
        before = store_rows(s)
        try:
            expected = long_rows(d)
        except MoescaleError as exc:
            with pytest.raises(MoescaleError) as err:
                ingest(s, [d])
            assert str(err.value) == str(exc)
            assert store_rows(s) == before
            return
        ingest(s, [d])
        got = [r for r in store_rows(s) if r[0] == "r0"]
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a[:4] == b[:4] and (a[4] == b[4] or (math.isnan(a[4]) and math.isnan(b[4])))


def test_ingest_accepts_a_store_path(tmp_path):
    summary = ingest(tmp_path / "s.duckdb", [write_run(tmp_path, "r0")], progress=False)
    assert summary.added == ["r0"] and str(summary).startswith("added 1, replaced 0, unchanged 0 runs")


# ----------------------------------------------------------------------------- impossible run data (issue 8, point 4)


def _patch_run_json(d, **changes):
    run = json.loads((d / "run.json").read_text())
    run.update(changes)
    (d / "run.json").write_text(json.dumps(run))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(n_total=-5), r"run\.json: column 'n_total': value -5 must be >= 0"),
        (dict(tokens_planned=-1), r"run\.json: column 'tokens_planned': value -1 must be >= 0"),
        (dict(n_experts=0), r"run\.json: column 'n_experts': value 0 must be >= 1"),
        (dict(n_experts=4, top_k=8), r"run\.json: key 'top_k': 8 exceeds n_experts = 4"),
        (dict(n_active=2000), r"run\.json: key 'n_active': 2000 exceeds n_total = 1000"),
        (dict(flops_per_token=math.inf), r"run\.json: key 'flops_per_token': inf is not a finite number"),
        (dict(flops_per_token=math.nan), r"run\.json: key 'flops_per_token': nan is not a finite number"),
        (dict(n_total=2**63), r"run\.json: column 'n_total': value 9223372036854775808 is beyond the 64-bit"),
        (dict(run_id="../escape"), r"run\.json: key 'run_id': run_id must be .*letters, digits"),
        (dict(run_id="a b"), r"run\.json: key 'run_id': run_id must be"),
    ],
)
def test_impossible_run_json_is_refused_naming_file_and_key(tmp_path, change, message):
    d = write_run(tmp_path, "r0")
    _patch_run_json(d, **change)
    with Store(tmp_path / "s.duckdb") as s:
        before = snapshot(s)
        with pytest.raises(MoescaleError, match=message) as exc:
            ingest(s, [d])
        assert "\n" not in str(exc.value)
        assert snapshot(s) == before


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"step": 1, "tokens": 10, "loss": 2.0}', '{"step": 1, "tokens": 10, "loss": 1.9}'],
         r"metrics\.jsonl:2: column 'loss': duplicated \(step, metric\) \(1, 'loss'\), first on line 1"),
        (['{"step": 1, "tokens": 10, "loss": 2.0}', '{"step": 2, "tokens": 20, "lr": 0.1}', '{"step": 1, "tokens": 10, "loss": 1.9}'],
         r"metrics\.jsonl:3: column 'loss': duplicated \(step, metric\)"),
        (['{"step": 1, "tokens": -10, "loss": 2.0}'], r"metrics\.jsonl:1: column 'tokens': value -10 must be >= 0"),
        (['{"step": -1, "tokens": 10, "loss": 2.0}'], r"metrics\.jsonl:1: column 'step': value -1 must be >= 0"),
        (['{"step": 1, "tokens": 99999999999999999999, "loss": 2.0}'], r"metrics\.jsonl:1: column 'tokens': value 99999999999999999999 is beyond"),
        (['{"step": 1, "tokens": 10, "loss": 2.0}', '{"step": 2, "tokens": 1e30, "loss": 2.0}'], r"metrics\.jsonl:2: column 'tokens'"),
    ],
)
def test_impossible_metrics_are_refused_naming_file_and_line(tmp_path, lines, message):
    d = write_run(tmp_path, "r0")
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    other = write_run(tmp_path, "r1")  # a clean run in the same ingest: nothing of it is written either
    with Store(tmp_path / "s.duckdb") as s:
        before = snapshot(s)
        with pytest.raises(MoescaleError, match=message) as exc:
            ingest(s, [other, d])
        assert "\n" not in str(exc.value)
        assert snapshot(s) == before


def test_duplicated_eval_is_refused(tmp_path):
    d = write_run(tmp_path, "r0")
    with open(d / "evals.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 5, "tokens": 500, "task": "arith", "task_kind": "reasoning",
                             "metric": "accuracy", "value": 0.7}) + "\n")
    with Store(":memory:") as s, pytest.raises(MoescaleError, match=r"evals\.jsonl:2: duplicated \(step, task, metric\)"):
        ingest(s, [d])


def test_ingest_through_the_cli_with_int64_overflow_is_one_line(tmp_path, capsys):
    from scaling.cli import main

    d = write_run(tmp_path, "r0")
    _patch_run_json(d, seed=2**64)
    assert main(["ingest", str(d), "--store", str(tmp_path / "s.duckdb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "beyond the 64-bit integer range" in err


# ----------------------------------------------------------------------------- issue 18: backwards, full disk, damaged store


def test_an_older_partial_copy_never_replaces_a_finished_run(tmp_path, capsys):
    from scaling.cli import main

    store = tmp_path / "s.duckdb"
    done = write_run(tmp_path / "new", "r0", n_steps=8)
    partial = write_run(tmp_path / "old", "r0", n_steps=4, status="running")  # a copy taken mid-run
    ingest(store, [done], progress=False)
    with Store(store) as s:
        before = snapshot(s)
        with pytest.raises(MoescaleError, match=r"old/r0: run 'r0' would go backwards in the store \(status "
                           r"finished -> running, 20 -> 10 metric rows, last step 8 -> 4\).*--replace"):
            ingest(s, [partial])
        assert snapshot(s) == before
    # through the CLI: one line, exit 2, the finished run still in final
    assert main(["ingest", str(partial), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "would go backwards" in err
    assert Store(store).sql("SELECT run_id, tokens FROM final").values.tolist() == [["r0", 800]]
    # a finished copy with fewer steps is refused too; --replace replaces it
    short = write_run(tmp_path / "short", "r0", n_steps=6)
    with pytest.raises(MoescaleError, match=r"20 -> 15 metric rows, last step 8 -> 6"):
        ingest(store, [short], progress=False)
    assert main(["ingest", str(partial), "--store", str(store), "--replace"]) == 0
    assert "replaced 1" in capsys.readouterr().out
    assert Store(store).sql("SELECT status FROM runs").status.tolist() == ["running"]
    assert Store(store).sql("SELECT count(*) AS n FROM final").n[0] == 0


def test_a_restarted_unfinished_run_may_have_fewer_steps(tmp_path):
    """A running or failed run in the store is replaced by any copy: a restart from a checkpoint drops steps."""
    with Store(tmp_path / "s.duckdb") as s:
        ingest(s, [write_run(tmp_path / "a", "r0", n_steps=8, status="failed")])
        assert ingest(s, [write_run(tmp_path / "b", "r0", n_steps=4, status="running")]).replaced == ["r0"]
        assert s.sql("SELECT max(step) AS m FROM metrics").m[0] == 4


class _DiskFull:
    """A DuckDB connection whose COMMIT fails as on a full disk (DuckDB has rolled back by then)."""

    def __init__(self, con):
        self._con = con

    def execute(self, query, *args):
        if query.strip().upper() == "COMMIT":
            self._con.execute("ROLLBACK")
            raise duckdb.TransactionException(
                'TransactionContext Error: Failed to commit: could not write file "s.duckdb.wal": No space left on device')
        return self._con.execute(query, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_a_full_disk_says_no_space_left_and_leaves_the_store_unchanged(tmp_path, monkeypatch, capsys):
    from contextlib import contextmanager

    from scaling.cli import main

    store = tmp_path / "s.duckdb"
    ingest(store, [write_run(tmp_path, "r0")], progress=False)
    before = snapshot(Store(store))
    real = Store.connect

    @contextmanager
    def connect(self, read_only=False):
        with real(self, read_only) as con:
            yield _DiskFull(con)

    monkeypatch.setattr(Store, "connect", connect)
    assert main(["ingest", str(write_run(tmp_path, "r1")), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {store}: ingest failed, store unchanged: no space left on device")
    monkeypatch.undo()
    assert snapshot(Store(store)) == before


def test_ingest_into_a_truncated_store_is_one_line(tmp_path, capsys):
    from scaling.cli import main

    store = tmp_path / "s.duckdb"
    ingest(store, [write_run(tmp_path, f"r{i}", n_steps=400) for i in range(4)], progress=False)
    with open(store, "r+b") as fh:
        fh.truncate(store.stat().st_size // 2)
    assert main(["ingest", str(write_run(tmp_path / "more", "r9")), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {store}: ") and "damaged or truncated" in err, err
