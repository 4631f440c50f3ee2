"""GRPO post-training of a finished run through TRL's ``GRPOTrainer``, into a new run directory.

GRPO (Shao et al. 2024, arXiv 2402.03300): per prompt, ``num_generations`` completions are
sampled at ``temperature``; each gets a reward r_i, here the verifiable exact match of the
answer (1 when the completion's first words are the answer's words, else 0); the advantage is
A_i = (r_i - mean(r)) / std(r) over the group; the policy maximizes the clipped importance-
weighted advantage minus beta * KL(policy || base model). TRL implements it; nothing here
re-implements the loss.

Problems: the reasoning tasks of the run's synthetic corpus (``pointer``, ``arith``), split by
index: even examples train, odd examples are held out. The base run's model is exported
(``runner.hf.export``) into the new run directory's ``base_model/``, which TRL loads (its
reference model for the KL term too); completions are as long as the task's longest answer.

The new run directory (``RunWriter``) holds run.json with ``config = {"stage": "grpo",
"base_run_id", "base_config", "grpo": the settings}``, metrics.jsonl (per logged step:
reward, reward_std, kl, loss) and evals.jsonl: per task at step 0 (the base model) and at the
last step, ``accuracy`` (greedy exact match, ``runner.evaluate.score_answers``) and
``mean_reward`` (mean exact match of ``eval_samples`` answers sampled at ``temperature``) on
the held-out problems. It logs no val_loss, so the loss fits (which need one) leave it out.
The post-trained model is saved in ``model/`` (transformers format; ``runner.hf.run_model`` and
``moescale eval`` read it) with the base run's tokenizer.json beside run.json. TRL checkpoints
every ``checkpoint_interval`` steps (``grpo_checkpoints/``); an interrupted run resumes from the
last one, dropping the lines logged after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from runner.hf import export, hf_tokenizer
from runner.hf_eval import run_tokenizer, run_train_config
from runner.model import Transformer
from runner.train import TOKENIZER_FILE
from scaling.errors import MoescaleError, first_line
from scaling.rundir import RunWriter, check_run_id, read_run_file, run_status

TASKS = ("pointer", "arith")
CHECKPOINTS = "grpo_checkpoints"


@dataclass(frozen=True)
class GRPOSettings:
    """GRPO settings: steps (optimizer steps), prompts_per_step (distinct prompts per step), num_generations
    (completions per prompt, the group), lr (AdamW, linear decay), beta (KL weight), temperature, eval_samples
    (samples per held-out problem for mean_reward), max_examples (problems per task, before the split), seed."""

    steps: int = 200
    prompts_per_step: int = 8
    num_generations: int = 8
    lr: float = 1e-3
    beta: float = 0.04
    temperature: float = 1.0
    eval_samples: int = 8
    max_examples: int | None = 512
    checkpoint_interval: int = 50
    seed: int = 0

    def run_id(self, base_run_id: str) -> str:
        """``<base>-grpo-<10 hex of sha1 of the settings>`` (checkpoint_interval left out)."""
        payload = {k: v for k, v in dataclasses.asdict(self).items() if k != "checkpoint_interval"}
        return f"{base_run_id}-grpo-{hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]}"


def _problems(base_dir: Path, max_examples: int | None):
    from runner.hf_eval import local_problems

    tok = run_tokenizer(base_dir)
    out = {}
    for name, (kind, prompts, answers) in local_problems(base_dir, max_examples).items():
        if name in TASKS:
            text = [(tok.decode(p), tok.decode(a)) for p, a in zip(prompts, answers)]
            out[name] = {"train": text[0::2], "held_out": (prompts[1::2], answers[1::2])}
    if not out:
        raise MoescaleError(f"{base_dir}: the run's corpus has no reasoning task ({', '.join(TASKS)}) to post-train on")
    return out


def exact_reward(completions, answer, **_) -> list[float]:
    """1.0 when a completion's first words are the answer's words, else 0.0 (the verifiable reward)."""
    return [float(c.split()[: len(a.split())] == a.split()) for c, a in zip(completions, answer)]


def _held_out_rows(model: Transformer, problems: dict, s: GRPOSettings) -> list[dict]:
    from runner.evaluate import sampled_accuracy, score_answers

    rows = []
    for name, p in problems.items():
        prompts, answers = p["held_out"]
        _, exact = score_answers(model, prompts, answers)
        *_, mean_reward = sampled_accuracy(model, prompts, answers, s.eval_samples, s.temperature, seed=s.seed)
        for metric, value in (("accuracy", exact.mean()), ("mean_reward", mean_reward)):
            rows.append({"task": name, "task_kind": "reasoning", "metric": metric, "value": float(value), "n_examples": len(prompts)})
    return rows


def posttrain(base_dir: str | Path, out: str | Path, settings: GRPOSettings = GRPOSettings(), *, quiet: bool = True) -> tuple[str, Path]:
    """GRPO-post-train the finished run ``base_dir`` into ``out/<settings.run_id(base run_id)>``; return
    (status, run directory). A finished post-training is left as it is; an interrupted one resumes."""
    try:
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as exc:
        raise MoescaleError(f"GRPO needs TRL: pip install -e '.[hf]' ({exc})") from None

    base_dir = Path(base_dir)
    base = read_run_file(base_dir)
    if base is None or base.get("status") != "finished":
        raise MoescaleError(f"{base_dir}: not a finished run (run.json status {None if base is None else base.get('status')!r})")
    config = run_train_config(base_dir)
    run_id = check_run_id(settings.run_id(base["run_id"]))
    run_dir = Path(out) / run_id
    status = run_status(run_dir)
    if status == "finished":
        return status, run_dir
    problems = _problems(base_dir, settings.max_examples)
    ckpts = sorted((run_dir / CHECKPOINTS).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    resume = ckpts[-1] if status is not None and ckpts else None
    run_config = {"stage": "grpo", "base_run_id": base["run_id"], "base_config": base["config"], "grpo": dataclasses.asdict(settings)}
    if resume is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        writer = RunWriter(run_dir, run_id, run_config, sweep=base.get("sweep"), architecture=config.architecture,
                           tokens_planned=0, seed=settings.seed)  # fmt: skip
        export(base_dir, run_dir / "base_model")
        shutil.copy(base_dir / TOKENIZER_FILE, run_dir / TOKENIZER_FILE)
        from runner.hf import load

        for row in _held_out_rows(load(run_dir / "base_model"), problems, settings):
            writer.log_eval(0, 0, **row)
    else:
        writer = RunWriter.reopen(run_dir, through_step=int(resume.name.split("-")[1]))
    writer.set_status("running")

    tok = hf_tokenizer(run_tokenizer(base_dir))
    tok.padding_side, tok.eos_token = "left", "<sep>"  # no EOS in our vocabulary; completions have a fixed length
    rows = [{"prompt": q, "answer": a} for p in problems.values() for q, a in p["train"]]
    longest = max(len(a.split()) for p in problems.values() for _, a in p["train"])
    args = GRPOConfig(
        output_dir=str(run_dir / CHECKPOINTS), max_steps=settings.steps, learning_rate=settings.lr, beta=settings.beta,
        num_generations=settings.num_generations, per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
        max_completion_length=longest, temperature=settings.temperature, seed=settings.seed, logging_steps=1,
        save_strategy="steps", save_steps=settings.checkpoint_interval, report_to=[], use_cpu=not torch.cuda.is_available(),
        bf16=False, disable_tqdm=quiet,
    )  # fmt: skip

    tokens = {"last": 0}  # completion + prompt tokens seen so far (TRL's num_tokens)

    class Log(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            metrics = {k: float(logs[k]) for k in ("reward", "reward_std", "kl", "loss") if logs and k in logs}
            if metrics:
                tokens["last"] = int(float(logs.get("num_tokens", tokens["last"])))
                writer.log(state.global_step, tokens["last"], **metrics)

    try:
        trainer = GRPOTrainer(model=str(run_dir / "base_model"), reward_funcs=exact_reward, args=args,
                              train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[Log()])  # fmt: skip
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        trainer.save_model(str(run_dir / "model"))  # the post-trained model, as transformers reads it
        from runner.hf import load

        for row in _held_out_rows(load(run_dir / "model"), problems, settings):
            writer.log_eval(settings.steps, tokens["last"], **row)
    except Exception as exc:  # recorded, then raised: the run directory says why it stopped
        writer.finish("failed", first_line(exc, with_type=True))
        raise
    writer.finish("finished")
    return "finished", run_dir


__all__ = ["GRPOSettings", "TASKS", "exact_reward", "posttrain"]
