"""Expert kernels: grouped GEMMs and the MoE feed-forward built on them.

Interface (stable; the model calls only these):

- ``grouped_mm(x, w, offsets)``: x (T, K) rows sorted by expert, w (E, K, N),
  offsets (E,) int32 cumulative row ends -> y (T, N) with y[rows of e] = x[rows of e] @ w[e].
- ``moe_ffn(x, topk_ids, topk_weights, w1, w3, w2)``: x (T, D), topk_ids (T, k) int64,
  topk_weights (T, k), w1/w3 (E, D, F), w2 (E, F, D) -> (T, D), with
  y[t] = sum_j topk_weights[t, j] * (silu(x[t] @ w1[e]) * (x[t] @ w3[e])) @ w2[e],  e = topk_ids[t, j].

This placeholder is the per-expert torch reference only; the Triton backend replaces it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    starts = torch.cat([offsets.new_zeros(1), offsets[:-1]]).tolist()
    ends = offsets.tolist()
    out = x.new_empty(x.shape[0], w.shape[2])
    for e, (s, t) in enumerate(zip(starts, ends)):
        out[s:t] = x[s:t] @ w[e]
    return out


def moe_ffn(x, topk_ids, topk_weights, w1, w3, w2):
    T, k = topk_ids.shape
    flat = topk_ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    tokens = order // k
    counts = torch.bincount(flat, minlength=w1.shape[0])
    offsets = torch.cumsum(counts, 0).to(torch.int32)
    xs = x[tokens]
    h = F.silu(grouped_mm(xs, w1, offsets)) * grouped_mm(xs, w3, offsets)
    ys = grouped_mm(h, w2, offsets) * topk_weights.reshape(-1)[order, None].to(x.dtype)
    return torch.zeros_like(x).index_add_(0, tokens, ys)
