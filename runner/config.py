"""A training run's settings: ``TrainConfig``, its validation, its run_id and its schedule.

A run directory's run.json holds ``TrainConfig.to_dict()``, so the directory alone is
enough to rebuild the config and reproduce the run. ``run_id`` hashes every setting that
changes what the run computes (not ``NON_RESULT_KEYS``), so a changed setting never reuses
an old run directory.

Schedule (Nakamura et al. 2025, arXiv 2508.18672): linear warm-up over the first
``warmup_fraction`` of the steps, then cosine decay to ``min_lr_ratio`` of the peak:
lr(s) = peak * (s + 1) / W for s < W, else
lr(s) = peak * (r + (1 - r) * (1 + cos(pi * (s - W) / max(1, S - 1 - W))) / 2).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml

from runner.data import resolve_spec
from scaling.architecture import Architecture
from scaling.errors import MoescaleError
from scaling.planner import load_yaml, run_id

#: Version of what the model computes for one config. Bump it whenever a change to
#: ``runner.model`` or ``runner.moe`` changes a run's numbers: it enters every run_id
#: (``TrainConfig.run_id``), so runs of an older model are not reused. It lives here, not in
#: ``runner.model``, so that the planner can name runs without importing torch.
#: 2: top-1 gates are the softmax probability (Switch), no longer the constant 1.
MODEL_VERSION = 2

#: Seeds numpy accepts (``np.random.seed``): 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1
#: Largest token count of a run: 2**53, the largest integer a float (JSON readers, DuckDB
#: DOUBLE) holds exactly; far beyond any trainable run (9.0e15 tokens).
MAX_TOKENS = 2**53
#: Bytes per parameter that training holds at least: fp32 weights, gradients and AdamW's two
#: moments (4 + 4 + 4 + 4), before any activation.
TRAIN_BYTES_PER_PARAM = 16

#: Keys that do not change what a run computes (where and how it runs, what it prints),
#: so they stay out of ``run_id``.
NON_RESULT_KEYS = (
    "log_interval", "eval_interval", "checkpoint_interval", "micro_batch_tokens", "device", "compile", "sweep", "slice",
)  # fmt: skip
#: Keys added after run ids were first published: left out of ``run_id`` while unset (None),
#: so every run planned before them keeps its id.
LATER_KEYS = ("lr_base_width",)

DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class TrainConfig:
    """Everything one training run needs; a run directory's run.json holds it (``to_dict``).

    architecture: the model shape (``scaling.Architecture``; all accounting comes from it).
    tokens: training tokens; the run takes round(tokens / batch_tokens) steps (at least 1).
    data: a ``runner.data.load_corpus`` spec, {"kind": "synthetic" | "bin" | "text", ...}.
    Model knobs: aux_loss_coef, z_loss_coef, init_std, rope_theta, norm_eps (``ModelConfig``).
    Optimizer: lr (peak; with lr_base_width, the peak at that d_model: ``peak_lr``), min_lr_ratio, warmup_fraction, beta1, beta2, weight_decay, eps, grad_clip.
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
    slice: the named part(s) of a study the run serves, ``sparsity+size`` (``scaling.presets``;
      recorded in run.json and the store's ``final.slice``; not part of run_id).
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
    lr_base_width: int | None = None
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
    slice: str | None = None
    #: Where the config came from (a RUN.yaml path, ``run ID`` of a sweep), for error messages;
    #: not a field: it is not saved and does not enter run_id.
    source: ClassVar[str | None] = None

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
            config = cls(**data)
        except MoescaleError as exc:
            raise MoescaleError(f"{source}: {exc}") from None
        config.source = source
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a RUN.yaml (a mapping of the fields; ``architecture`` a mapping too): UTF-8 text,
        no key given twice (``scaling.planner.load_yaml``)."""
        path = Path(path)
        if not path.is_file():
            raise MoescaleError(f"{path}: no such file")
        return cls.from_dict(load_yaml(path), source=str(path))

    @classmethod
    def from_planned(cls, run, overrides: dict | None = None) -> TrainConfig:
        """A planner ``PlannedRun`` (architecture, tokens, seed) plus training defaults, with
        ``overrides`` (e.g. a sweep's ``train:`` block) on top; unknown override keys are refused."""
        base = {"architecture": run.architecture, "tokens": int(run.tokens), "seed": int(run.seed)}
        if getattr(run, "slice", None):
            base["slice"] = run.slice
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
        """The config as YAML (``to_dict``'s form), also written to ``path`` when given."""
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
        and the model's version (``MODEL_VERSION``), not NON_RESULT_KEYS; hashed by
        ``scaling.planner.run_id``, the one id function, so a planned run's id is this one."""
        payload = {k: v for k, v in self.to_dict().items()
                   if k not in NON_RESULT_KEYS and not (k in LATER_KEYS and v is None)}
        payload["data"] = resolve_spec(payload["data"])
        payload["model_version"] = MODEL_VERSION
        return run_id(self.architecture, payload)

    @property
    def seq_len(self) -> int:
        return self.architecture.seq_len

    @property
    def steps(self) -> int:
        return max(1, round(self.tokens / self.batch_tokens))

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup_fraction * self.steps))

    @property
    def peak_lr(self) -> float:
        """The peak learning rate: ``lr``, or with ``lr_base_width`` the width rule
        lr * sqrt(lr_base_width / d_model) (``lr`` is then the peak at d_model = lr_base_width).

        Porian et al. 2024 (arXiv 2406.19146) show that a learning rate left untuned per size biases
        the compute-optimal allocation; under Adam the optimal rate falls with width (1/width for
        hidden layers in muP, Yang et al. 2022, arXiv 2203.03466). The exponent 1/2 is the one the
        cpu-study's learning-rate sweep at its smallest and largest sizes gives (optima near 7e-3
        at d_model 32 and 3.5e-3 at 128; benchmarks/RESULTS.md).
        """
        if self.lr_base_width is None:
            return self.lr
        return self.lr * math.sqrt(self.lr_base_width / self.architecture.d_model)

    def lr_at(self, step: int) -> float:
        """Learning rate of update ``step`` (0-based): linear warm-up, cosine to min_lr_ratio * peak_lr."""
        W, S, peak = self.warmup_steps, self.steps, self.peak_lr
        if step < W:
            return peak * (step + 1) / W
        progress = min(1.0, (step - W) / max(1, S - 1 - W))
        r = self.min_lr_ratio
        return peak * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress)))

    def model_config(self):
        """The ``runner.model.ModelConfig`` of this run (architecture and model knobs)."""
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
        need(is_int(self.tokens) and 0 < self.tokens <= MAX_TOKENS, "tokens",
             f"must be a positive integer of at most 2**53 ({MAX_TOKENS:.2e})")  # fmt: skip
        need(is_int(self.seed) and 0 <= self.seed <= MAX_SEED, "seed", f"must be an integer in [0, 2**32 - 1 = {MAX_SEED}]")
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
        need(self.lr_base_width is None or (is_int(self.lr_base_width) and self.lr_base_width > 0), "lr_base_width",
             "must be a positive integer (a d_model) or null")  # fmt: skip
        for key in ("sweep", "slice"):
            need(getattr(self, key) is None or isinstance(getattr(self, key), str), key, "must be a string or null")


# ----------------------------------------------------------------------------- before training


def machine_memory(device: str = "cpu") -> tuple[int, str]:
    """(bytes, what) of the memory a run on ``device`` can use at most: the GPU's total memory for
    ``cuda[:N]``, else the machine's physical memory (psutil when installed, else ``os.sysconf``)."""
    if device.startswith("cuda"):
        import torch

        index = int(device.partition(":")[2] or 0)
        return int(torch.cuda.get_device_properties(index).total_memory), f"GPU memory ({device})"
    try:
        import psutil

        return int(psutil.virtual_memory().total), "memory"
    except ImportError:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "memory"


def check_trainable(config: TrainConfig, *, corpora=None, world: int = 1):
    """Every check of a run that needs no training; returns the run's corpus (a ``runner.data.TokenCorpus``).

    ``runner.train.train`` calls it before it creates the run directory, and a sweep may call it
    for every run before the first starts, so that bad input is one MoescaleError, naming the
    config's source (``TrainConfig.source``: the RUN.yaml, or ``run ID`` of a sweep) and the key,
    with nothing started and nothing written. It checks, in order:
    the device (``cuda`` needs CUDA, and the GPU index must exist); ``$MOESCALE_KERNELS``
    (``runner.kernels.resolve_backend``); the model's memory: N_total * 16 bytes (fp32 weights,
    gradients and AdamW's two moments) must fit in the device's memory (``machine_memory``);
    an even head_dim (RoPE rotates pairs); the batch split over ``world`` ranks and micro-batches;
    then the data (loaded through ``corpora``, a ``runner.data.CorpusCache``, when given): its
    files, a vocabulary no larger than the model's, and train and validation streams of at least
    seq_len + 1 tokens. It starts no training and writes nothing; torch is imported on call only.
    """
    import torch

    from runner.data import load_corpus
    from runner.kernels import resolve_backend

    where = f"{config.source}: " if config.source else ""
    arch = config.architecture
    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MoescaleError(f"{where}key 'device': {config.device!r} but CUDA is not available on this machine "
                                f"(use device: cpu or auto)")  # fmt: skip
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise MoescaleError(f"{where}key 'device': {config.device!r}: this machine has "
                                f"{torch.cuda.device_count()} CUDA device(s)")  # fmt: skip
    resolve_backend(None, torch.device(device.partition(":")[0]))  # names $MOESCALE_KERNELS when it is bad
    have, what = machine_memory(device)
    need = arch.n_total * TRAIN_BYTES_PER_PARAM
    if need > have:
        raise MoescaleError(
            f"{where}key 'architecture': the model has N_total = {arch.n_total:.3g} parameters, so training needs at "
            f"least {need / 2**30:,.1f} GiB (16 bytes a parameter: fp32 weights, gradients, AdamW's two moments), "
            f"more than this machine's {have / 2**30:,.1f} GiB of {what}"
        )
    if arch.head_dim % 2:
        raise MoescaleError(f"{where}key 'architecture': head_dim ({arch.head_dim}) must be even for RoPE "
                            f"(head_dim = d_model / n_heads)")  # fmt: skip
    T = arch.seq_len
    rows = config.batch_tokens // T
    if rows % world:
        raise MoescaleError(f"{where}key 'batch_tokens': its {rows} rows of seq_len {T} do not split over {world} ranks")
    micro = rows // world if config.micro_batch_tokens is None else min(rows // world, config.micro_batch_tokens // T)
    if (rows // world) % micro:
        raise MoescaleError(f"{where}key 'micro_batch_tokens': {micro} rows do not divide the {rows // world} rows "
                            f"of a rank")  # fmt: skip
    try:
        corpus = (corpora.load if corpora is not None else load_corpus)(config.data, config.seed)
    except MoescaleError as exc:
        raise MoescaleError(f"{where}{exc}") from None
    data = f"{corpus.source}: " if corpus.source else ""
    if corpus.vocab_size > arch.vocab_size:
        raise MoescaleError(f"{where}{data}key 'architecture.vocab_size': {arch.vocab_size} is smaller than the data's "
                            f"vocabulary ({corpus.vocab_size})")  # fmt: skip
    for part, stream in (("training", corpus.train), ("validation", corpus.val)):
        if len(stream) < T + 1:
            raise MoescaleError(f"{where}{data}key 'data': the {part} stream has {len(stream)} tokens, fewer than "
                                f"seq_len + 1 = {T + 1}")  # fmt: skip
    return corpus


__all__ = ["DTYPES", "LATER_KEYS", "MAX_SEED", "MAX_TOKENS", "MODEL_VERSION", "NON_RESULT_KEYS", "TRAIN_BYTES_PER_PARAM", "TrainConfig",
           "check_trainable", "machine_memory"]
