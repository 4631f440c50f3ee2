"""`moescale train RUN.yaml --out runs/`: one training run into a run directory (runner.train)."""

from __future__ import annotations

from scaling.errors import MoescaleError


def register(sub) -> None:
    """Add ``moescale train`` (also ``python -m runner.train``, which calls the same parser)."""
    from scaling.cli import positive_int

    parser = sub.add_parser(
        "train",
        help="train one model into a run directory",
        description="Train the TrainConfig of RUN.yaml into OUT/<run_id> (run.json, metrics.jsonl, evals.jsonl, "
        "checkpoint.pt). Rerunning resumes an interrupted run from its last checkpoint; a finished run is left as "
        "it is. Several processes: torchrun --nproc_per_node N -m runner.train RUN.yaml --out runs/.",
    )
    parser.add_argument("config", metavar="RUN.yaml", help="the run's training config (see data/cpu-tiny-run.yaml)")
    parser.add_argument("--out", default="runs", help="parent directory of run directories (default: runs/)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the last checkpoint (also the default)")
    again.add_argument("--restart", action="store_true", help="start an unfinished run over instead of resuming")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: $OMP_NUM_THREADS, else half the cores, at most 4)")
    parser.set_defaults(func=handler)


def handler(args) -> int:
    """Train the RUN.yaml of ``args`` and print a summary; exit code 0 when finished, 1 otherwise."""
    try:  # torch is imported here only, never by scaling at import
        from runner.train import is_main_process, summary, train_file
    except ImportError as exc:
        raise MoescaleError(f"moescale train needs the runner extra (torch): pip install -e '.[runner]' ({exc})") from None

    status, run_dir = train_file(args.config, args.out, resume=not args.restart, quiet=args.quiet, threads=args.threads)
    if is_main_process() and not args.quiet:
        print(summary(run_dir))
    return 0 if status == "finished" else 1
