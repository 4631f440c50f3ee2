"""The MoE pieces against float64 hand computations: router, auxiliary losses, stats, experts."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runner.moe import MoE, GroupedExperts, TopKRouter, load_balancing_loss, router_z_loss, routing_stats


def _init(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return module


def test_router_renormalizes_over_the_chosen_k():
    torch.manual_seed(0)
    router = _init(TopKRouter(d_model=16, n_experts=8, top_k=3))
    x = torch.randn(10, 16)
    with torch.no_grad():
        r = router(x)
        logits = (x.double() @ router.gate.weight.double().T).numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for t in range(10):
        top = np.argsort(-p[t])[:3]
        assert sorted(r.topk_ids[t].tolist()) == sorted(top.tolist())
        w = r.topk_weights[t].double().numpy()
        ids = r.topk_ids[t].numpy()
        assert w.sum() == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(w, p[t, ids] / p[t, ids].sum(), rtol=1e-5)
        # the ratios of the chosen weights are the ratios of their softmax probabilities
        assert w[0] / w[1] == pytest.approx(p[t, ids[0]] / p[t, ids[1]], rel=1e-5)
    np.testing.assert_allclose(r.probs.double().numpy(), p, rtol=1e-5, atol=1e-7)


def test_top1_gate_is_the_softmax_probability_and_trains_the_router():
    torch.manual_seed(0)
    router = _init(TopKRouter(d_model=16, n_experts=8, top_k=1))
    x = torch.randn(10, 16)
    r = router(x)
    logits = (x.double() @ router.gate.weight.double().T).detach().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_array_equal(r.topk_ids[:, 0].numpy(), p.argmax(1))
    np.testing.assert_allclose(r.topk_weights[:, 0].double().detach().numpy(), p.max(1), rtol=1e-5)
    assert (r.topk_weights < 0.999).all()  # not the constant 1 of a renormalized single gate
    # the weight carries the output's gradient back to the router
    r.topk_weights.sum().backward()
    assert router.gate.weight.grad.abs().sum() > 0


def test_load_balancing_loss_is_one_when_balanced():
    # E tokens whose probabilities are the cyclic shifts of one distribution: every column
    # of probs averages 1/E, and the top-k picks cover every expert exactly k times.
    E, k = 8, 2
    base = torch.tensor([0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05], dtype=torch.float64)
    probs = torch.stack([torch.roll(base, t) for t in range(E)])
    topk_ids = probs.topk(k, dim=-1).indices
    assert torch.bincount(topk_ids.reshape(-1), minlength=E).tolist() == [k] * E
    assert load_balancing_loss(probs, topk_ids).item() == 1.0
    # uniform probabilities with balanced assignment: also exactly 1
    uniform = torch.full((4, 4), 0.25, dtype=torch.float64)
    assert load_balancing_loss(uniform, torch.tensor([[0], [1], [2], [3]])).item() == 1.0


def test_load_balancing_loss_unbalanced_value():
    # every token to expert 0, whose mean probability is 0.7: E * f_0 * P_0 = 4 * 1 * 0.7
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1], [0.8, 0.0, 0.1, 0.1]], dtype=torch.float64)
    ids = torch.zeros(3, 1, dtype=torch.int64)
    assert load_balancing_loss(probs, ids).item() == pytest.approx(4 * 0.7, rel=1e-12)


def test_router_z_loss_matches_float64_hand_computation():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 5, generator=g) * 3
    expected = np.mean([math.log(sum(math.exp(v) for v in row)) ** 2 for row in logits.double().tolist()])
    assert router_z_loss(logits).item() == pytest.approx(expected, rel=1e-6)


def test_routing_stats_values():
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    ids = torch.tensor([[0], [2], [2]])
    s = routing_stats(probs, ids)
    assert s["tokens_per_expert"].tolist() == [1, 0, 2]
    load = np.array([1.0, 0.0, 2.0])
    assert s["load_cv"].item() == pytest.approx(load.std() / load.mean(), rel=1e-12)
    h = [-sum(p * math.log(p) for p in row if p > 0) for row in probs.double().tolist()]
    assert s["router_entropy"].item() == pytest.approx(np.mean(h), rel=1e-6)


def test_grouped_experts_match_per_token_float64_loop():
    torch.manual_seed(0)
    E, D, Fw, T, k = 4, 8, 12, 9, 2
    experts = _init(GroupedExperts(D, Fw, E)).double()
    x = torch.randn(T, D, dtype=torch.float64)
    ids = torch.stack([torch.randperm(E)[:k] for _ in range(T)])
    w = torch.rand(T, k, dtype=torch.float64)
    y = experts(x, ids, w)
    ref = torch.zeros_like(x)
    for t in range(T):
        for j in range(k):
            e = ids[t, j]
            h = F.silu(x[t] @ experts.w1[e]) * (x[t] @ experts.w3[e])
            ref[t] += w[t, j] * (h @ experts.w2[e])
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_dense_moe_is_a_swiglu_mlp():
    moe = _init(MoE(d_model=8, d_ff=16, n_experts=1, top_k=1)).double()
    assert moe.router is None
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    y, aux = moe(x)
    w1, w3, w2 = moe.experts.w1[0], moe.experts.w3[0], moe.experts.w2[0]
    torch.testing.assert_close(y, (F.silu(x @ w1) * (x @ w3)) @ w2)
    assert aux is None


def test_moe_output_is_the_weighted_sum_of_chosen_experts():
    torch.manual_seed(0)
    moe = _init(MoE(d_model=8, d_ff=16, n_experts=4, top_k=2)).double()
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    y, aux = moe(x)
    r = moe.router(x.reshape(5, 8))
    ref = moe.experts(x.reshape(5, 8), r.topk_ids, r.topk_weights.double())
    torch.testing.assert_close(y.reshape(5, 8), ref)
    assert aux.stats["tokens_per_expert"].sum().item() == 5 * 2


def test_one_token_reaches_exactly_k_experts():
    torch.manual_seed(0)
    E, k = 6, 2
    moe = _init(MoE(d_model=8, d_ff=16, n_experts=E, top_k=k))
    y, aux = moe(torch.randn(1, 1, 8))
    y.sum().backward()
    used = [e for e in range(E) if moe.experts.w1.grad[e].abs().sum() > 0]
    assert len(used) == k
    assert sorted(used) == sorted(aux.stats["tokens_per_expert"].nonzero().flatten().tolist())
