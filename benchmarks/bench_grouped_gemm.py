"""Grouped-GEMM forward+backward throughput: Triton vs torch._grouped_mm vs a per-expert loop.

For each shape (d_model, expert width F = 2 * d_model, E experts, top-k, T tokens, routing)
the benchmark times y = grouped_mm(x, w, offsets) and its backward (dX and dW) on
R = T * k sorted rows, x (R, d_model), w (E, d_model, F), and reports

    TFLOP/s = 6 * R * d_model * F / seconds     (forward 2RdF, backward dX 2RdF + dW 2RdF)

for the Triton kernels, ``torch._grouped_mm`` (when it runs forward and backward on the
device), the per-expert loop reference, and one dense matmul of the same size, the
device's dense rate measured in the same run. Shapes come from the Nakamura et al. grid
(d_model 512/1024/2048, E in {8, 32, 128}, top-k in {2, 8}, 16k-64k tokens, bf16, balanced
and Zipf routing). Targets on an H100: >= 1.0x torch._grouped_mm, >= 3x the loop at E >= 32,
>= 50% of the dense rate at d_model = 2048.

    python benchmarks/bench_grouped_gemm.py                 # full grid on the GPU
    TRITON_INTERPRET=1 python benchmarks/bench_grouped_gemm.py --smoke   # tiny, CPU, fp32

Without a CUDA device the script runs ``--smoke`` (under the interpreter) and says so.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"vs_torch_grouped_mm": 1.0, "vs_loop": 3.0, "vs_dense": 0.5}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny fp32 shapes on CPU under TRITON_INTERPRET=1")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/grouped_gemm_<device>.json)")
    p.add_argument("--d-model", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--experts", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--top-k", type=int, nargs="+", default=[2, 8])
    p.add_argument("--tokens", type=int, nargs="+", default=[16384, 65536])
    p.add_argument("--routing", nargs="+", default=["balanced", "zipf"], choices=["balanced", "zipf"])
    p.add_argument("--zipf-s", type=float, default=1.0, help="Zipf exponent: P(expert rank r) ~ r^-s")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def device_slug(torch) -> str:
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def routing_offsets(torch, tokens, n_experts, top_k, routing, zipf_s, device, gen):
    """int32 cumulative row ends for T tokens each choosing top_k distinct experts."""
    if routing == "balanced":
        probs = torch.ones(n_experts, device=device)
    else:
        probs = torch.arange(1, n_experts + 1, device=device, dtype=torch.float64) ** -zipf_s
    ids = torch.multinomial(probs.float().expand(tokens, -1), top_k, replacement=False, generator=gen)
    counts = torch.bincount(ids.reshape(-1), minlength=n_experts)
    return torch.cumsum(counts, 0).to(torch.int32), counts


def timer(torch, device):
    if device.type == "cuda":
        def run(fn, warmup, reps):
            for _ in range(warmup):
                fn()
            times = []
            for _ in range(reps):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            return statistics.median(times)
    else:
        def run(fn, warmup, reps):
            for _ in range(warmup):
                fn()
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return statistics.median(times)
    return run


def fwd_bwd(torch, mm, x, w, dy):
    """One forward and backward of mm(x, w); returns a closure for the timer (and its outputs)."""
    def step():
        x.grad = w.grad = None
        y = mm(x, w)
        y.backward(dy)
        return y, x.grad, w.grad
    return step


def rel_err(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def bench_shape(torch, impls, shape, args, device, dtype, run):
    d, E, k, T, routing = shape
    F = 2 * d
    gen = torch.Generator(device=device).manual_seed(args.seed)
    offsets, counts = routing_offsets(torch, T, E, k, routing, args.zipf_s, device, gen)
    R = T * k
    x = (torch.randn(R, d, device=device, generator=gen) / d**0.25).to(dtype).requires_grad_()
    w = (torch.randn(E, d, F, device=device, generator=gen) / d**0.25).to(dtype).requires_grad_()
    w_dense = w[0].detach().clone().requires_grad_()
    dy = torch.randn(R, F, device=device, generator=gen).to(dtype)
    flops = 6 * R * d * F
    row = {"d_model": d, "d_ff": F, "experts": E, "top_k": k, "tokens": T, "rows": R, "routing": routing,
           "max_expert_rows": int(counts.max()), "empty_experts": int((counts == 0).sum()),
           "flops": flops, "seconds": {}, "tflops": {}, "errors": {}, "rel_err_vs_loop": {}}
    mms = dict(impls)
    mms["dense"] = lambda a, _b: a @ w_dense
    expected = None
    for name, mm in mms.items():
        wt = w_dense if name == "dense" else w
        step = fwd_bwd(torch, lambda a, b: mm(a, b) if name == "dense" else mm(a, b, offsets), x, wt, dy)
        try:
            outputs = [t.detach().clone() for t in step()]  # also probes availability (backward on CPU)
            sec = run(step, args.warmup, args.reps)
        except Exception as exc:  # noqa: BLE001 -- recorded, not fatal: an optional baseline
            row["errors"][name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            continue
        if name == "loop":
            expected = outputs
        elif name != "dense" and expected is not None:
            row["rel_err_vs_loop"][name] = max(rel_err(a, b) for a, b in zip(outputs, expected))
        row["seconds"][name] = sec
        row["tflops"][name] = flops / sec / 1e12
        del outputs
    tf = row["tflops"]
    if "triton" in tf:
        row["ratios"] = {
            "vs_torch_grouped_mm": tf["triton"] / tf["torch_grouped_mm"] if "torch_grouped_mm" in tf else None,
            "vs_loop": tf["triton"] / tf["loop"] if "loop" in tf else None,
            "vs_dense": tf["triton"] / tf["dense"] if "dense" in tf else None,
        }
        row["targets"] = {  # which ratios the issue sets a target for (none in a smoke run)
            "vs_torch_grouped_mm": not args.smoke,
            "vs_loop": E >= 32 and not args.smoke,
            "vs_dense": d == 2048 and not args.smoke,
        }
    return row


def fmt(v, spec="{:.1f}"):
    return "-" if v is None else spec.format(v)


def print_table(rows, device_name):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"grouped GEMM fwd+bwd, TFLOP/s on {device_name}")
    for col in ("d", "E", "k", "tokens", "routing", "triton", "torch gmm", "loop", "dense",
                "x gmm (>=1)", "x loop (>=3, E>=32)", "/dense (>=0.5, d=2048)"):
        table.add_column(col, justify="right")
    for r in rows:
        tf, ratios, targets = r["tflops"], r.get("ratios", {}), r.get("targets", {})

        def ratio(key):
            v = ratios.get(key)
            if v is None:
                return "-"
            mark = ("ok" if v >= TARGETS[key] else "MISS") if targets.get(key) else ""
            return f"{v:.2f} {mark}".strip()

        spec = "{:.3g}"
        table.add_row(str(r["d_model"]), str(r["experts"]), str(r["top_k"]), str(r["tokens"]), r["routing"],
                      fmt(tf.get("triton"), spec), fmt(tf.get("torch_grouped_mm"), spec), fmt(tf.get("loop"), spec),
                      fmt(tf.get("dense"), spec), ratio("vs_torch_grouped_mm"), ratio("vs_loop"), ratio("vs_dense"))
    Console(width=160).print(table)
    worst = {}
    for r in rows:
        for name, err in r["rel_err_vs_loop"].items():
            worst[name] = max(err, worst.get(name, 0.0))
    for name, err in sorted(worst.items()):
        print(f"check: {name} output and gradients vs the per-expert loop, max relative error {err:.2e}")
    errors = {(name, msg) for r in rows for name, msg in r["errors"].items()}
    for name, msg in sorted(errors):
        print(f"note: {name} unavailable: {msg}")


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.smoke:
        print("no CUDA device: running --smoke under the Triton interpreter instead")
        args.smoke = True
    if args.smoke:
        if not torch.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"
        args.d_model, args.experts, args.top_k, args.tokens = [16], [4], [2], [12]
        args.warmup, args.reps = 0, 1
        torch.set_num_threads(1)  # tiny shapes: threads only add contention
    import triton

    from runner.kernels import grouped_gemm, reference

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    impls = {  # the loop first: it is the reference the others' outputs are checked against
        "loop": reference.grouped_mm,
        "triton": grouped_gemm.grouped_mm,
    }
    if hasattr(torch, "_grouped_mm"):
        impls["torch_grouped_mm"] = lambda a, b, offs: torch._grouped_mm(a, b, offs=offs)
    run = timer(torch, device)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})"
    rows = []
    grid = itertools.product(args.d_model, args.experts, args.top_k, args.tokens, args.routing)
    for shape in grid:
        rows.append(bench_shape(torch, impls, shape, args, device, dtype, run))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print_table(rows, device_name)
    slug = device_slug(torch) + ("-smoke" if args.smoke else "")
    out = args.out or RESULTS / f"grouped_gemm_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "grouped_gemm_fwd_bwd",
        "device": device_name,
        "smoke": args.smoke,
        "interpreter": grouped_gemm.interpreting(),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "flops_formula": "6 * rows * d_model * d_ff (fwd 2RdF + dX 2RdF + dW 2RdF)",
        "targets": TARGETS,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
