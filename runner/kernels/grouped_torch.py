"""Fast pure-torch backend (the CPU default): grouped GEMMs as per-expert matmuls written
into preallocated outputs, with a hand-written backward.

Same math and interface as ``reference.py``. The reference slices ``x[start:end] @ w[e]``
and concatenates, so autograd's backward of every slice materialises a zero tensor as large
as the whole input (O(E * T * K) memory traffic, which made MoE training 1.5-3x slower than
dense on CPU at E = 8-32). Here forward writes each expert's rows straight into one output
and backward computes, per expert e with rows R_e:

    dX[R_e] = dY[R_e] @ W[e]^T,        dW[e] = X[R_e]^T @ dY[R_e]      (dW[e] = 0 when R_e is empty)

also into preallocated buffers, so the cost is the E matmuls and nothing else. It syncs with
the host once per call (``offsets.tolist()``), which is free on CPU.

The E matmuls of each of the three products run in one call of ``torch._grouped_mm``, whose CPU
implementation is a C++ loop of ``at::mm_out`` over the groups: the very calls (same slices,
same strides, same kernel) that the Python loops of ``_mm_rows`` and ``_mm_groups`` make, so the
numbers are the same bit for bit, without a Python round trip per expert (1-5% of a d_model 64
MoE step, benchmarks/bench_train.py --levers). Where
``torch._grouped_mm`` does not apply (a torch without it, float64, rows not a multiple of 16
bytes) the Python loop runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_NATIVE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: Off only to measure the Python loop against the native one (benchmarks/train_levers.py).
USE_NATIVE = hasattr(torch, "_grouped_mm")


def _row_ends(offsets: torch.Tensor, n_rows: int) -> list[int]:
    """offsets as non-decreasing Python ints clamped to [0, n_rows]."""
    ends, top = [], 0
    for end in offsets.to(torch.int64).clamp(0, n_rows).tolist():
        top = max(top, end)
        ends.append(top)
    return ends


def _aligned(t: torch.Tensor) -> bool:
    """Whether torch._grouped_mm accepts t's last two dims: one of them unit-stride and the
    other's stride a multiple of 16 bytes (the check of ATen's GroupedMMUtils.h, in its order)."""
    s, n, a = t.stride(), t.shape, 16 // t.element_size()
    if s[-2] == 1 and s[-1] >= max(1, n[-2]):
        return s[-1] % a == 0
    return s[-1] == 1 and s[-2] >= max(1, n[-1]) and s[-2] % a == 0


def _native(*mats: torch.Tensor) -> bool:
    return USE_NATIVE and all(m.dtype in _NATIVE_DTYPES and m.device.type == "cpu" and _aligned(m) for m in mats)


def _mm_rows(a: torch.Tensor, b: torch.Tensor, ends: list[int]) -> torch.Tensor:
    """out[R_e] = a[R_e] @ b[e] for a (T, K), b (E, K, N), R_e the rows [ends[e-1], ends[e]);
    rows past the last end are 0."""
    if _native(a, b) and b.shape[2] % (16 // b.element_size()) == 0:  # else the output's rows would be padded
        out = torch._grouped_mm(a, b, offs=torch.tensor(ends, dtype=torch.int32))
    else:
        out = a.new_empty(a.shape[0], b.shape[2])
        start = 0
        for e, end in enumerate(ends):
            if end > start:
                torch.mm(a[start:end], b[e], out=out[start:end])
            start = end
    out[ends[-1] :].zero_()
    return out


def _mm_groups(a: torch.Tensor, b: torch.Tensor, ends: list[int]) -> torch.Tensor:
    """out[e] = a[R_e]^T @ b[R_e] for a (T, K), b (T, N) -> (E, K, N); 0 for an empty R_e."""
    native = _native(a.t(), b)
    if native:
        out = torch._grouped_mm(a.t(), b, offs=torch.tensor(ends, dtype=torch.int32))
    else:
        out = a.new_empty(len(ends), a.shape[1], b.shape[1])
    start = 0
    for e, end in enumerate(ends):
        if end <= start:
            out[e].zero_()
        elif not native:
            torch.mm(a[start:end].t(), b[start:end], out=out[e])
        start = end
    return out


class _GroupedMM(torch.autograd.Function):
    """y[R_e] = x[R_e] @ w[e]; rows past the last offset give 0."""

    @staticmethod
    def forward(ctx, x, w, ends):
        ctx.save_for_backward(x, w)
        ctx.ends = ends
        return _mm_rows(x, w, ends)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dy = dy.contiguous()
        dx = _mm_rows(dy, w.transpose(1, 2), ctx.ends) if ctx.needs_input_grad[0] else None
        dw = _mm_groups(x, dy, ctx.ends) if ctx.needs_input_grad[1] else None
        return dx, dw, None


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """y[rows of e] = x[rows of e] @ w[e]; x (T, K) sorted by expert, w (E, K, N), offsets (E,)
    int32 cumulative row ends -> (T, N); rows past offsets[-1] give 0. Differentiable in x and w."""
    return _GroupedMM.apply(x, w, _row_ends(offsets, x.shape[0]))


def sort_by_expert(topk_ids: torch.Tensor, n_experts: int) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """(order, ends, token) of the T*k (token, slot) pairs of topk_ids (T, k): order (T*k,) sorts
    the flat slots stably by expert, ends[e] is the end of expert e's rows in that order, and
    token = order // k is each sorted row's token."""
    flat = topk_ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    ends = _row_ends(torch.cumsum(torch.bincount(flat, minlength=n_experts), 0), flat.numel())
    return order, ends, order // topk_ids.shape[1]


def moe_ffn(x, topk_ids, topk_weights, w1, w3, w2):
    """y[t] = sum_j g[t, j] * (silu(x[t] @ w1[e]) * (x[t] @ w3[e])) @ w2[e],  e = topk_ids[t, j].

    SwiGLU (Shazeer 2020) experts over rows sorted by expert (ScatterMoE's layout, Tan et al.
    2024): gather x by the sorted (token, slot) pairs, three grouped GEMMs, weight by g,
    scatter-add back to tokens. x (T, D), topk_ids (T, k), topk_weights (T, k), w1/w3 (E, D, F),
    w2 (E, F, D) -> (T, D).
    """
    order, ends, token = sort_by_expert(topk_ids, w1.shape[0])
    xs = x[token]
    h = F.silu(_GroupedMM.apply(xs, w1, ends)) * _GroupedMM.apply(xs, w3, ends)
    ys = _GroupedMM.apply(h, w2, ends) * topk_weights.reshape(-1)[order, None].to(x.dtype)
    return torch.zeros_like(x).index_add(0, token, ys)
