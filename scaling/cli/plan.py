"""`moescale plan count|grid`: the accounting of one architecture, or a planned sweep."""

from __future__ import annotations

import argparse
import json

from scaling.architecture import Architecture, parse_count
from scaling.errors import MoescaleError
from scaling.planner import PRESETS, Constraints, GridSpace, human, plan


def register(sub) -> None:
    parser = sub.add_parser("plan", help="count parameters and FLOPs; plan a sweep of architectures")
    plan_sub = parser.add_subparsers(dest="plan_command", required=True, metavar="SUBCOMMAND")

    count = plan_sub.add_parser("count", help="parameter and FLOP accounting of one architecture")
    count.add_argument("--d-model", type=int, required=True)
    count.add_argument("--n-layers", type=int, required=True)
    count.add_argument("--n-heads", type=int, required=True)
    count.add_argument("--d-ff", type=int, required=True, help="expert width (SwiGLU hidden size)")
    count.add_argument("--n-experts", type=int, default=1)
    count.add_argument("--top-k", type=int, default=1)
    count.add_argument("--vocab", type=int, default=99574)
    count.add_argument("--n-kv-heads", type=int, default=None)
    count.add_argument("--seq-len", type=int, default=2048)
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
    axes.add_argument("--n-layers", type=int, nargs="+")
    axes.add_argument("--d-model", type=int, nargs="+")
    axes.add_argument("--n-experts", type=int, nargs="+")
    axes.add_argument("--top-k", type=int, nargs="+")
    axes.add_argument("--granularity", type=float, nargs="+", help="G = d_model / d_ff (default 0.5)")
    axes.add_argument("--head-dim", type=int, help="n_heads = d_model / head_dim (default 128)")
    axes.add_argument("--vocab", type=int)
    axes.add_argument("--seq-len", type=int)
    axes.add_argument("--n-kv-heads", type=int)
    axes.add_argument("--tied", action="store_true")
    budgets = grid.add_argument_group("constraints")
    budgets.add_argument("--total-params", type=parse_count, help="N_total budget (memory)")
    budgets.add_argument("--active-params", type=parse_count, help="N_active budget (inference)")
    budgets.add_argument("--flops-per-token", type=parse_count, help="training FLOPs per token budget (inference)")
    budgets.add_argument("--tolerance", type=float, default=0.1, help="relative width of each budget (default 0.1)")
    budgets.add_argument("--compute", type=parse_count, nargs="+", default=[], help="training budgets C (isoFLOP)")
    budgets.add_argument("--tokens", type=parse_count, help="tokens per run when no --compute")
    grid.add_argument("--seed", type=int, default=0)
    grid.add_argument("--name", help="sweep name (default: the preset's, else 'sweep')")
    grid.add_argument("--out", help="write the sweep YAML here")
    grid.set_defaults(func=grid_handler)


def count_handler(args: argparse.Namespace) -> int:
    arch = Architecture(
        d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, d_ff=args.d_ff,
        n_experts=args.n_experts, top_k=args.top_k, vocab_size=args.vocab, n_kv_heads=args.n_kv_heads,
        seq_len=args.seq_len, tied_embeddings=args.tied,
    )
    summary = arch.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    width = max(map(len, summary))
    for key, value in summary.items():
        shown = f"{value:,}  ({human(value)})" if isinstance(value, int) else f"{value:.4g}"
        print(f"{key.ljust(width)}  {shown}")
    return 0


_AXES = ("n_layers", "d_model", "n_experts", "top_k", "granularity", "head_dim", "vocab", "seq_len", "n_kv_heads")


def _space(args: argparse.Namespace) -> GridSpace:
    if args.d_model is None or args.n_layers is None:
        raise MoescaleError("plan grid: give --preset, or at least --d-model and --n-layers")
    given = {
        "n_layers": args.n_layers, "d_model": args.d_model, "n_experts": args.n_experts, "top_k": args.top_k,
        "granularity": args.granularity, "head_dim": args.head_dim, "vocab_size": args.vocab,
        "seq_len": args.seq_len, "n_kv_heads": args.n_kv_heads,
    }
    return GridSpace(**{k: v for k, v in given.items() if v is not None}, tied_embeddings=args.tied)


def grid_handler(args: argparse.Namespace) -> int:
    if args.preset:
        axes = [f"--{a.replace('_', '-')}" for a in _AXES if getattr(args, a) is not None] + (["--tied"] if args.tied else [])
        if axes:
            raise MoescaleError(f"plan grid: --preset fixes the grid; drop {', '.join(axes)}")
    constraints = Constraints(
        total_params=args.total_params, active_params=args.active_params, flops_per_token=args.flops_per_token,
        tolerance=args.tolerance, compute=tuple(args.compute), tokens=args.tokens,
    )
    sweep = plan(args.preset or _space(args), constraints, name=args.name, seed=args.seed)
    print(sweep.table())
    if args.out:
        sweep.to_yaml(args.out)
        print(f"wrote {args.out}")
    return 0
