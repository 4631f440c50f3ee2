"""Triton grouped GEMMs and MoE FFN on CPU through the Triton interpreter, fp32 vs float64.

How the interpreter is switched on: an autouse fixture sets ``TRITON_INTERPRET=1`` for each
test with ``monkeypatch`` (so it never leaks into other test modules in the same pytest
process), and ``runner.kernels.grouped_gemm`` jits its kernels lazily for the interpreter
setting seen at call time, so it does not matter whether another module imported triton or
the kernels first. ``test_kernels_run_under_interpreter`` checks the kernels really are
``InterpretedFunction``s.

References are independent float64 computations (per-row weight gathers, a per-token loop),
not the backend code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runner import kernels
from runner.kernels import expert_ffn, grouped_gemm as gg, reference
from scaling.errors import MoescaleError

RTOL = 1e-5


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def offsets_of(counts) -> torch.Tensor:
    return torch.cumsum(torch.as_tensor(counts, dtype=torch.int64), 0).to(torch.int32)


def zipf_counts(n_rows: int, n_experts: int, s: float = 1.5, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_experts + 1) ** s
    ids = rng.choice(n_experts, size=n_rows, p=p / p.sum())
    return np.bincount(ids, minlength=n_experts).tolist()


def grouped_mm_f64(x, w, counts, n_rows):
    """Float64 reference: y[r] = x[r] @ w[e(r)] by gathering one weight matrix per row."""
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    counts = torch.as_tensor(counts)
    e_rows = torch.repeat_interleave(torch.arange(len(counts)), counts)
    used = int(counts.sum())
    y = torch.zeros(n_rows, w.shape[2], dtype=torch.float64)
    y[:used] = torch.einsum("rk,rkn->rn", x64[:used], w64[e_rows])
    return x64, w64, y


def check_grouped_mm(counts, n_rows, K, N, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(n_rows, K, requires_grad=True)
    w = torch.randn(len(counts), K, N, requires_grad=True)
    offsets = offsets_of(counts)
    y = kernels.grouped_mm(x, w, offsets)
    g = torch.randn_like(y)
    dx, dw = torch.autograd.grad(y, (x, w), g)
    x64, w64, y64 = grouped_mm_f64(x, w, counts, n_rows)
    dx64, dw64 = torch.autograd.grad(y64, (x64, w64), g.double())
    assert y.dtype == dx.dtype == dw.dtype == torch.float32
    assert rel_err(y, y64) <= RTOL
    assert rel_err(dx, dx64) <= RTOL
    assert rel_err(dw, dw64) <= RTOL
    for e, c in enumerate(counts):
        if c == 0:
            assert torch.count_nonzero(dw[e]) == 0, f"expert {e} has no rows: its dW must be exactly 0"
    assert torch.count_nonzero(y[sum(counts):]) == 0
    return y, dx, dw


def test_kernels_run_under_interpreter():
    from triton.runtime.interpreter import InterpretedFunction

    assert gg.interpreting()
    assert kernels.resolve_backend(device=torch.device("cpu")) == "triton"
    assert isinstance(gg._kernel("rows", True), InterpretedFunction)
    assert isinstance(gg._kernel("grad", True), InterpretedFunction)


BM = gg.INTERPRET_CONFIG["BLOCK_M"]


@pytest.mark.parametrize(
    "counts, n_rows, K, N",
    [
        pytest.param([9, 3, 14, 7], 33, 19, 23, id="random-shape-K-N-not-block-multiples"),
        pytest.param([0, 7, 0, 12, 0], 19, 21, 18, id="empty-experts"),
        pytest.param([0, 0, 33, 0], 33, 17, 20, id="all-tokens-one-expert"),
        pytest.param([1, BM - 1, BM, BM + 1, 1], 4 * BM + 1, 16, 33, id="counts-1-and-BLOCK_M-pm-1"),
        pytest.param(zipf_counts(40, 6), 40, 20, 17, id="zipf-skewed"),
        pytest.param([5, 0, 6], 17, 9, 11, id="rows-past-last-offset-are-zero"),
    ],
)
def test_grouped_mm_matches_float64(counts, n_rows, K, N):
    check_grouped_mm(counts, n_rows, K, N)


def test_schedule_covers_each_row_once():
    rng = np.random.default_rng(1)
    for _ in range(20):
        E = int(rng.integers(1, 9))
        counts = rng.integers(0, 3 * BM, size=E)
        n_rows = int(counts.sum() + rng.integers(0, BM))
        e, row0, row_end, n_tiles = gg.tile_schedule(offsets_of(counts), n_rows, BM)
        assert n_tiles == -(-n_rows // BM) + E + 1
        hits = torch.zeros(n_rows, dtype=torch.int64)
        for t in range(n_tiles):
            lo, hi = int(row0[t]), min(int(row0[t]) + BM, int(row_end[t]))
            hits[lo:hi] += 1
            if lo < hi:
                ends = np.concatenate([np.cumsum(counts), [n_rows]])
                starts = np.concatenate([[0], ends[:-1]])
                assert starts[e[t]] <= lo and hi <= ends[e[t]]
        assert torch.all(hits == 1)


def moe_inputs(T, D, Fh, E, k, ids=None, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, D, generator=gen, dtype=dtype)
    if ids is None:
        ids = torch.stack([torch.randperm(E, generator=gen)[:k] for _ in range(T)])
    weights = torch.rand(T, k, generator=gen, dtype=dtype)
    w1 = torch.randn(E, D, Fh, generator=gen, dtype=dtype) / D**0.5
    w3 = torch.randn(E, D, Fh, generator=gen, dtype=dtype) / D**0.5
    w2 = torch.randn(E, Fh, D, generator=gen, dtype=dtype) / Fh**0.5
    return [x, ids, weights, w1, w3, w2]


def moe_per_token_f64(x, ids, weights, w1, w3, w2):
    """Float64 per-token loop: y[t] = sum_j g[t,j] (silu(x[t] w1[e]) * (x[t] w3[e])) w2[e]."""
    rows = []
    for t in range(x.shape[0]):
        acc = torch.zeros(x.shape[1], dtype=torch.float64)
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            acc = acc + weights[t, j] * ((F.silu(x[t] @ w1[e]) * (x[t] @ w3[e])) @ w2[e])
        rows.append(acc)
    return torch.stack(rows)


def moe_fwd_bwd(inputs, fn):
    x, ids, weights, w1, w3, w2 = inputs
    leaves = [t.detach().clone().requires_grad_() for t in (x, weights, w1, w3, w2)]
    lx, lg, l1, l3, l2 = leaves
    y = fn(lx, ids, lg, l1, l3, l2)
    g = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    return y, torch.autograd.grad(y, leaves, g)


def check_moe(inputs):
    y, grads = moe_fwd_bwd(inputs, kernels.moe_ffn)
    as64 = [t if t.dtype == torch.int64 else t.double() for t in inputs]
    y64, grads64 = moe_fwd_bwd(as64, moe_per_token_f64)
    assert rel_err(y, y64) <= RTOL
    for name, a, b in zip(("x", "topk_weights", "w1", "w3", "w2"), grads, grads64):
        assert rel_err(a, b) <= RTOL, name
    return y, grads


@pytest.mark.parametrize(
    "T, E, k, ids",
    [
        pytest.param(13, 4, 2, None, id="top2-token-in-several-experts"),
        pytest.param(9, 6, 3, "zipf", id="top3-zipf-with-empty-experts"),
        pytest.param(11, 5, 2, "same", id="all-tokens-same-two-experts"),
        pytest.param(BM + 1, 3, 1, None, id="top1-BLOCK_M-plus-1"),
    ],
)
def test_moe_ffn_matches_per_token_loop(T, E, k, ids):
    if ids == "zipf":
        gen = np.random.default_rng(3)
        p = 1.0 / np.arange(1, E + 1) ** 2.0
        ids = torch.as_tensor(np.stack([gen.choice(E, k, replace=False, p=p / p.sum()) for _ in range(T)]))
    elif ids == "same":
        ids = torch.tensor([[3, 1]] * T)
    inputs = moe_inputs(T, 10, 14, E, k, ids=ids)
    check_moe(inputs)


def test_every_output_and_gradient_element_is_written(monkeypatch):
    """Kernel outputs come from torch.empty; poison them with NaN: none may survive."""

    def poisoned(shape, like, dtype=None):
        return torch.full(shape, float("nan"), device=like.device, dtype=dtype or like.dtype)

    monkeypatch.setattr(gg, "_alloc", poisoned)
    y, dx, dw = check_grouped_mm([0, 5, BM + 1, 0], BM + 9, 13, 18)
    assert all(torch.isfinite(t).all() for t in (y, dx, dw))
    y, grads = check_moe(moe_inputs(7, 9, 11, 5, 2))
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)


def test_gradcheck_float64_triton_path():
    torch.manual_seed(0)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, 4, dtype=torch.float64, requires_grad=True)
    offsets = offsets_of([2, 0, 3])  # an empty expert and a row past offsets[-1]
    assert torch.autograd.gradcheck(lambda a, b: gg.grouped_mm(a, b, offsets), (x, w), fast_mode=True)
    x, ids, weights, w1, w3, w2 = moe_inputs(4, 3, 5, 3, 2, dtype=torch.float64)
    leaves = [t.requires_grad_() for t in (x, weights, w1, w3, w2)]
    fn = lambda a, g, p, q, r: expert_ffn.moe_ffn(a, ids, g, p, q, r)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves, fast_mode=True)


def test_two_runs_are_bitwise_equal():
    inputs = moe_inputs(19, 8, 12, 4, 2, seed=5)
    y1, g1 = moe_fwd_bwd(inputs, kernels.moe_ffn)
    y2, g2 = moe_fwd_bwd(inputs, kernels.moe_ffn)
    assert torch.equal(y1, y2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_backend_override_gives_same_results(monkeypatch):
    inputs = moe_inputs(10, 8, 12, 4, 2, seed=7)
    results = {}
    for name in kernels.BACKENDS:
        monkeypatch.setenv(kernels.ENV_VAR, name)
        assert kernels.resolve_backend(device=torch.device("cpu")) == name
        results[name] = moe_fwd_bwd(inputs, kernels.moe_ffn)
    (yt, gt), (yr, gr) = results["triton"], results["torch"]
    assert rel_err(yt, yr) <= RTOL
    assert all(rel_err(a, b) <= RTOL for a, b in zip(gt, gr))
    x, counts = inputs[0], [4, 0, 6]
    w = torch.randn(3, x.shape[1], 5)
    a = kernels.grouped_mm(x, w, offsets_of(counts), backend="triton")
    b = kernels.grouped_mm(x, w, offsets_of(counts), backend="torch")
    assert rel_err(a, b) <= RTOL


def test_backend_errors(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "cutlass")
    with pytest.raises(MoescaleError, match="unknown kernel backend 'cutlass'"):
        kernels.resolve_backend()
    monkeypatch.delenv(kernels.ENV_VAR)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if not torch.cuda.is_available():
        assert kernels.resolve_backend() == "torch"
    with pytest.raises(MoescaleError, match="needs CUDA tensors"):
        kernels.resolve_backend("triton", torch.device("cpu"))


def test_reference_backend_matches_float64():
    """The torch reference is itself checked: per-expert loop vs the float64 per-token loop."""
    inputs = moe_inputs(9, 6, 7, 4, 2, seed=2)
    y, _ = moe_fwd_bwd(inputs, reference.moe_ffn)
    as64 = [t if t.dtype == torch.int64 else t.double() for t in inputs]
    y64, _ = moe_fwd_bwd(as64, moe_per_token_f64)
    assert rel_err(y, y64) <= RTOL


def test_bf16_is_upcast_under_interpreter():
    torch.manual_seed(0)
    counts = [7, 0, 10]
    x = torch.randn(17, 24).bfloat16()
    w = torch.randn(3, 24, 20).bfloat16()
    y = gg.grouped_mm(x, w, offsets_of(counts))
    _, _, y64 = grouped_mm_f64(x, w, counts, 17)
    assert y.dtype == torch.bfloat16
    assert rel_err(y, y64) <= 1e-2  # bf16 output rounding; fp32 accumulation


def _compile_for_h100(raw_fn, pointer_types: dict, constexprs: dict):
    """Compile a kernel ahead of time for sm_90 (no GPU needed: Triton's bundled ptxas)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = triton.jit(raw_fn)
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = pointer_types.get(name, "*bf16")
        else:
            signature[name] = "i32"
    src = ASTSource(fn=fn, signature=signature,
                    constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items()})
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 8, "num_stages": 3})


def test_kernels_compile_for_h100_with_tensor_cores(monkeypatch):
    """The compiled (non-interpreted) path cannot run here; check it lowers to sm_90 wgmma."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's own default; silences its notice
    pytest.importorskip("triton.backends.nvidia")
    import triton.language as tl

    common = dict(A_DIV=2, UPCAST=False, ACC_DTYPE=tl.float32, PRECISION=None)
    rows = _compile_for_h100(
        gg._gmm_rows, {"tile_expert_ptr": "*i32", "tile_row_ptr": "*i32", "tile_end_ptr": "*i32",
                       "a_idx_ptr": "*i64", "c_idx_ptr": "*i64"},
        dict(HAS_A_IDX=True, HAS_C_IDX=False, BLOCK_M=gg.GPU_BLOCK_M, BLOCK_N=128, BLOCK_K=64, **common))
    grad = _compile_for_h100(
        gg._gmm_weight_grad, {"expert_start_ptr": "*i64", "expert_end_ptr": "*i64", "idx_ptr": "*i64"},
        dict(GATHER_A=False, GATHER_D=True, BLOCK_M=64, BLOCK_N=128, BLOCK_K=128, **common))
    for kernel in (rows, grad):
        assert "wgmma" in kernel.asm["ptx"] and kernel.asm["cubin"]
    from triton.runtime.autotuner import Autotuner

    assert isinstance(gg._kernel("rows", False), Autotuner)  # the GPU launchers' wrappers build
    assert isinstance(gg._kernel("grad", False), Autotuner)
