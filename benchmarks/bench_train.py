"""Training throughput on the CPU: an MoE vs a dense model with the same active parameters.

Measured side by side in one process (interleaved rounds, the median round per model), so a
machine shared with other work slows every model alike and the ratios stay meaningful:

    tokens/s = tokens_per_step * steps / seconds     (forward + backward + AdamW step of runner.model)

Models (issue 9): d_model 128, 4 layers, 4 heads, vocab 512, seq_len 256, 4,096 tokens a
step; dense d_ff 512 (1.18M active parameters) vs E = 8, 16, 32 experts at top-k 2 of width
256 (the same active parameters). Each MoE is timed with the default CPU expert path
(``runner.kernels.grouped_torch``) and with the readable reference loop
(``MOESCALE_KERNELS=reference``). Target: MoE within 1.5x of dense up to E = 32.

Then it trains the default cpu-tiny run (``data/cpu-tiny-run.yaml``) through ``moescale
train``'s function and prints its wall time and the share of it spent in evaluation.

    python benchmarks/bench_train.py                  # 2 threads, all of it
    python benchmarks/bench_train.py --skip-run       # throughput only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from runner.model import ModelConfig, seeded_model  # noqa: E402
from scaling.architecture import Architecture  # noqa: E402

TARGET = 1.5


def models(reference: bool = False) -> dict[str, tuple[Architecture, str | None]]:
    common = dict(d_model=128, n_layers=4, n_heads=4, vocab_size=512, seq_len=256)
    out = {"dense": (Architecture(d_ff=512, **common), None)}
    for E in (8, 16, 32):
        arch = Architecture(d_ff=256, n_experts=E, top_k=2, **common)
        out[f"E{E} k2"] = (arch, "torch")
        if reference:
            out[f"E{E} k2 (reference loop)"] = (arch, "reference")
    return out


def make_step(arch: Architecture, tokens: int):
    model = seeded_model(ModelConfig(arch), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    rows = tokens // arch.seq_len
    x = torch.randint(0, arch.vocab_size, (rows, arch.seq_len), generator=g)
    y = torch.randint(0, arch.vocab_size, (rows, arch.seq_len), generator=g)

    def step():
        _, loss, _ = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def throughput(tokens: int, rounds: int, steps: int, reference: bool) -> dict[str, float]:
    setups = models(reference)
    steps_fns = {name: make_step(arch, tokens) for name, (arch, _) in setups.items()}
    times: dict[str, list[float]] = {name: [] for name in setups}
    for r in range(rounds + 1):
        for name, (arch, backend) in setups.items():
            if backend:
                os.environ["MOESCALE_KERNELS"] = backend
            else:
                os.environ.pop("MOESCALE_KERNELS", None)
            t0 = time.perf_counter()
            for _ in range(steps):
                steps_fns[name]()
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t0)
    os.environ.pop("MOESCALE_KERNELS", None)
    return {name: tokens * steps / statistics.median(ts) for name, ts in times.items()}


def cpu_tiny_run(config_path: Path) -> dict:
    from runner.train import TrainConfig, summary, train
    from scaling.rundir import read_run_dir

    config = TrainConfig.from_yaml(config_path)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        status = train(config, out, quiet=True)
        seconds = time.perf_counter() - t0
        rec = read_run_dir(Path(out) / config.run_id, warn=False)
        text = summary(Path(out) / config.run_id)
    m = rec.metrics
    eval_seconds = float(m.loc[m["name"] == "eval_seconds", "value"].sum())
    return {"status": status, "seconds": seconds, "eval_seconds": eval_seconds, "eval_share": eval_seconds / seconds,
            "summary": text}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per model (interleaved)")
    p.add_argument("--steps", type=int, default=1, help="steps per round")
    p.add_argument("--reference", action="store_true", help="also time the MoEs with the reference loop")
    p.add_argument("--tokens", type=int, default=4096, help="tokens per step")
    p.add_argument("--config", default=str(ROOT / "data" / "cpu-tiny-run.yaml"))
    p.add_argument("--skip-run", action="store_true", help="do not train the cpu-tiny run")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")  # fmt: skip
    tps = throughput(args.tokens, args.rounds, args.steps, args.reference)
    dense = tps["dense"]
    print(f"\n{'model':<26}{'N_active':>11}{'N_total':>12}{'tokens/s':>11}{'dense/this':>12}  target <= {TARGET}x")
    result = {"threads": args.threads, "tokens_per_step": args.tokens, "tokens_per_s": tps, "ratio": {}}
    for name, (arch, backend) in models(args.reference).items():
        ratio = dense / tps[name]
        result["ratio"][name] = ratio
        verdict = "" if name == "dense" or backend == "reference" else ("ok" if ratio <= TARGET else "MISSED")
        print(f"{name:<26}{arch.n_active:>11,}{arch.n_total:>12,}{tps[name]:>11,.0f}{ratio:>11.2f}x  {verdict}")
    if not args.skip_run:
        run = cpu_tiny_run(Path(args.config))
        result["cpu_tiny_run"] = {k: v for k, v in run.items() if k != "summary"}
        print(f"\ncpu-tiny run ({args.config}): {run['status']} in {run['seconds']:.1f} s, evaluation "
              f"{run['eval_seconds']:.1f} s = {100 * run['eval_share']:.1f}% of it")  # fmt: skip
        print(run["summary"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
