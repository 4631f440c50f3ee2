"""runner.checkpoint: atomic save and load, and RNG states restored exactly."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from runner.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_save_then_load_round_trips_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    assert load_checkpoint(path) is None
    state = {"step": 7, "data_position": 128, "model": {"w": torch.arange(6.0).reshape(2, 3)}}
    save_checkpoint(path, state)
    got = load_checkpoint(path)
    assert got["step"] == 7 and got["data_position"] == 128 and torch.equal(got["model"]["w"], state["model"]["w"])
    save_checkpoint(path, {**state, "step": 8})  # replaces the previous one
    assert load_checkpoint(path)["step"] == 8
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    with pytest.raises(Exception):
        save_checkpoint(path, {"step": 2, "bad": lambda: None})  # a lambda cannot be pickled
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_rng_state_restores_every_generator():
    state = rng_state()
    want = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]
