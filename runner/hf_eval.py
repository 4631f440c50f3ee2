"""Evaluation of a run through EleutherAI's lm-evaluation-harness (``lm_eval``), written back as evals rows.

The run's model is exported in memory (``runner.hf.to_hf_model``, the exact transformers
model) and handed to lm-eval's ``HFLM``. Our synthetic tasks become local lm-eval tasks:
``write_local_tasks`` writes, per task of the run's corpus, ``moescale_<task>.jsonl``
({"prompt", "answer"} as text, decoded by the run's tokenizer) and ``moescale_<task>.yaml``
(``dataset_path: json`` over that file, so nothing is downloaded; ``output_type:
loglikelihood``, metric ``acc``; the target is " " + answer, as lm-eval adds no delimiter there). lm-eval's ``acc`` of a loglikelihood task is its
``is_greedy``: every answer token is the argmax given the prompt and the answer's previous
tokens, which is exactly our evaluator's exact match (``runner.evaluate.score_answers``), so the
two accuracies are equal on the same problems.

Any other task lm-eval knows (its registry, or YAML files of the user's under
``include_path``, e.g. a local copy of GSM8K in lm-eval's format) runs the same way. Results
are appended to the run directory's evals.jsonl at the run's last step: task = lm-eval's task
name, metric ``accuracy`` for ``acc`` (else lm-eval's metric name, with its filter when not
``none``), task_kind ``reasoning``/``memorization`` for our tasks and ``task_kind`` otherwise.
A rerun replaces the rows it wrote before.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from runner.data.tokenizer import Tokenizer
from runner.hf import hf_tokenizer, run_model, to_hf_model
from runner.train import TOKENIZER_FILE
from scaling.errors import MoescaleError
from scaling.files import atomic_write
from scaling.rundir import EVALS_FILE, check_eval_row, read_jsonl_rows, read_run_dir

TASK_PREFIX = "moescale_"


def run_train_config(run_dir: Path):
    """The TrainConfig a run (or, for a GRPO run, its base run) was trained under, from its run.json."""
    from runner.config import TrainConfig

    config = read_run_dir(run_dir, warn=False).run["config"]
    if config.get("stage") == "grpo":  # a post-trained run (runner.hf_grpo): its base run's recipe and corpus
        config = config["base_config"]
    return TrainConfig.from_dict(config, source=f"{run_dir}/run.json")


def run_tokenizer(run_dir: Path) -> Tokenizer:
    """The run's tokenizer (tokenizer.json); one-line MoescaleError when the run has none."""
    if not (run_dir / TOKENIZER_FILE).is_file():
        raise MoescaleError(f"{run_dir}: no {TOKENIZER_FILE}; lm-eval needs a run trained on text (synthetic or text data)")
    return Tokenizer.load(run_dir / TOKENIZER_FILE)


def local_problems(run_dir: str | Path, max_examples: int | None = None) -> dict:
    """{task name: (kind, prompts, answers)} of the run's synthetic corpus, as token ids; the same
    examples ``runner.evaluate.evaluate`` scores with ``max_examples`` (evenly spaced)."""
    from runner.data import load_corpus
    from runner.evaluate import example_subset

    config = run_train_config(Path(run_dir))
    corpus = load_corpus(config.data, config.seed)
    out = {}
    for task in corpus.tasks:
        idx = example_subset(len(task), max_examples)
        out[task.name] = (task.kind, [task.prompts[i] for i in idx], [task.answers[i] for i in idx])
    return out


def write_local_tasks(run_dir: str | Path, out_dir: str | Path, max_examples: int | None = None) -> dict[str, str]:
    """Write the run's synthetic tasks as lm-eval tasks into ``out_dir``; return {lm-eval task name: task_kind}."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    tok = run_tokenizer(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for name, (kind, prompts, answers) in local_problems(run_dir, max_examples).items():
        task = TASK_PREFIX + name
        lines = [json.dumps({"prompt": tok.decode(p), "answer": tok.decode(a)}) for p, a in zip(prompts, answers)]
        atomic_write(out_dir / f"{task}.jsonl", "\n".join(lines) + "\n")
        yaml_text = (
            f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str((out_dir / f'{task}.jsonl').resolve()))}\n"
            "test_split: test\noutput_type: loglikelihood\ndoc_to_text: \"{{prompt}}\"\ndoc_to_target: \" {{answer}}\"\n"
            "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
            f"metadata:\n  version: 1.0\n  task_kind: {kind}\n"
        )  # fmt: skip
        atomic_write(out_dir / f"{task}.yaml", yaml_text)
        kinds[task] = kind
    return kinds


def _rows(results: dict, kinds: dict[str, str], default_kind: str) -> list[dict]:
    rows = []
    for task, metrics in results["results"].items():
        n = (results.get("n-samples") or {}).get(task, {}).get("effective")
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            metric, filt = key.split(",", 1)
            name = "accuracy" if metric == "acc" else metric
            rows.append({"task": task, "task_kind": kinds.get(task, default_kind),
                         "metric": name if filt == "none" else f"{name}_{filt}", "value": float(value), "n_examples": n})
    return rows


def run_harness(run_dir: str | Path, tasks: list[str] | None = None, *, include_path: str | Path | None = None,
                limit: int | None = None, max_examples: int | None = None, batch_size: int = 16, device: str = "cpu",
                work_dir: str | Path | None = None, log_samples: bool = False) -> tuple[dict, dict[str, str]]:
    """lm-eval's ``simple_evaluate`` results for the finished run ``run_dir`` on ``tasks`` (our synthetic task
    names such as ``arith``, or any lm-eval task name; None: all our synthetic tasks), and {our lm-eval
    task: task_kind}. Our tasks are written to ``work_dir`` (default ``run_dir/lm_eval_tasks``) with at
    most ``max_examples`` examples each; ``limit`` caps every task; ``log_samples`` keeps per-example results."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise MoescaleError(f"lm-eval is not installed: pip install -e '.[hf]' ({exc})") from None
    run_dir = Path(run_dir)
    model = run_model(run_dir)
    tok = hf_tokenizer(run_tokenizer(run_dir))
    work = Path(work_dir) if work_dir is not None else run_dir / "lm_eval_tasks"
    ours = write_local_tasks(run_dir, work, max_examples)
    names = [TASK_PREFIX + t if TASK_PREFIX + t in ours else t for t in (tasks or list(ours))]
    paths = [str(work)] + ([str(include_path)] if include_path is not None else [])
    manager = TaskManager(include_path=paths, include_defaults=False)  # indexing lm-eval's own tasks takes ~30 s
    if any(t not in manager.all_tasks for t in names):
        manager = TaskManager(include_path=paths)
    unknown = [t for t in names if t not in manager.all_tasks]
    if unknown:
        raise MoescaleError(f"lm-eval: unknown task(s) {', '.join(unknown)}; ours: {', '.join(t[len(TASK_PREFIX):] for t in ours)}")
    # prefix_token_id: our vocabulary has no BOS/EOS; lm-eval needs some id (only for empty contexts, which ours are not)
    lm = HFLM(pretrained=to_hf_model(model), tokenizer=tok, batch_size=batch_size, device=device,
              max_length=model.config.arch.seq_len, prefix_token_id=tok.pad_token_id or 0)  # fmt: skip
    results = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=manager, limit=limit, bootstrap_iters=0,
                                      log_samples=log_samples, random_seed=0, numpy_random_seed=0, torch_random_seed=0)  # fmt: skip
    return results, ours


def harness_evaluate(run_dir: str | Path, tasks: list[str] | None = None, *, task_kind: str = "other", **kwargs) -> list[dict]:
    """``run_harness``'s results as evals rows (task, task_kind, metric, value, n_examples); ``task_kind``
    is that of the tasks that are not ours (memorization, reasoning or other)."""
    results, ours = run_harness(run_dir, tasks, **kwargs)
    return _rows(results, ours, task_kind)


def record_evals(run_dir: str | Path, rows: list[dict]) -> int:
    """Append ``rows`` to the run's evals.jsonl at its last logged step and tokens, replacing the rows of
    an earlier call with the same (step, task, metric); the file is rewritten atomically. Returns the step."""
    run_dir = Path(run_dir)
    metrics = read_run_dir(run_dir, warn=False).metrics
    if not len(metrics):
        raise MoescaleError(f"{run_dir}: no metrics logged; nothing to attach the evaluation to")
    step = int(metrics["step"].max())
    tokens = int(metrics.loc[metrics["step"] == step, "tokens"].iloc[0])
    path = run_dir / EVALS_FILE
    new = []
    for row in rows:
        full = {"step": step, "tokens": tokens, **row}
        check_eval_row(full, f"{path}: lm-eval row")
        new.append(full)
    keys = {(r["step"], r["task"], r["metric"]) for r in new}
    kept = [obj for _, obj in read_jsonl_rows(path, warn=False, messages=[])
            if (obj.get("step"), obj.get("task"), obj.get("metric")) not in keys]  # fmt: skip
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept + new))
    return step


def pass_at_k_rows(run_dir: str | Path, ks=(1, 4, 16, 64), *, temperature: float = 1.0, seed: int = 0,
                   max_examples: int | None = None) -> list[dict]:
    """Test-time compute: per reasoning task of the run's corpus and per k, ``pass_at_<k>`` (some of k answers
    sampled at ``temperature`` is exact) and ``majority_at_<k>`` (the most frequent of the k is exact), from
    ``runner.evaluate.sampled_accuracy`` seeded by ``seed`` (Nakamura et al. 2025 vary k the same way); works
    on base and GRPO runs. Temperature 0 makes both the greedy exact match."""
    from runner.evaluate import sampled_accuracy

    model = run_model(run_dir)
    rows = []
    for name, (kind, prompts, answers) in local_problems(run_dir, max_examples).items():
        if kind != "reasoning":
            continue
        for k in ks:
            p, m, _ = sampled_accuracy(model, prompts, answers, int(k), temperature, seed=seed)
            for metric, value in ((f"pass_at_{k}", p), (f"majority_at_{k}", m)):
                rows.append({"task": name, "task_kind": kind, "metric": metric, "value": float(value), "n_examples": len(prompts)})
    return rows


def evaluate_run(run_dir: str | Path, tasks: list[str] | None = None, **kwargs) -> tuple[int, list[dict]]:
    """``harness_evaluate`` then ``record_evals``: the API of ``moescale eval --harness lm-eval``; returns
    (the step the rows were recorded at, the rows)."""
    rows = harness_evaluate(run_dir, tasks, **kwargs)
    return record_evals(run_dir, rows), rows


__all__ = ["TASK_PREFIX", "evaluate_run", "harness_evaluate", "local_problems", "pass_at_k_rows", "record_evals", "run_harness", "write_local_tasks"]
