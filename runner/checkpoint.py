"""Checkpoints of a training run: what ``train`` saves every ``checkpoint_interval`` steps.

A checkpoint (``checkpoint.pt`` in the run directory) holds the model, optimizer and
scheduler states, the RNG states of torch (and CUDA), numpy and Python, the step and the
training stream's position, so a resumed run continues exactly where it stopped: the same
batches, the same random draws. It is written atomically (``scaling.files.atomic_path``:
temp file, fsync, rename), so a kill mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from scaling.errors import MoescaleError, first_line
from scaling.files import atomic_path

CHECKPOINT_FILE = "checkpoint.pt"


def rng_state() -> dict:
    """The RNG states of torch (and every CUDA device), numpy and Python's ``random``."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the RNG states ``rng_state`` returned (CUDA's only when CUDA is available)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` to a temp file in the same directory, fsync, then rename over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _unreadable(path: Path, why: str) -> MoescaleError:
    return MoescaleError(f"{path}: cannot resume from this checkpoint ({why}); rerun with --restart to start the run over")


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``, or None when there is none; a file that is not a checkpoint
    (truncated, corrupted, another format) is a one-line MoescaleError suggesting ``--restart``."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch.load raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise _unreadable(path, first_line(exc, with_type=True)) from None
    if not isinstance(state, dict):
        raise _unreadable(path, f"it holds a {type(state).__name__}, not a checkpoint's mapping")
    return state


def restore_checkpoint(path: Path, state: dict, model, optimizer, scheduler, stream) -> int:
    """Load a checkpoint's states into the model, optimizer, scheduler, RNGs and training stream;
    returns its step. A checkpoint of another model shape is a MoescaleError suggesting ``--restart``."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        stream.pos = int(state["data_position"])
        return int(state["step"])
    except Exception as exc:
        raise _unreadable(path, first_line(exc, with_type=True)) from None


__all__ = ["CHECKPOINT_FILE", "load_checkpoint", "restore_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]
