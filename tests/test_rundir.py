import json
import math
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling.errors import MoescaleError
from scaling.rundir import RunWriter, read_run_dir, read_run_json

CONFIG = {"d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 128, "n_experts": 8, "top_k": 2, "lr": 1e-3}


def test_writer_round_trip(tmp_path):
    with RunWriter(tmp_path / "r", "r1", CONFIG, sweep="s", code_version="abc", columns={"n_total": 1234}) as w:
        w.log(10, 20480, train_loss=3.5, lr=1e-3)
        w.log(20, 40960, train_loss=3.25, val_loss=3.375)
        w.log_eval(20, 40960, "arith", "accuracy", 0.5, task_kind="reasoning", n_examples=200)
    rec = read_run_dir(tmp_path / "r")
    assert rec.run["run_id"] == "r1" and rec.run["status"] == "finished" and rec.run["sweep"] == "s"
    assert rec.run["d_model"] == 64 and rec.run["n_total"] == 1234 and rec.run["seed"] is None
    assert rec.run["config"] == CONFIG
    m = rec.metrics
    assert list(m.columns) == ["run_id", "step", "tokens", "name", "value"]
    assert list(zip(m.step, m.name, m.value)) == [
        (10, "lr", 1e-3), (10, "train_loss", 3.5), (20, "train_loss", 3.25), (20, "val_loss", 3.375)
    ]  # fmt: skip
    e = rec.evals.iloc[0]
    assert (e.task, e.task_kind, e.metric, e.value, e.n_examples) == ("arith", "reasoning", "accuracy", 0.5, 200)
    assert rec.warnings == []


def test_exception_marks_run_failed_and_run_json_is_atomic(tmp_path):
    with pytest.raises(RuntimeError):
        with RunWriter(tmp_path / "r", "r1", CONFIG) as w:
            w.log(1, 2, train_loss=1.0)
            raise RuntimeError("boom")
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "failed"
    assert [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")] == []


def test_refuses_to_overwrite_a_run(tmp_path):
    RunWriter(tmp_path / "r", "r1", CONFIG).close()
    with pytest.raises(MoescaleError, match="already holds a run"):
        RunWriter(tmp_path / "r", "r2", CONFIG)


def test_nonfinite_values_are_kept_and_null_means_not_measured(tmp_path):
    with RunWriter(tmp_path / "r", "r1", CONFIG) as w:
        w.log(1, 10, train_loss=float("inf"), val_loss=None)
        w.log(2, 20, train_loss=float("nan"), grad_norm=-math.inf)
    m = read_run_dir(tmp_path / "r").metrics
    assert list(zip(m.step, m.name)) == [(1, "train_loss"), (2, "grad_norm"), (2, "train_loss")]
    assert m.value.iloc[0] == math.inf and m.value.iloc[1] == -math.inf and math.isnan(m.value.iloc[2])


def test_parquet_metrics_match_jsonl(tmp_path):
    with RunWriter(tmp_path / "r", "r1", CONFIG, metrics_parquet=True) as w:
        for s in range(1, 6):
            w.log(s, s * 100, train_loss=1.0 / s, **({"val_loss": 2.0 / s} if s % 2 else {}))
    assert (tmp_path / "r" / "metrics.parquet").exists()
    from_parquet = read_run_dir(tmp_path / "r").metrics
    (tmp_path / "r" / "metrics.parquet").unlink()
    from_jsonl = read_run_dir(tmp_path / "r").metrics
    assert from_parquet.to_dict("list") == from_jsonl.to_dict("list")


def _metrics_file(tmp_path, lines):
    with RunWriter(tmp_path / "r", "r1", CONFIG) as w:
        pass
    (tmp_path / "r" / "metrics.jsonl").write_text("".join(lines))
    return tmp_path / "r"


def test_truncated_last_line_warns_and_keeps_the_rest(tmp_path):
    d = _metrics_file(tmp_path, ['{"step": 1, "tokens": 2, "loss": 3.0}\n', '{"step": 2, "tokens": 4, "lo'])
    with pytest.warns(UserWarning, match=r"metrics\.jsonl:2: ignored a truncated last line"):
        rec = read_run_dir(d)
    assert rec.metrics.value.tolist() == [3.0]
    assert len(rec.warnings) == 1


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"step": 1, "tokens": 2, "loss": 3.0}\n', "{oops\n", '{"step": 3, "tokens": 6}\n'], r"metrics\.jsonl:2: malformed JSON"),
        (['{"step": 1, "tokens": 2, "loss": "abc"}\n'], r"metrics\.jsonl:1: column 'loss': value 'abc' is not a number"),
        (['{"step": 1, "tokens": 2, "loss": true}\n'], r"metrics\.jsonl:1: column 'loss': value True is not a number"),
        (['{"tokens": 2, "loss": 1.0}\n'], r"metrics\.jsonl:1: column 'step' is missing"),
        (['{"step": 1.5, "tokens": 2}\n'], r"metrics\.jsonl:1: column 'step': value 1.5 is not an integer"),
        (['{"step": 1, "tokens": NaN}\n'], r"metrics\.jsonl:1: column 'tokens': value nan is not an integer"),
        (["[1, 2]\n", '{"step": 1, "tokens": 2}\n'], r"metrics\.jsonl:1: expected a JSON object"),
    ],
)
def test_malformed_lines_name_file_line_and_column(tmp_path, lines, message):
    d = _metrics_file(tmp_path, lines)
    with pytest.raises(MoescaleError, match=message):
        read_run_dir(d)


@pytest.mark.parametrize(
    "run, message",
    [
        ({"run_id": "r", "status": "done", "config": {}}, "key 'status': 'done' is not one of running"),
        ({"status": "running", "config": {}}, "key 'run_id' must be a non-empty string"),
        ({"run_id": "r", "status": "running", "config": []}, "key 'config' must be a JSON object"),
        ({"run_id": "r", "status": "running", "config": {"d_model": "big"}}, "run.json: column 'd_model': value 'big' is not an integer"),
        ({"run_id": "r", "status": "running", "config": {}, "created_at": "yesterday"}, "not an ISO 8601"),
    ],
)
def test_run_json_validation(tmp_path, run, message):
    (tmp_path / "run.json").write_text(json.dumps(run))
    with pytest.raises(MoescaleError, match=message):
        read_run_json(tmp_path)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(MoescaleError, match="no run.json"):
        read_run_dir(tmp_path)
    (tmp_path / "run.json").write_text('{"run_id": ')
    with pytest.raises(MoescaleError, match=r"run\.json:1:\d+: malformed JSON"):
        read_run_dir(tmp_path)


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6), st.none()
)
rows = st.lists(
    st.fixed_dictionaries({"loss": values, "lr": values}, optional={"val_loss": values}), min_size=1, max_size=12
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows, cut=st.integers(min_value=1, max_value=400), data=st.data())
def test_property_truncated_last_line(tmp_path_factory, rows, cut, data):
    """Whatever a killed writer leaves, the reader returns exactly the complete lines."""
    d = tmp_path_factory.mktemp("run")
    lines = [json.dumps({"step": i, "tokens": 10 * i, **r}) + "\n" for i, r in enumerate(rows)]
    truncate = data.draw(st.booleans())
    text = "".join(lines)
    kept = len(rows)
    if truncate:
        last = lines[-1]
        cut = min(cut, len(last) - 2)  # leave at least one character cut off
        text = "".join(lines[:-1]) + last[:cut]
        kept = len(rows) - 1
    d = _metrics_file(d, [text])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = read_run_dir(d)
    expected = sorted(
        ((i, k, float(v)) for i, r in enumerate(rows[:kept]) for k, v in r.items() if v is not None),
        key=lambda t: (t[0], t[1]),
    )
    got = list(zip(rec.metrics.step, rec.metrics.name, rec.metrics.value))
    assert len(got) == len(expected)
    for (s1, n1, v1), (s2, n2, v2) in zip(got, expected):
        assert (s1, n1) == (s2, n2)
        assert (math.isnan(v1) and math.isnan(v2)) or v1 == v2
    assert len(rec.warnings) <= 1


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=2, max_value=10), bad=st.data(), junk=st.sampled_from(["{", "}", "x", '{"step": 1,', "nul"]))
def test_property_malformed_middle_line_is_an_error(tmp_path_factory, n, bad, junk):
    d = tmp_path_factory.mktemp("run")
    where = bad.draw(st.integers(min_value=0, max_value=n - 2))
    lines = [json.dumps({"step": i, "tokens": i, "loss": 1.0}) + "\n" for i in range(n)]
    lines[where] = junk + "\n"
    d = _metrics_file(d, lines)
    with pytest.raises(MoescaleError, match=rf"metrics\.jsonl:{where + 1}: "):
        read_run_dir(d)


# ---- writer: architecture columns, safe run ids, reopen for resume ----------------------


def test_writer_derives_typed_columns_from_the_architecture(tmp_path):
    from scaling.architecture import Architecture

    arch = Architecture(d_model=64, n_layers=2, n_heads=2, d_ff=128, n_experts=8, top_k=2, vocab_size=512, seq_len=128)
    RunWriter(tmp_path / "r", "r1", {"lr": 1e-3}, architecture=arch, tokens_planned=5000, seed=3).finish()
    run = read_run_json(tmp_path / "r")
    expected = {"d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 128, "n_experts": 8, "top_k": 2, "vocab_size": 512,
                "seq_len": 128, "n_total": arch.n_total, "n_active": arch.n_active, "n_total_nonembed": arch.n_total_nonembed,
                "n_active_nonembed": arch.n_active_nonembed, "flops_per_token": float(arch.flops_per_token),
                "tokens_planned": 5000, "seed": 3}  # fmt: skip
    assert {k: run[k] for k in expected} == expected
    # a config holding an "architecture" mapping (TrainConfig.to_dict()) gives the same columns
    RunWriter(tmp_path / "s", "s1", {"architecture": arch.to_dict()}).finish()
    assert read_run_json(tmp_path / "s")["n_total"] == arch.n_total == 2 * 512 * 64 + 2 * (4 * 64 * 64 + 64 * 8 + 8 * 3 * 64 * 128 + 2 * 64) + 64


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "r 1", "r1\n", "ü", "../x", None, 7])
def test_writer_refuses_path_unsafe_run_ids(tmp_path, bad):
    with pytest.raises(MoescaleError, match="run_id must be"):
        RunWriter(tmp_path / "r", bad, {})
    assert not (tmp_path / "r").exists()


def test_reopen_drops_lines_after_the_step_and_a_truncated_tail(tmp_path):
    d = tmp_path / "r"
    w = RunWriter(d, "r-1.a_b", CONFIG)
    for step in (1, 2, 3, 4):
        w.log(step, step * 10, train_loss=1.0 / step)
        w.log_eval(step, step * 10, "facts", "accuracy", step / 10, task_kind="memorization")
    w.close()
    with open(d / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "tokens": 5')  # killed mid-line
    w = RunWriter.reopen(d, through_step=2)
    assert read_run_json(d)["status"] == "running"
    w.log(3, 30, train_loss=0.25)
    w.finish()
    rec = read_run_dir(d)
    assert rec.run["status"] == "finished" and not rec.warnings
    assert list(zip(rec.metrics.step, rec.metrics.value)) == [(1, 1.0), (2, 0.5), (3, 0.25)]
    assert rec.evals.step.tolist() == [1, 2]
    w = RunWriter.reopen(d, through_step=0)
    w.finish("failed", error="RuntimeError: boom")
    rec = read_run_dir(d)
    assert rec.metrics.empty and rec.evals.empty and rec.run["error"] == "RuntimeError: boom"


def test_context_manager_records_the_first_line_of_a_crash(tmp_path):
    with pytest.raises(ValueError):
        with RunWriter(tmp_path / "r", "r1", CONFIG):
            raise ValueError("first line\nsecond line")
    run = read_run_json(tmp_path / "r")
    assert run["status"] == "failed" and run["error"] == "first line"


def test_readme_run_writer_example_gives_a_complete_final_row(tmp_path, monkeypatch):
    """The README's RunWriter example, run exactly as written: its final row has n_total and tpp."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "RunWriter(" in b]
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    from scaling.store import Store

    with Store("moescale.duckdb") as store:
        row = store.sql("SELECT * FROM final").iloc[0]
    arch = namespace["arch"]
    assert row["n_total"] == arch.n_total and row["tpp"] == pytest.approx(12_800 / arch.n_total)
    assert row["val_loss"] == 5.3 and row["arith_accuracy"] == 0.12 and row["sparsity"] == 4
    assert row["flops_per_token"] == arch.flops_per_token and row["tokens_planned"] == 12_800


def test_run_json_is_written_atomically_with_the_umask_mode(tmp_path):
    import os
    import stat

    from scaling.rundir import write_json_atomic

    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "run.json", {"a": [1, 2]})
        with pytest.raises(ValueError):
            write_json_atomic(tmp_path / "run.json", {"a": math.nan})  # strict JSON: the old file stays
    finally:
        os.umask(old)
    assert (tmp_path / "run.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}\n'
    assert stat.S_IMODE((tmp_path / "run.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


@pytest.mark.parametrize(
    "row,message",
    [
        ({"task": ""}, r"evals\.jsonl: log_eval: field 'task': value '' is not a non-empty string$"),
        ({"metric": ""}, r"evals\.jsonl: log_eval: field 'metric': value '' is not a non-empty string$"),
        ({"task_kind": "facts"}, r"evals\.jsonl: log_eval: field 'task_kind': value 'facts' is not one of"),
        ({"step": -1}, r"evals\.jsonl: log_eval: field 'step': value -1 must be >= 0$"),
        ({"value": "high"}, r"evals\.jsonl: log_eval: field 'value': value 'high' is not a number$"),
    ],
)
def test_log_eval_refuses_what_ingest_would_refuse(tmp_path, row, message):
    # An empty task was written and the whole run was then refused by ingest (issue 18): refuse it at write time.
    w = RunWriter(tmp_path / "r", "r", {})
    good = {"step": 1, "tokens": 10, "task": "arith", "metric": "accuracy", "value": 0.5}
    with pytest.raises(MoescaleError, match=message):
        w.log_eval(**{**good, **row})
    w.log_eval(**good)
    w.finish()
    rec = read_run_dir(tmp_path / "r")
    assert rec.evals[["task", "metric", "value"]].values.tolist() == [["arith", "accuracy", 0.5]]


def test_code_version_names_the_version_and_the_commit():
    import re
    import subprocess
    from pathlib import Path

    from scaling import __version__
    from scaling.rundir import code_version

    root = Path(__file__).resolve().parents[1]
    v = code_version()
    if not (root / ".git").exists():
        assert v == __version__
        return
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    m = re.fullmatch(rf"{re.escape(__version__)}\+g([0-9a-f]{{7,}})(\.dirty)?", v)
    assert m and head.startswith(m.group(1)), v
