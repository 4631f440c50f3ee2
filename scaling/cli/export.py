"""The Hugging Face tools: `moescale export` (a run as a transformers checkpoint, runner.hf), `moescale eval`
(lm-evaluation-harness and pass@k into evals rows, runner.hf_eval), `moescale posttrain` (GRPO via TRL, runner.hf_grpo)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from scaling.errors import MoescaleError

GRPO_INTS = ("steps", "prompts_per_step", "num_generations", "eval_samples", "max_examples", "checkpoint_interval", "seed")
GRPO_FLOATS = ("lr", "beta", "temperature")


def _hf_module(name: str, command: str, needs: str):
    """The runner module ``name``, or a one-line MoescaleError saying that ``moescale command`` needs the hf extra."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MoescaleError(f"moescale {command} needs the hf extra ({needs}): pip install -e '.[hf]' ({exc})") from None


def register(sub) -> None:
    """Add ``moescale export``, ``moescale eval`` and ``moescale posttrain``."""
    parser = sub.add_parser(
        "export",
        help="write a finished run as a transformers checkpoint",
        description="Write the finished run RUN_DIR (run.json, checkpoint.pt, tokenizer.json) as a Hugging Face "
        "transformers checkpoint in DIR: safetensors weights, config.json, generation_config.json and the "
        "tokenizer. Dense runs load as LlamaForCausalLM and top-k > 1 MoE runs as MixtralForCausalLM with no "
        "code from us; top-1 MoE runs (Switch-style gates) use our MoescaleMoeForCausalLM: `import runner.hf` "
        "before AutoModelForCausalLM.from_pretrained(DIR). Needs the hf extra: pip install -e '.[hf]'.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    parser.add_argument("--out", required=True, metavar="DIR", help="the checkpoint folder to write (must not exist)")
    parser.set_defaults(func=handler)

    from scaling.cli import positive_int

    ev = sub.add_parser(
        "eval",
        help="evaluate a finished run (lm-evaluation-harness, pass@k) into its evals",
        description="Evaluate the finished run RUN_DIR with EleutherAI's lm-evaluation-harness and append the "
        "results to RUN_DIR/evals.jsonl at the run's last step (task, task_kind, metric, value, n_examples; a "
        "rerun replaces them), so `moescale ingest` puts them in the store. The run's synthetic tasks (facts, "
        "pointer, arith) are written as local lm-eval tasks moescale_<task> (YAML over JSONL, no download); "
        "any other task lm-eval knows, or finds under --include-path, runs the same way. --samples K adds "
        "pass_at_K and majority_at_K (test-time compute) for base and GRPO runs alike.",
    )
    ev.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    ev.add_argument("--harness", choices=["lm-eval"], help="evaluate through this harness")
    ev.add_argument("--samples", type=positive_int, nargs="+", metavar="K", help="test-time compute: pass_at_K and "
                    "majority_at_K of every reasoning task, K answers sampled per problem (e.g. 1 4 16 64)")
    ev.add_argument("--temperature", type=float, default=1.0, help="of --samples (default 1)")
    ev.add_argument("--seed", type=int, default=0, help="of --samples (default 0)")
    ev.add_argument("--tasks", nargs="+", metavar="TASK", help="our task names (arith, ...) or lm-eval task names "
                    "(default: all the run's synthetic tasks)")
    ev.add_argument("--include-path", metavar="DIR", help="a folder of your own lm-eval task YAML files")
    ev.add_argument("--task-kind", choices=["memorization", "reasoning", "other"], default="other",
                    help="task_kind of the tasks that are not ours (default other)")
    ev.add_argument("--max-examples", type=positive_int, help="examples per synthetic task (default all)")
    ev.add_argument("--limit", type=positive_int, help="examples per task, any task (lm-eval's --limit)")
    ev.add_argument("--batch-size", type=positive_int, default=16, help="lm-eval batch size (default 16)")
    ev.set_defaults(func=eval_handler, long_running=True)

    post = sub.add_parser(
        "posttrain",
        help="GRPO post-training of a finished run (TRL) into a new run directory",
        description="Post-train the finished run RUN_DIR with GRPO (TRL's GRPOTrainer) on its reasoning tasks with "
        "the exact-match reward, into OUT/<run_id>-grpo-<hash> (run.json config: stage grpo, base_run_id, the "
        "settings; metrics: reward, reward_std, kl, loss; evals: held-out accuracy and mean_reward at step 0 and "
        "at the end). Rerunning resumes an interrupted post-training from its last checkpoint.",
    )
    post.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    post.add_argument("--method", required=True, choices=["grpo"])
    post.add_argument("--out", default="runs", help="parent directory of run directories (default: runs/)")
    from scaling.cli import non_negative_int

    for name in GRPO_INTS + GRPO_FLOATS:  # defaults: runner.hf_grpo.GRPOSettings (not imported here: it needs torch)
        post.add_argument("--" + name.replace("_", "-"), metavar="X", help="GRPO setting (see runner.hf_grpo.GRPOSettings)",
                          type=float if name in GRPO_FLOATS else non_negative_int if name == "seed" else positive_int)
    post.set_defaults(func=posttrain_handler, long_running=True)


def handler(args) -> int:
    """Export ``args.run_dir`` into ``args.out`` and say which transformers class loads it."""
    # torch and transformers are imported here only, never by scaling at import
    out = _hf_module("runner.hf", "export", "torch, transformers").export(args.run_dir, args.out)
    config = json.loads((out / "config.json").read_text())
    tokenizer = "" if (out / "tokenizer.json").is_file() else "; no tokenizer: the run was trained on pre-tokenized data"
    print(f"wrote {out} ({', '.join(config.get('architectures') or [])}, model_type {config['model_type']}{tokenizer})")
    return 0


def eval_handler(args) -> int:
    """Evaluate ``args.run_dir`` (lm-eval and/or pass@k), record the rows in its evals.jsonl and print them."""
    hf_eval = _hf_module("runner.hf_eval", "eval", "torch, transformers, lm-eval")
    if not (args.harness or args.samples):
        raise MoescaleError("moescale eval: give --harness lm-eval, --samples K ..., or both")
    rows = []
    if args.harness:
        rows += hf_eval.harness_evaluate(args.run_dir, args.tasks, include_path=args.include_path, task_kind=args.task_kind,
                                 max_examples=args.max_examples, limit=args.limit, batch_size=args.batch_size)
    if args.samples:
        rows += hf_eval.pass_at_k_rows(args.run_dir, args.samples, temperature=args.temperature, seed=args.seed,
                               max_examples=args.max_examples)  # fmt: skip
    step = hf_eval.record_evals(args.run_dir, rows)
    for r in rows:
        print(f"{r['task']:<24} {r['task_kind']:<13} {r['metric']:<16} {r['value']:.4f}  (n={r['n_examples']})")
    print(f"recorded {len(rows)} rows in {Path(args.run_dir) / 'evals.jsonl'} at step {step}")
    return 0


def posttrain_handler(args) -> int:
    """GRPO-post-train ``args.run_dir`` into ``args.out`` and print the new run directory (last line)."""
    hf_grpo = _hf_module("runner.hf_grpo", "posttrain", "torch, transformers, trl")
    settings = hf_grpo.GRPOSettings(**{k: getattr(args, k) for k in GRPO_INTS + GRPO_FLOATS if getattr(args, k) is not None})
    status, run_dir = hf_grpo.posttrain(args.run_dir, args.out, settings)
    print(f"{status}: {run_dir}")
    return 0 if status == "finished" else 1
