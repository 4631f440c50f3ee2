"""One training run into a run directory: config, data stream, schedule, checkpoints, resume, DDP.

A plain loop, as nanoGPT's ``train.py`` is: build the corpus and the model, then per step
``grad_accum`` micro-batches of forward + backward, clip, AdamW, log, evaluate, checkpoint.

- Optimizer: AdamW (Loshchilov & Hutter 2019) with beta = (0.9, 0.95), weight decay 0.1 on
  matrices only (embeddings, projections, router, experts, head; not the norms), gradient
  clipping at global norm 1.0.
- Schedule (Nakamura et al. 2025, arXiv 2508.18672): linear warm-up over the first
  ``warmup_fraction`` of the steps, then cosine decay to ``min_lr_ratio`` (10%) of the peak:
  lr(s) = peak * (s + 1) / W for s < W, else
  lr(s) = peak * (r + (1 - r) * (1 + cos(pi * (s - W) / max(1, S - 1 - W))) / 2).
- Data: the training stream is read sequentially (see ``Stream``); its position is saved in
  every checkpoint, so a resumed run sees exactly the batches it would have seen.
- Loss of a step: the masked cross-entropy averaged over every target token of the global
  batch (micro-batches weighted by their target counts, so grad accumulation and DDP give
  the same objective as one big batch) + aux_loss_coef * load-balancing loss + z_loss_coef *
  router z-loss, each averaged over micro-batches.
- Checkpoints (``checkpoint.pt`` in the run directory, written to a temp file then renamed):
  model, optimizer, scheduler, RNG states, step and stream position. Resume loads the last one
  and ``RunWriter.reopen`` drops the lines logged after its step, so a killed and resumed run
  ends with the same metrics and weights as an uninterrupted one (bitwise on CPU with the same
  thread count).
- DDP: ``torchrun --nproc_per_node N -m runner.train RUN.yaml --out runs/``; gloo on CPU, NCCL
  on CUDA; every rank reads its share of the global batch; only rank 0 writes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from runner.data import resolve_spec
from scaling.architecture import Architecture
from scaling.errors import MoescaleError

CHECKPOINT_FILE = "checkpoint.pt"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.yaml"

#: Keys that do not change what a run computes (where and how it runs, what it prints),
#: so they stay out of ``run_id``.
NON_RESULT_KEYS = (
    "log_interval", "eval_interval", "checkpoint_interval", "micro_batch_tokens", "device", "compile", "sweep",
)  # fmt: skip

DTYPES = ("auto", "float32", "bfloat16")

#: Dense bf16 tensor-core peak FLOP/s of known GPUs (vendor data sheets, without sparsity),
#: matched as a substring of ``torch.cuda.get_device_name()``; MFU is logged only for these.
#: H100 SXM / H200 / GH200 989 TFLOP/s, H100 PCIe 756, A100 312, B200 2250, L40S 362, L4 121.
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H200": 989e12,
    "GH200": 989e12,
    "A100": 312e12,
    "B200": 2250e12,
    "L40S": 362e12,
    "L4": 121e12,
}


def peak_flops(device: torch.device) -> float | None:
    """The bf16 dense peak of a CUDA device from ``PEAK_BF16_FLOPS``, or None (CPU, unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():  # ordered: "H100 PCIe" before "H100"
        if key in name:
            return value
    return None


# ----------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything one training run needs; a run directory's run.json holds it (``to_dict``).

    architecture: the model shape (``scaling.Architecture``; all accounting comes from it).
    tokens: training tokens; the run takes round(tokens / batch_tokens) steps (at least 1).
    data: a ``runner.data.load_corpus`` spec, {"kind": "synthetic" | "bin" | "text", ...}.
    Model knobs: aux_loss_coef, z_loss_coef, init_std, rope_theta, norm_eps (``ModelConfig``).
    Optimizer: lr (peak), min_lr_ratio, warmup_fraction, beta1, beta2, weight_decay, eps, grad_clip.
    Batch: batch_tokens per optimizer step (global, over all ranks), micro_batch_tokens per
      forward/backward on one rank (None: the whole per-rank share at once); both multiples of
      seq_len; grad accumulation = batch_tokens / (micro_batch_tokens * world size).
    Evaluation: every eval_interval steps (0: only at the end) through ``runner.evaluate``
      with eval_batch_size, eval_examples (max examples per task), eval_samples (k for pass@k,
      0: off) and eval_temperature.
    log_interval (steps), checkpoint_interval (steps; a checkpoint is also written at the end).
    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1"...; dtype: "auto" (bf16
      autocast on CUDA, float32 on CPU), "float32" or "bfloat16"; compile: torch.compile the model.
    sweep: the sweep the run belongs to (recorded in run.json; not part of run_id).
    """

    architecture: Architecture
    tokens: int
    seed: int = 0
    data: dict = field(default_factory=lambda: {"kind": "synthetic"})
    aux_loss_coef: float = 1e-2
    z_loss_coef: float = 1e-3
    init_std: float = 0.02
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_fraction: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    eps: float = 1e-8
    grad_clip: float = 1.0
    batch_tokens: int = 4096
    micro_batch_tokens: int | None = None
    eval_interval: int = 0
    eval_batch_size: int = 64
    eval_examples: int | None = None
    eval_samples: int = 0
    eval_temperature: float = 1.0
    log_interval: int = 10
    checkpoint_interval: int = 50
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    sweep: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> TrainConfig:
        """Build from a mapping (``to_dict``'s form); an unknown key, a missing one or a bad
        value raises MoescaleError naming ``source`` and the key."""
        if not isinstance(data, dict):
            raise MoescaleError(f"{source}: expected a mapping of training settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MoescaleError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}")
        for key in ("architecture", "tokens"):
            if key not in data:
                raise MoescaleError(f"{source}: missing key {key!r}")
        data = dict(data)
        arch = data["architecture"]
        if isinstance(arch, dict):
            try:
                data["architecture"] = Architecture.from_dict(arch)
            except MoescaleError as exc:
                raise MoescaleError(f"{source}: key 'architecture': {exc}") from None
        elif not isinstance(arch, Architecture):
            raise MoescaleError(f"{source}: key 'architecture' must be a mapping, got {type(arch).__name__}")
        try:
            return cls(**data)
        except MoescaleError as exc:
            raise MoescaleError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a RUN.yaml (a mapping of the fields; ``architecture`` a mapping too)."""
        path = Path(path)
        if not path.is_file():
            raise MoescaleError(f"{path}: no such file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            raise MoescaleError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_planned(cls, run, overrides: dict | None = None) -> TrainConfig:
        """A planner ``PlannedRun`` (architecture, tokens, seed) plus training defaults, with
        ``overrides`` (e.g. a sweep's ``train:`` block) on top; unknown override keys are refused."""
        base = {"architecture": run.architecture, "tokens": int(run.tokens), "seed": int(run.seed)}
        overrides = dict(overrides or {})
        if "architecture" in overrides:
            raise MoescaleError("training overrides: key 'architecture' cannot be overridden (the sweep plans it)")
        return cls.from_dict({**base, **overrides}, source=f"run {run.run_id}")

    def to_dict(self) -> dict:
        """Plain JSON/YAML-ready dict; ``from_dict(to_dict())`` gives the same config."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["architecture"] = self.architecture.to_dict()
        out["data"] = json.loads(json.dumps(self.data))
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    # ---- derived -----------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """d{d_model}-l{n_layers}-e{n_experts}-k{top_k}-f{d_ff}-{10 hex of sha1}: the hash covers
        every key that changes what the run computes (architecture, tokens, seed, data with its
        defaults resolved, model knobs, optimizer, schedule, batch, evaluation settings, dtype)
        and the model's version (``runner.model.MODEL_VERSION``), not NON_RESULT_KEYS."""
        from runner.model import MODEL_VERSION

        payload = {k: v for k, v in self.to_dict().items() if k not in NON_RESULT_KEYS}
        payload["data"] = resolve_spec(payload["data"])
        payload["model_version"] = MODEL_VERSION
        digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
        a = self.architecture
        return f"d{a.d_model}-l{a.n_layers}-e{a.n_experts}-k{a.top_k}-f{a.d_ff}-{digest}"

    @property
    def seq_len(self) -> int:
        return self.architecture.seq_len

    @property
    def steps(self) -> int:
        return max(1, round(self.tokens / self.batch_tokens))

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup_fraction * self.steps))

    def lr_at(self, step: int) -> float:
        """Learning rate of update ``step`` (0-based): linear warm-up, cosine to min_lr_ratio * lr."""
        W, S = self.warmup_steps, self.steps
        if step < W:
            return self.lr * (step + 1) / W
        progress = min(1.0, (step - W) / max(1, S - 1 - W))
        r = self.min_lr_ratio
        return self.lr * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress)))

    def model_config(self):
        from runner.model import ModelConfig

        return ModelConfig(
            arch=self.architecture, aux_loss_coef=self.aux_loss_coef, z_loss_coef=self.z_loss_coef,
            init_std=self.init_std, rope_theta=self.rope_theta, norm_eps=self.norm_eps,
        )  # fmt: skip

    def validate(self) -> None:
        """MoescaleError naming the key of the first bad value."""

        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise MoescaleError(f"key {key!r}: {what}, got {getattr(self, key)!r}")

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        need(isinstance(self.architecture, Architecture), "architecture", "must be an Architecture")
        T = self.architecture.seq_len
        need(is_int(self.tokens) and self.tokens > 0, "tokens", "must be a positive integer")
        need(is_int(self.seed) and self.seed >= 0, "seed", "must be a non-negative integer")
        need(isinstance(self.data, dict) and isinstance(self.data.get("kind"), str), "data",
             "must be a mapping with a 'kind' (synthetic, bin, text)")  # fmt: skip
        for key in ("aux_loss_coef", "z_loss_coef", "weight_decay", "eps"):
            need(is_num(getattr(self, key)) and getattr(self, key) >= 0, key, "must be a non-negative number")
        for key in ("init_std", "rope_theta", "norm_eps", "lr", "grad_clip", "eval_temperature"):
            need(is_num(getattr(self, key)) and getattr(self, key) > 0, key, "must be a positive number")
        for key in ("min_lr_ratio", "warmup_fraction", "beta1", "beta2"):
            need(is_num(getattr(self, key)) and 0 <= getattr(self, key) <= 1, key, "must be a number in [0, 1]")
        need(is_int(self.batch_tokens) and self.batch_tokens > 0 and self.batch_tokens % T == 0, "batch_tokens",
             f"must be a positive multiple of seq_len ({T})")  # fmt: skip
        if self.micro_batch_tokens is not None:
            m = self.micro_batch_tokens
            need(is_int(m) and m > 0 and m % T == 0 and self.batch_tokens % m == 0, "micro_batch_tokens",
                 f"must be a positive multiple of seq_len ({T}) dividing batch_tokens ({self.batch_tokens})")  # fmt: skip
        for key in ("eval_interval", "eval_samples"):
            need(is_int(getattr(self, key)) and getattr(self, key) >= 0, key, "must be a non-negative integer")
        for key in ("eval_batch_size", "log_interval", "checkpoint_interval"):
            need(is_int(getattr(self, key)) and getattr(self, key) > 0, key, "must be a positive integer")
        need(self.eval_examples is None or (is_int(self.eval_examples) and self.eval_examples > 0), "eval_examples",
             "must be a positive integer or null")  # fmt: skip
        need(isinstance(self.device, str) and (self.device in ("auto", "cpu") or self.device.startswith("cuda")),
             "device", "must be auto, cpu or cuda[:N]")  # fmt: skip
        need(self.dtype in DTYPES, "dtype", f"must be one of {', '.join(DTYPES)}")
        need(isinstance(self.compile, bool), "compile", "must be true or false")
        need(self.sweep is None or isinstance(self.sweep, str), "sweep", "must be a string or null")


# ----------------------------------------------------------------------------- data


class Stream:
    """Sequential windows of a token stream: row i of a batch is stream[p : p + T + 1] with
    inputs x = the first T tokens and targets y = the last T (y = -1 where the mask is 0);
    p advances by T per row and wraps to 0 when a window would run past the end."""

    def __init__(self, tokens: np.ndarray, mask: np.ndarray | None, seq_len: int, source: str = "train"):
        if len(tokens) < seq_len + 1:
            raise MoescaleError(f"data: the {source} stream has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        self.tokens, self.mask, self.T = tokens, mask, seq_len
        self.pos = 0

    def starts(self, rows: int) -> np.ndarray:
        """The start positions of the next ``rows`` windows; advances the position."""
        out = np.empty(rows, dtype=np.int64)
        limit = len(self.tokens) - self.T - 1
        for i in range(rows):
            if self.pos > limit:
                self.pos = 0
            out[i] = self.pos
            self.pos += self.T
        return out

    def batch(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = starts[:, None] + np.arange(self.T + 1)[None, :]
        window = self.tokens[idx].astype(np.int64)
        x, y = window[:, :-1], window[:, 1:].copy()
        if self.mask is not None:
            y[self.mask[idx[:, 1:]] == 0] = -1
        return torch.from_numpy(x), torch.from_numpy(y)

    def n_targets(self, starts: np.ndarray) -> int:
        if self.mask is None:
            return len(starts) * self.T
        idx = starts[:, None] + np.arange(1, self.T + 1)[None, :]
        return int(self.mask[idx].sum())


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
    name = config.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MoescaleError(f"key 'device': {config.device!r} but CUDA is not available")
        if d.world > 1:
            name = f"cuda:{d.local_rank}"
    return torch.device(name)


def _autocast(config: TrainConfig, device: torch.device):
    dtype = config.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    if dtype == "bfloat16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temp file in the same directory, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``, or None when there is none."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def _optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps, foreach=device.type == "cuda"
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


def _prepare(config: TrainConfig):
    """Load the corpus and check the model can be built on it, before anything is written."""
    from runner.data import load_corpus

    corpus = load_corpus(config.data, config.seed)
    arch = config.architecture
    if corpus.vocab_size > arch.vocab_size:
        where = f"{corpus.source}: " if corpus.source else ""
        raise MoescaleError(
            f"{where}key 'architecture.vocab_size': {arch.vocab_size} is smaller than the data's vocabulary ({corpus.vocab_size})"
        )
    if arch.head_dim % 2:
        raise MoescaleError(f"key 'architecture': head_dim ({arch.head_dim}) must be even for RoPE")
    Stream(corpus.train, corpus.train_mask, arch.seq_len, "train")
    return corpus


def _evaluate(model, corpus, config: TrainConfig, device: torch.device):
    from runner.evaluate import evaluate

    return evaluate(
        model, corpus, n_total=config.architecture.n_total, device=str(device), batch_size=config.eval_batch_size,
        samples=config.eval_samples, temperature=config.eval_temperature, max_examples=config.eval_examples,
    )  # fmt: skip


def unigram_entropy(tokens: np.ndarray, mask: np.ndarray | None = None) -> float:
    """H = -sum_v p_v ln p_v (nats) of the token frequencies p_v over the stream's targets
    (tokens with mask 1): the loss of the best model that ignores context, to compare val_loss with."""
    counts = np.bincount(tokens if mask is None else tokens[mask.astype(bool)]).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def data_stats(corpus) -> dict:
    """What run.json records about the data: stream sizes, vocabulary, the validation stream's
    unigram entropy (nats) and each task's kind and chance accuracy."""
    return {
        "train_tokens": int(len(corpus.train)), "val_tokens": int(len(corpus.val)), "vocab_size": int(corpus.vocab_size),
        "unigram_entropy": unigram_entropy(np.asarray(corpus.val), corpus.val_mask),
        "tasks": {t.name: {"kind": t.kind, "chance": float(t.chance), "n_examples": len(t)} for t in corpus.tasks},
    }  # fmt: skip


def _read_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def train(config: TrainConfig, out: str | Path, *, resume: bool = True, quiet: bool = False, threads: int | None = None) -> str:
    """Train ``config`` into ``Path(out) / config.run_id``; return "finished", "diverged" or "failed".

    A finished (or diverged) run directory is left untouched. An interrupted one continues
    from its last checkpoint when ``resume`` (else it starts over). Bad input (data, model)
    raises MoescaleError before any file is written. A NaN/inf training loss ends the run
    ``diverged`` with its curve kept; any other exception during training ends it ``failed``
    with the error's first line in run.json's ``error``.
    """
    from runner.model import seeded_model
    from scaling.rundir import RunWriter, check_run_id

    if threads is not None:
        torch.set_num_threads(int(threads))
    d = _distributed()
    run_id = check_run_id(config.run_id)
    run_dir = Path(out) / run_id
    status = _read_status(run_dir)
    if status in ("finished", "diverged"):
        return status
    device = _device(config, d)
    corpus = _prepare(config)
    model = seeded_model(config.model_config(), config.seed).to(device)
    arch = config.architecture
    T = arch.seq_len
    rows_per_step = config.batch_tokens // T
    if rows_per_step % d.world:
        raise MoescaleError(f"key 'batch_tokens': {rows_per_step} rows per step do not split over {d.world} ranks")
    rank_rows = rows_per_step // d.world
    micro_rows = rank_rows if config.micro_batch_tokens is None else min(rank_rows, config.micro_batch_tokens // T)
    if rank_rows % micro_rows:
        raise MoescaleError(f"key 'micro_batch_tokens': {micro_rows} rows do not divide the {rank_rows} rows of a rank")
    n_micro = rank_rows // micro_rows
    optimizer = _optimizer(model, config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: config.lr_at(s) / config.lr)
    stream = Stream(corpus.train, corpus.train_mask, T)

    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE) if (resume and status is not None) else None
    step = 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        _set_rng_state(checkpoint["rng"])
        stream.pos = int(checkpoint["data_position"])
        step = int(checkpoint["step"])
    else:
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)

    writer = None
    if d.main:
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
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(),
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
            writer.finish("failed", _first_line(sys.exc_info()[1]))
        raise
    except Exception as exc:  # a crash: recorded, not raised, so a sweep goes on
        if d.main:
            writer.finish("failed", _first_line(exc))
        return "failed"
    finally:
        if progress is not None:
            progress.stop()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


# ----------------------------------------------------------------------------- entry point


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m runner.train", description="Train one model into a run directory.")
    parser.add_argument("config", metavar="RUN.yaml", help="the run's TrainConfig as YAML")
    parser.add_argument("--out", default="runs", help="parent of the run directory (default: runs/)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint (the default when "
                        "the run directory exists; given for clarity)")  # fmt: skip
    parser.add_argument("--restart", action="store_true", help="start an unfinished run over instead of resuming")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Train the RUN.yaml of ``args`` and print a summary; exit code 0 when finished, 1 otherwise."""
    config = TrainConfig.from_yaml(args.config)
    status = train(config, args.out, resume=not args.restart, quiet=args.quiet, threads=args.threads)
    if int(os.environ.get("RANK", "0")) == 0 and not args.quiet:
        print(summary(Path(args.out) / config.run_id))
    return 0 if status == "finished" else 1


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_from_args(args)
    except MoescaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
