"""Expert kernels: grouped GEMMs and the MoE feed-forward built on them.

Interface (stable; the model calls only these):

- ``grouped_mm(x, w, offsets)``: x (T, K) rows sorted by expert, w (E, K, N),
  offsets (E,) int32 cumulative row ends -> y (T, N) with y[rows of e] = x[rows of e] @ w[e]
  (rows past offsets[-1] give 0).
- ``moe_ffn(x, topk_ids, topk_weights, w1, w3, w2)``: x (T, D), topk_ids (T, k) int64,
  topk_weights (T, k), w1/w3 (E, D, F), w2 (E, F, D) -> (T, D), with
  y[t] = sum_j topk_weights[t, j] * (silu(x[t] @ w1[e]) * (x[t] @ w3[e])) @ w2[e],  e = topk_ids[t, j].

Both are differentiable in x, the weights and (for ``moe_ffn``) topk_weights.

Backends (``backend=`` argument, else ``$MOESCALE_KERNELS``, else automatic):

- ``triton``: Triton kernels (``grouped_gemm.py``, ``expert_ffn.py``); chosen automatically
  for CUDA tensors, or for any tensors when ``TRITON_INTERPRET=1`` (the CPU interpreter).
- ``torch``: per-expert matmuls into preallocated outputs with a hand-written backward
  (``grouped_torch.py``); chosen automatically otherwise (the fast CPU path).
- ``reference``: the readable per-expert loops (``reference.py``) everything is tested against.
"""

from __future__ import annotations

import os

import torch

from runner.kernels import grouped_torch, reference
from scaling.errors import MoescaleError

BACKENDS = ("triton", "torch", "reference")
ENV_VAR = "MOESCALE_KERNELS"


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def resolve_backend(backend: str | None = None, device: torch.device | None = None) -> str:
    """The backend to use: ``backend`` if given, else ``$MOESCALE_KERNELS``, else automatic.

    Automatic: ``triton`` for CUDA tensors or under ``TRITON_INTERPRET=1``, else ``torch``.
    """
    name = backend or os.environ.get(ENV_VAR) or None
    if name is None:
        on_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
        return "triton" if on_cuda or _interpreting() else "torch"
    if name not in BACKENDS:
        source = "backend argument" if backend else f"${ENV_VAR}"
        raise MoescaleError(f"{source}: unknown kernel backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "triton" and device is not None and device.type != "cuda" and not _interpreting():
        raise MoescaleError(
            f"kernel backend 'triton' needs CUDA tensors (got {device.type}) or TRITON_INTERPRET=1 "
            f"for the CPU interpreter; set {ENV_VAR}=torch for the pure-torch path"
        )
    return name


def grouped_mm(x: torch.Tensor, w: torch.Tensor, offsets: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """Grouped GEMM: y[rows of e] = x[rows of e] @ w[e] for each expert e.

    x (T, K) with rows sorted by expert, w (E, K, N), offsets (E,) int32 with
    rows of e = [offsets[e-1], offsets[e]) (torch ``_grouped_mm``'s convention) -> y (T, N).
    """
    name = resolve_backend(backend, x.device)
    if name == "torch":
        return grouped_torch.grouped_mm(x, w, offsets)
    if name == "reference":
        return reference.grouped_mm(x, w, offsets)
    from runner.kernels import grouped_gemm

    return grouped_gemm.grouped_mm(x, w, offsets)


def moe_ffn(x, topk_ids, topk_weights, w1, w3, w2, *, backend: str | None = None) -> torch.Tensor:
    """SwiGLU MoE FFN: y[t] = sum_j g[t, j] * (silu(x[t] @ w1[e]) * (x[t] @ w3[e])) @ w2[e].

    e = topk_ids[t, j], g = topk_weights. SwiGLU from Shazeer (2020), "GLU Variants Improve
    Transformer"; the sorted, scattered grouped-GEMM layout follows ScatterMoE (Tan et al. 2024).
    Shapes: x (T, D), topk_ids (T, k), topk_weights (T, k), w1/w3 (E, D, F), w2 (E, F, D) -> (T, D).
    """
    name = resolve_backend(backend, x.device)
    if name == "torch":
        return grouped_torch.moe_ffn(x, topk_ids, topk_weights, w1, w3, w2)
    if name == "reference":
        return reference.moe_ffn(x, topk_ids, topk_weights, w1, w3, w2)
    from runner.kernels import expert_ffn

    return expert_ffn.moe_ffn(x, topk_ids, topk_weights, w1, w3, w2)
