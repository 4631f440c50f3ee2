"""`moescale sweep SWEEP.yaml --store PATH --out runs/`: train a planned sweep into the store.

Thin: parses arguments and calls ``runner.sweep.run_sweep`` / ``sweep_status`` (imported
lazily, so ``scaling`` itself never imports torch).
"""

from __future__ import annotations

import argparse

from scaling.cli import positive_int
from scaling.errors import MoescaleError


def register(sub) -> None:
    parser = sub.add_parser(
        "sweep",
        help="train every run of a planned sweep (resumable) and ingest each into the store",
        description="Train the runs of a sweep file (from `moescale plan grid --out`) into --out and ingest each "
        "finished run into --store as soon as it ends. Rerunning skips finished runs and resumes interrupted ones "
        "from their checkpoints; a failed run is retried once. --set key=value overrides a training setting of "
        "every run (over the sweep file's train: block); the run_id covers every setting, so a changed setting "
        "trains new runs. Every run's config (data, device, memory), the store and the executor are checked before "
        "the first run starts.",
    )
    parser.add_argument("sweep", metavar="SWEEP.yaml", help="sweep file from `moescale plan grid --out`")
    parser.add_argument("--store", default=None, metavar="PATH",
                        help="DuckDB store file (default: $MOESCALE_STORE or ./moescale.duckdb)")
    parser.add_argument("--out", default="runs", metavar="DIR", help="folder of run directories (default: runs)")
    parser.add_argument("--workers", type=int, default=None,
                        help="local: worker processes (default 1); slurm: jobs in flight (default: all)")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training setting for every run, e.g. --set lr=3e-3 (repeatable; data.KEY=VALUE "
                        "sets one key of the data spec)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch threads per local worker, at least 1 (default: CPUs / workers)")
    parser.add_argument("--retries", type=int, default=1, help="extra attempts for a failed run (default 1)")
    parser.add_argument("--quiet", action="store_true", help="plain log lines instead of the live display")
    parser.add_argument("--status", action="store_true", help="print a table of every run's state; run nothing")
    slurm = parser.add_argument_group("slurm (with --executor slurm, through submitit)")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--time", type=int, default=60, metavar="MINUTES", help="time limit per job (default 60)")
    slurm.add_argument("--gpus-per-node", type=int, default=0)
    slurm.add_argument("--cpus-per-task", type=int, default=None)
    slurm.add_argument("--mem", type=float, default=None, metavar="GB", help="memory per job in GB")
    slurm.add_argument("--cluster", default=None,
                       help=argparse.SUPPRESS)  # "local"/"debug": submitit's stand-ins for Slurm (tests)
    parser.set_defaults(func=sweep_handler)


def sweep_handler(args: argparse.Namespace) -> int:
    from scaling.store import default_path

    try:
        from runner import sweep as runner_sweep
    except ImportError as exc:
        raise MoescaleError(f"moescale sweep needs the runner extra (torch): pip install -e '.[runner]' ({exc})") from None

    store = args.store or default_path()
    overrides = runner_sweep.parse_overrides(args.overrides)
    if args.status:
        return print_status(runner_sweep.sweep_status(args.sweep, store, args.out, overrides=overrides))
    if args.retries < 0:
        raise MoescaleError(f"--retries must be >= 0, got {args.retries}")
    slurm = None
    if args.executor == "slurm":
        slurm = runner_sweep.SlurmOptions(
            partition=args.partition, time=args.time, gpus_per_node=args.gpus_per_node,
            cpus_per_task=args.cpus_per_task, mem_gb=args.mem, cluster=args.cluster,
        )
    result = runner_sweep.run_sweep(
        args.sweep, store, args.out, workers=args.workers, executor=args.executor, overrides=overrides,
        quiet=args.quiet, retries=args.retries, threads=args.threads, slurm=slurm,
    )
    print(result)
    return 0 if result.ok else 1


def print_status(frame) -> int:
    """Print the status table (rich on a terminal, plain text otherwise) and the counts."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    shown = ["run_id", "n_experts", "top_k", "tokens", "state", "step", "progress", "loss", "in_store"]
    for col in shown:
        table.add_column(col, justify="left" if col in ("run_id", "state") else "right")
    for row in frame.itertuples(index=False):
        table.add_row(
            row.run_id, str(row.n_experts), str(row.top_k), f"{row.tokens:,}", row.state,
            "-" if row.step is None or row.step != row.step else str(int(row.step)), f"{100 * row.progress:.0f}%",
            "-" if row.loss is None or row.loss != row.loss else f"{row.loss:.4g}", "yes" if row.in_store else "no",
        )
    console = Console(width=200) if not Console().is_terminal else Console()
    console.print(table)
    counts = frame["state"].value_counts()
    parts = [f"{counts[s]} {s}" for s in ("planned", "running", "interrupted", "finished", "diverged", "failed") if s in counts]
    print(f"sweep {frame.attrs.get('sweep')}: {len(frame)} runs: {', '.join(parts)}; {int(frame['in_store'].sum())} in store")
    return 0
