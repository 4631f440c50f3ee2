"""The grouped-GEMM benchmark runs end to end: tiny fp32 shapes, CPU, Triton interpreter.

It runs in a subprocess with ``TRITON_INTERPRET=1`` set before anything imports triton,
as a user would run it, and checks the JSON it writes: every implementation timed, the
Triton and torch grouped GEMMs agree with the per-expert loop, and the ratios follow
from the recorded TFLOP/s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_grouped_gemm.py"


def test_benchmark_smoke_run(tmp_path):
    out = tmp_path / "grouped_gemm_smoke.json"
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("MOESCALE_KERNELS", None)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "grouped GEMM fwd+bwd" in proc.stdout
    assert f"wrote {out}" in proc.stdout
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["interpreter"] is True
    assert result["dtype"] == "float32" and result["device"].startswith("cpu")
    assert {r["routing"] for r in result["rows"]} == {"balanced", "zipf"}
    for row in result["rows"]:
        assert {"triton", "loop", "dense"} <= set(row["tflops"]) and not row["errors"].get("triton")
        assert row["rel_err_vs_loop"]["triton"] <= 1e-5
        assert all(0 < t < float("inf") for t in row["seconds"].values())
        # each token picks top_k distinct experts: T*k rows, no expert holds a token twice
        assert row["rows"] == row["tokens"] * row["top_k"] and row["max_expert_rows"] <= row["tokens"]
        assert not any(row["targets"].values())  # a smoke run judges no target


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_grouped_gemm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_routing_draws_distinct_experts_and_zipf_is_skewed():
    import torch

    bench = _bench_module()
    gen = torch.Generator().manual_seed(0)
    for routing in ("balanced", "zipf"):
        offsets, counts = bench.routing_offsets(torch, 4000, 8, 2, routing, 1.0, torch.device("cpu"), gen)
        assert int(counts.sum()) == 8000 and int(counts.max()) <= 4000
        assert offsets.tolist() == torch.cumsum(counts, 0).tolist() and offsets.dtype == torch.int32
        share = counts.double() / counts.sum()
        if routing == "balanced":
            assert float((share - 1 / 8).abs().max()) < 0.02
        else:  # P(rank r) ~ 1/r before the no-repeat draw: expert 0 clearly ahead of expert 7
            assert float(share[0]) > 2.5 * float(share[7])


def test_benchmark_catches_a_wrong_kernel():
    """The smoke run's rel_err <= 1e-5 means something only if a wrong kernel shows up in it:
    a grouped GEMM off by one row's offset must give a large recorded error."""
    import argparse

    import torch

    bench = _bench_module()

    def loop(x, w, offsets):  # float64-exact per-expert reference, written here
        out, start = [], 0
        for e, end in enumerate(offsets.tolist()):
            out.append(x[start:end] @ w[e])
            start = end
        return torch.cat(out)

    def shifted(x, w, offsets):  # the bug class: rows multiplied by the neighbouring expert's weights
        return loop(x, w.roll(1, dims=0), offsets)

    args = argparse.Namespace(seed=0, zipf_s=1.0, warmup=0, reps=1, smoke=True)
    run = bench.timer(torch, torch.device("cpu"))
    row = bench.bench_shape(torch, {"loop": loop, "triton": shifted}, (8, 4, 2, 12, "balanced"), args,
                            torch.device("cpu"), torch.float64, run)
    assert row["rel_err_vs_loop"]["triton"] > 0.1
    good = bench.bench_shape(torch, {"loop": loop, "triton": loop}, (8, 4, 2, 12, "balanced"), args,
                             torch.device("cpu"), torch.float64, run)
    assert good["rel_err_vs_loop"]["triton"] == 0.0


def test_bench_train_counts_the_architectures_gemm_flops():
    """bench_train's list of a step's forward GEMMs (each expert at an even share of the rows)
    carries exactly the matmul FLOPs of scaling.Architecture: forward FLOPs per token minus the
    attention-score term 4 * n_layers * seq_len * d_model."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for d_model, E, k in ((64, 1, 1), (64, 8, 1), (128, 32, 1), (64, 16, 4)):
        arch = bench.study_arch(d_model, E, k)
        T = 1024
        gemm = sum(2 * m * kk * n * c for m, kk, n, c in bench.forward_gemms(arch, T))
        scores = 4 * arch.n_layers * arch.seq_len * arch.n_heads * arch.head_dim
        assert gemm == T * (arch.forward_flops_per_token - scores)
    assert set(bench.models((64,), (1, 8))) == {"d64 dense", "d64 E8 k1"}
    assert bench.study_arch(128).head_dim == 16 and bench.study_arch(128).d_ff == 256
