"""The Mixture-of-Experts feed-forward: router, auxiliary losses, routing statistics, experts.

Split as torchtitan's ``models/moe`` is: ``TopKRouter`` picks experts, ``GroupedExperts``
runs them through ``runner.kernels.moe_ffn`` (grouped GEMMs; a torch reference behind the
same interface), ``MoE`` wires the two and returns the auxiliary terms. Shapes use
T = tokens (batch * sequence), D = d_model, F = d_ff (expert width), E = n_experts,
k = top_k. Dropless: every token reaches its k experts, no capacity factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from runner import kernels


@dataclass
class Routing:
    """What the router decided for T tokens.

    logits (T, E) float32, probs (T, E) = softmax(logits), topk_ids (T, k) int64,
    topk_weights (T, k) = the chosen probs, renormalized to sum to 1 over the k when k > 1.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    topk_ids: torch.Tensor
    topk_weights: torch.Tensor


class TopKRouter(nn.Module):
    """Token-choice top-k router of Mixtral (Jiang et al. 2024, arXiv 2401.04088); top-1 as Switch.

    logits = x @ W_r (no bias); p = softmax(logits); keep the k largest p and, for k > 1,
    renormalize them: w_j = p_j / sum_{i in top-k} p_i (Mixtral). For k = 1 the gate is p_j
    itself (Switch Transformer, Fedus et al. 2022, eq. 2): renormalized, a single gate is the
    constant 1 and the router would learn from the auxiliary losses alone, never from the
    language-modeling loss. Softmax and renormalization run in at least float32.
    x (T, D) -> Routing.
    """

    def __init__(self, d_model: int, n_experts: int, top_k: int):
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(d_model, n_experts, bias=False)

    def forward(self, x: torch.Tensor) -> Routing:
        logits = self.gate(x)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        probs = torch.softmax(logits, dim=-1)
        topk_probs, topk_ids = probs.topk(self.top_k, dim=-1)
        topk_weights = topk_probs / topk_probs.sum(dim=-1, keepdim=True) if self.top_k > 1 else topk_probs
        return Routing(logits, probs, topk_ids, topk_weights)


def load_balancing_loss(probs: torch.Tensor, topk_ids: torch.Tensor) -> torch.Tensor:
    """Switch Transformer load-balancing loss (Fedus et al. 2022, eq. 4), generalized to top-k.

    L_aux = E * sum_e f_e * P_e, where f_e = (number of the T*k assignments that go to e) / (T*k)
    and P_e = mean over tokens of probs[:, e]. Equals 1.0 when routing is perfectly balanced
    (f_e = P_e = 1/E). probs (T, E), topk_ids (T, k) -> scalar.
    """
    n_experts = probs.shape[-1]
    counts = torch.bincount(topk_ids.reshape(-1), minlength=n_experts)
    f = counts.to(probs.dtype) / topk_ids.numel()
    return n_experts * torch.sum(f * probs.mean(dim=0))


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """Router z-loss of ST-MoE (Zoph et al. 2022, eq. 5): mean over tokens of logsumexp(logits)^2.

    logits (T, E) -> scalar.
    """
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


def routing_stats(probs: torch.Tensor, topk_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-step routing statistics (detached).

    tokens_per_expert (E,) int64: assignments to each expert (sums to T*k);
    load_cv: coefficient of variation of that load, std/mean with the population std
    (0 when balanced); router_entropy: mean over tokens of -sum_e p_e log p_e (nats,
    log E when uniform).
    """
    probs = probs.detach()
    counts = torch.bincount(topk_ids.reshape(-1), minlength=probs.shape[-1])
    load = counts.double()
    entropy = -(probs * torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))).sum(dim=-1).mean()
    return {
        "tokens_per_expert": counts,
        "load_cv": load.std(correction=0) / load.mean(),
        "router_entropy": entropy,
    }


class GroupedExperts(nn.Module):
    """E SwiGLU experts held as stacked weights, run as grouped GEMMs.

    w1, w3 (E, D, F) and w2 (E, F, D). For x (T, D), topk_ids (T, k), topk_weights (T, k):
    y[t] = sum_j topk_weights[t, j] * (silu(x[t] @ w1[e]) * (x[t] @ w3[e])) @ w2[e], e = topk_ids[t, j].
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(n_experts, d_model, d_ff))
        self.w3 = nn.Parameter(torch.empty(n_experts, d_model, d_ff))
        self.w2 = nn.Parameter(torch.empty(n_experts, d_ff, d_model))

    def forward(self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> torch.Tensor:
        return kernels.moe_ffn(x, topk_ids, topk_weights, self.w1, self.w3, self.w2)


@dataclass
class MoEAux:
    """A layer's auxiliary terms: load-balancing loss, z-loss (scalars) and routing_stats()."""

    aux_loss: torch.Tensor
    z_loss: torch.Tensor
    stats: dict[str, torch.Tensor]


class MoE(nn.Module):
    """The MoE feed-forward: router + grouped experts; x (B, S, D) -> (y (B, S, D), MoEAux | None).

    Dense when n_experts = top_k = 1: no router, one expert, computing exactly the SwiGLU
    MLP silu(x @ w1[0]) * (x @ w3[0]) @ w2[0]; the auxiliary terms are then None.
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int = 1, top_k: int = 1):
        super().__init__()
        self.router = TopKRouter(d_model, n_experts, top_k) if n_experts > 1 else None
        self.experts = GroupedExperts(d_model, d_ff, n_experts)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, MoEAux | None]:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        if self.router is None:
            e = self.experts
            y = (F.silu(x @ e.w1[0]) * (x @ e.w3[0])) @ e.w2[0]
            return y.reshape(shape), None
        routing = self.router(x)
        y = self.experts(x, routing.topk_ids, routing.topk_weights.to(x.dtype))
        aux = MoEAux(
            aux_loss=load_balancing_loss(routing.probs, routing.topk_ids),
            z_loss=router_z_loss(routing.logits),
            stats=routing_stats(routing.probs, routing.topk_ids),
        )
        return y.reshape(shape), aux
