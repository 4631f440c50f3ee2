"""Triton grouped GEMMs for MoE experts, forward and backward, with fused gather/scatter.

One grouped GEMM computes, for rows r sorted by expert (``offsets`` are the int32
cumulative row ends, torch's ``_grouped_mm`` convention)::

    C[c(r)] = A[a(r)] @ B[e(r)]          e(r) = the expert whose row range holds r

where ``a`` and ``c`` are optional index maps. They let the MoE FFN read tokens straight
from the unsorted activations (gather fused into the first GEMM's loads) and write
its output straight into (token, slot) order (scatter fused into the last GEMM's
epilogue), as ScatterMoE does (Tan et al. 2024, "Scattered Mixture-of-Experts
Implementation"), so no padded or permuted copy of the activations is materialised.

Two kernels:

- ``_gmm_rows``: tiles over rows. The grid is sized from the static upper bound on the
  number of row tiles, ``cdiv(T, BLOCK_M) + E + 1``; a per-tile table (expert, first row,
  row end) is computed on the device with a searchsorted, so no host-device sync is
  needed. Rows past ``offsets[-1]`` form a pseudo-expert whose output is written as zeros,
  so every output element is written. Used for the forward and for dX = dY @ W[e]^T
  (the transpose is a stride swap, not a copy).
- ``_gmm_weight_grad``: one program per (expert, K tile, N tile) reduces over that
  expert's rows, dW[e] = A[rows e]^T @ dC[rows e]. No atomics, so results are bitwise
  deterministic, and an expert with no rows gets an exact zero.

Interpreter (``TRITON_INTERPRET=1``): kernels are jitted lazily for the current setting,
so the same process can run them on CPU tensors; autotuning is off there and low-precision
inputs are upcast to fp32 before ``tl.dot`` (the interpreter's bf16 dot is wrong).
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

# One fixed tile config under the interpreter (tests use BLOCK_M to build edge cases).
INTERPRET_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}
# On a GPU the row tile is fixed (the tile table depends on it); N/K tiles are autotuned.
GPU_BLOCK_M = 128


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return bool(triton.knobs.runtime.interpret)


def block_m() -> int:
    """Rows per tile for the current mode (the schedule's granularity)."""
    return INTERPRET_CONFIG["BLOCK_M"] if interpreting() else GPU_BLOCK_M


def _alloc(shape, like: torch.Tensor, dtype=None) -> torch.Tensor:
    """Uninitialised output buffer; every element is written by a kernel (tests poison it)."""
    return torch.empty(shape, device=like.device, dtype=dtype or like.dtype)


# --------------------------------------------------------------------------- kernels
# Plain functions, jitted lazily by ``_kernel`` so the interpreter setting is read at
# call time, not at import time. They use only triton.language builtins (tl.full, not the
# @jit helpers tl.zeros / tl.cdiv), because those helpers are fixed as compiled or
# interpreted when triton itself is first imported, which another module may do first.


def _gmm_rows(
    a_ptr, b_ptr, c_ptr,
    tile_expert_ptr, tile_row_ptr, tile_end_ptr,
    a_idx_ptr, c_idx_ptr,
    N, K, n_experts,
    stride_am, stride_ak,
    stride_be, stride_bk, stride_bn,
    stride_cm, stride_cn,
    A_DIV: tl.constexpr, HAS_A_IDX: tl.constexpr, HAS_C_IDX: tl.constexpr,
    UPCAST: tl.constexpr, ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    tile = tl.program_id(0)  # row tiles on axis 0: no 65535 cap on the number of rows
    pid_n = tl.program_id(1)
    row0 = tl.load(tile_row_ptr + tile)
    row_end = tl.load(tile_end_ptr + tile)
    if row0 >= row_end:  # unused slot of the static grid
        return
    expert = tl.load(tile_expert_ptr + tile).to(tl.int64)
    rows = row0 + tl.arange(0, BLOCK_M)
    m_mask = rows < row_end
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = cols < N
    acc = tl.full((BLOCK_M, BLOCK_N), 0, dtype=ACC_DTYPE)
    if expert < n_experts:  # expert == n_experts marks rows past offsets[-1]: zeros
        if HAS_A_IDX:
            src = (tl.load(a_idx_ptr + rows, mask=m_mask, other=0) // A_DIV).to(tl.int64)
        else:
            src = rows.to(tl.int64)
        a_rows = a_ptr + src[:, None] * stride_am
        b_base = b_ptr + expert * stride_be + cols[None, :] * stride_bn
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_mask = ks < K
            a = tl.load(a_rows + ks[None, :] * stride_ak, mask=m_mask[:, None] & k_mask[None, :], other=0.0)
            b = tl.load(b_base + ks[:, None] * stride_bk, mask=k_mask[:, None] & n_mask[None, :], other=0.0)
            if UPCAST:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
    if HAS_C_IDX:
        dst = tl.load(c_idx_ptr + rows, mask=m_mask, other=0).to(tl.int64)
    else:
        dst = rows.to(tl.int64)
    c_ptrs = c_ptr + dst[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


def _gmm_weight_grad(
    a_ptr, d_ptr, g_ptr,
    expert_start_ptr, expert_end_ptr, idx_ptr,
    K, N,
    stride_am, stride_ak,
    stride_dm, stride_dn,
    stride_ge, stride_gk, stride_gn,
    A_DIV: tl.constexpr, GATHER_A: tl.constexpr, GATHER_D: tl.constexpr,
    UPCAST: tl.constexpr, ACC_DTYPE: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    expert = tl.program_id(1).to(tl.int64)
    n_tiles_n = (N + BLOCK_N - 1) // BLOCK_N
    pid_k = pid // n_tiles_n
    pid_n = pid % n_tiles_n
    ks = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k_mask = ks < K
    n_mask = cols < N
    start = tl.load(expert_start_ptr + expert)
    end = tl.load(expert_end_ptr + expert)
    acc = tl.full((BLOCK_K, BLOCK_N), 0, dtype=ACC_DTYPE)
    for m0 in range(start, end, BLOCK_M):  # empty expert: no iteration, exact zero
        rows = m0 + tl.arange(0, BLOCK_M)
        m_mask = rows < end
        if GATHER_A or GATHER_D:
            idx = tl.load(idx_ptr + rows, mask=m_mask, other=0).to(tl.int64)
        if GATHER_A:
            a_src = idx // A_DIV
        else:
            a_src = rows.to(tl.int64)
        if GATHER_D:
            d_src = idx
        else:
            d_src = rows.to(tl.int64)
        at = tl.load(a_ptr + a_src[None, :] * stride_am + ks[:, None] * stride_ak,
                     mask=k_mask[:, None] & m_mask[None, :], other=0.0)
        d = tl.load(d_ptr + d_src[:, None] * stride_dm + cols[None, :] * stride_dn,
                    mask=m_mask[:, None] & n_mask[None, :], other=0.0)
        if UPCAST:
            at = at.to(tl.float32)
            d = d.to(tl.float32)
        acc = tl.dot(at, d, acc, input_precision=PRECISION)
    g_ptrs = g_ptr + expert * stride_ge + ks[:, None] * stride_gk + cols[None, :] * stride_gn
    tl.store(g_ptrs, acc.to(g_ptr.dtype.element_ty), mask=k_mask[:, None] & n_mask[None, :])


def _gpu_configs():
    return [
        triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
        for bn, bk, w, s in [(128, 64, 4, 4), (128, 64, 8, 3), (256, 64, 8, 3), (64, 64, 4, 4), (128, 32, 4, 4)]
    ]


def _gpu_grad_configs():
    return [
        triton.Config({"BLOCK_K": bk, "BLOCK_N": bn, "BLOCK_M": bm}, num_warps=w, num_stages=s)
        for bk, bn, bm, w, s in [(128, 128, 64, 8, 3), (64, 128, 64, 4, 4), (128, 64, 64, 4, 4), (64, 64, 64, 4, 4)]
    ]


@functools.cache
def _kernel(name: str, interpret: bool):
    """The jitted kernel for the current interpreter setting (autotuned only on a GPU)."""
    fn = {"rows": _gmm_rows, "grad": _gmm_weight_grad}[name]
    jitted = triton.jit(fn)
    if interpret:
        return jitted
    if name == "rows":
        return triton.autotune(_gpu_configs(), key=["N", "K", "HAS_A_IDX", "HAS_C_IDX"])(jitted)
    return triton.autotune(_gpu_grad_configs(), key=["N", "K", "GATHER_A", "GATHER_D"])(jitted)


def _dtype_args(t: torch.Tensor) -> dict:
    if t.dtype == torch.float64:
        return {"UPCAST": False, "ACC_DTYPE": tl.float64, "PRECISION": None}
    if t.dtype == torch.float32:
        tf32 = torch.backends.cuda.matmul.allow_tf32 and not interpreting()
        return {"UPCAST": False, "ACC_DTYPE": tl.float32, "PRECISION": "tf32" if tf32 else "ieee"}
    # bf16/fp16: native tensor-core dot on a GPU; the interpreter's low-precision dot is wrong.
    return {"UPCAST": interpreting(), "ACC_DTYPE": tl.float32, "PRECISION": None}


# --------------------------------------------------------------------------- launchers


def expert_ranges(offsets: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, end) row of each expert, int64 on the device, clamped into [0, n_rows]."""
    ends = offsets.to(torch.int64).clamp(0, n_rows)
    starts = torch.cat([ends.new_zeros(1), ends[:-1]])
    return starts, torch.maximum(ends, starts)


def tile_schedule(offsets: torch.Tensor, n_rows: int, bm: int):
    """Per-tile (expert, first row, row end) for a grid of ``cdiv(n_rows, bm) + E + 1`` tiles.

    Computed with device ops only (cumsum, searchsorted): no host sync. Tile ``i`` belongs
    to the expert whose cumulative tile count first exceeds ``i``; rows past ``offsets[-1]``
    are pseudo-expert E (written as zeros); tiles past the last one have first row = end = 0.
    """
    E = offsets.numel()
    starts, ends = expert_ranges(offsets, n_rows)
    starts = torch.cat([starts, ends[-1:]])
    ends = torch.cat([ends, ends.new_full((1,), n_rows)])
    tiles = (ends - starts + bm - 1) // bm
    cum = torch.cumsum(tiles, 0)
    n_tiles = triton.cdiv(n_rows, bm) + E + 1
    tile_ids = torch.arange(n_tiles, device=offsets.device)
    tile_expert = torch.searchsorted(cum, tile_ids, right=True)
    used = tile_expert <= E
    e = tile_expert.clamp(max=E)
    first_tile = cum - tiles
    row0 = torch.where(used, starts[e] + (tile_ids - first_tile[e]) * bm, 0)
    row_end = torch.where(used, ends[e], 0)
    i32 = torch.int32
    return e.to(i32), row0.to(i32), row_end.to(i32), n_tiles


def launch_rows(a, b, offsets, out, *, a_idx=None, a_div=1, c_idx=None, schedule=None):
    """out[c(r)] = a[a(r) // a_div] @ b[e(r)] for every row r of the sorted layout.

    a: (*, K); b: (E, K, N) (any strides: pass ``w.transpose(1, 2)`` for W^T);
    out: (R, N) preallocated; a_idx/c_idx: (R,) int index maps or None.
    """
    n_rows = a_idx.numel() if a_idx is not None else (c_idx.numel() if c_idx is not None else a.shape[0])
    E, K, N = b.shape
    interp = interpreting()
    bm = block_m()
    if schedule is None:
        schedule = tile_schedule(offsets, n_rows, bm)
    tile_expert, tile_row, tile_end, n_tiles = schedule
    dummy = tile_row
    args = (
        a, b, out, tile_expert, tile_row, tile_end,
        a_idx if a_idx is not None else dummy, c_idx if c_idx is not None else dummy,
        N, K, E,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), b.stride(2), out.stride(0), out.stride(1),
    )
    meta = dict(A_DIV=a_div, HAS_A_IDX=a_idx is not None, HAS_C_IDX=c_idx is not None, BLOCK_M=bm, **_dtype_args(a))
    if interp:
        cfg = INTERPRET_CONFIG
        grid = (n_tiles, triton.cdiv(N, cfg["BLOCK_N"]))
        _kernel("rows", True)[grid](*args, BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], **meta)
    else:
        grid = lambda m: (n_tiles, triton.cdiv(N, m["BLOCK_N"]))  # noqa: E731
        _kernel("rows", False)[grid](*args, **meta)
    return out


def launch_weight_grad(a, d, offsets, out, *, idx=None, a_div=1, gather_a=False, gather_d=False):
    """out[e] = a[rows e]^T @ d[rows e] (rows optionally gathered through ``idx``); zero if empty.

    a: (*, K); d: (*, N); out: (E, K, N) preallocated.
    """
    E, K, N = out.shape
    n_rows = idx.numel() if idx is not None else a.shape[0]
    starts, ends = expert_ranges(offsets, n_rows)
    args = (
        a, d, out, starts, ends, idx if idx is not None else starts,
        K, N,
        a.stride(0), a.stride(1), d.stride(0), d.stride(1), out.stride(0), out.stride(1), out.stride(2),
    )
    meta = dict(A_DIV=a_div, GATHER_A=gather_a, GATHER_D=gather_d, **_dtype_args(a))
    if interpreting():
        cfg = INTERPRET_CONFIG
        grid = (triton.cdiv(K, cfg["BLOCK_K"]) * triton.cdiv(N, cfg["BLOCK_N"]), E)
        _kernel("grad", True)[grid](*args, **cfg, **meta)
    else:
        grid = lambda m: (triton.cdiv(K, m["BLOCK_K"]) * triton.cdiv(N, m["BLOCK_N"]), E)  # noqa: E731
        _kernel("grad", False)[grid](*args, **meta)
    return out


# --------------------------------------------------------------------------- autograd


class GroupedMM(torch.autograd.Function):
    """Grouped GEMM with an optional fused gather (``mode="gather"``) or scatter (``"scatter"``).

    - ``plain``:   y[r] = x[r] @ w[e(r)];                       x (T, K) -> y (T, N)
    - ``gather``:  y[r] = x[order[r] // k] @ w[e(r)];           x (T, K) -> y (T*k, N), sorted rows
    - ``scatter``: y[order[r]] = x[r] @ w[e(r)];                x (R, K) sorted -> y (R, N), slot order

    Backward (Triton kernels too): dX via the row kernel with w^T (in ``gather`` mode the
    per-slot dX rows are scattered to slot order and summed over the k slots of each token,
    a fixed-order reduction); dW[e] via ``_gmm_weight_grad``.
    """

    @staticmethod
    def forward(ctx, x, w, offsets, order=None, k=1, mode="plain"):
        if x.dtype != w.dtype:
            raise TypeError(f"grouped_mm: x is {x.dtype} but w is {w.dtype}")
        n_rows = order.numel() if order is not None else x.shape[0]
        out = _alloc((n_rows, w.shape[2]), x)
        schedule = tile_schedule(offsets, n_rows, block_m())
        if mode == "plain":
            launch_rows(x, w, offsets, out, schedule=schedule)
        elif mode == "gather":
            launch_rows(x, w, offsets, out, a_idx=order, a_div=k, schedule=schedule)
        elif mode == "scatter":
            launch_rows(x, w, offsets, out, c_idx=order, schedule=schedule)
        else:
            raise ValueError(f"unknown grouped_mm mode {mode!r}")
        ctx.save_for_backward(x, w, offsets, order, *schedule[:3])
        ctx.n_tiles, ctx.k, ctx.mode = schedule[3], k, mode
        return out

    @staticmethod
    def backward(ctx, dy):
        x, w, offsets, order, *sched = ctx.saved_tensors
        schedule = (*sched, ctx.n_tiles)
        mode, k = ctx.mode, ctx.k
        wt = w.transpose(1, 2)
        dx = dw = None
        if ctx.needs_input_grad[0]:
            if mode == "plain":
                dx = launch_rows(dy, wt, offsets, _alloc(x.shape, dy), schedule=schedule)
            elif mode == "gather":
                slots = launch_rows(dy, wt, offsets, _alloc((order.numel(), x.shape[1]), dy),
                                    c_idx=order, schedule=schedule)
                dx = slots.view(x.shape[0], k, x.shape[1]).sum(1) if k > 1 else slots
            else:
                dx = launch_rows(dy, wt, offsets, _alloc(x.shape, dy), a_idx=order, schedule=schedule)
        if ctx.needs_input_grad[1]:
            g = _alloc(w.shape, w)
            if mode == "plain":
                dw = launch_weight_grad(x, dy, offsets, g)
            elif mode == "gather":
                dw = launch_weight_grad(x, dy, offsets, g, idx=order, a_div=k, gather_a=True)
            else:
                dw = launch_weight_grad(x, dy, offsets, g, idx=order, gather_d=True)
        return dx, dw, None, None, None, None


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """y[rows of e] = x[rows of e] @ w[e] with Triton kernels; rows past offsets[-1] give 0.

    x (T, K) rows sorted by expert, w (E, K, N), offsets (E,) int32 cumulative row ends.
    """
    return GroupedMM.apply(x, w, offsets, None, 1, "plain")


def gather_mm(x, w, offsets, order, k):
    """y[r] = x[order[r] // k] @ w[e(r)]: the MoE's first GEMMs, gather fused into the loads."""
    return GroupedMM.apply(x, w, offsets, order, k, "gather")


def scatter_mm(h, w, offsets, order):
    """y[order[r]] = h[r] @ w[e(r)]: the MoE's last GEMM, scatter to slot order in the epilogue."""
    return GroupedMM.apply(h, w, offsets, order, 1, "scatter")
