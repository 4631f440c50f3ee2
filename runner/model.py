"""A Mixtral-style decoder-only MoE language model, read top to bottom (after nanoGPT's model.py).

As in Nakamura et al. 2025 (arXiv 2508.18672): pre-norm RMSNorm, RoPE, causal attention
through ``scaled_dot_product_attention`` with optional grouped-query heads, an MoE
feed-forward (``runner.moe``) in every layer, untied embedding and head by default, no
biases, init std 0.02. Dense is n_experts = top_k = 1. Parameter and FLOP accounting is
``scaling.architecture.Architecture``; nothing here repeats it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# MODEL_VERSION, the version of what this file and runner.moe compute, lives in runner.config (so
# that run ids need no torch): bump it there whenever a change here changes a run's numbers.
from runner.config import MODEL_VERSION  # noqa: F401
from runner.moe import MoE
from scaling.architecture import Architecture
from scaling.errors import MoescaleError


@dataclass
class ModelConfig:
    """An Architecture plus the training-side knobs of the model.

    loss = cross-entropy + aux_loss_coef * load-balancing loss + z_loss_coef * router z-loss,
    each auxiliary term averaged over the MoE layers.
    """

    arch: Architecture
    aux_loss_coef: float = 1e-2
    z_loss_coef: float = 1e-3
    init_std: float = 0.02
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def to_dict(self) -> dict:
        """{"architecture": Architecture.to_dict(), and the knobs}: enough to rebuild the model."""
        knobs = {k: v for k, v in dataclasses.asdict(self).items() if k != "arch"}
        return {"architecture": self.arch.to_dict(), **knobs}

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        data = dict(data)
        return cls(arch=Architecture.from_dict(data.pop("architecture")), **data)


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight (Zhang & Sennrich 2019), in at least float32."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        y = xf * torch.rsqrt(xf.square().mean(dim=-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


def rope_tables(head_dim: int, seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (seq_len, head_dim) of rotary embeddings (Su et al. 2021).

    Frequencies theta^(-2i/head_dim) for i < head_dim/2, repeated for the two halves
    (the rotate-half layout of GPT-NeoX and Llama). Kept in float64; forward casts them.
    """
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, S, hd) by position: x*cos + rotate_half(x)*sin, rotate_half(a, b) = (-b, a)."""
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-b, a], dim=-1) * sin


class Attention(nn.Module):
    """Causal self-attention with RoPE and grouped-query heads; x (B, S, D) -> (B, S, D).

    q (D -> n_heads*hd), k, v (D -> n_kv_heads*hd), o (D -> D), no biases; each group of
    n_heads / n_kv_heads query heads shares one key/value head.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = arch.n_heads, arch.kv_heads, arch.head_dim
        d, kv = arch.d_model, arch.kv_heads * arch.head_dim
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, kv, bias=False)
        self.wv = nn.Linear(d, kv, bias=False)
        self.wo = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        q = self.wq(x).view(B, S, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, S, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.wo(y.transpose(1, 2).reshape(B, S, D))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + moe(norm(x)); returns (x, MoEAux | None)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        arch = config.arch
        self.attn_norm = RMSNorm(arch.d_model, config.norm_eps)
        self.attn = Attention(arch)
        self.ffn_norm = RMSNorm(arch.d_model, config.norm_eps)
        self.moe = MoE(arch.d_model, arch.d_ff, arch.n_experts, arch.top_k)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        h, aux = self.moe(self.ffn_norm(x))
        return x + h, aux


class Transformer(nn.Module):
    """The language model: idx (B, S) int64 -> (logits (B, S, V), loss | None, aux dict).

    aux: ``ce_loss``, ``aux_loss`` and ``z_loss`` (means over MoE layers; zero tensors for
    dense) and ``layers``, one routing_stats() dict per MoE layer. Targets of -1 are ignored.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        arch = config.arch
        if arch.head_dim % 2:
            raise MoescaleError(f"architecture: head_dim ({arch.head_dim}) must be even for RoPE")
        self.config = config
        self.tok_emb = nn.Embedding(arch.vocab_size, arch.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(arch.n_layers))
        self.norm = RMSNorm(arch.d_model, config.norm_eps)
        self.head = nn.Linear(arch.d_model, arch.vocab_size, bias=False)
        if arch.tied_embeddings:
            self.head.weight = self.tok_emb.weight
        cos, sin = rope_tables(arch.head_dim, arch.seq_len, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every matrix (embedding, projections, router, experts, head) ~ N(0, init_std); norms = 1."""
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, mean=0.0, std=self.config.init_std)
            else:
                nn.init.ones_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, S = idx.shape
        if S > self.rope_cos.shape[0]:
            raise MoescaleError(f"sequence of {S} tokens exceeds seq_len {self.rope_cos.shape[0]}")
        x = self.tok_emb(idx)
        cos, sin = self.rope_cos[:S].to(x.dtype), self.rope_sin[:S].to(x.dtype)
        layer_aux = []
        for block in self.blocks:
            x, aux = block(x, cos, sin)
            if aux is not None:
                layer_aux.append(aux)
        logits = self.head(self.norm(x))

        zero = logits.new_zeros((), dtype=torch.float32)
        aux_loss = torch.stack([a.aux_loss for a in layer_aux]).mean() if layer_aux else zero
        z_loss = torch.stack([a.z_loss for a in layer_aux]).mean() if layer_aux else zero
        out = {"aux_loss": aux_loss, "z_loss": z_loss, "layers": [a.stats for a in layer_aux]}
        loss = None
        if targets is not None:
            flat = logits.reshape(-1, logits.shape[-1])
            ce = F.cross_entropy(flat.to(torch.promote_types(flat.dtype, torch.float32)), targets.reshape(-1), ignore_index=-1)
            out["ce_loss"] = ce
            loss = ce + self.config.aux_loss_coef * aux_loss + self.config.z_loss_coef * z_loss
        return logits, loss, out

    def estimate_mfu(self, tokens_per_iter: int, dt: float, peak_flops: float) -> float:
        """Model FLOPs utilization: flops_per_token * tokens_per_iter / dt / peak_flops.

        flops_per_token is Architecture.flops_per_token (exact forward + backward, attention
        scores at the architecture's seq_len); e.g. peak_flops = 989e12 for an H100 in bf16.
        """
        return self.config.arch.flops_per_token * tokens_per_iter / dt / peak_flops


#: Dense bf16 tensor-core peak FLOP/s of known GPUs (vendor data sheets, without sparsity),
#: matched as a substring of ``torch.cuda.get_device_name()``; MFU is logged only for these.
#: H100 SXM / H200 / GH200 989 TFLOP/s, H100 PCIe 756, A100 312, B200 2250, L40S 362, L4 121.
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H200": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "B200": 2250e12,
    "L40S": 362e12,
    "L4": 121e12,
}


def peak_flops(device: torch.device) -> float | None:
    """The bf16 dense peak of a CUDA device from ``PEAK_BF16_FLOPS``, or None (CPU, unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():  # ordered: "H100 PCIe" before "H100"
        if key in name:
            return value
    return None


def seeded_model(config: ModelConfig, seed: int = 0) -> Transformer:
    """A Transformer whose initial weights depend only on ``seed`` (same seed, same weights)."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return Transformer(config)
    finally:
        torch.random.set_rng_state(generator_state)


__all__ = ["ModelConfig", "RMSNorm", "rope_tables", "apply_rope", "Attention", "Block", "Transformer", "seeded_model",
           "PEAK_BF16_FLOPS", "peak_flops"]
