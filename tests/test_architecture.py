"""Accounting against the published optimal-sparsity models and hand arithmetic."""

import subprocess
import sys

import pandas as pd
import pytest

from conftest import dataset_path
from scaling.architecture import Architecture, count_interval, parse_count
from scaling.errors import MoescaleError


def _published_models() -> pd.DataFrame:
    return pd.read_csv(dataset_path("optimal_sparsity_models.csv"))


def test_published_optimal_sparsity_models_within_one_unit_of_their_names():
    df = _published_models()
    assert len(df) == 46
    misses = []
    for row in df.itertuples():
        arch = Architecture(
            d_model=row.d_model, n_layers=row.n_layers, n_heads=row.n_heads, d_ff=row.d_ff_expert,
            n_experts=row.n_experts, top_k=row.top_k, vocab_size=99574, tied_embeddings=False,
        )
        for label, value in (("total", arch.n_total), ("active", arch.n_active)):
            name = getattr(row, f"name_{label}")
            lo, hi = count_interval(name)
            if not lo <= value <= hi:
                misses.append(f"{row.hf_name}: N_{label} {value} outside {name} = [{lo}, {hi}]")
    assert not misses, "\n".join(misses)


@pytest.mark.parametrize(
    "name, interval",
    [
        ("13.2B", (13_100_000_000, 13_300_000_000)),
        ("26.0B", (25_900_000_000, 26_100_000_000)),  # a zero after the point is significant
        ("1.1B", (1_000_000_000, 1_200_000_000)),
        ("670M", (660_000_000, 680_000_000)),  # trailing zeros of an integer are not
        ("520M", (510_000_000, 530_000_000)),
        ("170M", (160_000_000, 180_000_000)),
        ("1.9B", (1_800_000_000, 2_000_000_000)),
        ("125M", (124_000_000, 126_000_000)),
        ("7B", (6_000_000_000, 8_000_000_000)),
        ("0.5B", (400_000_000, 600_000_000)),
        ("1.25k", (1240, 1260)),
    ],
)
def test_count_interval(name, interval):
    assert count_interval(name) == interval


def test_count_interval_reads_the_rounding_of_the_dataset_names():
    # The README's examples: 675.8M is named 670M and 169.2M is named 170M; both admitted.
    lo, hi = count_interval("670M")
    assert lo <= 675_820_544 <= hi
    lo, hi = count_interval("170M")
    assert lo <= 169_220_608 <= hi
    lo, hi = count_interval("13.2B")
    assert not lo <= 13_050_000_000 <= hi


@pytest.mark.parametrize("bad", ["", "abc", "12Q", "-3M", "1e9B"])
def test_count_interval_rejects_bad_names(bad):
    with pytest.raises(MoescaleError, match="count"):
        count_interval(bad)


def test_parse_count():
    assert parse_count("13.2B") == 13.2e9
    assert parse_count("670M") == 670e6
    assert parse_count("1e18") == 1e18
    assert parse_count(5) == 5.0
    with pytest.raises(MoescaleError):
        parse_count("ten")


def test_hand_counted_d512_e8_k2():
    # Per layer: attention 4*512^2 = 1,048,576; norms 2*512; router 512*8 = 4,096;
    # experts 8*3*512*1024 = 12,582,912 (active: 2*3*512*1024 = 3,145,728).
    # Embedding + head: 2*99,574*512 = 101,963,776; final norm 512.
    a = Architecture(d_model=512, n_layers=16, n_heads=4, d_ff=1024, n_experts=8, top_k=2)
    assert a.n_total_nonembed == 16 * (1_048_576 + 1_024 + 4_096 + 12_582_912) + 512 == 218_186_240
    assert a.n_total == 218_186_240 + 101_963_776 == 320_150_016
    assert a.n_active_nonembed == 16 * (1_048_576 + 1_024 + 4_096 + 3_145_728) + 512 == 67_191_296
    assert a.n_active == 169_155_072
    # Forward: 2 * (16 * (1,048,576 + 4,096 + 3,145,728) + 99,574*512) + 2*2*16*2048*512 (scores)
    forward = 2 * (16 * 4_198_400 + 50_981_888) + 67_108_864
    assert a.forward_flops_per_token == forward == 303_421_440
    assert a.flops_per_token == 3 * forward == 910_264_320
    assert a.flops_per_token_6n == 6 * 169_155_072
    assert a.sparsity == 4.0 and a.density == 0.25 and a.inactive_fraction == 0.75
    assert a.granularity == 0.5
    assert a.tpp(320_150_016 * 20) == 20.0
    assert a.tpp(320_150_016) == 1.0
    assert a.training_flops(1000) == 910_264_320_000


def test_dense_tied_gqa_counts():
    # d=64, 4 heads of 16, 2 kv heads: q,o 64*64 each, k,v 64*32 each -> 12,288 per layer.
    a = Architecture(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, vocab_size=1000, tied_embeddings=True)
    per_layer = 12_288 + 2 * 64 + 3 * 64 * 128  # no router when dense
    assert a.router_params == 0
    assert a.n_total == 2 * per_layer + 64 + 1000 * 64
    assert a.n_active == a.n_total
    assert a.n_total_nonembed == 2 * per_layer + 64
    # the tied head is still a matmul in the forward pass
    assert a.forward_flops_per_token == 2 * (2 * 12_288 + 2 * 3 * 64 * 128 + 1000 * 64) + 4 * 2 * 2048 * 64
    assert a.sparsity == 1.0 and a.density == 1.0


def test_to_dict_round_trip():
    a = Architecture(d_model=128, n_layers=2, n_heads=4, d_ff=256, n_experts=8, top_k=2, n_kv_heads=2)
    assert Architecture.from_dict(a.to_dict()) == a
    assert set(a.summary()) == {
        "n_total", "n_active", "n_total_nonembed", "n_active_nonembed", "flops_per_token",
        "flops_per_token_6n", "sparsity", "density", "granularity",
    }
    with pytest.raises(MoescaleError, match="unknown field.*d_modle"):
        Architecture.from_dict({**a.to_dict(), "d_modle": 3})
    with pytest.raises(MoescaleError, match="d_ff"):
        Architecture.from_dict({"d_model": 8, "n_layers": 1, "n_heads": 1})


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"d_model": 0}, "d_model"),
        ({"n_layers": -1}, "n_layers"),
        ({"d_ff": 2.5}, "d_ff"),
        ({"n_heads": True}, "n_heads"),
        ({"vocab_size": "1000"}, "vocab_size"),
        ({"n_experts": 4, "top_k": 8}, "top_k"),
        ({"n_heads": 5}, "n_heads"),  # 64 not divisible by 5
        ({"n_kv_heads": 3}, "n_kv_heads"),  # 4 heads not divisible by 3
        ({"n_kv_heads": 0}, "n_kv_heads"),
        ({"seq_len": 0}, "seq_len"),
        ({"tied_embeddings": "yes"}, "tied_embeddings"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    base = {"d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 128}
    with pytest.raises(MoescaleError, match=field):
        Architecture(**{**base, **kwargs})


def test_scaling_accounting_and_planner_do_not_import_torch():
    code = "import sys, scaling.architecture, scaling.planner, scaling.cli.plan; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_human_counts_and_the_summary_text():
    from scaling.architecture import human

    assert [human(n) for n in (999, 1500, 320_200_000, 13_160_000_000, 2e12, 1.2e18)] == [
        "999", "1.5K", "320.2M", "13.16B", "2T", "1.2e+18"]  # fmt: skip
    arch = Architecture(d_model=512, n_layers=8, n_heads=8, d_ff=1024, n_experts=8, top_k=2)
    lines = arch.summary_text().splitlines()
    assert [line.split()[0] for line in lines] == list(arch.summary())
    assert lines[0] == f"n_total{' ' * 11}  {arch.n_total:,}  ({human(arch.n_total)})"
    assert lines[-1] == f"granularity{' ' * 7}  {arch.granularity:.4g}"
