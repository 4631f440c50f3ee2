"""runner.train: one run end to end, exact resume after SIGKILL,
divergence, crashes, bad input, 2-process gloo DDP vs 1 process, ingest of the run directory.

Runs use a tiny model (d_model 32, 1 layer) on a structured .bin token stream so each run takes
about a second; one run uses a small synthetic corpus for the evaluation columns."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from runner.train import TrainConfig, load_checkpoint, train
from scaling.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
ARCH = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 32, "n_experts": 4, "top_k": 2, "vocab_size": 64, "seq_len": 16}
TIMING = {"tokens_per_s", "eval_seconds", "mfu"}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def make_bin(root: Path) -> Path:
    """A learnable token stream: a repeating 0..47 ramp with 10% random substitutions."""
    rng = np.random.default_rng(0)
    base = np.tile(np.arange(48, dtype=np.uint16), 400)
    noise = rng.random(len(base)) < 0.1
    base[noise] = rng.integers(0, 48, noise.sum())
    d = root / "data"
    d.mkdir(exist_ok=True)
    base[:16000].tofile(d / "train.bin")
    base[16000:].tofile(d / "val.bin")
    return d


def config_dict(data_dir: Path, **over) -> dict:
    cfg = {"architecture": dict(ARCH), "tokens": 256 * 24, "data": {"kind": "bin", "path": str(data_dir)},
           "batch_tokens": 256, "micro_batch_tokens": 128, "lr": 3e-3, "log_interval": 2,
           "checkpoint_interval": 5, "eval_interval": 10}  # fmt: skip
    cfg.update(over)
    return cfg


def metrics_lines(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in lines]


# ----------------------------------------------------------------------------- one run


def test_run_writes_a_run_directory_and_ingests(tmp_path):
    from scaling.ingest import ingest
    from scaling.store import Store

    c = TrainConfig.from_dict(config_dict(make_bin(tmp_path)))
    assert train(c, tmp_path / "runs", quiet=True) == "finished"
    d = tmp_path / "runs" / c.run_id
    rows = metrics_lines(d)
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]
    first, last = rows[0], rows[-1]
    assert last["tokens"] == 24 * 256 and "val_loss" in last and "val_loss" in rows[4] and "val_loss" not in rows[0]
    for key in ("train_loss", "lr", "aux_loss", "z_loss", "grad_norm", "load_cv", "router_entropy", "max_expert_share"):
        assert key in last and math.isfinite(last[key]), key
    assert last["train_loss"] < first["train_loss"] - 0.5  # it learns the ramp
    assert 0.25 <= last["max_expert_share"] <= 1 and 0 <= last["router_entropy"] <= math.log(4) + 1e-6
    run = json.loads((d / "run.json").read_text())
    assert run["status"] == "finished" and run["n_total"] == c.architecture.n_total
    assert run["tokens_planned"] == 24 * 256 and run["data_stats"]["unigram_entropy"] > last["val_loss"]
    assert (d / "checkpoint.pt").is_file() and not list(d.glob(".*tmp"))
    # a finished run is left as it is
    before = (d / "metrics.jsonl").read_bytes()
    assert train(c, tmp_path / "runs", quiet=True) == "finished"
    assert (d / "metrics.jsonl").read_bytes() == before
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, [d], progress=False)
        final = store.sql("SELECT status, n_total, tpp, val_loss, tokens FROM final")
    assert final.shape[0] == 1 and final["status"][0] == "finished"
    assert final["val_loss"][0] == pytest.approx(last["val_loss"]) and final["tpp"][0] == pytest.approx(24 * 256 / c.architecture.n_total)


def test_synthetic_run_has_task_columns_in_final(tmp_path):
    from scaling.ingest import ingest
    from scaling.store import Store

    arch = {**ARCH, "vocab_size": 512, "seq_len": 64}
    data = {"kind": "synthetic", "n_people": 40, "exposures": 4, "train_tokens": 20_000, "val_tokens": 2048, "eval_examples": 32}
    c = TrainConfig.from_dict({"architecture": arch, "tokens": 512 * 4, "batch_tokens": 512, "data": data, "eval_examples": 32})
    assert train(c, tmp_path / "runs", quiet=True) == "finished"
    d = tmp_path / "runs" / c.run_id
    assert (d / "tokenizer.json").is_file()
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, [d], progress=False)
        final = store.table("final")
        kinds = dict(store.sql("SELECT DISTINCT task, task_kind FROM evals").values.tolist())
    for task in ("facts", "pointer", "arith"):
        assert 0 <= final[f"{task}_accuracy"][0] <= 1
    assert math.isfinite(final["val_loss"][0])
    assert kinds == {"facts": "memorization", "pointer": "reasoning", "arith": "reasoning"}


def test_grad_accumulation_equals_one_big_batch(tmp_path):
    """The cross-entropy objective is the same however the batch is split; the load-balancing
    loss is not (it is a product of per-batch means, computed per micro-batch, as is usual), so
    it is switched off here."""
    data = make_bin(tmp_path)
    a = TrainConfig.from_dict(config_dict(data, micro_batch_tokens=64, tokens=256 * 4, log_interval=1, aux_loss_coef=0.0))
    b = TrainConfig.from_dict(config_dict(data, micro_batch_tokens=None, tokens=256 * 4, log_interval=1, aux_loss_coef=0.0))
    assert a.run_id == b.run_id
    train(a, tmp_path / "a", quiet=True)
    train(b, tmp_path / "b", quiet=True)
    la = [r["train_loss"] for r in metrics_lines(tmp_path / "a" / a.run_id)]
    lb = [r["train_loss"] for r in metrics_lines(tmp_path / "b" / b.run_id)]
    assert la == pytest.approx(lb, rel=1e-5)


def test_divergence_ends_the_run_diverged_with_its_curve(tmp_path):
    c = TrainConfig.from_dict(config_dict(make_bin(tmp_path), init_std=1e25))
    assert train(c, tmp_path / "runs", quiet=True) == "diverged"
    d = tmp_path / "runs" / c.run_id
    assert json.loads((d / "run.json").read_text())["status"] == "diverged"
    rows = metrics_lines(d)
    assert rows and not math.isfinite(rows[-1]["train_loss"])
    assert train(c, tmp_path / "runs", quiet=True) == "diverged"  # left as it is


def test_crash_ends_the_run_failed_with_the_first_line(tmp_path, monkeypatch):
    import runner.train as rt

    def boom(*args, **kwargs):
        raise RuntimeError("evaluation exploded\nsecond line")

    monkeypatch.setattr(rt, "_evaluate", boom)
    c = TrainConfig.from_dict(config_dict(make_bin(tmp_path)))
    assert train(c, tmp_path / "runs", quiet=True) == "failed"
    run = json.loads((tmp_path / "runs" / c.run_id / "run.json").read_text())
    assert run["status"] == "failed" and run["error"] == "RuntimeError: evaluation exploded"


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c, d: c.update(learning_rate=1.0), r"run\.yaml: unknown key\(s\) 'learning_rate'"),
        (lambda c, d: c["architecture"].update(n_heads=3), r"run\.yaml: key 'architecture': .*divisible by n_heads"),
        (lambda c, d: c["architecture"].update(d_model=30, n_heads=2), r"head_dim \(15\) must be even"),
        (lambda c, d: c.update(batch_tokens=100), r"run\.yaml: key 'batch_tokens'"),
        (lambda c, d: c.update(data={"kind": "bin", "train": str(d / "nope.bin"), "val": str(d / "val.bin")}), r"nope\.bin: data key 'train': no such file"),
        (lambda c, d: c.update(data={"kind": "bin", "path": str(d), "colour": 1}), r"unknown key\(s\) 'colour'"),
        (lambda c, d: c.update(data={"kind": "parquet"}), r"data key 'kind': 'parquet'"),
        (lambda c, d: (d / "train.bin").write_text("this is plain text, not token ids at all\n" * 4), r"train\.bin: data key 'path': not a token file"),
        (lambda c, d: c["architecture"].update(vocab_size=32), r"train\.bin: key 'architecture\.vocab_size': 32 is smaller"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run_directory(tmp_path, capsys, change, message):
    import re

    d = make_bin(tmp_path)
    cfg = config_dict(d)
    change(cfg, d)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "runs"
    assert cli_main(["train", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------- resume


def test_resume_after_sigkill_equals_an_uninterrupted_run(tmp_path):
    """SIGKILL the training subprocess right after its first checkpoint (it has logged past
    it), rerun the same command, and compare metrics and final weights bitwise."""
    data = make_bin(tmp_path)
    cfg = config_dict(data, tokens=256 * 60, checkpoint_interval=10, log_interval=1, eval_interval=15)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    c = TrainConfig.from_yaml(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "runner.train", str(path), "--out", str(tmp_path / "killed"), "--quiet", "--threads", "1"]
    d = tmp_path / "killed" / c.run_id
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (d / "checkpoint.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    status = json.loads((d / "run.json").read_text())["status"]
    killed_at = load_checkpoint(d / "checkpoint.pt")["step"]
    assert status == "running" and 10 <= killed_at < 60
    # rerunning the same command resumes (the second time with --resume, as the README says)
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    assert train(c, tmp_path / "clean", quiet=True, threads=1) == "finished"
    ref = tmp_path / "clean" / c.run_id
    got, want = metrics_lines(d), metrics_lines(ref)
    assert [r["step"] for r in got] == list(range(1, 61))  # no duplicated or missing steps
    assert got == want  # bitwise: the same floats in the same JSON
    a, b = load_checkpoint(d / "checkpoint.pt"), load_checkpoint(ref / "checkpoint.pt")
    assert a["step"] == b["step"] == 60
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    assert (d / "evals.jsonl").read_text() == (ref / "evals.jsonl").read_text()


def test_killed_before_the_first_checkpoint_starts_over(tmp_path):
    from scaling.rundir import RunWriter

    c = TrainConfig.from_dict(config_dict(make_bin(tmp_path), tokens=256 * 6))
    d = tmp_path / "runs" / c.run_id
    w = RunWriter(d, c.run_id, c.to_dict(), architecture=c.architecture)
    w.log(3, 768, train_loss=9.0)
    w.close()
    with open(d / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "tok')  # a truncated line
    assert train(c, tmp_path / "runs", quiet=True) == "finished"
    assert [r["step"] for r in metrics_lines(d)] == [2, 4, 6]


# ----------------------------------------------------------------------------- DDP


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_ddp_two_gloo_processes_match_one(tmp_path):
    """torchrun --nproc_per_node 2 on CPU (gloo) vs one process with the same global batch:
    the same data, the same objective; losses agree to 1e-5 relative (float32 sums in another order)."""
    data = make_bin(tmp_path)
    cfg = config_dict(data, tokens=256 * 6, log_interval=1, micro_batch_tokens=64, eval_interval=0)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    c = TrainConfig.from_yaml(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "runner.train", str(path),
           "--out", str(tmp_path / "ddp"), "--quiet", "--threads", "1"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert train(c, tmp_path / "one", quiet=True, threads=1) == "finished"
    got, want = metrics_lines(tmp_path / "ddp" / c.run_id), metrics_lines(tmp_path / "one" / c.run_id)
    assert [r["step"] for r in got] == [r["step"] for r in want] == [1, 2, 3, 4, 5, 6]
    for key in ("train_loss", "val_loss", "grad_norm", "aux_loss"):
        g = [r[key] for r in got if key in r]
        w = [r[key] for r in want if key in r]
        assert len(g) == len(w) > 0 and g == pytest.approx(w, rel=1e-5), key
    print("max relative train_loss difference:", max(abs(a["train_loss"] / b["train_loss"] - 1) for a, b in zip(got, want)))
