"""One training run into a run directory: config, data stream, schedule, checkpoints, resume, DDP.

A plain loop, as nanoGPT's ``train.py`` is: build the corpus and the model, then per step
``grad_accum`` micro-batches of forward + backward, clip, AdamW, log, evaluate, checkpoint.

- Optimizer: AdamW (Loshchilov & Hutter 2019) with beta = (0.9, 0.95), weight decay 0.1 on
  matrices only (embeddings, projections, router, experts, head; not the norms), gradient
  clipping at global norm 1.0.
- Settings and schedule: ``runner.config.TrainConfig`` (linear warm-up, cosine decay to
  ``min_lr_ratio`` of the peak, Nakamura et al. 2025).
- Data: the training stream is read sequentially (``runner.data.stream.Stream``); its position
  is saved in every checkpoint, so a resumed run sees exactly the batches it would have seen.
- Loss of a step: the masked cross-entropy averaged over every target token of the global
  batch (micro-batches weighted by their target counts, so grad accumulation and DDP give
  the same objective as one big batch) + aux_loss_coef * load-balancing loss + z_loss_coef *
  router z-loss, each averaged over micro-batches.
- Checkpoints (``runner.checkpoint``; ``checkpoint.pt``, written atomically): model, optimizer,
  scheduler, RNG states, step and stream position. Resume loads the last one
  and ``RunWriter.reopen`` drops the lines logged after its step, so a killed and resumed run
  ends with the same metrics and weights as an uninterrupted one (bitwise on CPU with the same
  thread count).
- DDP: ``torchrun --nproc_per_node N -m runner.train RUN.yaml --out runs/``; gloo on CPU, NCCL
  on CUDA; every rank reads its share of the global batch; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runner.checkpoint import CHECKPOINT_FILE, load_checkpoint, restore_checkpoint, rng_state, save_checkpoint
from runner.config import DTYPES, NON_RESULT_KEYS, TrainConfig, check_trainable
from runner.data.stream import Stream, data_stats, unigram_entropy
from runner.model import peak_flops
from scaling.errors import MoescaleError, first_line

TOKENIZER_FILE = "tokenizer.json"


# ----------------------------------------------------------------------------- training


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _distributed() -> _Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("MOESCALE_DDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _device(config: TrainConfig, d: _Dist) -> torch.device:
    """The run's device (``check_trainable`` has checked that it exists)."""
    name = config.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and d.world > 1:
        name = f"cuda:{d.local_rank}"
    return torch.device(name)


def default_threads() -> tuple[int, str]:
    """(threads, why) for a run given no ``--threads``: $OMP_NUM_THREADS when set to a positive
    integer, else half of the CPU cores this process may use (``os.sched_getaffinity``), at least
    1 and at most 4.

    Why not torch's default (every core): on a shared machine a run that takes every core
    competes with the other processes for each one, and one such run took 12x longer than with
    a share (7:44 against 37 s). Why half, at most 4: half leaves room for the other users of a
    shared machine, and the small models this trainer runs on a CPU gain little beyond 4 threads.
    Why not the idle cores (``os.getloadavg``): the count must not change between a run's start
    and its resume, or the resumed run would not repeat the uninterrupted one bit for bit.
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env), "$OMP_NUM_THREADS"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2)), f"half of {cores} cores, at most 4; --threads N to change"


def _autocast(config: TrainConfig, device: torch.device):
    dtype = config.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    if dtype == "bfloat16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        groups, lr=config.peak_lr, betas=(config.beta1, config.beta2), eps=config.eps, foreach=device.type == "cuda"
    )


def _routing_means(layers: list[dict]) -> dict[str, float]:
    """Means over MoE layers of load_cv, router_entropy and the largest expert's share of assignments."""
    if not layers:
        return {}
    cv = float(torch.stack([s["load_cv"].float() for s in layers]).mean())
    ent = float(torch.stack([s["router_entropy"].float() for s in layers]).mean())
    share = float(np.mean([float(s["tokens_per_expert"].max()) / max(1, int(s["tokens_per_expert"].sum())) for s in layers]))
    return {"load_cv": cv, "router_entropy": ent, "max_expert_share": share}


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
    )  # fmt: skip
    progress.start()
    progress.add_task("train", total=total, loss="-", tps="-")
    return progress


def _evaluate(model, corpus, config: TrainConfig, device: torch.device):
    from runner.evaluate import evaluate

    return evaluate(
        model, corpus, n_total=config.architecture.n_total, device=str(device), batch_size=config.eval_batch_size,
        samples=config.eval_samples, temperature=config.eval_temperature, max_examples=config.eval_examples,
    )  # fmt: skip


def train(config: TrainConfig, out: str | Path, *, resume: bool = True, quiet: bool = False, threads: int | None = None,
          corpora=None) -> str:
    """Train ``config`` into ``Path(out) / config.run_id``; return "finished", "diverged" or "failed".

    A finished (or diverged) run directory is left untouched. An interrupted one continues
    from its last checkpoint when ``resume`` (else it starts over, also when its run.json or
    checkpoint is unreadable). Bad input (every check of ``runner.config.check_trainable``,
    ``threads`` < 1, an unreadable run.json or checkpoint when resuming) raises MoescaleError
    before any file is written. ``threads``: torch CPU threads (None: ``default_threads``);
    unless ``quiet``, the first line printed says the device and the threads chosen. A NaN/inf training loss ends the run
    ``diverged`` with its curve kept; any other exception during training ends it ``failed``
    with the error's first line in run.json's ``error``. ``corpora`` (a ``runner.data.CorpusCache``)
    lets a process that trains run after run build a synthetic corpus once.
    """
    from runner.model import seeded_model
    from scaling.rundir import RUN_FILE, RunWriter, check_run_id, discard_run_files, run_status

    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise MoescaleError(f"--threads {threads}: must be a positive integer")
    n_threads, why = (threads, "--threads") if threads is not None else default_threads()
    d = _distributed()
    run_id = check_run_id(config.run_id)
    run_dir = Path(out) / run_id
    status = run_status(run_dir)
    if status in ("finished", "diverged"):
        return status
    unreadable = status is None and (run_dir / RUN_FILE).exists()
    if unreadable and resume:
        raise MoescaleError(f"{run_dir / RUN_FILE}: the interrupted run's run.json is unreadable; rerun with --restart "
                            f"to start the run over")  # fmt: skip
    corpus = check_trainable(config, corpora=corpora, world=d.world)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE) if (resume and status is not None) else None
    torch.set_num_threads(n_threads)
    device = _device(config, d)
    if d.main and not quiet:
        print(f"train {run_id}: {device}, {n_threads} CPU thread{'s' * (n_threads > 1)} ({why})", flush=True)
    model = seeded_model(config.model_config(), config.seed).to(device)
    arch = config.architecture
    T = arch.seq_len
    rank_rows = config.batch_tokens // T // d.world
    micro_rows = rank_rows if config.micro_batch_tokens is None else min(rank_rows, config.micro_batch_tokens // T)
    n_micro = rank_rows // micro_rows
    rows_per_step = rank_rows * d.world
    optimizer = _optimizer(model, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: config.lr_at(s) / config.peak_lr)
    stream = Stream(corpus.train, corpus.train_mask, T)

    step = 0
    if checkpoint is not None:
        step = restore_checkpoint(run_dir / CHECKPOINT_FILE, checkpoint, model, optimizer, scheduler, stream)
    else:
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)

    writer = None
    if d.main:
        if unreadable:  # --restart of a run whose run.json was corrupted: start it over
            discard_run_files(run_dir)
            (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        if status is None:
            writer = RunWriter(
                run_dir, run_id, config.to_dict(), sweep=config.sweep, architecture=arch,
                tokens_planned=config.steps * config.batch_tokens, seed=config.seed,
            )  # fmt: skip
        else:
            writer = RunWriter.reopen(run_dir, through_step=step)
            if checkpoint is None:
                (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        if corpus.tokenizer is not None and not (run_dir / TOKENIZER_FILE).exists():
            corpus.tokenizer.save(run_dir / TOKENIZER_FILE)
        writer.run["data_stats"] = data_stats(corpus)
        writer.set_status("running")

    ddp = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(ddp) if config.compile else ddp
    autocast = _autocast(config, device)
    peak = peak_flops(device)
    progress = _progress(d.main and not quiet and sys.stdout.isatty(), config.steps)

    def checkpoint_now(at: int) -> None:
        if d.main:
            save_checkpoint(run_dir / CHECKPOINT_FILE, {
                "step": at, "data_position": stream.pos, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
                "run_id": run_id,
            })  # fmt: skip
        if d.world > 1:
            torch.distributed.barrier()

    result = "finished"
    try:
        model.train()
        interval_start, interval_tokens = time.perf_counter(), 0
        while step < config.steps:
            starts = stream.starts(rows_per_step)
            total_targets = stream.n_targets(starts)
            mine = starts[d.rank * rank_rows : (d.rank + 1) * rank_rows]
            stats = torch.zeros(4, dtype=torch.float64)  # ce*targets, aux, z, targets
            layers = []
            for m in range(n_micro):
                rows = mine[m * micro_rows : (m + 1) * micro_rows]
                x, y = stream.batch(rows)
                x, y = x.to(device), y.to(device)
                n_t = stream.n_targets(rows)
                sync = m == n_micro - 1 or d.world == 1
                ctx = contextlib.nullcontext() if sync else ddp.no_sync()
                with ctx, autocast():
                    _, _, aux = forward(x, y)
                    ce = aux["ce_loss"] if n_t else aux["ce_loss"].new_zeros(())
                    reg = config.aux_loss_coef * aux["aux_loss"] + config.z_loss_coef * aux["z_loss"]
                    loss = ce * (n_t * d.world / max(1, total_targets)) + reg / n_micro
                loss.backward()
                stats += torch.tensor([float(ce.detach()) * n_t, float(aux["aux_loss"].detach()), float(aux["z_loss"].detach()), n_t],
                                      dtype=torch.float64)  # fmt: skip
                layers.extend(aux["layers"])
            if d.world > 1:
                torch.distributed.all_reduce(stats)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens = step * config.batch_tokens
            interval_tokens += config.batch_tokens
            train_loss = float(stats[0] / max(1.0, float(stats[3])))
            diverged = not math.isfinite(train_loss)
            last = step == config.steps
            is_eval = last or (config.eval_interval and step % config.eval_interval == 0)
            if d.main and (diverged or last or is_eval or step % config.log_interval == 0):
                dt = time.perf_counter() - interval_start
                metrics = {
                    "train_loss": train_loss, "lr": lr, "aux_loss": float(stats[1]) / (n_micro * d.world),
                    "z_loss": float(stats[2]) / (n_micro * d.world), "grad_norm": grad_norm,
                    "tokens_per_s": interval_tokens / dt if dt > 0 else None, **_routing_means(layers),
                }  # fmt: skip
                if peak is not None and dt > 0:
                    metrics["mfu"] = model.estimate_mfu(interval_tokens, dt, peak)
                if is_eval and not diverged:
                    ev = _evaluate(model, corpus, config, device)
                    metrics["val_loss"] = ev.val_loss
                    metrics["eval_seconds"] = ev.seconds
                writer.log(step, tokens, **metrics)
                if is_eval and not diverged:
                    for row in ev.rows:
                        writer.log_eval(step, tokens, **row)
                if progress is not None:
                    tps = metrics["tokens_per_s"]
                    progress.update(0, completed=step, loss=f"{train_loss:.3f}", tps=f"{tps:,.0f}" if tps else "-")
                interval_start, interval_tokens = time.perf_counter(), 0
            elif progress is not None:
                progress.update(0, completed=step)
            if diverged:
                result = "diverged"
                break
            if last or step % config.checkpoint_interval == 0:
                checkpoint_now(step)
        if d.main:
            writer.finish(result)
        return result
    except MoescaleError:
        if d.main:
            writer.finish("failed", first_line(sys.exc_info()[1], with_type=True))
        raise
    except Exception as exc:  # a crash: recorded, not raised, so a sweep goes on
        if d.main:
            writer.finish("failed", first_line(exc, with_type=True))
        return "failed"
    finally:
        if progress is not None:
            progress.stop()


# ----------------------------------------------------------------------------- entry point


def train_file(path: str | Path, out: str | Path = "runs", *, resume: bool = True, quiet: bool = False,
               threads: int | None = None) -> tuple[str, Path]:
    """Train the TrainConfig of a RUN.yaml into ``out``; return (status, run directory).

    The API behind ``moescale train`` and ``python -m runner.train``: under torchrun it also
    takes down the process group the run set up, whatever the outcome.
    """
    try:
        config = TrainConfig.from_yaml(path)
        status = train(config, out, resume=resume, quiet=quiet, threads=threads)
        return status, Path(out) / config.run_id
    finally:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def is_main_process() -> bool:
    """True on the process that writes and prints: rank 0 under torchrun, else the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def summary(run_dir: str | Path) -> str:
    """A few lines on a run directory: status, final losses next to the validation stream's
    unigram entropy, and each task's accuracy next to its chance rate."""
    from scaling.rundir import read_run_dir

    rec = read_run_dir(run_dir, warn=False)
    run = rec.run
    stats = run.get("data_stats") or {}
    lines = [f"run {run['run_id']}: {run['status']}" + (f" ({run['error']})" if run.get("error") else "")]
    m = rec.metrics
    for name in ("train_loss", "val_loss"):
        rows = m[m["name"] == name]
        if len(rows):
            lines.append(f"  {name:<20} {rows['value'].iloc[-1]:8.4f} nats  (step {rows['step'].iloc[-1]})")
    if "unigram_entropy" in stats:
        lines.append(f"  {'unigram entropy':<20} {stats['unigram_entropy']:8.4f} nats  (validation stream)")
    ev = rec.evals
    if len(ev):
        last = ev[(ev["step"] == ev["step"].max()) & (ev["metric"] == "accuracy")]
        for _, r in last.iterrows():
            chance = (stats.get("tasks") or {}).get(r["task"], {}).get("chance")
            extra = f", chance {chance:.4f}" if chance is not None else ""
            lines.append(f"  {r['task'] + ' accuracy':<20} {r['value']:8.4f}       ({r['task_kind']}, n={r['n_examples']}{extra})")
    t = m[m["name"] == "tokens_per_s"]
    if len(t):
        lines.append(f"  {'tokens/s':<20} {t['value'].median():8.0f}       (median of logged intervals)")
    lines.append(f"  run directory        {run_dir}")
    return "\n".join(lines)


__all__ = ["DTYPES", "NON_RESULT_KEYS", "Stream", "TrainConfig", "check_trainable", "data_stats", "default_threads",
           "is_main_process", "load_checkpoint", "summary", "train", "train_file", "unigram_entropy"]


if __name__ == "__main__":  # python -m runner.train / torchrun -m runner.train: an alias of `moescale train`
    from scaling.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
