"""`moescale plan count|grid|power`: the accounting of one architecture, a planned sweep, or its power."""

from __future__ import annotations

import argparse
import json

from scaling.architecture import Architecture
from scaling.cli import non_negative_int, positive_int
from scaling.cli.options import count_value, fraction, positive_float
from scaling.errors import MoescaleError
from scaling.planner import GRID_OPTIONS, PRESETS, plan_grid


def register(sub) -> None:
    parser = sub.add_parser("plan", help="count parameters and FLOPs; plan a sweep of architectures")
    plan_sub = parser.add_subparsers(dest="plan_command", required=True, metavar="SUBCOMMAND")

    count = plan_sub.add_parser("count", help="parameter and FLOP accounting of one architecture")
    count.add_argument("--hf-config", metavar="config.json", help="count a transformers config (Mixtral, Qwen2/3-MoE, "
                       "OLMoE, DeepSeek-V2/V3) instead of the shape options; --seq-len still applies")
    count.add_argument("--d-model", type=positive_int)
    count.add_argument("--n-layers", type=positive_int)
    count.add_argument("--n-heads", type=positive_int)
    count.add_argument("--d-ff", type=positive_int, help="expert width (SwiGLU hidden size)")
    count.add_argument("--n-experts", type=positive_int, default=1)
    count.add_argument("--top-k", type=positive_int, default=1)
    count.add_argument("--vocab", type=positive_int, default=99574)
    count.add_argument("--n-kv-heads", type=positive_int, default=None)
    count.add_argument("--seq-len", type=positive_int, default=2048)
    count.add_argument("--tied", action="store_true", help="tie the input embedding and output head")
    count.add_argument("--json", action="store_true", help="print JSON instead of a table")
    count.set_defaults(func=count_handler)

    grid = plan_sub.add_parser(
        "grid",
        help="enumerate architectures meeting budgets and write a sweep",
        description="Enumerate (n_layers, d_model, n_experts, top_k, granularity) from a preset or the axis "
        "options, keep those within the budgets, and give each compute budget C a run of D = C / FLOPs-per-token "
        "tokens. Counts accept 670M, 1.3B, 1e18.",
    )
    grid.add_argument("--preset", choices=sorted(PRESETS), help="a named grid (replaces the axis options)")
    axes = grid.add_argument_group("grid axes (without --preset)")
    axes.add_argument("--n-layers", type=positive_int, nargs="+")
    axes.add_argument("--d-model", type=positive_int, nargs="+")
    axes.add_argument("--n-experts", type=positive_int, nargs="+")
    axes.add_argument("--top-k", type=positive_int, nargs="+")
    axes.add_argument("--granularity", type=positive_float, nargs="+", help="G = d_model / d_ff (default 0.5)")
    axes.add_argument("--head-dim", type=positive_int, help="n_heads = d_model / head_dim (default 128)")
    axes.add_argument("--vocab", type=positive_int)
    axes.add_argument("--seq-len", type=positive_int)
    axes.add_argument("--n-kv-heads", type=positive_int)
    axes.add_argument("--tied", action="store_true")
    budgets = grid.add_argument_group("constraints")
    budgets.add_argument("--total-params", type=count_value, help="N_total budget (memory)")
    budgets.add_argument("--active-params", type=count_value, help="N_active budget (inference)")
    budgets.add_argument("--flops-per-token", type=count_value, help="training FLOPs per token budget (inference)")
    budgets.add_argument("--tolerance", type=fraction, default=0.1, help="relative width of each budget (default 0.1)")
    budgets.add_argument("--compute", type=count_value, nargs="+", default=[], help="training budgets C (isoFLOP)")
    budgets.add_argument("--tokens", type=count_value, help="tokens per run when no --compute")
    grid.add_argument("--seed", type=non_negative_int, default=0)
    grid.add_argument("--name", help="sweep name (default: the preset's, else 'sweep')")
    grid.add_argument("--out", help="write the sweep YAML here")
    grid.set_defaults(func=grid_handler)
    from scaling.cli.power import register as register_power  # `plan power`: its own module

    register_power(plan_sub)


def count_handler(args: argparse.Namespace) -> int:
    given = [v is not None for v in (args.d_model, args.n_layers, args.n_heads, args.d_ff)]
    if not (not any(given) if args.hf_config else all(given)):
        raise MoescaleError("plan count: give --hf-config, or all of --d-model, --n-layers, --n-heads and --d-ff")
    arch = Architecture.from_hf_config(args.hf_config, seq_len=args.seq_len) if args.hf_config else Architecture(
        d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, d_ff=args.d_ff,
        n_experts=args.n_experts, top_k=args.top_k, vocab_size=args.vocab, n_kv_heads=args.n_kv_heads,
        seq_len=args.seq_len, tied_embeddings=args.tied,
    )
    print(json.dumps(arch.summary(), indent=2) if args.json else arch.summary_text())
    return 0


def grid_handler(args: argparse.Namespace) -> int:
    if args.out:
        from scaling.files import check_output_path

        check_output_path(args.out, "--out")
    axes = {field: getattr(args, option[2:].replace("-", "_")) for field, option in GRID_OPTIONS.items()}
    sweep = plan_grid(
        args.preset, axes, args.tied, name=args.name, seed=args.seed, total_params=args.total_params,
        active_params=args.active_params, flops_per_token=args.flops_per_token, tolerance=args.tolerance,
        compute=tuple(args.compute), tokens=args.tokens,
    )
    print(sweep.table())
    if args.out:
        sweep.to_yaml(args.out)
        print(f"wrote {args.out}")
    return 0
