"""The training stream as batches, and what a run records about its data.

``Stream`` cuts a packed token stream (``TokenCorpus.train``) into sequential windows of
seq_len + 1 tokens; its position is saved in every checkpoint, so a resumed run sees exactly
the batches it would have seen. ``data_stats`` is what run.json records about the corpus,
``unigram_entropy`` the loss of the best context-free model, to compare val_loss with.
"""

from __future__ import annotations

import numpy as np
import torch

from scaling.errors import MoescaleError


class Stream:
    """Sequential windows of a token stream: row i of a batch is stream[p : p + T + 1] with
    inputs x = the first T tokens and targets y = the last T (y = -1 where the mask is 0);
    p advances by T per row and wraps to 0 when a window would run past the end."""

    def __init__(self, tokens: np.ndarray, mask: np.ndarray | None, seq_len: int, source: str = "train"):
        if len(tokens) < seq_len + 1:
            raise MoescaleError(f"data: the {source} stream has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        self.tokens, self.mask, self.T = tokens, mask, seq_len
        self.pos = 0

    def starts(self, rows: int) -> np.ndarray:
        """The start positions of the next ``rows`` windows; advances the position."""
        out = np.empty(rows, dtype=np.int64)
        limit = len(self.tokens) - self.T - 1
        for i in range(rows):
            if self.pos > limit:
                self.pos = 0
            out[i] = self.pos
            self.pos += self.T
        return out

    def batch(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs x and targets y (int64, shape [rows, T]) of the windows at ``starts``."""
        idx = starts[:, None] + np.arange(self.T + 1)[None, :]
        window = self.tokens[idx].astype(np.int64)
        x, y = window[:, :-1], window[:, 1:].copy()
        if self.mask is not None:
            y[self.mask[idx[:, 1:]] == 0] = -1
        return torch.from_numpy(x), torch.from_numpy(y)

    def n_targets(self, starts: np.ndarray) -> int:
        """How many targets of the windows at ``starts`` count (mask 1; all of them without a mask)."""
        if self.mask is None:
            return len(starts) * self.T
        idx = starts[:, None] + np.arange(1, self.T + 1)[None, :]
        return int(self.mask[idx].sum())


def unigram_entropy(tokens: np.ndarray, mask: np.ndarray | None = None) -> float:
    """H = -sum_v p_v ln p_v (nats) of the token frequencies p_v over the stream's targets
    (tokens with mask 1): the loss of the best model that ignores context, to compare val_loss with."""
    counts = np.bincount(tokens if mask is None else tokens[mask.astype(bool)]).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def data_stats(corpus) -> dict:
    """What run.json records about the data: stream sizes, vocabulary, the validation stream's
    unigram entropy (nats) and each task's kind and chance accuracy."""
    return {
        "train_tokens": int(len(corpus.train)), "val_tokens": int(len(corpus.val)), "vocab_size": int(corpus.vocab_size),
        "unigram_entropy": unigram_entropy(np.asarray(corpus.val), corpus.val_mask),
        "tasks": {t.name: {"kind": t.kind, "chance": float(t.chance), "n_examples": len(t)} for t in corpus.tasks},
    }  # fmt: skip


__all__ = ["Stream", "data_stats", "unigram_entropy"]
