"""Torch reference backend: readable per-expert loops, kept beside the Triton path.

As in torchtitan's ``GroupedExperts`` ("for comparison and readability"): the same
interface as the Triton backend, written as a plain loop over experts so that the math
is obvious. Autograd comes from torch. It syncs with the host (``offsets.tolist()``)
and is slow on a GPU, and its slice-and-concatenate backward is slow on a CPU too (the
CPU default is ``grouped_torch.py``); it is the reference the kernels are tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """y[rows of e] = x[rows of e] @ w[e]; rows past offsets[-1] give 0.

    x (T, K) rows sorted by expert, w (E, K, N), offsets (E,) int32 cumulative row ends.
    """
    ends = offsets.to(torch.int64).clamp(0, x.shape[0]).tolist()
    parts, start = [], 0
    for e, end in enumerate(ends):
        end = max(end, start)
        parts.append(x[start:end] @ w[e])
        start = end
    parts.append(x.new_zeros(x.shape[0] - start, w.shape[2]))
    return torch.cat(parts)


def moe_ffn(x, topk_ids, topk_weights, w1, w3, w2):
    """y[t] = sum_j g[t, j] * (silu(x[t] @ w1[e]) * (x[t] @ w3[e])) @ w2[e],  e = topk_ids[t, j].

    SwiGLU expert FFN (Shazeer 2020, "GLU Variants Improve Transformer") with top-k
    token-choice routing. x (T, D), topk_ids (T, k), topk_weights (T, k), w1/w3 (E, D, F),
    w2 (E, F, D) -> (T, D). Loops over experts, gathering each expert's (token, slot) pairs.
    """
    T, k = topk_ids.shape
    flat = topk_ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    offsets = torch.cumsum(torch.bincount(flat, minlength=w1.shape[0]), 0).to(torch.int32)
    xs = x[order // k]
    h = F.silu(grouped_mm(xs, w1, offsets)) * grouped_mm(xs, w3, offsets)
    ys = grouped_mm(h, w2, offsets) * topk_weights.reshape(-1)[order, None].to(x.dtype)
    return torch.zeros_like(x).index_add(0, order // k, ys)
