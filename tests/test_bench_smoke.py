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
        assert row["flops"] == 6 * row["rows"] * row["d_model"] * row["d_ff"]
        assert {"triton", "loop", "dense"} <= set(row["tflops"])
        assert row["rel_err_vs_loop"]["triton"] <= 1e-5
        for name, tflops in row["tflops"].items():
            assert tflops == pytest.approx(row["flops"] / row["seconds"][name] / 1e12)
        assert row["ratios"]["vs_loop"] == pytest.approx(row["tflops"]["triton"] / row["tflops"]["loop"])
        assert row["ratios"]["vs_dense"] == pytest.approx(row["tflops"]["triton"] / row["tflops"]["dense"])
        assert not any(row["targets"].values())  # a smoke run judges no target
