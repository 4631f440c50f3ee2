"""`moescale train` under bad input (issue 18): one line, exit 2, before any work and with no run
directory; the startup check ``runner.config.check_trainable``; corrupt run files on resume; the
thread default; a fitting-only install. Runs use the tiny .bin model of tests/test_train.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from runner.config import TrainConfig, check_trainable
from runner.train import default_threads, train
from scaling.cli import main as cli_main
from scaling.errors import MoescaleError

from test_train import config_dict, make_bin

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def write_run(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def refused(capsys, argv: list[str], out: Path, message: str) -> str:
    """Run the CLI; assert exit 2, one stderr line matching ``message``, and no run directory under ``out``."""
    try:
        code = cli_main(argv)
    except SystemExit as exc:  # an argparse error: one line, exit 2 (scaling.cli.Parser)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert re.search(message, err), err
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    return err


# ----------------------------------------------------------------------------- config values (item 1)


@pytest.mark.parametrize(
    "change,message",
    [
        # np.random.seed refuses seeds >= 2**32: today a ValueError traceback
        (lambda c: c.update(seed=2**70), r"run\.yaml: key 'seed': must be an integer in \[0, 2\*\*32 - 1 = 4294967295\], got 1180591620717411303424"),
        # a token count beyond 2**53 (the run trained at lr 1e-25 and wrote tokens_planned beyond int64)
        (lambda c: c.update(tokens=10**30), r"run\.yaml: key 'tokens': must be a positive integer of at most 2\*\*53"),
        # models that cannot fit: say how much memory they need (allocation RuntimeError today)
        (lambda c: c["architecture"].update(vocab_size=10**12), r"run\.yaml: key 'architecture': the model has N_total = 6\.4e\+13 parameters, so training needs at least 953,674\.3 GiB .*more than this machine's 32\.0 GiB of memory$"),
        (lambda c: c["architecture"].update(n_experts=10**6), r"run\.yaml: key 'architecture': the model has N_total = 3\.1e\+09 parameters, so training needs at least 46\.3 GiB"),
        (lambda c: c["architecture"].update(d_model=2**40), r"run\.yaml: key 'architecture': the model has N_total = .* GiB \(16 bytes a parameter"),
    ],
)
def test_impossible_values_are_refused_before_any_work(tmp_path, capsys, monkeypatch, change, message):
    import runner.config

    monkeypatch.setattr(runner.config, "machine_memory", lambda device: (32 * 2**30, "memory"))  # a 32 GiB machine
    cfg = config_dict(make_bin(tmp_path))
    change(cfg)
    out = tmp_path / "runs"
    refused(capsys, ["train", str(write_run(tmp_path, cfg)), "--out", str(out), "--quiet"], out, message)


@pytest.mark.parametrize("threads", ["0", "-3"])
def test_threads_below_one_are_refused(tmp_path, capsys, threads):
    out = tmp_path / "runs"
    path = write_run(tmp_path, config_dict(make_bin(tmp_path)))
    refused(capsys, ["train", str(path), "--out", str(out), f"--threads={threads}"], out, rf"--threads: {threads} must be >= 1")
    with pytest.raises(MoescaleError, match=rf"--threads {threads}: must be a positive integer"):
        train(TrainConfig.from_yaml(path), out, quiet=True, threads=int(threads))
    assert not out.exists()


def test_resume_and_restart_together_are_refused(tmp_path, capsys):
    out = tmp_path / "runs"
    path = write_run(tmp_path, config_dict(make_bin(tmp_path)))
    refused(capsys, ["train", str(path), "--out", str(out), "--resume", "--restart"], out,
            r"argument --restart: not allowed with argument --resume")


def test_a_run_yaml_that_is_not_utf8_is_named(tmp_path, capsys):
    out = tmp_path / "runs"
    path = tmp_path / "run.yaml"
    path.write_bytes(yaml.safe_dump(config_dict(make_bin(tmp_path))).encode() + b"# caf\xe9\n")
    refused(capsys, ["train", str(path), "--out", str(out)], out, r"run\.yaml: not UTF-8 text \(byte 0xe9 at offset \d+\)")


def test_a_key_given_twice_is_refused_with_its_line(tmp_path, capsys):
    out = tmp_path / "runs"
    text = yaml.safe_dump(config_dict(make_bin(tmp_path)), sort_keys=False) + "lr: 0.5\n"
    line = text.count("\n")
    (tmp_path / "run.yaml").write_text(text)
    refused(capsys, ["train", str(tmp_path / "run.yaml"), "--out", str(out)], out,
            rf"run\.yaml:{line}:1: not valid YAML \(duplicate key 'lr' \(first given on line \d+\)\)")


# ----------------------------------------------------------------------------- startup checks (item 2, item 8)


def test_startup_checks_refuse_what_training_would_find_later(tmp_path, capsys, monkeypatch):
    d = make_bin(tmp_path)
    out = tmp_path / "runs"
    # a validation stream shorter than seq_len + 1 (found at the first evaluation today)
    np.arange(10, dtype=np.uint16).tofile(d / "val.bin")  # 10 tokens < seq_len + 1
    path = write_run(tmp_path, config_dict(d))
    refused(capsys, ["train", str(path), "--out", str(out)], out,
            r"run\.yaml: .*train\.bin: key 'data': the validation stream has 10 tokens, fewer than seq_len \+ 1 = 17")
    make_bin(tmp_path)
    # an unknown kernel backend (found at the first step today)
    monkeypatch.setenv("MOESCALE_KERNELS", "bogus")
    refused(capsys, ["train", str(path), "--out", str(out)], out, r"\$MOESCALE_KERNELS: unknown kernel backend 'bogus'")
    monkeypatch.delenv("MOESCALE_KERNELS")
    # an unknown data kind
    path = write_run(tmp_path, config_dict(d, data={"kind": "parquet"}))
    refused(capsys, ["train", str(path), "--out", str(out)], out, r"run\.yaml: data key 'kind': 'parquet' is not one of")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_names_the_file_and_key(tmp_path, capsys):
    out = tmp_path / "runs"
    path = write_run(tmp_path, config_dict(make_bin(tmp_path), device="cuda"))
    refused(capsys, ["train", str(path), "--out", str(out)], out,
            r"run\.yaml: key 'device': 'cuda' but CUDA is not available on this machine")


def test_error_messages_name_the_run_yaml(tmp_path, capsys):
    d = make_bin(tmp_path)
    out = tmp_path / "runs"
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    path = write_run(tmp_path, config_dict(d, data={"kind": "text", "path": str(empty)}, architecture={**config_dict(d)["architecture"], "vocab_size": 257}))
    refused(capsys, ["train", str(path), "--out", str(out)], out, r"run\.yaml: .*empty\.txt: data key 'path': holds no text")
    cfg = config_dict(d)
    cfg["architecture"].update(d_model=30, n_heads=2)
    refused(capsys, ["train", str(write_run(tmp_path, cfg)), "--out", str(out)], out,
            r"run\.yaml: key 'architecture': head_dim \(15\) must be even for RoPE \(head_dim = d_model / n_heads\)$")
    cfg = config_dict(d)
    cfg["architecture"].update(vocab_size=32)
    refused(capsys, ["train", str(write_run(tmp_path, cfg)), "--out", str(out)], out,
            r"run\.yaml: .*train\.bin: key 'architecture\.vocab_size': 32 is smaller than the data's vocabulary \(48\)")


def test_check_trainable_returns_the_corpus_and_writes_nothing(tmp_path):
    d = make_bin(tmp_path)
    c = TrainConfig.from_dict(config_dict(d), source="runs.yaml")
    corpus = check_trainable(c)
    assert (len(corpus.train), len(corpus.val), corpus.vocab_size) == (16000, 3200, 48)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    with pytest.raises(MoescaleError, match=r"^runs\.yaml: key 'batch_tokens': its 16 rows of seq_len 16 do not split over 3 ranks$"):
        check_trainable(c, world=3)
    # importing the module that holds the check starts nothing and imports no torch
    have, what = __import__("runner.config").config.machine_memory("cpu")
    assert what == "memory" and have == pytest.approx(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), rel=0.01)
    code = "import sys, runner.config; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"


# ----------------------------------------------------------------------------- corrupt run files (items 1, 4)


def interrupted_run(tmp_path: Path):
    """A finished tiny run turned back into an interrupted one (status running)."""
    path = write_run(tmp_path, config_dict(make_bin(tmp_path), tokens=256 * 6))
    c = TrainConfig.from_yaml(path)
    assert train(c, tmp_path / "runs", quiet=True, threads=1) == "finished"
    d = tmp_path / "runs" / c.run_id
    run = json.loads((d / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**run, "status": "running"}))
    return path, d


def test_a_corrupt_checkpoint_on_resume_suggests_restart(tmp_path, capsys):
    path, d = interrupted_run(tmp_path)
    (d / "checkpoint.pt").write_bytes(b"\x80\x02not a checkpoint")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert cli_main(["train", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"error: .*checkpoint\.pt: cannot resume from this checkpoint \(.+\); rerun with --restart to "
                        r"start the run over", err), err
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # nothing touched
    assert cli_main(["train", str(path), "--out", str(tmp_path / "runs"), "--quiet", "--restart"]) == 0
    assert json.loads((d / "run.json").read_text())["status"] == "finished"


def test_a_corrupt_run_json_is_recovered_by_restart(tmp_path, capsys):
    path, d = interrupted_run(tmp_path)
    (d / "run.json").write_text('{"run_id": "x", "stat')
    assert cli_main(["train", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"error: .*run\.json: the interrupted run's run\.json is unreadable; rerun with --restart to "
                        r"start the run over", err), err
    assert cli_main(["train", str(path), "--out", str(tmp_path / "runs"), "--quiet", "--restart"]) == 0
    run = json.loads((d / "run.json").read_text())
    steps = [json.loads(line)["step"] for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert run["status"] == "finished" and steps == [2, 4, 6]  # started over: no line of the old run twice


# ----------------------------------------------------------------------------- threads (item 6)


def test_default_threads_is_half_the_cores_at_most_four(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for cores, want in [(1, 1), (2, 1), (6, 3), (8, 4), (64, 4)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert default_threads() == (want, f"half of {cores} cores, at most 4; --threads N to change")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == (3, "$OMP_NUM_THREADS")


def test_train_says_the_threads_it_chose_in_its_first_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    path = write_run(tmp_path, config_dict(make_bin(tmp_path), tokens=256 * 2))
    assert cli_main(["train", str(path), "--out", str(tmp_path / "runs")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(r"train d32-l1-e4-k2-f32-[0-9a-f]{10}: cpu, 2 CPU threads \(half of 4 cores, at most 4; "
                        r"--threads N to change\)", first), first
    assert torch.get_num_threads() == 2


# ----------------------------------------------------------------------------- a fitting-only install (item 3)


def test_train_without_torch_is_one_line(tmp_path):
    path = write_run(tmp_path, config_dict(make_bin(tmp_path)))
    code = ("import sys; sys.modules['torch'] = None\n"
            "from scaling.cli import main\n"
            f"sys.exit(main(['train', {str(path)!r}, '--out', {str(tmp_path / 'runs')!r}]))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert re.fullmatch(r"error: moescale train needs the runner extra \(torch\): pip install -e '\.\[runner\]' \(.*\)\n",
                        done.stderr), done.stderr
    assert not (tmp_path / "runs").exists()
