"""scaling.hf_config and `moescale plan count --hf-config`: the accounting of transformers MoE configs.

Total counts are checked against sum(p.numel()) of the transformers model itself, built on the meta
device (no memory) from each class's default config and from small variants that switch on the
branches (shared experts, dense first layers, MLA without q-LoRA, biases, query/key norms, tied
embeddings); active counts against hand-derived formulas; Mixtral against ``Architecture``."""

from __future__ import annotations

import json

import pytest

from scaling.architecture import Architecture
from scaling.cli import main as cli_main
from scaling.hf_config import HFArchitecture

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def meta_count(config) -> int:
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def config_class(name: str):
    cls = getattr(transformers, name, None)
    if cls is None:
        pytest.skip(f"{name} is not in this transformers")
    return cls


# (class, kwargs, routed experts per MoE layer not used per token, expert width, MoE layers), for
# N_active = N_total - n_moe_layers * (E - k) * 3 * D * F_expert.
DEFAULTS = {
    "MixtralConfig": (32, 8 - 2, 4096, 14336),
    "Qwen2MoeConfig": (24, 60 - 4, 2048, 1408),
    "Qwen3MoeConfig": (24, 128 - 8, 2048, 768),
    "OlmoeConfig": (16, 64 - 8, 2048, 2048),
    "DeepseekV3Config": (61 - 3, 256 - 8, 7168, 2048),
}


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_default_configs_count_exactly_as_the_transformers_model(name, tmp_path):
    config = config_class(name)()
    path = tmp_path / "config.json"
    config.to_json_file(path)
    counts = Architecture.from_hf_config(path)
    assert counts.n_total == meta_count(config)
    n_moe, idle, d, f = DEFAULTS[name]
    assert counts.n_moe_layers == n_moe
    assert counts.n_active == counts.n_total - n_moe * idle * 3 * d * f


def test_published_sizes():
    """The published sizes: Mixtral-8x7B 46.7B total, 12.9B active (Jiang et al. 2024); OLMoE-1B-7B (the
    default config with its expert width 1024) 6.9B, 1.3B (Muennighoff et al. 2024); DeepSeek-V3 671.0B
    and 37.6B (its report: 671B and 37B, the multi-token-prediction module not counted)."""
    mixtral = HFArchitecture.from_config(transformers.MixtralConfig().to_dict())
    assert (round(mixtral.n_total / 1e9, 1), round(mixtral.n_active / 1e9, 1)) == (46.7, 12.9)
    olmoe = HFArchitecture.from_config(transformers.OlmoeConfig(intermediate_size=1024).to_dict())
    assert (round(olmoe.n_total / 1e9, 1), round(olmoe.n_active / 1e9, 1)) == (6.9, 1.3)
    v3 = HFArchitecture.from_config(config_class("DeepseekV3Config")().to_dict())
    assert (round(v3.n_total / 1e9, 1), round(v3.n_active / 1e9, 1)) == (671.0, 37.6)


def test_mixtral_equals_architecture_for_every_count_and_flops():
    """Architecture is an independent implementation of the same accounting for Mixtral-style models."""
    for kwargs in ({}, {"tie_word_embeddings": True, "num_key_value_heads": 32, "num_experts_per_tok": 1}):
        c = transformers.MixtralConfig(**kwargs)
        counts = HFArchitecture.from_config(c.to_dict(), seq_len=4096)
        arch = Architecture(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=c.num_key_value_heads, d_ff=14336,
                            n_experts=8, top_k=c.num_experts_per_tok, vocab_size=32000, seq_len=4096,
                            tied_embeddings=c.tie_word_embeddings)  # fmt: skip
        for key in ("n_total", "n_active", "n_total_nonembed", "n_active_nonembed", "flops_per_token", "flops_per_token_6n"):
            assert getattr(counts, key) == getattr(arch, key), key
        assert counts.n_total == meta_count(c)


VARIANTS = [
    ("Qwen2MoeConfig", dict(mlp_only_layers=[0], decoder_sparse_step=2, qkv_bias=False, tie_word_embeddings=True)),
    ("Qwen2MoeConfig", dict(shared_expert_intermediate_size=0, num_key_value_heads=4)),
    ("Qwen3MoeConfig", dict(attention_bias=True, head_dim=96, mlp_only_layers=[1, 2])),
    ("OlmoeConfig", dict(num_key_value_heads=4, attention_bias=True)),
    ("DeepseekV3Config", dict(q_lora_rank=None, attention_bias=True, first_k_dense_replace=1, n_shared_experts=2)),
    ("DeepseekV2Config", dict(num_experts_per_tok=6, first_k_dense_replace=2, mlp_bias=True)),
    ("LlamaConfig", dict(attention_bias=True, mlp_bias=True, num_key_value_heads=8)),
]


@pytest.mark.parametrize("name,kwargs", VARIANTS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VARIANTS)])
def test_variants_count_exactly(name, kwargs):
    small = dict(num_hidden_layers=4, vocab_size=1000)
    config = config_class(name)(**small, **kwargs)
    counts = HFArchitecture.from_config(config.to_dict())
    assert counts.n_total == meta_count(config)


def test_dense_layers_and_shared_experts_are_active():
    """DeepSeek-V2 with k = 6 of 64 routed experts and 2 dense first layers: N_active by hand."""
    c = config_class("DeepseekV2Config")(num_experts_per_tok=6, first_k_dense_replace=2)
    counts = HFArchitecture.from_config(c.to_dict())
    assert (counts.n_moe_layers, counts.n_dense_layers) == (30, 2)
    assert counts.n_total == meta_count(c)
    assert counts.n_active == counts.n_total - 30 * (64 - 6) * 3 * 4096 * 1407
    assert counts.sparsity == pytest.approx(64 / 6)


def test_flops_by_hand_for_mla():
    """DeepSeek-V3 (small): forward = 2 * (N_active - V*D embedding lookup - norm weights)
    + 2 * L * S * H * ((nope + rope) + v_head_dim); training = 3 * forward."""
    c = config_class("DeepseekV3Config")(num_hidden_layers=4, vocab_size=1000)
    counts = HFArchitecture.from_config(c.to_dict(), seq_len=1024)
    D, L, H = 7168, 4, 128
    norms = L * (2 * D + 1536 + 512) + D
    forward = 2 * (counts.n_active - 1000 * D - norms) + 2 * L * 1024 * H * ((128 + 64) + 128)
    assert counts.flops_per_token == 3 * forward
    assert counts.flops_per_token_6n == 6 * counts.n_active


def test_undetermined_without_top_k():
    c = config_class("DeepseekV2Config")()
    counts = HFArchitecture.from_config(c.to_dict())
    assert counts.n_total == 38_612_307_968 == meta_count(c)
    assert counts.n_active is None and counts.flops_per_token is None and counts.sparsity is None
    assert "n_active            undetermined" in counts.summary_text()


def test_cli_prints_the_counts(tmp_path, capsys):
    path = tmp_path / "config.json"
    transformers.Qwen3MoeConfig().to_json_file(path)
    assert cli_main(["plan", "count", "--hf-config", str(path), "--json", "--seq-len", "4096"]) == 0
    out = json.loads(capsys.readouterr().out)
    counts = HFArchitecture.from_config(path, seq_len=4096)
    assert out["n_total"] == counts.n_total == 15_350_731_776 and out["n_active"] == counts.n_active
    assert out["flops_per_token"] == counts.flops_per_token and out["seq_len"] == 4096
    assert cli_main(["plan", "count", "--hf-config", str(path)]) == 0
    assert "n_total             15,350,731,776  (15.35B)" in capsys.readouterr().out


@pytest.mark.parametrize("content,message", [
    (None, "file not found"),
    ("{not json", "not a JSON config"),
    ('{"model_type": "gpt2"}', "key 'model_type' is 'gpt2'; supported:"),
    ('{"model_type": "mixtral", "hidden_size": 64}', "key 'num_hidden_layers' is missing"),
    ('{"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": -1}', "'num_hidden_layers' must be an integer >= 1"),
    ('{"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 10, "num_attention_heads": 2, '
     '"intermediate_size": 8, "num_local_experts": 4, "num_experts_per_tok": 5}', "exceeds the number of experts (4)"),
])  # fmt: skip
def test_cli_refuses_bad_configs_in_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    assert cli_main(["plan", "count", "--hf-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_cli_needs_either_hf_config_or_the_shape(tmp_path, capsys):
    path = tmp_path / "config.json"
    transformers.MixtralConfig().to_json_file(path)
    for argv in (["--d-model", "64"], ["--hf-config", str(path), "--d-model", "64"]):
        assert cli_main(["plan", "count", *argv]) == 2
        assert "give --hf-config, or all of --d-model" in capsys.readouterr().err
