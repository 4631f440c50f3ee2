"""The MoE expert FFN on Triton grouped GEMMs: sort, fused gather, SwiGLU, fused scatter, combine.

Pipeline for x (T, D) and top-k routing (T, k), with R = T*k (token, slot) pairs::

    order   = stable argsort of the flat expert ids        (R,)  slot index per sorted row
    offsets = searchsorted(sorted ids, 0..E-1, right)       (E,)  int32 cumulative row ends
    h1, h3  = x[order // k] @ w1[e], x[order // k] @ w3[e]  (R, F) gather fused into the loads
    h       = silu(h1) * h3                                  (R, F) SwiGLU
    o       = scatter: o[order[r]] = h[r] @ w2[e]           (R, D) slot order, in the epilogue
    y[t]    = sum_j topk_weights[t, j] * o[t*k + j]         (T, D) a (1 x k) @ (k x D) bmm

No padded or permuted copy of x is made, no host sync happens (offsets come from a
searchsorted, not a bincount, whose output size would need the max on the host), and
every reduction has a fixed order, so two runs are bitwise equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.kernels import grouped_gemm as gg


def route(topk_ids: torch.Tensor, n_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, offsets): slots sorted stably by expert id, and int32 cumulative row ends."""
    flat = topk_ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    experts = torch.arange(n_experts, device=flat.device, dtype=flat.dtype)
    offsets = torch.searchsorted(flat[order], experts, right=True).to(torch.int32)
    return order, offsets


def moe_ffn(x, topk_ids, topk_weights, w1, w3, w2):
    """y[t] = sum_j g[t, j] * (silu(x[t] @ w1[e]) * (x[t] @ w3[e])) @ w2[e],  e = topk_ids[t, j].

    SwiGLU experts (Shazeer 2020) with scattered grouped GEMMs (Tan et al. 2024, ScatterMoE).
    x (T, D), topk_ids (T, k) int, topk_weights (T, k), w1/w3 (E, D, F), w2 (E, F, D) -> (T, D).
    """
    T, k = topk_ids.shape
    order, offsets = route(topk_ids, w1.shape[0])
    h = F.silu(gg.gather_mm(x, w1, offsets, order, k)) * gg.gather_mm(x, w3, offsets, order, k)
    o = gg.scatter_mm(h, w2, offsets, order)
    return torch.bmm(topk_weights.to(x.dtype).view(T, 1, k), o.view(T, k, w2.shape[2])).view(T, w2.shape[2])
