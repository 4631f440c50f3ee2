"""Training data: what the training loop and the evaluator read.

Every source (the synthetic memorization/reasoning corpus, a nanoGPT ``.bin`` memmap, a
local ``.txt``/``.jsonl`` file) becomes one ``TokenCorpus``: a packed training stream, a
held-out validation stream, optional loss masks, the tokenizer and, for the synthetic
corpus, its evaluation tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TokenCorpus:
    """Packed token streams and what goes with them.

    train, val:   1-D integer arrays (uint16 or uint32) of token ids, documents packed
                  back to back with separator tokens.
    train_mask, val_mask: None (every target counts) or 1-D uint8 arrays of the same
                  length; mask[i] = 1 when token i counts as a prediction target. A window
                  x = train[j:j+T] has targets y = train[j+1:j+T+1] weighted by
                  train_mask[j+1:j+T+1].
    vocab_size:   ids lie in [0, vocab_size); the model's vocab_size must be >= it.
    tokenizer:    None for pre-tokenized files, else an object with encode(str) -> list[int],
                  decode(ids) -> str and save(path).
    tasks:        evaluation tasks (synthetic corpus only), read by runner.evaluate.
    """

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    train_mask: np.ndarray | None = None
    val_mask: np.ndarray | None = None
    tokenizer: object | None = None
    tasks: list = field(default_factory=list)
