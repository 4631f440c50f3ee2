"""CPU model-FLOP utilization (MFU) of a whole training step, against the machine's own matmul rate.

For the cpu-study's model shapes (``scaling.presets``: 2 layers, head_dim 16, expert width
2 * d_model, vocab 512, seq_len 128; dense and top-1 MoEs with E = 8 and 32 experts, which
have the dense model's active parameters) at d_model 64 and 128, with 1,024-token steps (the
cpu-study's) and 4,096-token steps, measured in one process with interleaved rounds (the median
round per model), so a machine shared with other work slows every model alike:

    mm rate (n)      = 2 n^3 / seconds of torch.mm of two fp32 n x n matrices (the same threads)
    mm rate (shapes) = sum of the step's forward GEMM FLOPs / the sum of their times, each GEMM
                       (T x D @ D x D, ..., each expert's share of rows, the head) timed alone
    model FLOP/s     = Architecture.flops_per_token * tokens per step / seconds per step
    MFU              = model FLOP/s / mm rate (1,024)   (issue 21: >= 70% at d_model 128, >= 40% at 64)

A step is what ``runner.train`` does per optimizer step: the next batch from the training
stream (data), forward with the auxiliary losses (forward), backward, gradient clipping +
AdamW + the schedule (optimizer). The share of "routing and permutation" (router, its
losses and statistics, sorting tokens by expert, gathering and scattering them, forward and
backward) is timed alone at the same shapes, times the layers. MoE/dense is the ratio of
step times at equal active parameters (target <= 1.3x). Then it trains the default cpu-tiny
run (``data/cpu-tiny-run.yaml``) through ``runner.train.train`` and prints evaluation's
share of the run (target <= 5%). ``--levers`` also measures the levers of issue 21 (see
``benchmarks/train_levers.py``) and whether each leaves the numbers bit for bit unchanged.

    python benchmarks/bench_train.py                 # 2 threads, all of it
    python benchmarks/bench_train.py --skip-run      # the MFU table only
    python benchmarks/bench_train.py --levers        # and the levers
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from scaling.architecture import Architecture  # noqa: E402

MFU_TARGET = {64: 0.40, 128: 0.70}
MOE_TARGET = 1.3
EVAL_TARGET = 0.05
STUDY_DATA = {"kind": "synthetic", "n_people": 200, "pointer_hops": 2, "arith_ops": 2}


def study_arch(d_model: int, n_experts: int = 1, top_k: int = 1, n_layers: int = 2) -> Architecture:
    """The cpu-study's shape at this width: head_dim 16, expert width 2 * d_model, vocab 512, seq_len 128."""
    return Architecture(d_model=d_model, n_layers=n_layers, n_heads=d_model // 16, d_ff=2 * d_model,
                        n_experts=n_experts, top_k=top_k, vocab_size=512, seq_len=128)  # fmt: skip


def models(widths=(64, 128), experts=(1, 8, 16, 32)) -> dict[str, Architecture]:
    return {(f"d{d} dense" if E == 1 else f"d{d} E{E} k1"): study_arch(d, E) for d in widths for E in experts}


# ----------------------------------------------------------------------------- matmul rates


def mm_seconds(m: int, k: int, n: int, min_seconds: float = 0.05) -> float:
    """Median seconds of one fp32 torch.mm (m x k) @ (k x n) into a preallocated output."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    c = torch.empty(m, n)
    torch.mm(a, b, out=c)
    reps, t = 1, 0.0
    while True:  # calibrate: enough calls that one timed batch takes min_seconds / 5
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        t = time.perf_counter() - t0
        if t >= min_seconds / 5:
            break
        reps *= 4
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times)


def mm_rate(n: int = 1024) -> float:
    """FLOP/s of an fp32 n x n x n torch.mm: 2 n^3 / seconds."""
    return 2 * n**3 / mm_seconds(n, n, n, min_seconds=0.5)


def forward_gemms(arch: Architecture, tokens: int) -> list[tuple[int, int, int, int]]:
    """(m, k, n, count) of the forward GEMMs of one step: q, k, v, o, the router, each expert's
    three GEMMs at its even share of the T * top_k rows, the head (attention scores are not GEMMs here)."""
    T, D, F, E = tokens, arch.d_model, arch.d_ff, arch.n_experts
    kv = arch.kv_heads * arch.head_dim
    rows = max(1, round(T * arch.top_k / E))
    per_layer = [(T, D, D, 2), (T, D, kv, 2), (rows, D, F, 2 * E), (rows, F, D, E)]
    if E > 1:
        per_layer.append((T, D, E, 1))
    return [(m, k, n, c * arch.n_layers) for m, k, n, c in per_layer] + [(T, D, arch.vocab_size, 1)]


def shapes_rate(arch: Architecture, tokens: int, cache: dict) -> float:
    """FLOP/s of the step's forward GEMMs timed one by one: sum(FLOPs) / sum(seconds)."""
    flops = seconds = 0.0
    for m, k, n, count in forward_gemms(arch, tokens):
        if (m, k, n) not in cache:
            cache[(m, k, n)] = mm_seconds(m, k, n)
        flops += 2 * m * k * n * count
        seconds += cache[(m, k, n)] * count
    return flops / seconds


# ----------------------------------------------------------------------------- a training step


class Stepper:
    """runner.train's optimizer step on one model: data, forward, backward, clip + AdamW + schedule.

    ``step()`` returns the seconds of each phase. ``optimizer`` and ``compile`` are levers
    (``train_levers.py``); the defaults are what ``runner.train`` does.
    """

    def __init__(self, arch: Architecture, tokens: int, corpus, *, foreach: bool | None = None, fused: bool | None = None,
                 compile: bool = False):  # fmt: skip
        from runner.data.stream import Stream
        from runner.model import seeded_model
        from runner.train import TrainConfig, _optimizer

        self.config = TrainConfig(architecture=arch, tokens=tokens * 1000, batch_tokens=tokens, data=STUDY_DATA)
        self.model = seeded_model(self.config.model_config(), seed=0)
        self.optimizer = _optimizer(self.model, self.config, torch.device("cpu"))
        for group in self.optimizer.param_groups:
            if foreach is not None:
                group["foreach"] = foreach
            if fused is not None:
                group["fused"] = fused
        if fused:
            self.optimizer.defaults["fused"] = True
        cfg = self.config
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: cfg.lr_at(s) / cfg.peak_lr)
        self.stream = Stream(corpus.train, corpus.train_mask, arch.seq_len)
        self.forward = torch.compile(self.model) if compile else self.model
        self.rows = tokens // arch.seq_len
        self.model.train()

    def step(self) -> dict[str, float]:
        cfg = self.config
        t0 = time.perf_counter()
        starts = self.stream.starts(self.rows)
        x, y = self.stream.batch(starts)
        n_t = self.stream.n_targets(starts)
        t1 = time.perf_counter()
        _, _, aux = self.forward(x, y)
        reg = cfg.aux_loss_coef * aux["aux_loss"] + cfg.z_loss_coef * aux["z_loss"]
        loss = aux["ce_loss"] * (n_t / max(1, n_t)) + reg
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        self.last = (float(aux["ce_loss"].detach()), float(aux["aux_loss"].detach()), float(aux["z_loss"].detach()),
                     float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)))  # fmt: skip
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        return {"data": t1 - t0, "forward": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3}


def routing_seconds(arch: Architecture, tokens: int, reps: int = 20) -> float:
    """Seconds a step spends in routing and permutation, timed alone at the step's shapes (forward
    and backward, times the layers): the router and its softmax/top-k, the load-balancing and z
    losses, the routing statistics, and the expert path's sort, gather, weighting and scatter-add
    (``runner.kernels.grouped_torch.moe_ffn`` without its GEMMs). 0 for a dense model."""
    from runner.moe import TopKRouter, load_balancing_loss, router_z_loss, routing_stats

    if arch.n_experts == 1:
        return 0.0
    torch.manual_seed(0)
    router = TopKRouter(arch.d_model, arch.n_experts, arch.top_k)
    x = torch.randn(tokens, arch.d_model, requires_grad=True)

    def once():
        r = router(x)
        aux = load_balancing_loss(r.probs, r.topk_ids) + router_z_loss(r.logits)
        routing_stats(r.probs, r.topk_ids)
        flat = r.topk_ids.reshape(-1)  # the sort of runner.kernels.grouped_torch.moe_ffn
        order = torch.argsort(flat, stable=True)
        torch.cumsum(torch.bincount(flat, minlength=arch.n_experts), 0).tolist()
        token = order // arch.top_k
        ys = x[token] * r.topk_weights.reshape(-1)[order, None]
        y = torch.zeros_like(x).index_add(0, token, ys)
        (y.sum() + aux).backward()

    once()
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - t0) / reps * arch.n_layers


def measure(archs: dict[str, Architecture], tokens: int, rounds: int, corpus, round_seconds: float = 0.6) -> dict:
    """Per model: median seconds per step over ``rounds`` interleaved rounds, and the phases' shares."""
    steppers = {name: Stepper(arch, tokens, corpus) for name, arch in archs.items()}
    n_steps = {}
    for name, s in steppers.items():  # warm-up, and steps per round so that a round takes round_seconds
        s.step()
        t0 = time.perf_counter()
        s.step()
        n_steps[name] = max(2, math.ceil(round_seconds / (time.perf_counter() - t0)))
    per_step = {name: [] for name in archs}
    phases = {name: dict.fromkeys(("data", "forward", "backward", "optimizer"), 0.0) for name in archs}
    for _ in range(rounds):
        for name, s in steppers.items():
            t0 = time.perf_counter()
            for _ in range(n_steps[name]):
                for k, v in s.step().items():
                    phases[name][k] += v
            per_step[name].append((time.perf_counter() - t0) / n_steps[name])
    out = {}
    for name, arch in archs.items():
        total = sum(phases[name].values())
        sec = statistics.median(per_step[name])
        share = {k: v / total for k, v in phases[name].items()}
        share["routing"] = routing_seconds(arch, tokens) / sec
        out[name] = {"seconds_per_step": sec, "tokens_per_s": tokens / sec, "steps_per_round": n_steps[name],
                     "model_flops_per_s": arch.flops_per_token * tokens / sec, "share": share}  # fmt: skip
    return out


# ----------------------------------------------------------------------------- a whole run


def cpu_tiny_run(config_path: Path, threads: int) -> dict:
    """Train the cpu-tiny run through runner.train.train: wall seconds, evaluation's seconds and share."""
    from runner.train import TrainConfig, summary, train
    from scaling.rundir import read_run_dir

    config = TrainConfig.from_yaml(config_path)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        status = train(config, out, quiet=True, threads=threads)
        seconds = time.perf_counter() - t0
        rec = read_run_dir(Path(out) / config.run_id, warn=False)
        text = summary(Path(out) / config.run_id)
    m = rec.metrics
    eval_seconds = float(m.loc[m["name"] == "eval_seconds", "value"].sum())
    return {"status": status, "seconds": seconds, "eval_seconds": eval_seconds, "eval_share": eval_seconds / seconds,
            "summary": text}  # fmt: skip


def load_text() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def print_table(tokens: int, archs: dict[str, Architecture], res: dict, rate_1024: float, rates: dict) -> None:
    print(f"\n{tokens:,}-token steps (load average {load_text()})")
    print(f"{'model':<14}{'N_active':>10}{'GFLOP/step':>11}{'tokens/s':>10}{'GFLOP/s':>9}{'mm(shapes)':>11}"
          f"{'MFU':>7}{'target':>11}{'MFU/shapes':>11}{'MoE/dense':>10}   share: data fwd bwd opt (routing)")  # fmt: skip
    for name, arch in archs.items():
        r = res[name]
        dense = res[name.split()[0] + " dense"]["seconds_per_step"]
        ratio = r["seconds_per_step"] / dense
        mfu = r["model_flops_per_s"] / rate_1024
        target = MFU_TARGET.get(arch.d_model)
        goal = f"{100 * target:.0f}% {'ok' if mfu >= target else 'MISSED'}" if target else ""
        moe = "" if arch.n_experts == 1 else f"{ratio:.2f}x {'ok' if ratio <= MOE_TARGET else 'MISSED'}"
        s = r["share"]
        print(f"{name:<14}{arch.n_active:>10,}{arch.flops_per_token * tokens / 1e9:>11.3f}{r['tokens_per_s']:>10,.0f}"
              f"{r['model_flops_per_s'] / 1e9:>9.1f}{rates[name] / 1e9:>11.1f}{100 * mfu:>6.1f}%"
              f"{goal:>11}{100 * r['model_flops_per_s'] / rates[name]:>10.1f}%  {moe:<10}"
              f"  {100 * s['data']:.0f} {100 * s['forward']:.0f} {100 * s['backward']:.0f} {100 * s['optimizer']:.0f}"
              f" ({100 * s['routing']:.0f})")  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per model (interleaved)")
    p.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096], help="tokens per step")
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128], help="d_model")
    p.add_argument("--experts", type=int, nargs="+", default=[1, 8, 32], help="E (1 = dense; top-1 MoEs)")
    p.add_argument("--config", default=str(ROOT / "data" / "cpu-tiny-run.yaml"))
    p.add_argument("--skip-run", action="store_true", help="do not train the cpu-tiny run")
    p.add_argument("--levers", action="store_true", help="also measure the levers of issue 21")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if 1 not in args.experts:
        p.error("--experts must include 1 (the dense model each MoE is compared with)")
    torch.set_num_threads(args.threads)
    from runner.data import load_corpus

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load_text()}")  # fmt: skip
    rate_1024 = mm_rate(1024)
    print(f"fp32 torch.mm 1024 x 1024 x 1024: {rate_1024 / 1e9:.1f} GFLOP/s")
    corpus = load_corpus(STUDY_DATA, seed=0)
    archs = models(tuple(args.widths), tuple(args.experts))
    result = {"threads": args.threads, "mm_rate_1024": rate_1024, "tables": {}}
    cache: dict = {}
    for tokens in args.tokens:
        res = measure(archs, tokens, args.rounds, corpus)
        rates = {name: shapes_rate(arch, tokens, cache) for name, arch in archs.items()}
        print_table(tokens, archs, res, rate_1024, rates)
        for name in archs:
            res[name]["mm_rate_shapes"] = rates[name]
            res[name]["mfu"] = res[name]["model_flops_per_s"] / rate_1024
        result["tables"][str(tokens)] = res
    rate_after = mm_rate(1024)
    result["mm_rate_1024_after"] = rate_after
    print(f"\nfp32 torch.mm 1024^3 again after the tables: {rate_after / 1e9:.1f} GFLOP/s (load average {load_text()})")
    if args.levers:
        import train_levers

        result["levers"] = train_levers.run_all(corpus, args.threads)
    if not args.skip_run:
        run = cpu_tiny_run(Path(args.config), args.threads)
        result["cpu_tiny_run"] = {k: v for k, v in run.items() if k != "summary"}
        verdict = "ok" if run["eval_share"] <= EVAL_TARGET else "MISSED"
        print(f"\ncpu-tiny run ({args.config}): {run['status']} in {run['seconds']:.1f} s, evaluation "
              f"{run['eval_seconds']:.1f} s = {100 * run['eval_share']:.1f}% of it (target <= 5%: {verdict})")  # fmt: skip
        print(run["summary"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
