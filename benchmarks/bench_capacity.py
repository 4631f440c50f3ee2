"""Knowledge capacity (bits per parameter) of a dense and an MoE tiny model, as Allen-Zhu & Li measure it.

Allen-Zhu & Li 2024 ("Physics of Language Models, Part 3.3", arXiv 2404.05405) find that
a model trained on a knowledge base larger than it can hold, each fact seen 100 times,
stores about 1 bit per parameter (2 at 1000 exposures), and that an MoE with 32 experts
stores about 1.3x less per *total* parameter. This benchmark trains a dense model and an
MoE (same d_model and expert width, ``--experts`` experts, top-1) through ``runner.train``
on a facts-only synthetic corpus with ``--exposures`` exposures per biography (the run
reads the stream once) and prints knowledge bits, bits/param and the MoE / dense ratio of
bits per total parameter, next to the published values. It calibrates the corpus; what
it measures is reported whether it matches or not.

    .venv/bin/python benchmarks/bench_capacity.py              # the published setting (long on CPU)
    .venv/bin/python benchmarks/bench_capacity.py --quick      # ~5 minutes: tests/test_capacity.py's setting, E = 32
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from runner.data.synthetic import SyntheticSpec, build_corpus, tokenizer_for
from runner.train import TrainConfig, train
from scaling.architecture import Architecture
from scaling.rundir import read_run_dir

PUBLISHED_DENSE_100 = 1.0  # bits per parameter at 100 exposures (Allen-Zhu & Li, Part 3.3)
PUBLISHED_MOE_RATIO = 1 / 1.3  # MoE with 32 experts: ~1.3x less per total parameter


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-people", type=int, default=12_000)
    ap.add_argument("--exposures", type=int, default=100)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4, help="attention heads (4: the name lookup is learned on every seed tried)")
    ap.add_argument("--d-ff", type=int, default=32, help="width of the dense FFN and of each expert")
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch-tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="n_people 720 (tests/test_capacity.py's knowledge base): minutes, not hours")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_people = 720
    torch.set_num_threads(args.threads)

    data = {"kind": "synthetic", "n_people": args.n_people, "exposures": args.exposures, "mixture": {"facts": 1.0},
            "val_tokens": 4096, "values_per_attribute": 64}  # fmt: skip
    spec = SyntheticSpec.from_dict({k: v for k, v in data.items() if k != "kind"})
    stream_tokens = len(build_corpus(spec, 0).train)
    vocab = tokenizer_for(spec).vocab_size
    print(f"knowledge base: {args.n_people} individuals, {spec.knowledge_bits:,.0f} bits; {args.exposures} exposures "
          f"= {stream_tokens:,} training tokens; vocab {vocab}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for experts in (1, args.experts):
            arch = Architecture(d_model=args.d_model, n_layers=2, n_heads=args.heads, d_ff=args.d_ff, n_experts=experts,
                                top_k=1, vocab_size=vocab, seq_len=128)  # fmt: skip
            config = TrainConfig(architecture=arch, tokens=stream_tokens, data=data, lr=args.lr, batch_tokens=args.batch_tokens,
                                 checkpoint_interval=10**9, log_interval=10**9, device="cpu")  # fmt: skip
            t0 = time.perf_counter()
            status = train(config, out, quiet=True, threads=args.threads)
            ev = read_run_dir(f"{out}/{config.run_id}").evals
            final = ev[ev.step == ev.step.max()].set_index("metric").value
            rows.append((experts, arch.n_total, final["accuracy"], final["knowledge_bits"], final["bits_per_param"]))
            print(f"E={experts:2d} k=1  N_total {arch.n_total:9,d}  {status}  {time.perf_counter() - t0:6.0f} s  "
                  f"facts accuracy {final['accuracy']:.3f}  knowledge bits {final['knowledge_bits']:9,.0f}  "
                  f"bits/param {final['bits_per_param']:.4f}")  # fmt: skip
    (_, n_d, _, bits_d, bpp_d), (_, n_m, _, bits_m, bpp_m) = rows
    holds = "larger" if spec.knowledge_bits > max(n_d, n_m) * PUBLISHED_DENSE_100 else "NOT larger"
    print(f"the knowledge base is {holds} than either model's published capacity (1 bit/param x N_total)")
    print(f"dense bits/param {bpp_d:.4f}   (published ~{PUBLISHED_DENSE_100} at 100 exposures)")
    ratio = bpp_m / bpp_d if bpp_d > 0 else float("nan")
    print(f"MoE / dense bits per total parameter {ratio:.3f}   (published ~{PUBLISHED_MOE_RATIO:.2f} with 32 experts)")
    print(f"MoE / dense knowledge bits {bits_m / max(bits_d, 1e-9):.3f}")


if __name__ == "__main__":
    main()
