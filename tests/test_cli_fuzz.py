"""Every `moescale` command, fuzzed: exit 0 or 2 (never 1, never a traceback), one line on
error, and on exit 2 the store and the folder around it unchanged (issue 8, point 6).

How a command joins: nothing to do. The test walks every group in ``scaling.cli.GROUPS``
(argparse subparsers down to the leaf commands) and draws argument vectors from each leaf's
own positionals and options, with values from :data:`VALUES` (valid, invalid and hostile
ones; add values a new command needs there). A command that starts long work (training, a
sweep, a demo) must say so, with ``parser.set_defaults(long_running=True)`` in its
``register``, or by its name in :data:`LONG_RUNNING`: it is then given only ``--help`` and
argument vectors with an option argparse refuses, so its handler never runs here.

Each example runs ``scaling.cli.main(argv)`` in-process, in a fresh copy of a small
workspace (a store with one run and a table, a CSV, run directories), offline.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling import cli, datasets
from scaling.ingest import ingest
from scaling.rundir import RunWriter
from scaling.store import Store

#: Command paths (or their first word) that start long work; see the module docstring.
LONG_RUNNING = {("sweep",), ("train",), ("demo",)}

#: Values drawn for positionals and options ({tmp}: the example's folder, {missing}: a folder that is not there).
VALUES = [
    "{tmp}/data.csv", "t", "final", "runs", "fits", "{tmp}/runs", "{tmp}/runs/r0", "{tmp}/bad", "{tmp}/empty",
    "{tmp}/s.duckdb", "{tmp}/data.csv", "{tmp}/new.duckdb", "{tmp}/out.csv", "{tmp}/out.json", "{tmp}/out.yaml",
    "{missing}/x.json", "{missing}/x.csv", "{tmp}/lost.csv", "{tmp}",
    "power", "E + A*x**-alpha", "nope", "x=flops", "x=flops; DELETE FROM runs", "x=flops) AS a, (1", "x",
    "alpha=1:0", "alpha=0:1", "E=1.7", "E=abc", "A=10,100", "alpha=nan", "zeta=1",
    "-1", "0", "1", "2", "3", "1e10", "10000000000", "1e18", "670M", "abc", "", "nan", "inf", "64", "128",
    "SELECT 1 AS one", "SELECT count(*) AS n FROM runs", "SELECT 1; DELETE FROM metrics", "DELETE FROM runs",
    "DROP VIEW final", "UPDATE meta SET value='99'", "ATTACH '{tmp}/o.duckdb' AS o", "val_loss", "flops > 1e19",
    "flops > 0; DELETE FROM runs", "chinchilla_epoch", "mse", "huber", "cpu-tiny",
]  # fmt: skip


def _leaves(parser: argparse.ArgumentParser, path=()):
    """(command path, leaf parser) for every command reachable through subparsers."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, path + (name,))


PARSER = cli.build_parser()
LEAVES = dict(_leaves(PARSER))


def _long_running(path, parser) -> bool:
    return bool(parser.get_default("long_running")) or any(path[: len(p)] == p for p in LONG_RUNNING)


def test_every_group_is_fuzzed():
    assert {path[0] for path in LEAVES} == {
        name for group in cli.GROUPS for name in _command_names(group)
    }
    assert ("fit",) in LEAVES and ("db", "sql") in LEAVES and ("plan", "grid") in LEAVES


def _command_names(group: str):
    sub = argparse.ArgumentParser().add_subparsers()
    __import__(f"scaling.cli.{group}", fromlist=["register"]).register(sub)
    return list(sub.choices)


@st.composite
def argv_for(draw, path, parser):
    value = st.sampled_from(VALUES)
    argv = list(path)
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    for a in actions:
        if a.option_strings:
            continue
        n = 1 if a.nargs in (None, 1) else draw(st.integers(1, 2))
        argv += [draw(st.sampled_from(list(a.choices)) if a.choices else value) for _ in range(n)]
    for a in actions:
        if not a.option_strings or not draw(st.booleans() if not a.required else st.sampled_from([True] * 4 + [False])):
            continue
        argv.append(a.option_strings[-1])
        if a.nargs == 0:
            continue
        n = draw(st.integers(1, 2)) if a.nargs in ("+", "*") else 1
        pool = st.sampled_from(list(a.choices) + ["bogus"]) if a.choices else value
        argv += [draw(pool) for _ in range(n)]
    if _long_running(path, parser):
        argv += draw(st.sampled_from([["--help"], ["--no-such-option-for-the-fuzz"]]))
    return argv


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    flops = np.exp(rng.uniform(np.log(1e18), np.log(1e22), 12))
    pd.DataFrame({"flops": flops, "val_loss": 1.7 + 50 * flops**-0.1, "run_id": range(12)}).to_csv(root / "data.csv", index=False)
    (root / "lost.csv").write_text("a,b\n1,2\n3\n4,5,6\n")
    with RunWriter(root / "runs" / "r0", "r0", {"n_experts": 4, "top_k": 1, "n_total": 100}) as w:
        w.log(1, 10, val_loss=3.0)
    with RunWriter(root / "bad", "bad", {"n_experts": 4, "top_k": 1}) as w:
        w.log(1, 10, val_loss=3.0)
    (root / "bad" / "metrics.jsonl").write_text('{"step": 1, "tokens": -10, "loss": 1.0}\n')
    (root / "empty").mkdir()
    with Store(root / "s.duckdb") as store:
        ingest(store, [root / "runs"], progress=False)
        store.import_table(root / "data.csv", "t")
    for lock in root.glob("*.lock"):
        lock.unlink()
    return root, _snapshot(root)


def _snapshot(folder: Path) -> dict:
    files = {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.endswith((".lock", ".wal"))}
    con = duckdb.connect(str(folder / "s.duckdb"), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        rows = {t: con.execute(f'SELECT * FROM "{t}"').df().to_csv(index=False) for t in tables}
    finally:
        con.close()
    return {"files": files, "rows": rows}


def _run(argv, folder: Path):
    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(folder)
    os.environ["MOESCALE_STORE"] = str(folder / "s.duckdb")
    os.environ["MOESCALE_CACHE"] = str(folder / "cache")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return code, out.getvalue(), err.getvalue()


def _offline(*args, **kwargs):
    raise OSError("offline in the fuzz test")


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_fuzzed_arguments_exit_0_or_2_with_one_line_and_nothing_half_done(path, workspace, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_fetch", _offline)
    workspace, before = workspace  # every example starts from a copy of it, so from this snapshot
    parser = LEAVES[path]
    counter = iter(range(10**6))

    @settings(max_examples=8, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(argv=argv_for(path, parser))
    def check(argv):
        folder = tmp_path / f"ex{next(counter)}"
        shutil.copytree(workspace, folder)
        argv = [a.format(tmp=folder, missing=folder / "missing") for a in argv]
        code, out, err = _run(argv, folder)
        assert code in (0, 2), (argv, code, err[-2000:])
        assert "Traceback" not in err, (argv, err[-2000:])
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
            assert _snapshot(folder) == before, argv
        shutil.rmtree(folder)

    check()


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    # `moescale ... | head` closes stdout early: no traceback and no error line, the exit
    # status a shell gives a process ended by SIGPIPE.
    import subprocess
    import sys

    Store(tmp_path / "s.duckdb").close()
    cmd = [sys.executable, "-m", "scaling.cli", "db", "sql", "SELECT * FROM range(200000)", "--store", str(tmp_path / "s.duckdb")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().split() == [b"range"]
    proc.stdout.close()  # 200,000 lines are far more than a pipe holds: the next writes fail
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and stderr == ""


# ----------------------------------------------------------------------------- long commands
# train and sweep get mutated RUN.yaml and sweep files (a tiny model, so a valid mutation
# trains in a second); demo gets drawn arguments with its training stood in for. Each: exit 0
# or 2, one line on error, and on exit 2 no run directory, no store and no sweep file left.

TINY_RUN = {
    "architecture": {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "n_experts": 2, "top_k": 1,
                     "vocab_size": 512, "seq_len": 32},
    "tokens": 256, "seed": 0,
    "data": {"kind": "synthetic", "n_people": 4, "exposures": 2, "train_tokens": 4096, "val_tokens": 512,
             "eval_examples": 8},
    "batch_tokens": 128, "log_interval": 1, "eval_interval": 2, "eval_examples": 8, "checkpoint_interval": 2,
}  # fmt: skip
HOSTILE = [-1, 0, 1, 2**70, 1e30, 1e-30, 3.5, "abc", "", None, [], {}, True, "parquet", "cuda", "nan"]


def _key_paths(tree, prefix=()):
    for k, v in tree.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _key_paths(v, prefix + (k,))


@st.composite
def mutated_yaml(draw, base: dict) -> bytes:
    """YAML text of ``base`` with one to three mutations: a key set to a hostile value, a key
    dropped, an unknown key added, or the text itself damaged (a duplicated line, a byte that is
    not UTF-8, a cut)."""
    import copy

    import yaml

    tree = copy.deepcopy(base)
    paths = list(_key_paths(tree))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "set", "drop", "add"]))
        path = draw(st.sampled_from(paths))
        node = tree
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict) or path[-1] not in node:
            continue
        if kind == "set":
            node[path[-1]] = draw(st.sampled_from(HOSTILE))
        elif kind == "drop":
            del node[path[-1]]
        else:
            node["no_such_key"] = draw(st.sampled_from(HOSTILE))
    text = yaml.safe_dump(tree, sort_keys=False).encode()
    damage = draw(st.sampled_from(["none", "none", "duplicate", "bytes", "cut"]))
    lines = text.splitlines(keepends=True)
    if damage == "duplicate" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
        text = b"".join(lines)
    elif damage == "bytes":
        text = text + b"# \xff\xfe\n"
    elif damage == "cut" and len(text) > 2:
        text = text[: draw(st.integers(1, len(text) - 1))]
    return text


def _check_long(argv, folder, made):
    code, out, err = _run(argv, folder)
    assert code in (0, 2), (argv, code, err[-2000:])
    assert "Traceback" not in err, (argv, err[-2000:])
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        left = [p for p in made if p.exists() and (p.is_file() or any(p.iterdir()))]
        assert not left, (argv, err, left)
    return code


FUZZ = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _fuzz_file(tmp_path, base: dict, name: str, argv: list[str], made: list[str]) -> None:
    """Run ``argv`` on ``base`` written as ``name`` (it must exit 0), then on mutations of it (``_check_long``;
    ``made``: what exit 2 must not leave behind)."""
    import yaml

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / name).write_text(yaml.safe_dump(base, sort_keys=False))
    assert _check_long(argv, tmp_path / "base", []) == 0  # the unmutated file runs
    counter = iter(range(10**6))

    @FUZZ
    @given(text=mutated_yaml(base))
    def check(text):
        folder = tmp_path / f"ex{next(counter)}"
        folder.mkdir()
        (folder / name).write_bytes(text)
        _check_long(argv, folder, [folder / m for m in made])

    check()


def test_mutated_run_files_train_or_are_refused_with_one_line(tmp_path):
    _fuzz_file(tmp_path, TINY_RUN, "run.yaml", ["train", "run.yaml", "--out", "runs", "--quiet", "--threads", "1"],
               ["runs"])


def test_mutated_sweep_files_run_or_are_refused_with_one_line(tmp_path):
    from scaling.architecture import Architecture
    from scaling.planner import PlannedRun

    run = PlannedRun.create(Architecture(**TINY_RUN["architecture"]), 256, 0, compute=None)
    base = {"name": "fuzz", "train": {k: v for k, v in TINY_RUN.items() if k not in ("architecture", "tokens", "seed")},
            "runs": [{k: v for k, v in run.to_dict().items() if k != "derived"}]}
    argv = ["sweep", "sweep.yaml", "--store", "s.duckdb", "--out", "runs", "--workers", "1", "--threads", "1", "--quiet"]
    _fuzz_file(tmp_path, base, "sweep.yaml", argv, ["runs", "s.duckdb"])


def test_demo_arguments_exit_0_or_2_before_any_training(tmp_path, monkeypatch):
    import scaling.demo
    from scaling.errors import MoescaleError

    def no_training(*args, **kwargs):
        raise MoescaleError("training stood in for by the fuzz test")

    monkeypatch.setattr(scaling.demo, "train_sweep", no_training)
    options = ["--out", "--workers", "--preset", "--seed", "--bootstrap"]
    counter = iter(range(10**6))

    @FUZZ
    @given(pairs=st.lists(st.tuples(st.sampled_from(options), st.sampled_from(VALUES + ["cpu-study", "gpu-small"])),
                          min_size=1, max_size=4))
    def check(pairs):
        folder = tmp_path / f"ex{next(counter)}"
        folder.mkdir()
        argv = ["demo", "--quiet"] if "--quiet" in LEAVES[("demo",)].format_help() else ["demo"]
        for opt, val in pairs:
            argv += [opt, val.format(tmp=folder, missing=folder / "missing")]
        code, out, err = _run(argv, folder)
        assert code in (0, 2), (argv, code, err[-2000:])
        assert "Traceback" not in err, (argv, err[-2000:])
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
            if "stood in for" not in err:  # refused before any work: no demo folder or store
                assert not list(folder.rglob("*.duckdb")), (argv, err)

    check()
