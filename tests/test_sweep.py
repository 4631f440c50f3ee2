"""Sweeps: every run once in the store, kill -9 and restart, two sweeps at once, divergence,
retries, bad input, status, submitit; with a stand-in trainer (fast, and its resumes are
visible) and with the real one on tiny models."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from scaling.architecture import Architecture
from scaling.cli import main as cli_main
from scaling.errors import MoescaleError
from scaling.planner import PlannedRun, Sweep
from scaling.store import Store

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for runner.train with the same interface: TrainConfig.from_planned / run_id
# and train(config, out, resume=True, quiet, threads, corpora) -> status, passed to the sweep
# as TRAINER = Trainer(train, TrainConfig), as the real one is. It writes a real run
# directory (RunWriter's format), checkpoints every `checkpoint_every` steps, resumes
# from the checkpoint (dropping later metric lines), diverges when lr >= 1 on an MoE,
# fails its first `fail_times` attempts, and appends one line per train() call to
# <out>/../trainings.log: "run_id pid start_step", so tests can count trainings.
FAKE_TRAINER = textwrap.dedent('''
    import dataclasses, hashlib, json, os, time
    from pathlib import Path

    from runner.sweep import Trainer
    from scaling.errors import MoescaleError
    from scaling.files import atomic_write
    from scaling.rundir import RunWriter


    def _atomic_write_json(path, obj):
        atomic_write(path, json.dumps(obj, indent=2) + "\\n")

    KNOWN = {"lr", "steps", "step_seconds", "checkpoint_every", "fail_times", "sweep"}


    @dataclasses.dataclass
    class TrainConfig:
        run: dict
        lr: float = 1e-3
        steps: int = 6
        step_seconds: float = 0.0
        checkpoint_every: int = 2
        fail_times: int = 0
        sweep: str = None

        @classmethod
        def from_planned(cls, run, overrides=None):
            unknown = sorted(set(overrides or {}) - KNOWN)
            if unknown:
                raise MoescaleError(f"unknown key(s) {', '.join(unknown)}")
            return cls(run=run.to_dict(), **(overrides or {}))

        @property
        def run_id(self):
            d = dataclasses.asdict(self)
            d.pop("sweep"), d.pop("step_seconds")
            return self.run["run_id"] + "-" + hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:6]


    def train(config, out, *, resume=True, quiet=False, threads=None, corpora=None):
        d = Path(out) / config.run_id
        run_file, ckpt = d / "run.json", d / "checkpoint.json"
        status = json.loads(run_file.read_text())["status"] if run_file.exists() else None
        if status in ("finished", "diverged"):
            return status
        start = json.loads(ckpt.read_text())["step"] if (resume and status and ckpt.exists()) else 0
        with open(Path(out).parent / "trainings.log", "a") as fh:
            fh.write(f"{config.run_id} {os.getpid()} {start}\\n")
        if start:
            for name in ("metrics.jsonl", "evals.jsonl"):  # as RunWriter.reopen: drop lines after the checkpoint
                path = d / name
                lines = path.read_text().splitlines() if path.exists() else []
                keep = [l for l in lines if l.strip().endswith("}") and json.loads(l)["step"] <= start]
                path.write_text("".join(l + "\\n" for l in keep))
            run = json.loads(run_file.read_text())
        else:
            for f in (run_file, ckpt, d / "metrics.jsonl", d / "evals.jsonl"):
                f.unlink(missing_ok=True)
            a = config.run["architecture"]
            cols = {**a, **config.run["derived"], "tokens_planned": config.run["tokens"], "seed": config.run["seed"]}
            w = RunWriter(d, config.run_id, dataclasses.asdict(config), sweep=config.sweep, columns=cols)
            w.close()
            run = w.run
        attempts = d / "attempts"
        n = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(n))
        if n <= config.fail_times:
            raise RuntimeError(f"boom on attempt {n}")
        tokens_per_step = max(1, config.run["tokens"] // config.steps)
        moe = config.run["architecture"]["n_experts"] > 1
        with open(d / "metrics.jsonl", "a") as fh:
            for step in range(start + 1, config.steps + 1):
                time.sleep(config.step_seconds)
                loss = float("nan") if (config.lr >= 1 and moe and step >= 3) else 5.0 / step
                fh.write(json.dumps({"step": step, "tokens": step * tokens_per_step, "train_loss": loss,
                                     "tokens_per_s": 1000.0}) + "\\n")
                fh.flush()
                if loss != loss:
                    run["status"] = "diverged"
                    _atomic_write_json(run_file, run)
                    return "diverged"
                if step % config.checkpoint_every == 0:
                    _atomic_write_json(ckpt, {"step": step})
        with open(d / "evals.jsonl", "a") as fh:
            if start < config.steps:  # resumed after its last step: the final eval is already kept
                fh.write(json.dumps({"step": config.steps, "tokens": config.steps * tokens_per_step, "task": "facts",
                                     "task_kind": "memorization", "metric": "accuracy", "value": 0.5,
                                     "n_examples": 10}) + "\\n")
        run["status"] = "finished"
        _atomic_write_json(run_file, run)
        return "finished"


    TRAINER = Trainer(train=train, config_class=TrainConfig)


    def train_named(config, out, **kwargs):
        """Fails as a real TrainConfig names its source: "run ID: key ...: ..."."""
        raise MoescaleError(f"run {config.run_id}: key 'data': no such file x.bin")


    NAMED = Trainer(train=train_named, config_class=TrainConfig)
''')


def tiny_sweep(path: Path, n: int = 4, d_model: int = 32, tokens: int = 4096, name: str = "t", seq_len: int = 64) -> Path:
    """A sweep file of ``n`` tiny runs (dense and MoE alternating)."""
    runs = []
    for i in range(n):
        experts = 1 if i % 2 == 0 else 4
        arch = Architecture(d_model=d_model, n_layers=1, n_heads=1, d_ff=2 * d_model, n_experts=experts,
                            top_k=1, vocab_size=512, seq_len=seq_len)
        runs.append(PlannedRun.create(arch, tokens + 64 * i, seed=0))
    Sweep(name=name, runs=runs).to_yaml(path)
    return path


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Install the stand-in trainer as module ``fake_trainer`` (importable by spawned workers)
    and make its ``TRAINER`` the sweep's default (the CLI passes none)."""
    (tmp_path / "fake_trainer.py").write_text(FAKE_TRAINER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delitem(sys.modules, "fake_trainer", raising=False)
    import fake_trainer
    import runner.sweep

    monkeypatch.setattr(runner.sweep, "DEFAULT_TRAINER", fake_trainer.TRAINER)
    return tmp_path


def stand_in():
    """The stand-in ``Trainer`` (after the ``fake`` fixture installed it)."""
    import fake_trainer

    return fake_trainer.TRAINER


def store_runs(path) -> Counter:
    return Counter(Store(path).sql("SELECT run_id FROM runs")["run_id"])


def trainings(tmp_path) -> list[tuple[str, int, int]]:
    log = tmp_path / "trainings.log"
    if not log.exists():
        return []
    return [(r, int(p), int(s)) for r, p, s in (line.split() for line in log.read_text().splitlines())]


def snapshot(run_dir: Path) -> dict:
    return {f.name: (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest())
            for f in sorted(run_dir.iterdir()) if f.is_file()}


def sweep_script(tmp_path, sweep, store, out, workers=2, **kwargs) -> list[str]:
    code = (f"from fake_trainer import TRAINER\n"
            f"from runner.sweep import run_sweep\n"
            f"if __name__ == '__main__':\n"
            f"    r = run_sweep({str(sweep)!r}, {str(store)!r}, {str(out)!r}, workers={workers}, quiet=True, "
            f"trainer=TRAINER, **{kwargs!r})\n"
            f"    print(r)\n")
    script = tmp_path / f"sweep_{len(list(tmp_path.glob('sweep_*.py')))}.py"
    script.write_text(code)
    return [sys.executable, str(script)]


# ----------------------------------------------------------------------------- overrides


def test_parse_overrides():
    from runner.sweep import merge, parse_overrides

    got = parse_overrides(["lr=3e-3", "eval_every=200", "compile=true", "name=abc", "data.n_people=500",
                           "data.kind=synthetic", "betas=[0.9, 0.95]", "dtype=null"])
    assert got == {"lr": 0.003, "eval_every": 200, "compile": True, "name": "abc", "betas": [0.9, 0.95],
                   "dtype": None, "data": {"n_people": 500, "kind": "synthetic"}}
    assert merge({"data": {"kind": "synthetic", "seed": 1}, "lr": 1}, got)["data"] == {
        "kind": "synthetic", "seed": 1, "n_people": 500}
    for bad in (["lr"], ["=3"], ["data..x=1"]):
        with pytest.raises(MoescaleError, match="--set"):
            parse_overrides(bad)
    with pytest.raises(MoescaleError, match="already set"):
        parse_overrides(["data=1", "data.kind=x"])


# ----------------------------------------------------------------------------- reliability


def test_four_runs_two_workers_each_in_store_once(fake):
    from runner.sweep import run_sweep

    sweep, store, out = tiny_sweep(fake / "s.yaml"), fake / "s.duckdb", fake / "runs"
    result = run_sweep(sweep, store, out, workers=2, quiet=True)
    assert result.ok and len(result.finished) == 4 and len(result.trained) == 4 and not result.skipped
    counts = store_runs(store)
    assert len(counts) == 4 and set(counts.values()) == {1}
    assert set(counts) == set(result.finished)
    # each run's metrics once per step, and the sweep's name recorded with the run
    metrics = Store(store).sql("SELECT run_id, step, count(*) AS n FROM metrics WHERE name = 'train_loss' "
                               "GROUP BY ALL")
    assert (metrics["n"] == 1).all() and len(metrics) == 4 * 6
    assert set(Store(store).sql("SELECT sweep FROM runs")["sweep"]) == {"t"}
    # two workers really ran side by side: two distinct worker pids trained
    assert len({pid for _, pid, _ in trainings(fake)}) == 2

    before = {r: snapshot(out / r) for r in counts}
    again = run_sweep(sweep, store, out, workers=2, quiet=True)
    assert again.trained == [] and sorted(again.skipped) == sorted(counts) and again.ok
    assert {r: snapshot(out / r) for r in counts} == before
    assert store_runs(store) == counts and len(trainings(fake)) == 4


def test_sigkill_mid_sweep_then_restart_finishes_the_rest(fake):
    sweep, store, out = tiny_sweep(fake / "s.yaml", n=6), fake / "s.duckdb", fake / "runs"
    settings = {"steps": 12, "step_seconds": 0.12}
    cmd = sweep_script(fake, sweep, store, out, workers=2, overrides=settings)
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    in_flight = []
    while time.monotonic() < deadline:
        statuses = {d.name: json.loads((d / "run.json").read_text())["status"]
                    for d in out.glob("*") if (d / "run.json").exists()}
        finished = [r for r, s in statuses.items() if s == "finished"]
        in_flight = [r for r, s in statuses.items() if s == "running" and (out / r / "checkpoint.json").exists()]
        if finished and in_flight:
            break
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    assert finished and in_flight, "the sweep never had a finished run and a checkpointed one in flight at once"
    statuses = {d.name: json.loads((d / "run.json").read_text())["status"] for d in out.glob("*")
                if (d / "run.json").exists()}
    done_before = {r: snapshot(out / r) for r, s in statuses.items() if s == "finished"}
    interrupted = {r for r, s in statuses.items() if s == "running" and (out / r / "checkpoint.json").exists()}
    checkpoints = {r: json.loads((out / r / "checkpoint.json").read_text())["step"] for r in interrupted}
    log_before = len(trainings(fake))

    from runner.sweep import run_sweep, sweep_status

    assert set(sweep_status(sweep, store, out).state) == {"planned"}  # other settings, other runs
    status = sweep_status(sweep, store, out, overrides=settings)
    assert set(status.loc[status.state == "interrupted", "run_id"]) >= interrupted
    assert not (status.state == "running").any()  # the claims died with their holders

    result = run_sweep(sweep, store, out, workers=2, quiet=True, overrides=settings)
    assert result.ok and len(result.finished) == 6
    assert set(result.skipped) == set(done_before)
    for r, snap in done_before.items():
        assert snapshot(out / r) == snap, f"{r} was finished before the kill and was touched"
    after = trainings(fake)[log_before:]
    assert not {r for r, _, _ in after} & set(done_before), "a finished run was trained again"
    resumed = {r: start for r, _, start in after if r in interrupted}
    assert resumed == checkpoints, "interrupted runs must resume from their last checkpoint"
    counts = store_runs(store)
    assert len(counts) == 6 and set(counts.values()) == {1}
    steps = Store(store).sql("SELECT run_id, step, count(*) AS n FROM metrics WHERE name='train_loss' GROUP BY ALL")
    assert (steps["n"] == 1).all() and len(steps) == 6 * 12
    assert set(Store(store).sql("SELECT status FROM runs")["status"]) == {"finished"}


def test_two_sweeps_at_once_never_train_a_run_twice(fake):
    sweep, store, out = tiny_sweep(fake / "s.yaml", n=6), fake / "s.duckdb", fake / "runs"
    cmd = sweep_script(fake, sweep, store, out, workers=1, overrides={"step_seconds": 0.1})
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("6 finished" in o for o in outputs), outputs
    log = trainings(fake)
    per_run = Counter(r for r, _, _ in log)
    assert len(per_run) == 6 and set(per_run.values()) == {1}, log  # each run trained by exactly one process
    counts = store_runs(store)
    assert len(counts) == 6 and set(counts.values()) == {1}


def test_diverging_runs_are_recorded_and_the_sweep_goes_on(fake):
    from runner.sweep import run_sweep

    sweep, store, out = tiny_sweep(fake / "s.yaml"), fake / "s.duckdb", fake / "runs"
    result = run_sweep(sweep, store, out, workers=2, quiet=True, overrides={"lr": 5.0})  # MoE runs diverge
    assert len(result.diverged) == 2 and len(result.finished) == 2 and result.ok
    runs = Store(store).sql("SELECT run_id, status, n_experts FROM runs ORDER BY run_id")
    assert dict(zip(runs.n_experts, runs.status)) == {1: "finished", 4: "diverged"}
    assert len(runs) == 4
    nan = Store(store).sql("SELECT count(*) AS n FROM metrics WHERE name='train_loss' AND isnan(value)")["n"][0]
    assert nan == 2  # the curves are kept, NaN included
    assert Counter(r for r, _, _ in trainings(fake)) == Counter({r: 1 for r in runs.run_id})  # not retried
    again = run_sweep(sweep, store, out, workers=2, quiet=True, overrides={"lr": 5.0})
    assert again.trained == [] and sorted(again.diverged) == sorted(result.diverged)


def test_failed_run_is_retried_once_then_reported(fake, capsys):
    from runner.sweep import run_sweep

    sweep, store, out = tiny_sweep(fake / "s.yaml", n=2), fake / "s.duckdb", fake / "runs"
    result = run_sweep(sweep, store, out, workers=1, overrides={"fail_times": 1})
    assert result.ok and len(result.finished) == 2 and len(trainings(fake)) == 4  # each failed once, then passed
    assert "will retry" in capsys.readouterr().out
    code = cli_main(["sweep", str(sweep), "--store", str(store), "--out", str(out), "--set", "fail_times=5",
                     "--workers", "2", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 1  # the sweep ran to its end but some runs failed
    assert "0 finished, 0 diverged, 2 failed of 2 runs" in printed
    assert printed.count("RuntimeError: boom on attempt 2") == 4  # two log lines and two in the summary
    assert len(trainings(fake)) == 4 + 2 * 2  # two attempts each, no more
    assert set(Store(store).sql("SELECT status FROM runs WHERE config->>'fail_times' = '5'")["status"]) == {"failed"}


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_exit_2_and_starts_nothing(fake, capsys):
    sweep, out = tiny_sweep(fake / "s.yaml"), fake / "runs"
    malformed = fake / "bad.yaml"
    malformed.write_text("name: x\nruns: [\n")
    notsweep = fake / "list.yaml"
    notsweep.write_text("- 1\n- 2\n")
    cases = [
        (["sweep", str(fake / "missing.yaml"), "--store", str(fake / "s.duckdb")], "no such file"),
        (["sweep", str(malformed), "--store", str(fake / "s.duckdb")], "not valid YAML"),
        (["sweep", str(notsweep), "--store", str(fake / "s.duckdb")], "expected a mapping"),
        (["sweep", str(sweep), "--store", str(fake / "s.duckdb"), "--set", "nosuchkey=1"], "nosuchkey"),
        (["sweep", str(sweep), "--store", str(fake / "s.duckdb"), "--set", "lr"], "expected key=value"),
        (["sweep", str(sweep), "--store", str(fake / "no" / "such" / "s.duckdb")], "does not exist"),
        (["sweep", str(sweep), "--store", str(fake / "s.duckdb"), "--workers", "0"], "workers"),
    ]
    for argv, message in cases:
        code = cli_main([*argv, "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists() and not (fake / "s.duckdb").exists(), argv
    assert trainings(fake) == []


def test_cli_reports_a_missing_sweep_file_without_traceback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "scaling.cli", "sweep", str(tmp_path / "nope.yaml"), "--store",
                          str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "runs")],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- status and progress


def test_status_table_without_running_anything(fake, capsys):
    from runner.sweep import run_sweep, sweep_status

    sweep, store, out = tiny_sweep(fake / "s.yaml"), fake / "s.duckdb", fake / "runs"
    status = sweep_status(sweep, store, out)
    assert list(status.state) == ["planned"] * 4 and not status.in_store.any() and not store.exists()
    run_sweep(sweep, store, out, workers=1, quiet=True)
    first = sorted(status.run_id)[0]
    run = json.loads((out / first / "run.json").read_text())
    run["status"] = "running"  # as a SIGKILL leaves it
    (out / first / "run.json").write_text(json.dumps(run))
    from runner.locks import RunClaim

    other = sorted(status.run_id)[1]
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from runner.locks import RunClaim
        c = RunClaim({str(out)!r}, {other!r}); assert c.acquire(); print("held", flush=True); time.sleep(30)
        """)], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == b"held"
        status = sweep_status(sweep, store, out).set_index("run_id")
        assert status.loc[first, "state"] == "interrupted" and status.loc[other, "state"] == "running"
        assert RunClaim(out, other).owner()["pid"] == holder.pid
        assert status.in_store.all() and status.loc[first, "step"] == 6 and status.loc[first, "progress"] > 0.99
        assert cli_main(["sweep", str(sweep), "--store", str(store), "--out", str(out), "--status"]) == 0
        printed = capsys.readouterr().out
        assert "1 interrupted" in printed and "1 running" in printed and "2 finished" in printed and "4 in store" in printed
    finally:
        holder.kill()
        holder.wait()
    assert not RunClaim(out, other).held_elsewhere()  # a killed holder leaves no stale claim


def test_tail_metrics_reads_the_latest_values(tmp_path):
    from runner.sweep import tail_metrics

    d = tmp_path / "r"
    d.mkdir()
    assert tail_metrics(d) == {}
    lines = [{"step": s, "tokens": 100 * s, "train_loss": 5.0 - s} for s in range(1, 2000)]
    lines[-1] = {"step": 1999, "tokens": 199900, "val_loss": 1.5}
    text = "".join(json.dumps(x) + "\n" for x in lines) + '{"step": 2000, "tok'  # a half-written last line
    (d / "metrics.jsonl").write_text(text)
    assert tail_metrics(d) == {"step": 1999, "tokens": 199900, "val_loss": 1.5, "loss": 5.0 - 1998}


def test_live_display_renders_running_runs(fake):
    from rich.console import Console

    from runner.sweep import Outcome, Progress, resolve

    sweep, runs = resolve(tiny_sweep(fake / "s.yaml"), fake / "runs", {}, stand_in())
    progress = Progress(sweep.name, runs, quiet=True)
    run = runs[0]
    run.dir.mkdir(parents=True)
    (run.dir / "metrics.jsonl").write_text(json.dumps({"step": 7, "tokens": run.tokens // 2, "train_loss": 2.5,
                                                       "tokens_per_s": 12345.0}) + "\n")
    progress.begin(run, 1)
    console = Console(width=160, record=True)
    console.print(progress._render())
    text = console.export_text()
    assert "0/4 done" in text and "1 running" in text and run.run_id in text
    assert "50%" in text and "2.5" in text and "12,345" in text
    progress.end(runs[1], Outcome(runs[1].run_id, "finished"), True)
    assert progress.counts["finished"] == 1
    progress.start -= 10.0  # ten seconds in: ETA = remaining FLOPs / (FLOPs done per second)
    done = runs[1].flops + 0.5 * runs[0].flops
    total = sum(r.flops for r in runs)
    assert progress.eta() == pytest.approx((total - done) * 10.0 / done, rel=0.01)


# ----------------------------------------------------------------------------- slurm through submitit


def test_submitit_local_executor_trains_and_ingests(fake):
    pytest.importorskip("submitit")
    from runner.sweep import SlurmOptions, run_sweep

    sweep, store, out = tiny_sweep(fake / "s.yaml", n=2), fake / "s.duckdb", fake / "runs"
    result = run_sweep(sweep, store, out, executor="slurm", quiet=True,
                       slurm=SlurmOptions(cluster="local", time=5, partition="ignored-by-local"))
    assert result.ok and len(result.finished) == 2, result
    assert len(store_runs(store)) == 2
    assert list((out / ".submitit").glob("*/*_submitted.pkl")), "jobs went through submitit"


def test_submitit_job_requeued_after_preemption_resumes_from_checkpoint(fake):
    submitit = pytest.importorskip("submitit")
    from runner.sweep import RunJob, RunTask, resolve

    sweep, runs = resolve(tiny_sweep(fake / "s.yaml", n=1), fake / "runs",
                          {"steps": 30, "step_seconds": 0.1, "checkpoint_every": 2}, stand_in())
    run = runs[0]
    executor = submitit.AutoExecutor(folder=fake / "sub" / "%j", cluster="local")
    executor.update_parameters(timeout_min=5)
    job = executor.submit(RunJob(), RunTask(run.run_id, run.config, str(fake / "runs"), str(fake / "s.duckdb"),
                                            stand_in().train))
    ckpt = run.dir / "checkpoint.json"
    deadline = time.monotonic() + 60
    while not (ckpt.exists() and json.loads(ckpt.read_text())["step"] >= 4):
        assert time.monotonic() < deadline and not job.done(), job.stderr()
        time.sleep(0.05)
    # Slurm's preemption warning: USR2 to the job's task; submitit checkpoints and requeues the job
    (task_pid,) = {pid for _, pid, _ in trainings(fake)}
    os.kill(task_pid, signal.SIGUSR2)
    outcome = job.result()
    assert outcome.status == "finished"
    starts = [s for r, _, s in trainings(fake) if r == run.run_id]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 4, starts
    assert len(store_runs(fake / "s.duckdb")) == 1


# ----------------------------------------------------------------------------- the real trainer


def _real_trainer():
    try:
        import runner.data
        import runner.train  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"runner.train not importable: {exc}")
    if not hasattr(runner.data, "load_corpus"):
        pytest.skip("runner.data.load_corpus not there yet")


# 8 steps of 4 rows x 64 tokens, a checkpoint every 2 steps, a small corpus and evaluation
REAL = {"batch_tokens": 256, "checkpoint_interval": 2, "log_interval": 1, "eval_examples": 16,
        "eval_batch_size": 16, "device": "cpu",
        "data": {"kind": "synthetic", "n_people": 40, "exposures": 4, "eval_examples": 16, "val_tokens": 4096}}


def test_real_trainer_four_tiny_runs_two_workers(tmp_path):
    _real_trainer()
    from runner.sweep import run_sweep

    sweep, store, out = tiny_sweep(tmp_path / "s.yaml", tokens=2048), tmp_path / "s.duckdb", tmp_path / "runs"
    result = run_sweep(sweep, store, out, workers=2, quiet=True, overrides=REAL)
    assert result.ok and len(result.finished) == 4 and len(result.trained) == 4, str(result)
    counts = store_runs(store)
    assert len(counts) == 4 and set(counts.values()) == {1}
    final = Store(store).sql("SELECT run_id, status, sweep, val_loss, n_experts FROM final")
    assert set(final.status) == {"finished"} and set(final.sweep) == {"t"} and final.val_loss.notna().all()
    steps = Store(store).sql("SELECT run_id, step, count(*) AS n FROM metrics WHERE name = 'train_loss' GROUP BY ALL")
    from runner.sweep import resolve

    planned_steps = {r.run_id: r.config.steps for r in resolve(sweep, out, REAL)[1]}
    assert (steps["n"] == 1).all() and steps.groupby("run_id").step.max().to_dict() == planned_steps
    before = {r: snapshot(out / r) for r in counts}
    start = time.perf_counter()
    again = run_sweep(sweep, store, out, workers=2, quiet=True, overrides=REAL)
    assert again.trained == [] and len(again.skipped) == 4 and time.perf_counter() - start < 20
    assert {r: snapshot(out / r) for r in counts} == before and store_runs(store) == counts
    # a changed setting is a new run: nothing reused
    changed = resolve(sweep, out, {**REAL, "lr": 1e-3})[1]
    assert not {r.run_id for r in changed} & set(counts)


# ----------------------------------------------------------------------------- issue 18: refused before any run starts


def _refused(argv, capsys, out: Path, message: str) -> str:
    try:
        code = cli_main([*map(str, argv), "--out", str(out), "--quiet"])
    except SystemExit as exc:  # argparse's one-line usage error
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists(), "the sweep started (its run folder exists)"
    return err


def test_threads_below_one_are_refused(fake, capsys):
    from runner.sweep import run_sweep

    sweep, store, out = tiny_sweep(fake / "s.yaml"), fake / "s.duckdb", fake / "runs"
    for threads in ("0", "-3"):
        _refused(["sweep", sweep, "--store", store, "--threads", threads], capsys, out, "--threads")
    with pytest.raises(MoescaleError, match="threads must be an integer of at least 1, got 0"):
        run_sweep(sweep, store, out, threads=0, quiet=True)
    assert not out.exists() and trainings(fake) == []


def _check_moe(config, corpora=None):
    """A stand-in ``Trainer.check``: MoE runs cannot train here (named as TrainConfig names its source)."""
    if config.run["architecture"]["n_experts"] > 1:
        raise MoescaleError(f"run {config.run['run_id']}: key 'device': 'cuda' but CUDA is not available")


def test_every_run_is_checked_before_the_first_starts(fake, capsys, monkeypatch):
    import runner.sweep
    from runner.sweep import Trainer

    sweep, store, out = tiny_sweep(fake / "s.yaml"), fake / "s.duckdb", fake / "runs"
    checked = Trainer(stand_in().train, stand_in().config_class, check=_check_moe)
    monkeypatch.setattr(runner.sweep, "DEFAULT_TRAINER", checked)
    err = _refused(["sweep", sweep, "--store", store, "--workers", "2"], capsys, out, "CUDA is not available")
    moe = [r for r in Sweep.from_yaml(sweep).runs if r.architecture.n_experts > 1]
    assert f"sweep {sweep}: run " in err and err.count("run ") == 1  # the run is named once, not "run X: run X:"
    assert any(f"run {r.run_id}: key 'device'" in err for r in moe)
    assert trainings(fake) == [] and not store.exists()


def test_real_configs_that_cannot_train_here_are_refused_before_any_run(tmp_path, capsys):
    _real_trainer()
    import torch

    sweep, store, out = tiny_sweep(tmp_path / "s.yaml", tokens=2048), tmp_path / "s.duckdb", tmp_path / "runs"
    base = ["sweep", sweep, "--store", store]
    err = _refused([*base, "--set", "data.kind=parquet"], capsys, out, "'parquet' is not one of")
    assert err.count(" run ") == 1, err  # "run X:" once
    err = _refused([*base, "--set", "nosuchkey=1"], capsys, out, "nosuchkey")
    assert err.count(" run ") == 1, err
    if not torch.cuda.is_available():
        _refused([*base, "--set", "device=cuda"], capsys, out, "CUDA is not available")
    assert not store.exists()


def test_a_store_that_is_not_one_or_is_damaged_is_refused_before_training(fake, capsys):
    sweep, out = tiny_sweep(fake / "s.yaml"), fake / "runs"
    csv = fake / "notstore.csv"
    csv.write_text("a,b\n1,2\n")
    junk = fake / "junk.duckdb"
    junk.write_bytes(b"not a database at all\n" * 10)
    _refused(["sweep", sweep, "--store", csv], capsys, out, "is a table file name, not a store")
    _refused(["sweep", sweep, "--store", junk], capsys, out, "is not a DuckDB store")
    # a store cut to half its size opens, but its data cannot be read back
    from scaling.rundir import RunWriter

    store = fake / "s.duckdb"
    with RunWriter(fake / "r0", "r0", {"n_experts": 4, "top_k": 1, "n_total": 10}) as w:
        for step in range(1, 4000):
            w.log(step, 100 * step, train_loss=1.0 + 1.0 / step, val_loss=2.0, lr=1e-3)
    from scaling.ingest import ingest

    ingest(store, [fake / "r0"], progress=False)
    with open(store, "r+b") as fh:
        fh.truncate(store.stat().st_size // 2)
    _refused(["sweep", sweep, "--store", store], capsys, out, "damaged or truncated")
    assert trainings(fake) == []


def test_slurm_executor_without_slurm_is_refused(fake, capsys, monkeypatch):
    import runner.sweep.backends as backends

    sweep, store, out = tiny_sweep(fake / "s.yaml"), fake / "s.duckdb", fake / "runs"
    monkeypatch.setattr(backends.shutil, "which", lambda name, *a, **k: None)
    _refused(["sweep", sweep, "--store", store, "--executor", "slurm"], capsys, out, "Slurm was not found")
    monkeypatch.setattr(backends.shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    backends.check_slurm(backends.SlurmOptions())  # found: no error
    assert trainings(fake) == [] and not store.exists()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie left for a non-reaping init counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_exit_when_the_sweep_process_is_killed(fake):
    sweep, store, out = tiny_sweep(fake / "s.yaml", n=2), fake / "s.duckdb", fake / "runs"
    cmd = sweep_script(fake, sweep, store, out, workers=1, overrides={"steps": 400, "step_seconds": 0.1})
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not trainings(fake):
            assert time.monotonic() < deadline and proc.poll() is None, "no run started"
            time.sleep(0.05)
        (_, worker, _), = trainings(fake)
        assert worker != proc.pid and _alive(worker)
        os.kill(proc.pid, signal.SIGKILL)  # the sweep process alone, not its group
        proc.wait()
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its sweep process"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    from runner.locks import RunClaim

    (run_id, _, _), = trainings(fake)
    assert not RunClaim(out, run_id).held_elsewhere()  # its claim went with it: a rerun resumes the run


def test_a_failed_run_is_named_once(fake, capsys):
    from runner.sweep import run_sweep

    import fake_trainer

    sweep, store, out = tiny_sweep(fake / "s.yaml", n=1), fake / "s.duckdb", fake / "runs"
    result = run_sweep(sweep, store, out, workers=1, retries=0, quiet=True, trainer=fake_trainer.NAMED)
    ((run_id, error),) = result.failed.items()
    assert error == "MoescaleError: key 'data': no such file x.bin"  # not "MoescaleError: run X: key ..."
    assert f"failed {run_id}: MoescaleError: key 'data'" in str(result) and str(result).count(run_id) == 1
