"""Parameter and FLOP accounting of a Mixtral-style MoE transformer: plain arithmetic, no torch.

The model (``runner/model.py``) is a decoder-only transformer as in Nakamura et al. 2025
("Optimal Sparsity of Mixture-of-Experts Language Models", arXiv 2508.18672): pre-norm
RMSNorm, RoPE, attention with optional grouped-query heads, and in every layer an MoE
feed-forward of ``n_experts`` SwiGLU experts of width ``d_ff`` of which ``top_k`` run per
token. Dense is ``n_experts = top_k = 1`` (no router). No biases.

Parameter conventions (per layer):

- attention: q and o are d_model x d_model; k and v are d_model x (n_kv_heads * head_dim),
  head_dim = d_model / n_heads;
- two RMSNorm weights of d_model each;
- a router d_model x n_experts, only when n_experts > 1;
- experts n_experts * 3 * d_model * d_ff (SwiGLU w1, w3, w2).

Plus a final RMSNorm (d_model), the input embedding (vocab x d_model) and, when untied,
the output head (vocab x d_model). "Active" counts use top_k experts instead of
n_experts and keep everything else, the whole embedding table included (the convention of
the published model names, e.g. Nakamura et al.'s "A170M"). "Non-embedding" counts leave
out the embedding and the head (Kaplan et al. 2020).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from scaling.errors import MoescaleError

_INT_FIELDS = ("d_model", "n_layers", "n_heads", "d_ff", "n_experts", "top_k", "vocab_size", "seq_len")


@dataclass(frozen=True)
class Architecture:
    """One transformer configuration; every count and FLOP figure of the project derives from it."""

    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    n_experts: int = 1
    top_k: int = 1
    vocab_size: int = 99574
    n_kv_heads: int | None = None
    seq_len: int = 2048
    tied_embeddings: bool = False

    def __post_init__(self) -> None:
        names = _INT_FIELDS + (("n_kv_heads",) if self.n_kv_heads is not None else ())
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
                raise MoescaleError(f"architecture: {name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.tied_embeddings, bool):
            raise MoescaleError(f"architecture: tied_embeddings must be true or false, got {self.tied_embeddings!r}")
        if self.top_k > self.n_experts:
            raise MoescaleError(f"architecture: top_k ({self.top_k}) must not exceed n_experts ({self.n_experts})")
        if self.d_model % self.n_heads:
            raise MoescaleError(f"architecture: d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.kv_heads:
            raise MoescaleError(f"architecture: n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.kv_heads})")

    @classmethod
    def from_dict(cls, data: dict) -> Architecture:
        """Build from a mapping such as ``to_dict()`` returns; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MoescaleError(f"architecture: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as exc:  # a missing required field
            raise MoescaleError(f"architecture: {exc}") from None

    def to_dict(self) -> dict:
        """The fields as a plain dict (YAML/JSON ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_hf_config(cls, config, seq_len: int = 2048):
        """The accounting of a Hugging Face transformers config (a config.json path or its dict):
        a ``scaling.hf_config.HFArchitecture``, which also counts what this class cannot represent
        (shared experts, dense first layers, MLA attention, biases, query/key norms). Mixtral,
        Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2/V3, Llama, Mistral and our ``moescale_moe`` exports;
        counts equal sum(p.numel()) of the transformers model, FLOPs follow ``forward_flops_per_token``.
        """
        from scaling.hf_config import HFArchitecture

        return HFArchitecture.from_config(config, seq_len=seq_len)

    # ---- shapes -------------------------------------------------------------------------

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads (n_kv_heads, or n_heads when None)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def head_dim(self) -> int:
        """head_dim = d_model / n_heads."""
        return self.d_model // self.n_heads

    @property
    def is_moe(self) -> bool:
        """True when the feed-forward has a router (n_experts > 1)."""
        return self.n_experts > 1

    # ---- parameters ---------------------------------------------------------------------

    @property
    def attention_params(self) -> int:
        """Per layer: 2*d*d (q, o) + 2*d*(n_kv_heads*head_dim) (k, v)."""
        d = self.d_model
        return 2 * d * d + 2 * d * self.kv_heads * self.head_dim

    @property
    def router_params(self) -> int:
        """Per layer: d * n_experts when n_experts > 1, else 0 (dense has no router)."""
        return self.d_model * self.n_experts if self.is_moe else 0

    @property
    def expert_params(self) -> int:
        """One SwiGLU expert: 3 * d_model * d_ff (w1, w3: d x F; w2: F x d)."""
        return 3 * self.d_model * self.d_ff

    @property
    def embedding_params(self) -> int:
        """Input embedding plus, when untied, the output head: V*d*(1 or 2)."""
        return self.vocab_size * self.d_model * (1 if self.tied_embeddings else 2)

    def _layer_params(self, experts: int) -> int:
        return self.attention_params + 2 * self.d_model + self.router_params + experts * self.expert_params

    @property
    def n_total_nonembed(self) -> int:
        """N_total without embedding and head: n_layers*(attn + 2d + router + E*3*d*d_ff) + d."""
        return self.n_layers * self._layer_params(self.n_experts) + self.d_model

    @property
    def n_active_nonembed(self) -> int:
        """N_active without embedding and head: as n_total_nonembed with top_k experts per layer."""
        return self.n_layers * self._layer_params(self.top_k) + self.d_model

    @property
    def n_total(self) -> int:
        """All parameters: n_total_nonembed + V*d (+ V*d for an untied head); equals sum(p.numel())."""
        return self.n_total_nonembed + self.embedding_params

    @property
    def n_active(self) -> int:
        """Parameters used per token: n_active_nonembed + embedding (+ head), the whole table counted."""
        return self.n_active_nonembed + self.embedding_params

    # ---- FLOPs --------------------------------------------------------------------------

    @property
    def forward_flops_per_token(self) -> int:
        """Forward FLOPs per token: 2*(matmul weights touched) + 2*2*n_layers*seq_len*d_attn.

        Matmul weights touched per token: attention projections, router, top_k experts and
        the output head (V*d, tied or not); the embedding lookup and the norms are not
        matmuls. The attention-score term counts QK^T and AV over the full context, as
        Hoffmann et al. 2022 (Appendix F) do: 2*seq_len*d_attn each per layer, d_attn =
        n_heads*head_dim = d_model, not halved for causality, softmax not counted. (Kaplan et
        al. 2020, Table 1, write the score term as 2*n_layer*n_ctx*d_attn.)
        """
        matmul = self.n_layers * (self.attention_params + self.router_params + self.top_k * self.expert_params)
        matmul += self.vocab_size * self.d_model
        d_attn = self.n_heads * self.head_dim
        return 2 * matmul + 2 * 2 * self.n_layers * self.seq_len * d_attn

    @property
    def flops_per_token(self) -> int:
        """Exact training FLOPs per token, forward + backward = 3 * forward_flops_per_token.

        The backward pass costs twice the forward (Kaplan et al. 2020; Hoffmann et al. 2022).
        """
        return 3 * self.forward_flops_per_token

    @property
    def flops_per_token_6n(self) -> int:
        """Training FLOPs per token by the 6N rule, C = 6*N_active*D, with N_active counting the
        embedding and head (Hoffmann et al. 2022 count all parameters; Kaplan et al. 2020 use
        non-embedding ones). Same N as ``n_active`` so that one number describes a model.
        """
        return 6 * self.n_active

    def training_flops(self, tokens: float, exact: bool = True) -> float:
        """Training compute C = flops_per_token * D (exact) or 6 * N_active * D."""
        return (self.flops_per_token if exact else self.flops_per_token_6n) * tokens

    # ---- sparsity ------------------------------------------------------------------------

    @property
    def sparsity(self) -> float:
        """s = n_experts / top_k (Liew et al., arXiv 2601.08215); 1 for dense."""
        return self.n_experts / self.top_k

    @property
    def density(self) -> float:
        """top_k / n_experts, the active fraction of experts (Nakamura et al., arXiv 2508.18672)."""
        return self.top_k / self.n_experts

    @property
    def inactive_fraction(self) -> float:
        """1 - top_k / n_experts: what Nakamura et al. (arXiv 2508.18672) call sparsity."""
        return 1.0 - self.top_k / self.n_experts

    @property
    def granularity(self) -> float:
        """G = d_model / d_ff, the model width over the expert width.

        The project's reading of Liew et al. (arXiv 2601.08215); the paper could not be
        checked here. (Krajewski et al. 2024 instead use G = 4*d_model / d_ff, the dense
        feed-forward width over the expert width; multiply by 4 to convert.) The
        optimal-sparsity models (d_ff = 2*d_model) have G = 0.5.
        """
        return self.d_model / self.d_ff

    def tpp(self, tokens: float) -> float:
        """Tokens per parameter TPP = D / N_total, the "total tokens per parameter" of
        Nakamura et al. (arXiv 2508.18672), whose reasoning accuracy peaks near TPP = 20;
        the store's ``final`` view uses the same definition."""
        return tokens / self.n_total

    def summary(self) -> dict:
        """The accounting as a dict (the keys ``moescale plan count --json`` prints)."""
        return {
            "n_total": self.n_total,
            "n_active": self.n_active,
            "n_total_nonembed": self.n_total_nonembed,
            "n_active_nonembed": self.n_active_nonembed,
            "flops_per_token": self.flops_per_token,
            "flops_per_token_6n": self.flops_per_token_6n,
            "sparsity": self.sparsity,
            "density": self.density,
            "granularity": self.granularity,
        }

    def summary_text(self) -> str:
        """The accounting as aligned lines (what ``moescale plan count`` prints): each count
        exactly and as 1.3B, the ratios to 4 significant digits."""
        summary = self.summary()
        width = max(map(len, summary))
        return "\n".join(
            f"{key.ljust(width)}  " + (f"{value:,}  ({human(value)})" if isinstance(value, int) else f"{value:.4g}")
            for key, value in summary.items()
        )


def human(n: float) -> str:
    """A count as 320.2M, 13.16B, 1.5K (beyond 1000T, as 1.2e+18)."""
    if abs(n) >= 1e15:
        return f"{n:.3g}"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{suffix}"
    return f"{n:g}"


_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}


def _split_count(text: str) -> tuple[Decimal, int]:
    s = str(text).strip()
    suffix = s[-1:].upper() if s[-1:].isalpha() else ""
    number = s[: len(s) - len(suffix)] if suffix else s
    if suffix not in _SUFFIX:
        raise MoescaleError(f"count {text!r}: unknown suffix {suffix!r}; use K, M, B or T")
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise MoescaleError(f"count {text!r}: not a number (examples: 670M, 13.2B, 1e9)") from None
    if not value.is_finite() or value < 0:
        raise MoescaleError(f"count {text!r}: must be a non-negative finite number")
    return value, _SUFFIX[suffix]


def parse_count(text: str | float | int) -> float:
    """A count written as 670M, 13.2B, 1.5e9 or 300000 -> its value (float)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    value, scale = _split_count(text)
    return float(value * scale)


def count_interval(text: str) -> tuple[int, int]:
    """The counts a rounded name admits: within one unit of its last significant digit.

    ``13.2B`` -> (13.1e9, 13.3e9); ``26.0B`` -> (25.9e9, 26.1e9) (a zero after the point is
    significant); ``670M`` -> (660e6, 680e6) (trailing zeros of an integer are not);
    ``1.1B`` -> (1.0e9, 1.2e9). Bounds are inclusive.
    """
    value, scale = _split_count(text)
    digits = str(text).strip().rstrip("KMBGTkmbgt")
    if "e" in digits.lower():
        raise MoescaleError(f"count {text!r}: a rounded name has no exponent")
    if "." in digits:
        unit = Decimal(1).scaleb(-len(digits.split(".")[1]))
    else:
        stripped = digits.lstrip("0") or "0"
        zeros = len(stripped) - len(stripped.rstrip("0")) if stripped != "0" else 0
        unit = Decimal(10) ** zeros
    return int((value - unit) * scale), int((value + unit) * scale)
