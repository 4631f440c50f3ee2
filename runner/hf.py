"""Our runs as Hugging Face transformers checkpoints (``export``), and back (``load``).

A finished run directory (run.json, checkpoint.pt, tokenizer.json) becomes a folder that
``transformers.AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``
load: safetensors weights, config.json, generation_config.json and, when the run has one,
its closed word-level tokenizer (a ``tokenizers`` WordLevel model over whitespace-split
words, so ids and decoding are ours). The class is the transformers one that computes
exactly what ``runner.model.Transformer`` computes:

- dense (n_experts = 1): ``LlamaForCausalLM`` (pre-norm RMSNorm, rotate-half RoPE, SwiGLU,
  no biases, grouped-query heads, tied or untied embeddings: all as ours);
- MoE with top_k > 1: ``MixtralForCausalLM`` (gates = softmax probabilities of the top k,
  renormalized over the k, as ``runner.moe.TopKRouter`` for k > 1);
- MoE with top_k = 1: no transformers class matches. Mixtral renormalizes the single gate
  to 1; Qwen2-MoE (``norm_topk_prob=False``) always adds a sigmoid-gated shared expert,
  OLMoE and Qwen3-MoE normalize queries and keys, Jamba has no RoPE. These runs export as
  ``model_type: moescale_moe``, our ``MoescaleMoeForCausalLM`` (Mixtral with the Switch
  gate g = p_j, Fedus et al. 2022, eq. 2), registered with the Auto classes when
  ``runner.hf`` is imported: ``import runner.hf`` before ``from_pretrained``.

The checkpoints hold float32 weights (what training keeps); config.json also records the
run's ``ModelConfig`` under the key ``moescale``, so ``load`` rebuilds our model exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import torch
from transformers import (AutoConfig, AutoModelForCausalLM, GenerationConfig, LlamaConfig, LlamaForCausalLM,
                          MixtralConfig, MixtralForCausalLM, PreTrainedTokenizerFast)
from transformers.models.mixtral.modeling_mixtral import MixtralTopKRouter

from runner.checkpoint import CHECKPOINT_FILE, load_checkpoint
from runner.data.tokenizer import Tokenizer
from runner.model import ModelConfig, Transformer
from runner.train import TOKENIZER_FILE
from scaling.errors import MoescaleError
from scaling.files import atomic_dir
from scaling.rundir import read_run_file

#: The model_type of our own class (top-1 Switch-style gates); the only runs that need ``import runner.hf``.
SWITCH_MODEL_TYPE = "moescale_moe"
PAD_TOKEN = "<pad>"


class MoescaleMoeConfig(MixtralConfig):
    """Mixtral's config under its own model_type: a run whose router keeps the raw top-1 probability."""

    model_type = SWITCH_MODEL_TYPE
    auto_map = MappingProxyType({})  # no remote code: the class is registered in-process (TRL reads config.auto_map)


class SwitchTopKRouter(MixtralTopKRouter):
    """Mixtral's router with ``runner.moe.TopKRouter``'s gates: w = softmax(x W_r^T) over the top k,
    renormalized over the k only when k > 1 (for k = 1 the gate is p_j, Switch Transformer eq. 2).
    hidden (T, D) -> (logits (T, E), weights (T, k) float32, ids (T, k))."""

    def forward(self, hidden_states):
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        logits = torch.nn.functional.linear(hidden_states, self.weight)
        probs = torch.softmax(logits.float(), dim=-1)
        weights, ids = torch.topk(probs, self.top_k, dim=-1)
        if self.top_k > 1:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits, weights, ids


class MoescaleMoeForCausalLM(MixtralForCausalLM):
    """``MixtralForCausalLM`` whose routers are ``SwitchTopKRouter``; same weights and names."""

    config_class = MoescaleMoeConfig

    def __init__(self, config: MoescaleMoeConfig):
        super().__init__(config)
        for layer in self.model.layers:
            layer.mlp.gate = SwitchTopKRouter(config)
        self.post_init()


AutoConfig.register(SWITCH_MODEL_TYPE, MoescaleMoeConfig, exist_ok=True)
AutoModelForCausalLM.register(MoescaleMoeConfig, MoescaleMoeForCausalLM, exist_ok=True)


# ----------------------------------------------------------------------------- config and weights


def hf_config(config: ModelConfig):
    """The transformers config of our model: Llama (dense), Mixtral (top_k > 1) or ours (top-1)."""
    a = config.arch
    common = dict(
        vocab_size=a.vocab_size, hidden_size=a.d_model, intermediate_size=a.d_ff, num_hidden_layers=a.n_layers,
        num_attention_heads=a.n_heads, num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
        max_position_embeddings=a.seq_len, rms_norm_eps=config.norm_eps, tie_word_embeddings=a.tied_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_theta)}, hidden_act="silu",
        initializer_range=config.init_std, attention_dropout=0.0, bos_token_id=None, eos_token_id=None,
        pad_token_id=None, moescale=config.to_dict(),
    )  # fmt: skip
    if not a.is_moe:
        return LlamaConfig(attention_bias=False, mlp_bias=False, **common)
    cls = MixtralConfig if a.top_k > 1 else MoescaleMoeConfig
    return cls(num_local_experts=a.n_experts, num_experts_per_tok=a.top_k, sliding_window=None, router_jitter_noise=0.0,
               router_aux_loss_coef=config.aux_loss_coef, output_router_logits=False, **common)  # fmt: skip


def _model_class(hf_cfg):
    return {"llama": LlamaForCausalLM, "mixtral": MixtralForCausalLM, SWITCH_MODEL_TYPE: MoescaleMoeForCausalLM}[hf_cfg.model_type]


def _same_weights(config: ModelConfig):
    """(our name, transformers name) of every weight both models hold in the same layout: embedding,
    final norm, head, each layer's two norms, attention projections and (MoE) router."""
    yield from (("tok_emb.weight", "model.embed_tokens.weight"), ("norm.weight", "model.norm.weight"),
                ("head.weight", "lm_head.weight"))
    for i in range(config.arch.n_layers):
        ours, hf = f"blocks.{i}.", f"model.layers.{i}."
        yield ours + "attn_norm.weight", hf + "input_layernorm.weight"
        yield ours + "ffn_norm.weight", hf + "post_attention_layernorm.weight"
        for a, b in (("wq", "q_proj"), ("wk", "k_proj"), ("wv", "v_proj"), ("wo", "o_proj")):
            yield f"{ours}attn.{a}.weight", f"{hf}self_attn.{b}.weight"
        if config.arch.is_moe:
            yield ours + "moe.router.gate.weight", hf + "mlp.gate.weight"


def to_hf_state_dict(state: dict, config: ModelConfig) -> dict:
    """Our state dict (``Transformer.state_dict()``) under the transformers model's names and layouts.

    nn.Linear weights are (out, in) in both; our experts are stacked as w1, w3 (E, D, F) and
    w2 (E, F, D): Mixtral's gate_up_proj is cat(w1^T, w3^T) (E, 2F, D) and down_proj w2^T (E, D, F);
    Llama's gate_proj, up_proj, down_proj are w1[0]^T, w3[0]^T, w2[0]^T.
    """
    out = {h: state[o] for o, h in _same_weights(config)}
    for i in range(config.arch.n_layers):
        ours, hf = f"blocks.{i}.", f"model.layers.{i}."
        w1, w3, w2 = (state[f"{ours}moe.experts.{w}"] for w in ("w1", "w3", "w2"))
        if config.arch.is_moe:
            out[hf + "mlp.experts.gate_up_proj"] = torch.cat([w1.transpose(1, 2), w3.transpose(1, 2)], dim=1).contiguous()
            out[hf + "mlp.experts.down_proj"] = w2.transpose(1, 2).contiguous()
        else:
            out[hf + "mlp.gate_proj.weight"] = w1[0].T.contiguous()
            out[hf + "mlp.up_proj.weight"] = w3[0].T.contiguous()
            out[hf + "mlp.down_proj.weight"] = w2[0].T.contiguous()
    return out


def from_hf_state_dict(hf: dict, config: ModelConfig) -> dict:
    """The inverse of ``to_hf_state_dict``: a transformers model's state dict under our names."""
    hf = {"lm_head.weight": hf["model.embed_tokens.weight"], **hf}  # a tied head is saved once, as the embedding
    out = {o: hf[h] for o, h in _same_weights(config)}
    F = config.arch.d_ff
    for i in range(config.arch.n_layers):
        ours, h = f"blocks.{i}.", f"model.layers.{i}."
        e = ours + "moe."
        if config.arch.is_moe:
            gate_up = hf[h + "mlp.experts.gate_up_proj"]
            out[e + "experts.w1"] = gate_up[:, :F].transpose(1, 2).contiguous()
            out[e + "experts.w3"] = gate_up[:, F:].transpose(1, 2).contiguous()
            out[e + "experts.w2"] = hf[h + "mlp.experts.down_proj"].transpose(1, 2).contiguous()
        else:
            out[e + "experts.w1"] = hf[h + "mlp.gate_proj.weight"].T.contiguous()[None]
            out[e + "experts.w3"] = hf[h + "mlp.up_proj.weight"].T.contiguous()[None]
            out[e + "experts.w2"] = hf[h + "mlp.down_proj.weight"].T.contiguous()[None]
    return out


def to_hf_model(model: Transformer):
    """The transformers model (float32, eval mode) computing what ``model`` computes, with its weights."""
    cfg = hf_config(model.config)
    hf = _model_class(cfg)(cfg)
    hf.load_state_dict(to_hf_state_dict(model.state_dict(), model.config), strict=True)
    return hf.float().eval()


def hf_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """Our closed word-level tokenizer as a transformers fast tokenizer: same ids, words split on
    whitespace, decode joins words with single spaces; ``<pad>`` is the pad token when present."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import models, pre_tokenizers

    vocab = {word: i for i, word in enumerate(tokenizer.tokens)}
    raw = RawTokenizer(models.WordLevel(vocab, unk_token=PAD_TOKEN if PAD_TOKEN in vocab else tokenizer.tokens[0]))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    pad = {"pad_token": PAD_TOKEN} if PAD_TOKEN in vocab else {}
    return PreTrainedTokenizerFast(tokenizer_object=raw, clean_up_tokenization_spaces=False, **pad)


# ----------------------------------------------------------------------------- export and load


def run_model(run_dir: str | Path) -> Transformer:
    """Our model (float32, eval mode) with the final weights of the finished run ``run_dir``."""
    return _run_model(Path(run_dir))[0]


def _run_model(run_dir: Path) -> tuple[Transformer, dict]:
    run = read_run_file(run_dir)
    if run is None:
        raise MoescaleError(f"{run_dir}: no readable run.json (not a run directory)")
    if run.get("status") != "finished":
        raise MoescaleError(f"{run_dir}: run status is {run.get('status')!r}; only a finished run can be exported")
    if isinstance(run.get("config"), dict) and run["config"].get("stage") == "grpo":  # runner.hf_grpo saved it as model/
        return load(run_dir / "model"), run
    from runner.config import TrainConfig

    config = TrainConfig.from_dict(run.get("config"), source=f"{run_dir}/run.json").model_config()
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    if checkpoint is None:
        raise MoescaleError(f"{run_dir}: {CHECKPOINT_FILE} not found; nothing to export")
    model = Transformer(config)
    model.load_state_dict(checkpoint["model"])
    return model.float().eval(), run


def export(run_dir: str | Path, out: str | Path) -> Path:
    """Write the finished run ``run_dir`` as a transformers checkpoint folder ``out``; return ``out``.

    ``out`` must not exist (or be an empty folder); the checkpoint is written to a temporary
    folder beside it and renamed into place, so a failure leaves nothing behind.
    """
    run_dir, out = Path(run_dir), Path(out).expanduser()
    if not out.parent.is_dir():
        raise MoescaleError(f"--out {out}: folder {out.parent} does not exist")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MoescaleError(f"--out {out}: already exists and is not an empty folder")
    model, run = _run_model(run_dir)
    hf = to_hf_model(model)
    tokenizer = Tokenizer.load(run_dir / TOKENIZER_FILE) if (run_dir / TOKENIZER_FILE).is_file() else None
    pad_id = tokenizer.index.get(PAD_TOKEN) if tokenizer is not None else None
    hf.generation_config = GenerationConfig(do_sample=False, pad_token_id=pad_id, bos_token_id=None, eos_token_id=None)
    hf.config.moescale = {**hf.config.moescale, "run_id": run["run_id"]}
    with atomic_dir(out) as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            hf_tokenizer(tokenizer).save_pretrained(tmp)
    return out


def load(path: str | Path) -> Transformer:
    """Our ``Transformer`` (eval mode) from a checkpoint folder that ``export`` wrote."""
    path = Path(path)
    try:
        meta = json.loads((path / "config.json").read_text()).get("moescale")
    except (OSError, ValueError) as exc:
        raise MoescaleError(f"{path}/config.json: cannot read ({exc})") from None
    if not isinstance(meta, dict):
        raise MoescaleError(f"{path}/config.json: no 'moescale' key; not a checkpoint that moescale exported")
    config = ModelConfig.from_dict({k: v for k, v in meta.items() if k != "run_id"})
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = Transformer(config)
    model.load_state_dict(from_hf_state_dict(hf.state_dict(), config), strict=True)
    return model.eval()


__all__ = ["MoescaleMoeConfig", "MoescaleMoeForCausalLM", "SWITCH_MODEL_TYPE", "export", "from_hf_state_dict",
           "hf_config", "hf_tokenizer", "load", "run_model", "to_hf_model", "to_hf_state_dict"]
