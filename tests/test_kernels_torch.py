"""The fast pure-torch expert path (runner/kernels/grouped_torch.py, the CPU default) against
independent float64 references (a per-row weight gather, a per-token loop) and the readable
reference loop, forward and backward, including empty experts and rows past the last offset."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from runner import kernels
from runner.kernels import grouped_torch, reference

RTOL = 1e-5


@pytest.fixture(autouse=True)
def _cpu(monkeypatch):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    torch.set_num_threads(1)


def rel_err(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@pytest.mark.parametrize("counts,n_rows", [([3, 0, 5, 2], 10), ([0, 0, 7], 9), ([4], 4), ([0, 0], 3), ([1, 6, 0, 0, 2], 12)])
def test_grouped_mm_matches_float64(counts, n_rows):
    torch.manual_seed(0)
    K, N = 6, 5
    x = torch.randn(n_rows, K, requires_grad=True)
    w = torch.randn(len(counts), K, N, requires_grad=True)
    offsets = torch.cumsum(torch.tensor(counts), 0).to(torch.int32)
    y = grouped_torch.grouped_mm(x, w, offsets)
    g = torch.randn_like(y)
    dx, dw = torch.autograd.grad(y, (x, w), g)
    # float64 reference: one weight matrix gathered per row
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    used = sum(counts)
    rows_e = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    y64 = torch.zeros(n_rows, N, dtype=torch.float64)
    y64[:used] = torch.einsum("rk,rkn->rn", x64[:used], w64[rows_e])
    dx64, dw64 = torch.autograd.grad(y64, (x64, w64), g.double())
    assert rel_err(y, y64) <= RTOL and rel_err(dx, dx64) <= RTOL and rel_err(dw, dw64) <= RTOL
    assert torch.count_nonzero(y[used:]) == 0 and torch.count_nonzero(dx[used:]) == 0
    for e, c in enumerate(counts):
        if c == 0:
            assert torch.count_nonzero(dw[e]) == 0


def moe_per_token_f64(x, ids, weights, w1, w3, w2):
    """The MoE FFN as a float64 loop over tokens and slots."""
    out = []
    for t in range(x.shape[0]):
        acc = torch.zeros(x.shape[1], dtype=torch.float64)
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            acc = acc + weights[t, j] * ((F.silu(x[t] @ w1[e]) * (x[t] @ w3[e])) @ w2[e])
        out.append(acc)
    return torch.stack(out)


@pytest.mark.parametrize("T,E,k", [(13, 4, 2), (9, 8, 1), (16, 3, 3)])
def test_moe_ffn_matches_per_token_loop_and_reference(T, E, k):
    torch.manual_seed(T + E)
    D, Fh = 8, 6
    x = torch.randn(T, D, requires_grad=True)
    w1, w3 = (torch.randn(E, D, Fh, requires_grad=True) for _ in range(2))
    w2 = torch.randn(E, Fh, D, requires_grad=True)
    p, ids = torch.randn(T, E).softmax(-1).topk(k, -1)
    ids[0] = torch.arange(k)  # expert E-1 may well be empty: covered by the grouped_mm test too
    g_w = (p / p.sum(-1, keepdim=True)).requires_grad_()
    params = (x, g_w, w1, w3, w2)
    y = grouped_torch.moe_ffn(x, ids, g_w, w1, w3, w2)
    gy = torch.randn_like(y)
    grads = torch.autograd.grad(y, params, gy)
    p64 = [t.detach().double().requires_grad_() for t in params]
    y64 = moe_per_token_f64(p64[0], ids, p64[1], *p64[2:])
    grads64 = torch.autograd.grad(y64, p64, gy.double())
    assert rel_err(y, y64) <= RTOL
    assert all(rel_err(a, b) <= RTOL for a, b in zip(grads, grads64))
    yr = reference.moe_ffn(x, ids, g_w, w1, w3, w2)
    grads_r = torch.autograd.grad(yr, params, gy)
    assert rel_err(y, yr) <= RTOL and all(rel_err(a, b) <= RTOL for a, b in zip(grads, grads_r))


def test_gradcheck_float64():
    torch.manual_seed(1)
    T, D, Fh, E, k = 6, 4, 3, 3, 2
    x = torch.randn(T, D, dtype=torch.float64, requires_grad=True)
    w1, w3 = (torch.randn(E, D, Fh, dtype=torch.float64, requires_grad=True) for _ in range(2))
    w2 = torch.randn(E, Fh, D, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[0, 1], [1, 0], [0, 1], [1, 0], [0, 1], [0, 1]])  # expert 2 empty
    gw = torch.rand(T, k, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: grouped_torch.moe_ffn(a[0], ids, *a[1:]), (x, gw, w1, w3, w2))


def test_cpu_default_is_the_fast_path():
    assert kernels.resolve_backend(device=torch.device("cpu")) == "torch"
    torch.manual_seed(2)
    x, w = torch.randn(7, 4), torch.randn(2, 4, 3)
    offsets = torch.tensor([3, 7], dtype=torch.int32)
    assert torch.equal(kernels.grouped_mm(x, w, offsets), grouped_torch.grouped_mm(x, w, offsets))
    assert rel_err(kernels.grouped_mm(x, w, offsets, backend="reference"), grouped_torch.grouped_mm(x, w, offsets)) <= RTOL


def _grads_both_ways(fn, inputs, monkeypatch):
    """fn's output and input gradients with torch._grouped_mm (the default) and with the Python loop."""
    out = []
    for native in (True, False):
        monkeypatch.setattr(grouped_torch, "USE_NATIVE", native)
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        y = fn(*leaves)
        out.append((y, *torch.autograd.grad(y, leaves, torch.ones_like(y) / 3)))
    return out


@pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="torch without _grouped_mm")
@pytest.mark.parametrize("counts,n_rows", [([3, 0, 5, 2], 12), ([0, 0, 7, 1], 8), ([16], 16), ([0, 9, 0, 0, 4, 3], 20)])
def test_native_grouped_mm_equals_the_python_loop_bitwise(counts, n_rows, monkeypatch):
    """torch._grouped_mm's CPU path makes the loop's own at::mm_out calls: the same bits, forward
    and backward, empty experts and rows past the last offset included."""
    torch.manual_seed(len(counts))
    K, N = 8, 12
    x, w = torch.randn(n_rows, K), torch.randn(len(counts), K, N)
    assert grouped_torch._native(x, w) and grouped_torch._native(x.t(), torch.randn(n_rows, N))
    offsets = torch.cumsum(torch.tensor(counts), 0).to(torch.int32)
    native, loop = _grads_both_ways(lambda a, b: grouped_torch.grouped_mm(a, b, offsets), (x, w), monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(native, loop))
    y, dx, dw = native
    used = sum(counts)
    assert torch.count_nonzero(y[used:]) == 0 and torch.count_nonzero(dx[used:]) == 0
    assert all(torch.count_nonzero(dw[e]) == 0 for e, c in enumerate(counts) if c == 0)
    assert rel_err(y[:used], torch.einsum("rk,rkn->rn", x[:used].double(),
                                          w.double()[torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))])) <= RTOL  # fmt: skip


@pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="torch without _grouped_mm")
@pytest.mark.parametrize("T,E,k", [(64, 8, 1), (50, 4, 2), (33, 32, 1)])
def test_native_moe_ffn_equals_the_python_loop_bitwise(T, E, k, monkeypatch):
    torch.manual_seed(T)
    D, Fh = 16, 32
    x = torch.randn(T, D)
    w1, w3, w2 = torch.randn(E, D, Fh), torch.randn(E, D, Fh), torch.randn(E, Fh, D)
    p, ids = torch.randn(T, E).softmax(-1).topk(k, -1)
    native, loop = _grads_both_ways(lambda *a: grouped_torch.moe_ffn(a[0], ids, *a[1:]), (x, p, w1, w3, w2), monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(native, loop))


def test_python_loop_where_grouped_mm_does_not_apply():
    """float64, and rows that are not a multiple of 16 bytes, take the Python loop (the tests above
    with K = 6, N = 5 check its values)."""
    assert not grouped_torch._native(torch.randn(4, 8, dtype=torch.float64))
    assert not grouped_torch._native(torch.randn(4, 6))
    assert not grouped_torch._native(torch.randn(8, 6).t())
    assert grouped_torch._native(torch.randn(4, 8)) and grouped_torch._native(torch.randn(8, 4).t())
