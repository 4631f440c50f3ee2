"""Parameter and FLOP accounting of a Hugging Face transformers MoE config (config.json): plain arithmetic.

``HFArchitecture.from_config(path_or_dict)`` (also ``Architecture.from_hf_config``) reads the
config of a Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2 or DeepSeek-V3 model (and our
own exports: Llama, Mistral and ``moescale_moe``) and counts what transformers builds from it,
which ``scaling.architecture.Architecture`` cannot represent: shared experts, dense first
layers, multi-head latent attention (MLA), attention biases and query/key norms.

What each family builds, per layer (D = hidden_size, H heads, K kv heads, hd head_dim):

- attention, standard: q (D x H*hd), k, v (D x K*hd), o (H*hd x D); biases on q, k, v
  (Qwen2-MoE ``qkv_bias``, default true) or on q, k, v, o (``attention_bias``); Qwen3-MoE adds
  RMSNorms of hd on queries and keys, OLMoE of D and (D/H)*K.
- attention, MLA (DeepSeek-V2/V3, Liu et al. 2024, arXiv 2405.04434): q = D x H*(nope+rope)
  or, with ``q_lora_rank`` r_q, D x r_q + norm r_q + r_q x H*(nope+rope); kv_a = D x
  (r_kv + rope) + norm r_kv; kv_b = r_kv x H*(nope + v_head_dim); o = H*v_head_dim x D;
  ``attention_bias`` on q_a (or nothing when no q_lora), kv_a and o.
- feed-forward: an MoE layer has a router (D x E) and E SwiGLU experts of 3*D*F_e (F_e =
  ``moe_intermediate_size``, or ``intermediate_size`` for Mixtral and OLMoE), plus for
  Qwen2-MoE one shared expert of width ``shared_expert_intermediate_size`` and its sigmoid gate
  (D x 1), for DeepSeek one shared MLP of width n_shared_experts * F_e. A dense layer has one
  SwiGLU MLP of ``intermediate_size``: Qwen's ``mlp_only_layers`` and the layers l with
  (l+1) % ``decoder_sparse_step`` != 0; DeepSeek's first ``first_k_dense_replace`` layers (and,
  as DeepSeek's own code, layers with l % ``moe_layer_freq`` != 0).
- two RMSNorms of D per layer, a final one, the embedding (V x D) and, unless tied, the head.
  DeepSeek-V3's multi-token-prediction layers are not part of the transformers model and are
  not counted (671.0B, not 685B); its router's score-correction bias is a buffer, not a parameter.

Conventions follow ``Architecture``. N_active counts top_k routed experts and everything
else, shared experts, dense layers and the whole embedding table included. FLOPs per token
(forward) = 2 * (matmul weights touched per token: attention projections, router, top_k routed
experts, shared experts and gates, dense MLPs, the head) + 2 * n_layers * seq_len * (d_qk + d_v),
the attention scores QK^T and AV over the full context at ``seq_len`` (Hoffmann et al. 2022,
Appendix F; not halved for causality), with d_qk = H * (query/key head width) and d_v = H *
(value head width); norms, biases, softmax and the embedding lookup are not counted; MLA is
counted as written (no absorbed projections). Training = 3 * forward (Kaplan et al. 2020).
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path

from scaling.architecture import human
from scaling.errors import MoescaleError

#: model_type -> family; the families differ in attention and feed-forward as the docstring says.
FAMILIES = {"mixtral": "mixtral", "moescale_moe": "mixtral", "llama": "mixtral", "mistral": "mixtral",
            "olmoe": "olmoe", "qwen2_moe": "qwen", "qwen3_moe": "qwen", "deepseek_v2": "deepseek",
            "deepseek_v3": "deepseek"}  # fmt: skip


@dataclass(frozen=True)
class HFArchitecture:
    """Counts of one transformers config: per-layer sizes from which every total derives.

    Per layer: ``attn_matrix`` (attention weights used in matmuls), ``attn_vector`` (attention
    biases and query/key norms); per MoE layer: ``router``, ``expert`` (one routed expert),
    ``shared`` (always-active shared experts and their gates, matmul weights), ``shared_bias``;
    per dense layer: ``dense_mlp`` (matmul weights), ``dense_bias``. ``top_k`` None: the config
    does not say, so N_active and FLOPs are undetermined.
    """

    model_type: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_moe_layers: int
    n_experts: int
    top_k: int | None
    attn_matrix: int
    attn_vector: int
    d_qk: int
    d_v: int
    router: int
    expert: int
    shared: int
    shared_bias: int
    dense_mlp: int
    dense_bias: int
    tied_embeddings: bool
    seq_len: int = 2048

    @classmethod
    def from_config(cls, config: str | Path | dict, seq_len: int = 2048) -> HFArchitecture:
        """Read a config.json path or its dict (see the module docstring for what is counted)."""
        return _parse(config, seq_len)

    @property
    def n_dense_layers(self) -> int:
        return self.n_layers - self.n_moe_layers

    @property
    def embedding_params(self) -> int:
        """V*D, twice when the head is untied."""
        return self.vocab_size * self.d_model * (1 if self.tied_embeddings else 2)

    def _nonembed(self, experts: int) -> int:
        per_layer = self.attn_matrix + self.attn_vector + 2 * self.d_model
        moe = self.router + experts * self.expert + self.shared + self.shared_bias
        return self.n_layers * per_layer + self.n_moe_layers * moe + self.n_dense_layers * (self.dense_mlp + self.dense_bias) + self.d_model

    @property
    def n_total_nonembed(self) -> int:
        return self._nonembed(self.n_experts)

    @property
    def n_active_nonembed(self) -> int | None:
        return None if self.top_k is None else self._nonembed(self.top_k)

    @property
    def n_total(self) -> int:
        """All parameters; equals sum(p.numel()) of the transformers model."""
        return self.n_total_nonembed + self.embedding_params

    @property
    def n_active(self) -> int | None:
        """Parameters used per token: top_k routed experts, all else (shared, dense, embedding table)."""
        return None if self.top_k is None else self.n_active_nonembed + self.embedding_params

    @property
    def forward_flops_per_token(self) -> int | None:
        """2 * matmul weights touched per token + 2 * n_layers * seq_len * (d_qk + d_v)."""
        if self.top_k is None:
            return None
        matmul = self.n_layers * self.attn_matrix + self.vocab_size * self.d_model
        matmul += self.n_moe_layers * (self.router + self.top_k * self.expert + self.shared) + self.n_dense_layers * self.dense_mlp
        return 2 * matmul + 2 * self.n_layers * self.seq_len * (self.d_qk + self.d_v)

    @property
    def flops_per_token(self) -> int | None:
        """Training FLOPs per token = 3 * forward (the backward pass costs twice the forward)."""
        f = self.forward_flops_per_token
        return None if f is None else 3 * f

    @property
    def flops_per_token_6n(self) -> int | None:
        """6 * N_active (Hoffmann et al. 2022's C = 6ND with N_active)."""
        return None if self.top_k is None else 6 * self.n_active

    @property
    def sparsity(self) -> float | None:
        """n_experts / top_k of the routed experts (Liew et al., arXiv 2601.08215); 1 for dense."""
        return None if self.top_k is None else self.n_experts / self.top_k

    def summary(self) -> dict:
        """The keys ``moescale plan count --hf-config --json`` prints; None is undetermined."""
        keys = ("n_total", "n_active", "n_total_nonembed", "n_active_nonembed", "flops_per_token", "flops_per_token_6n",
                "sparsity")  # fmt: skip
        return {"model_type": self.model_type, **{k: getattr(self, k) for k in keys},
                "n_moe_layers": self.n_moe_layers, "n_dense_layers": self.n_dense_layers, "seq_len": self.seq_len}  # fmt: skip

    def summary_text(self) -> str:
        """Aligned lines, each count exactly and as 13.2B; None as ``undetermined``."""
        summary = self.summary()
        width = max(map(len, summary))

        def fmt(key, v):
            if v is None:
                return "undetermined (the config has no num_experts_per_tok)"
            if key.startswith(("n_total", "n_active", "flops")):
                return f"{v:,}  ({human(v)})"
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        return "\n".join(f"{k.ljust(width)}  {fmt(k, v)}" for k, v in summary.items())

    def to_json(self) -> str:
        """The fields and the summary as JSON."""
        return json.dumps({**asdict(self), **self.summary()})


def _read(config) -> dict:
    if isinstance(config, dict):
        return config
    path = Path(config)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MoescaleError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise MoescaleError(f"{path}: not a JSON config ({exc})") from None
    if not isinstance(data, dict):
        raise MoescaleError(f"{path}: not a JSON object")
    return data


def _parse(config, seq_len: int) -> HFArchitecture:
    where = "config" if isinstance(config, dict) else str(config)
    c = _read(config)
    model_type = c.get("model_type")
    family = FAMILIES.get(model_type)
    if family is None:
        raise MoescaleError(f"{where}: key 'model_type' is {model_type!r}; supported: {', '.join(sorted(FAMILIES))}")

    def get(*keys, default=..., minimum=1):
        for key in keys:
            if c.get(key) is not None:
                value = c[key]
                if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
                    raise MoescaleError(f"{where}: key {key!r} must be an integer >= {minimum}, got {value!r}")
                return int(value)
        if default is ...:
            raise MoescaleError(f"{where}: key {keys[0]!r} is missing")
        return default

    D, L, V = get("hidden_size"), get("num_hidden_layers"), get("vocab_size")
    H = get("num_attention_heads")
    K = get("num_key_value_heads", default=H)
    tied = bool(c.get("tie_word_embeddings", False))
    dense_ff = get("intermediate_size", default=0, minimum=0)
    E = get("num_local_experts", "num_experts", "n_routed_experts", default=1)
    top_k = get("num_experts_per_tok", default=None)
    if model_type in ("llama", "mistral"):
        E, top_k = 1, 1
    if top_k is not None and top_k > E:
        raise MoescaleError(f"{where}: key 'num_experts_per_tok' ({top_k}) exceeds the number of experts ({E})")

    if family == "deepseek":
        nope, rope, vd = get("qk_nope_head_dim"), get("qk_rope_head_dim"), get("v_head_dim")
        r_kv, r_q = get("kv_lora_rank"), get("q_lora_rank", default=None)
        bias = bool(c.get("attention_bias", False))
        q = D * H * (nope + rope) if r_q is None else D * r_q + r_q * H * (nope + rope)
        attn_matrix = q + D * (r_kv + rope) + r_kv * H * (nope + vd) + H * vd * D
        attn_vector = r_kv + (0 if r_q is None else r_q) + bias * ((r_q or 0) + (r_kv + rope) + D)
        d_qk, d_v = H * (nope + rope), H * vd
    else:
        hd = get("head_dim", default=D // H)
        attn_matrix = 2 * D * H * hd + 2 * D * K * hd
        if family == "qwen" and model_type == "qwen2_moe":
            attn_vector = (H + 2 * K) * hd if c.get("qkv_bias", True) else 0
        else:
            attn_vector = (H + 2 * K) * hd + D if c.get("attention_bias", False) else 0
        attn_vector += {"qwen3_moe": 2 * hd, "olmoe": D + (D // H) * K}.get(model_type, 0)
        d_qk = d_v = H * hd

    expert_ff = get("moe_intermediate_size", default=dense_ff) if family in ("qwen", "deepseek") else dense_ff
    mlp_bias = bool(c.get("mlp_bias", False)) and model_type in ("deepseek_v2", "llama")
    shared, shared_bias = 0, 0
    if family == "qwen":
        sparse_step, only = get("decoder_sparse_step", default=1), set(c.get("mlp_only_layers") or [])
        moe_layers = [i for i in range(L) if i not in only and (i + 1) % sparse_step == 0]
        if model_type == "qwen2_moe":
            s = get("shared_expert_intermediate_size", default=0, minimum=0)
            shared = 3 * D * s + D
    elif family == "deepseek":
        first, freq = get("first_k_dense_replace", default=0, minimum=0), get("moe_layer_freq", default=1)
        moe_layers = [i for i in range(L) if i >= first and i % freq == 0]
        s = get("n_shared_experts", default=0, minimum=0) * expert_ff
        shared, shared_bias = 3 * D * s, mlp_bias * (2 * s + D) * (s > 0)
    else:
        moe_layers = list(range(L))
    if E <= 1:
        moe_layers, shared, shared_bias = [], 0, 0
    if not moe_layers:
        E, top_k = 1, 1
    if expert_ff <= 0 and moe_layers:
        raise MoescaleError(f"{where}: the expert width (moe_intermediate_size / intermediate_size) is missing")
    return HFArchitecture(
        model_type=model_type, vocab_size=V, d_model=D, n_layers=L, n_moe_layers=len(moe_layers), n_experts=E,
        top_k=top_k, attn_matrix=attn_matrix, attn_vector=attn_vector, d_qk=d_qk, d_v=d_v,
        router=D * E if moe_layers else 0, expert=3 * D * expert_ff if moe_layers else 0, shared=shared,
        shared_bias=shared_bias, dense_mlp=3 * D * dense_ff, dense_bias=mlp_bias * (2 * dense_ff + D),
        tied_embeddings=tied, seq_len=seq_len,
    )  # fmt: skip


__all__ = ["FAMILIES", "HFArchitecture"]
