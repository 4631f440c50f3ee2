"""runner.config: TrainConfig round trip, run_id (what changes it and what does not), from_planned, schedule."""

from __future__ import annotations

import json
import math

import pytest

from runner.config import TrainConfig
from scaling.architecture import Architecture
from scaling.errors import MoescaleError
from scaling.planner import PlannedRun

ARCH = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 32, "n_experts": 4, "top_k": 2, "vocab_size": 64, "seq_len": 16}


def config_dict(data_dir, **over) -> dict:
    cfg = {"architecture": dict(ARCH), "tokens": 256 * 24, "data": {"kind": "bin", "path": str(data_dir)},
           "batch_tokens": 256, "micro_batch_tokens": 128, "lr": 3e-3, "log_interval": 2,
           "checkpoint_interval": 5, "eval_interval": 10}  # fmt: skip
    cfg.update(over)
    return cfg


def test_config_round_trip_and_run_id(tmp_path):
    c = TrainConfig.from_dict(config_dict(tmp_path))
    again = TrainConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c and again.run_id == c.run_id
    assert c.run_id.startswith("d32-l1-e4-k2-f32-")
    # result-changing keys change the id; where/how it runs does not
    for key, value in [("lr", 1e-3), ("seed", 1), ("tokens", 256 * 30), ("weight_decay", 0.0), ("data", {"kind": "bin", "path": "x"})]:
        assert TrainConfig.from_dict({**c.to_dict(), key: value}).run_id != c.run_id, key
    for key, value in [("log_interval", 7), ("checkpoint_interval", 3), ("device", "cpu"), ("sweep", "s"), ("micro_batch_tokens", 256)]:
        assert TrainConfig.from_dict({**c.to_dict(), key: value}).run_id == c.run_id, key
    path = tmp_path / "run.yaml"
    c.to_yaml(path)
    assert TrainConfig.from_yaml(path) == c


def test_run_id_changes_with_the_synthetic_format(monkeypatch):
    # The corpus generators' layout changes the tokens of one spec and seed: runs of an older
    # layout must not be reused as runs of the new one.
    import runner.data.synthetic as synthetic

    c = TrainConfig(architecture=Architecture(**ARCH), tokens=1024, data={"kind": "synthetic"})
    on_file = TrainConfig(architecture=Architecture(**ARCH), tokens=1024, data={"kind": "bin", "path": "x"})
    before = c.run_id, on_file.run_id
    monkeypatch.setattr(synthetic, "FORMAT", synthetic.FORMAT + 1)
    assert c.run_id != before[0]
    assert on_file.run_id == before[1]  # a file's tokens do not depend on our generators


def test_run_id_changes_with_the_model_version(monkeypatch):
    # A change to what the model computes (runner.config.MODEL_VERSION): no old run is reused.
    import runner.config as config_module

    c = TrainConfig(architecture=Architecture(**ARCH), tokens=1024, data={"kind": "bin", "path": "x"})
    before = c.run_id
    monkeypatch.setattr(config_module, "MODEL_VERSION", config_module.MODEL_VERSION + 1)
    assert c.run_id != before


def test_from_planned_uses_the_planned_run():
    arch = Architecture(**ARCH)
    run = PlannedRun.create(arch, 10_000, seed=3)
    c = TrainConfig.from_planned(run, {"lr": 1e-3})
    assert (c.architecture, c.tokens, c.seed, c.lr, c.data) == (arch, 10_000, 3, 1e-3, {"kind": "synthetic"})
    assert (c.beta1, c.beta2, c.weight_decay, c.grad_clip, c.min_lr_ratio) == (0.9, 0.95, 0.1, 1.0, 0.1)
    with pytest.raises(MoescaleError, match="unknown key.*'lr_max'"):
        TrainConfig.from_planned(run, {"lr_max": 1.0})


def test_schedule_warmup_then_cosine_to_ten_percent():
    c = TrainConfig(architecture=Architecture(**ARCH), tokens=16 * 100, batch_tokens=16, lr=1.0, warmup_fraction=0.1)
    lrs = [c.lr_at(s) for s in range(c.steps)]
    assert c.steps == 100 and c.warmup_steps == 10
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    s = 55  # halfway through the decay: 0.1 + 0.9 * (1 + cos(pi * 45/89)) / 2
    assert lrs[s] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 89)))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_run_ids_of_configs_without_the_later_keys_stand():
    # lr_base_width came after run ids were published: unset, it stays out of the id (this run's id
    # was d64-l2-e4-k1-f128-2d87ce2064 before the key existed); set, it is part of it. A study slice
    # is where a run belongs, not what it computes.
    c = TrainConfig.from_yaml("data/cpu-tiny-run.yaml")
    assert c.run_id == "d64-l2-e4-k1-f128-2d87ce2064"
    assert TrainConfig.from_dict({**c.to_dict(), "slice": "sparsity+size"}).run_id == c.run_id
    assert TrainConfig.from_dict({**c.to_dict(), "lr_base_width": 64}).run_id != c.run_id


def test_peak_lr_follows_the_width_rule():
    # peak lr = lr * sqrt(lr_base_width / d_model); the schedule warms up to it and decays to 10% of it
    arch = Architecture(**{**ARCH, "d_model": 128, "n_heads": 8})
    c = TrainConfig(architecture=arch, tokens=16 * 100, batch_tokens=16, lr=5e-3, lr_base_width=32)
    assert c.peak_lr == pytest.approx(5e-3 * math.sqrt(32 / 128)) == pytest.approx(2.5e-3)
    assert c.lr_at(c.warmup_steps) == pytest.approx(c.peak_lr) and c.lr_at(c.steps - 1) == pytest.approx(0.1 * c.peak_lr)
    assert TrainConfig(architecture=arch, tokens=1600, batch_tokens=16, lr=5e-3).peak_lr == 5e-3
    with pytest.raises(MoescaleError, match="key 'lr_base_width': must be a positive integer"):
        TrainConfig(architecture=arch, tokens=1600, batch_tokens=16, lr_base_width=0)


def test_from_planned_records_the_study_slice():
    run = PlannedRun.create(Architecture(**ARCH), 10_000, slice="sparsity+seeds")
    c = TrainConfig.from_planned(run, {})
    assert c.slice == "sparsity+seeds" and c.to_dict()["slice"] == "sparsity+seeds"
    assert c.run_id == TrainConfig.from_planned(PlannedRun.create(Architecture(**ARCH), 10_000), {}).run_id
