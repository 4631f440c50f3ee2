"""The torch model against the accounting, a hand-written dense reference and its own invariants."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from runner.model import ModelConfig, Transformer, seeded_model
from runner.moe import MoE, GroupedExperts
from scaling.architecture import Architecture
from scaling.errors import MoescaleError

V = 256


@pytest.fixture(autouse=True)
def _experts_as_mm_calls(monkeypatch):
    """FlopCounterMode has no formula for aten._grouped_mm, so the experts run their Python loop in
    this module: the same mm calls (tests/test_kernels_torch.py checks the two agree bit for bit)."""
    from runner.kernels import grouped_torch

    monkeypatch.setattr(grouped_torch, "USE_NATIVE", False)


CONFIGS = {
    "dense": Architecture(d_model=32, n_layers=2, n_heads=4, d_ff=64, vocab_size=V, seq_len=16),
    "dense_tied": Architecture(d_model=32, n_layers=2, n_heads=4, d_ff=64, vocab_size=V, seq_len=16, tied_embeddings=True),
    "moe": Architecture(d_model=32, n_layers=2, n_heads=4, d_ff=48, n_experts=4, top_k=2, vocab_size=V, seq_len=16),
    "moe_gqa_tied": Architecture(
        d_model=32, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=24, n_experts=8, top_k=3, vocab_size=V, seq_len=16,
        tied_embeddings=True,
    ),
    "moe_mqa": Architecture(d_model=48, n_layers=1, n_heads=6, n_kv_heads=1, d_ff=16, n_experts=5, top_k=1, vocab_size=V, seq_len=16),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_parameter_count_is_the_accounting(name):
    arch = CONFIGS[name]
    model = Transformer(ModelConfig(arch))
    assert sum(p.numel() for p in model.parameters()) == arch.n_total
    embed = {id(model.tok_emb.weight), id(model.head.weight)}
    assert sum(p.numel() for p in model.parameters() if id(p) not in embed) == arch.n_total_nonembed


def _touched_by_one_token(model: Transformer, token: int) -> tuple[int, int]:
    """Parameters of the modules one token's forward pass runs through, counted from the modules.

    A module's own parameters count whole (the embedding table too, by the project's
    convention), except experts: only the experts the token was routed to count. Returns
    (all, without embedding and head).
    """
    counted: dict[int, int] = {}

    def hook(module, args, output):
        if isinstance(module, GroupedExperts):
            n_used = args[1].unique().numel()
            for p in module.parameters(recurse=False):
                counted[id(p)] = p.numel() // p.shape[0] * n_used
        elif isinstance(module, MoE) and module.router is None:  # dense: one expert, no kernel call
            for p in module.experts.parameters(recurse=False):
                counted[id(p)] = p.numel()
        elif not isinstance(module, GroupedExperts):
            for p in module.parameters(recurse=False):
                counted.setdefault(id(p), p.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(torch.tensor([[token]]))
    finally:
        for h in handles:
            h.remove()
    embed = {id(model.tok_emb.weight), id(model.head.weight)}
    return sum(counted.values()), sum(n for i, n in counted.items() if i not in embed)


@pytest.mark.parametrize("name", CONFIGS)
def test_active_count_is_what_one_token_touches(name):
    arch = CONFIGS[name]
    model = seeded_model(ModelConfig(arch), seed=3)
    for token in (0, 17, V - 1):
        assert _touched_by_one_token(model, token) == (arch.n_active, arch.n_active_nonembed)


@pytest.mark.parametrize("name", ["dense", "moe"])
def test_matmul_flops_match_torch_flop_counter(name):
    # FlopCounterMode counts every matmul of forward + backward (the routed experts included,
    # T*k rows); CPU attention scores are not counted, so remove the score term 3*4*L*S*d.
    arch = CONFIGS[name]
    model = seeded_model(ModelConfig(arch), seed=0)
    B, S = 2, arch.seq_len
    idx = torch.randint(0, V, (B, S), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        _, loss, _ = model(idx, idx.roll(1, dims=1))
        loss.backward()
    score_term = 3 * 2 * 2 * arch.n_layers * S * arch.d_model
    assert counter.get_total_flops() == (arch.flops_per_token - score_term) * B * S


@pytest.mark.parametrize("name", ["dense", "moe", "moe_gqa_tied"])
def test_forward_backward_at_init(name):
    arch = CONFIGS[name]
    model = seeded_model(ModelConfig(arch), seed=0)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, V, (4, arch.seq_len), generator=g)
    targets = torch.randint(0, V, (4, arch.seq_len), generator=g)
    logits, loss, aux = model(idx, targets)
    assert logits.shape == (4, arch.seq_len, V)
    assert aux["ce_loss"].item() == pytest.approx(math.log(V), abs=0.05)
    expected = aux["ce_loss"] + 1e-2 * aux["aux_loss"] + 1e-3 * aux["z_loss"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    if arch.is_moe:
        assert len(aux["layers"]) == arch.n_layers
        assert 0.9 < aux["aux_loss"].item() < 1.5  # near-uniform router at init
        for stats in aux["layers"]:
            assert stats["tokens_per_expert"].sum().item() == 4 * arch.seq_len * arch.top_k
            assert 0 < stats["router_entropy"].item() <= math.log(arch.n_experts) + 1e-6
    else:
        assert aux["aux_loss"].item() == 0.0 and aux["layers"] == []


def _dense_reference(sd: dict, arch: Architecture, idx: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """A dense SwiGLU transformer in float64, written independently of runner.model.

    RoPE as complex rotation of the pairs (i, i + hd/2): the rotate-half layout.
    """
    sd = {k: v.double() for k, v in sd.items()}
    H, hd, L = arch.n_heads, arch.head_dim, arch.n_layers
    B, S = idx.shape

    def norm(x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w

    pos = torch.arange(S, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    rot = torch.polar(torch.ones(S, hd // 2, dtype=torch.float64), pos * freq)

    def rope(x):  # x (B, H, S, hd)
        c = torch.complex(x[..., : hd // 2], x[..., hd // 2 :]) * rot
        return torch.cat([c.real, c.imag], dim=-1)

    mask = torch.full((S, S), float("-inf"), dtype=torch.float64).triu(1)
    x = sd["tok_emb.weight"][idx]
    for i in range(L):
        p = f"blocks.{i}."
        h = norm(x, sd[p + "attn_norm.weight"])
        q, k, v = (
            (h @ sd[p + f"attn.w{n}.weight"].T).view(B, S, H, hd).transpose(1, 2) for n in "qkv"
        )
        att = torch.softmax(rope(q) @ rope(k).transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, S, -1) @ sd[p + "attn.wo.weight"].T
        h = norm(x, sd[p + "ffn_norm.weight"])
        w1, w3, w2 = (sd[p + f"moe.experts.{n}"][0] for n in ("w1", "w3", "w2"))
        x = x + (F.silu(h @ w1) * (h @ w3)) @ w2
    return norm(x, sd["norm.weight"]) @ sd["head.weight"].T


def test_single_expert_model_equals_dense_swiglu_reference():
    arch = CONFIGS["dense"]
    model = seeded_model(ModelConfig(arch), seed=5).double()
    idx = torch.randint(0, V, (2, arch.seq_len), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, _, _ = model(idx)
    ref = _dense_reference(model.state_dict(), arch, idx)
    torch.testing.assert_close(logits, ref, rtol=1e-10, atol=1e-10)


def test_seeded_model_is_deterministic():
    arch = CONFIGS["moe"]
    idx = torch.randint(0, V, (2, arch.seq_len), generator=torch.Generator().manual_seed(0))
    a, b, c = (seeded_model(ModelConfig(arch), seed=s) for s in (7, 7, 8))
    la, lb, lc = (m(idx, idx)[1].item() for m in (a, b, c))
    assert la == lb and la != lc
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), n


def test_init_std_and_norms():
    arch = Architecture(d_model=64, n_layers=1, n_heads=4, d_ff=128, n_experts=4, top_k=1, vocab_size=512, seq_len=8)
    model = seeded_model(ModelConfig(arch), seed=0)
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert model.blocks[0].moe.experts.w1.std().item() == pytest.approx(0.02, rel=0.02)
    assert torch.equal(model.norm.weight, torch.ones(64))


def test_too_long_sequence_is_an_error():
    model = Transformer(ModelConfig(CONFIGS["dense"]))
    with pytest.raises(MoescaleError, match="seq_len"):
        model(torch.zeros(1, 17, dtype=torch.int64))


@pytest.mark.parametrize("name", ["dense", "moe_gqa_tied"])
def test_estimate_mfu_uses_the_accounting(name):
    """MFU = the FLOPs one training step performs / dt / peak, with the FLOPs measured: torch's
    FlopCounterMode over a forward + backward of B*S tokens (plus the attention scores, which
    CPU attention does not report), not the formula the model's method uses."""
    arch = CONFIGS[name]
    model = seeded_model(ModelConfig(arch), seed=0)
    B, S = 3, arch.seq_len
    idx = torch.randint(0, V, (B, S), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        _, loss, _ = model(idx, idx.roll(1, dims=1))
        loss.backward()
    measured = counter.get_total_flops() + 3 * 2 * 2 * arch.n_layers * S * arch.d_model * B * S
    dt, peak = 0.25, 2.0e9
    assert model.estimate_mfu(tokens_per_iter=B * S, dt=dt, peak_flops=peak) == pytest.approx(measured / dt / peak, rel=1e-12)
    assert model.estimate_mfu(tokens_per_iter=2 * B * S, dt=2 * dt, peak_flops=peak) == pytest.approx(measured / dt / peak, rel=1e-12)


def test_a_few_adamw_steps_fit_a_fixed_batch():
    arch = CONFIGS["moe"]
    model = seeded_model(ModelConfig(arch), seed=0)
    data = torch.randint(0, 16, (4, arch.seq_len + 1), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        _, loss, _ = model(data[:, :-1], data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.5  # from ~log(256) toward the 16-token alphabet and below


def test_model_config_round_trip():
    config = ModelConfig(CONFIGS["moe_gqa_tied"], aux_loss_coef=0.02, rope_theta=5e5)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["architecture"]["n_kv_heads"] == 2
