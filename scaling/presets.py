"""Named sweep designs: the papers' grids, the CPU and GPU sweeps, and the cpu-study's slices.

``moescale plan grid --preset NAME`` plans one of ``PRESETS``. Most are a grid (a union of
``GridSpace``s) at a few isoFLOP budgets. A study preset is a set of named slices
(``StudySlice``), each a design that answers one question, and every planned run carries the
name of its slice(s) in the sweep file, so the analysis and the figures can select them:

- ``sparsity`` (Nakamura et al. 2025, arXiv 2508.18672): one core (d_model, n_layers), n_experts
  from 1 to 64 at top_k 1 and 2 (and 4 at E >= 16), at every budget;
- ``size`` (isoFLOP profiles, Hoffmann et al. 2022; TPP, Nakamura et al.): at every budget six
  model sizes (width and depth), dense and E8 k1, so tokens per parameter span about 1 to 100;
- ``liew`` (Liew et al. 2026, arXiv 2601.08215): fixed N_total (within 5%) and fixed sparsity
  s = 4 with n_experts 8, 16, 32 at top_k 2, 4, 8, the core shrunk to fit (the planner's
  total_params constraint), where Liew et al. find that more experts cost a little;
- ``seeds``: every architecture of the smallest budget again with seeds 1 and 2, so seed
  noise is measured and enters the bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scaling.errors import MoescaleError
from scaling.planner import Constraints, GridSpace, PlannedRun, candidates

__all__ = ["Preset", "StudySlice", "PRESETS", "get_preset", "plan_slices"]


@dataclass(frozen=True)
class Preset:
    """A named grid (a union of spaces), its default compute budgets or training length,
    and the training settings its sweep file carries (the sweep's ``train:`` block).

    ``compute``: isoFLOP budgets C used when the constraints give neither compute nor
    tokens (each architecture gets D = C / flops_per_token tokens per budget); else
    ``tokens`` per run. ``slices``: a study of named parts (``StudySlice``), planned by
    ``plan_slices`` instead of the spaces.
    """

    name: str
    description: str
    spaces: tuple[GridSpace, ...]
    tokens: int
    compute: tuple[float, ...] = ()
    train: dict = field(default_factory=dict, hash=False, compare=False)
    slices: tuple = ()


_E = (8, 16, 32, 64, 128, 256)

# cpu-tiny: an isoFLOP sparsity sweep that trains on 2 CPU cores with 2 workers in minutes
# (the body of the demo); times measured with `benchmarks/bench_sweep.py` (benchmarks/RESULTS.md).
CPU_TINY_COMPUTE = (2e11, 4e11, 8e11)
CPU_TINY_TRAIN: dict = {"data": {"kind": "synthetic"}, "batch_tokens": 4096, "log_interval": 5,
                         "checkpoint_interval": 25}
CPU_TINY_DESCRIPTION = (
    "isoFLOP sparsity sweep for 2 CPU cores: 2 layers, d_model 64 (head_dim 32), expert width 128, "
    "dense + E 4/8/16 at k 1 + E 4/16 at k 2 (sparsity 1-16), vocab 512, seq_len 128, "
    "budgets C = 2e11, 4e11, 8e11 FLOPs (0.17M-0.9M tokens, 41-221 steps a run, 8.6M tokens in all): "
    "6 x 3 = 18 runs; 2.8-3.7 min with 2 workers on 2 quiet CPU cores (3.7-5.0 min with 1 worker; "
    "benchmarks/bench_sweep.py), several times that on a busy machine"
)
_K = (2, 4, 8, 16)


def _isoflop_spaces(n_layers: int, d_model: int, head_dim: int, vocab_size: int, seq_len: int) -> tuple[GridSpace, ...]:
    """The sparsity design of cpu-tiny: one width, dense and MoE with expert
    width 2*d_model: k = 1 at E = 1, 4, 8, 16 and k = 2 at E = 4, 16 (sparsity E/k = 1, 2, 4,
    8, 8, 16; two architectures at s = 8 with different E and k tell whether E and k act
    only through s)."""
    common = dict(n_layers=(n_layers,), d_model=(d_model,), granularity=(0.5,), head_dim=head_dim,
                  vocab_size=vocab_size, seq_len=seq_len)
    return (
        GridSpace(n_experts=(1, 4, 8, 16), top_k=(1,), **common),
        GridSpace(n_experts=(4, 16), top_k=(2,), **common),
    )


@dataclass(frozen=True)
class StudySlice:
    """One named part of a study: the spaces' architectures, each at every budget in ``compute``
    (D = C / flops_per_token) and every seed in ``seeds``. With ``total_params``, only the
    architecture of each space nearest to that N_total is kept, and it must lie within
    ``tolerance`` of it (Liew et al.'s fixed-memory comparison). With ``architectures_of``, the
    architectures are those of the named earlier slices instead (a seed repeat)."""

    name: str
    spaces: tuple[GridSpace, ...]
    compute: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    total_params: float | None = None
    tolerance: float = 0.05
    architectures_of: tuple[str, ...] = ()


def _slice_architectures(sl: StudySlice):
    if sl.total_params is None:
        return candidates(sl.spaces, Constraints())
    chosen = []
    for space in sl.spaces:
        archs = candidates(space, Constraints())
        best = min(archs, key=lambda a: abs(a.n_total / sl.total_params - 1))
        if abs(best.n_total / sl.total_params - 1) > sl.tolerance:
            raise MoescaleError(f"slice {sl.name!r}: no architecture with n_experts {space.n_experts} within "
                                f"{sl.tolerance:.0%} of N_total {sl.total_params:.3g} (nearest {best.n_total:.3g})")
        chosen.append(best)
    return chosen


def plan_slices(slices) -> list[PlannedRun]:
    """The runs of a study's slices, in order; a run two slices share (same architecture, tokens and
    seed, hence the same run_id) is planned once, its ``slice`` naming both (``sparsity+size``)."""
    runs: dict[str, PlannedRun] = {}
    planned: dict[str, list] = {}
    for sl in slices:
        if sl.architectures_of:
            missing = [n for n in sl.architectures_of if n not in planned]
            if missing:
                raise MoescaleError(f"slice {sl.name!r}: architectures_of names unknown earlier slice(s) {missing}")
            archs = list({a: None for n in sl.architectures_of for a in planned[n]})
        else:
            archs = _slice_architectures(sl)
        planned[sl.name] = archs
        for arch in archs:
            for c in sl.compute:
                for seed in sl.seeds:
                    run = PlannedRun.create(arch, round(c / arch.flops_per_token), seed, compute=c, slice=sl.name)
                    if run.run_id in runs:
                        old = runs[run.run_id]
                        if sl.name not in old.slice.split("+"):
                            runs[run.run_id] = PlannedRun(**{**old.__dict__, "slice": f"{old.slice}+{sl.name}"})
                    else:
                        runs[run.run_id] = run
    return list(runs.values())


# cpu-study: the sparsity study for 2 CPU cores, designed so that its runs learn their tasks. Recipe:
# 1,024-token steps (the number of optimizer steps, not tokens, is what the tasks need), 4 heads,
# Switch-style top-1 gates (what made the capacity test work; benchmarks/RESULTS.md), peak learning rate
# 5e-3 * sqrt(64 / d_model) (``runner.config.TrainConfig.peak_lr``; checked by a learning-rate sweep at
# the smallest and the largest size), warm-up 5% and cosine decay to 10%. Data: 200 individuals
# (7,608 bits of facts), pointer chasing of 1-2 hops and arithmetic chains of 1-2 operations (harder
# than the cpu-tiny default of 1 and 1, so that reasoning needs more than one lookup).
CPU_STUDY_COMPUTE = (5e11, 1e12, 2e12)
CPU_STUDY_DATA: dict = {"kind": "synthetic", "n_people": 200, "pointer_hops": 2, "arith_ops": 2}
CPU_STUDY_TRAIN: dict = {"data": CPU_STUDY_DATA, "batch_tokens": 1024, "lr": 5e-3, "lr_base_width": 64,
                         "log_interval": 10, "checkpoint_interval": 100}
def study_slices(compute: tuple[float, ...], *, scale: int = 1, head_dim: int = 16, vocab_size: int = 512,
                 seq_len: int = 128, liew_total: float | None = None) -> tuple[StudySlice, ...]:
    """The study design (module docstring) at ``scale`` times the cpu-study's widths: core
    (2 layers, d_model 64 * scale), sizes (d_model 32-128 * scale, 1-2 layers), Liew's fixed
    N_total (``liew_total``, default 5e5 * scale**2; d_model 32-160 * scale, 1-3 layers), at every budget in ``compute``,
    and seeds 1, 2 of every architecture at the smallest budget. Expert width d_model (granularity 1/2)."""
    common = dict(head_dim=head_dim, vocab_size=vocab_size, seq_len=seq_len, granularity=(0.5,))
    core = dict(n_layers=(2,), d_model=(64 * scale,), **common)
    slices = (
        StudySlice("sparsity", (
            GridSpace(n_experts=(1, 2, 4, 8, 16, 32, 64), top_k=(1,), **core),
            GridSpace(n_experts=(2, 4, 8, 16, 32, 64), top_k=(2,), **core),
            GridSpace(n_experts=(16, 32, 64), top_k=(4,), **core),
        ), compute),
        StudySlice("size", tuple(
            GridSpace(n_layers=(L,), d_model=(d * scale,), n_experts=(1, 8), top_k=(1,), **common)
            for d, L in ((32, 1), (32, 2), (48, 2), (64, 2), (96, 2), (128, 2))
        ), compute),
        StudySlice("liew", tuple(
            GridSpace(n_layers=(1, 2, 3), d_model=tuple(range(32 * scale, 160 * scale + 1, 16)), n_experts=(E,),
                      top_k=(k,), **common)
            for E, k in ((8, 2), (16, 4), (32, 8))
        ), compute, total_params=liew_total or 5e5 * scale**2),
    )
    return slices + (StudySlice("seeds", (), compute[:1], seeds=(1, 2), architectures_of=("sparsity", "size", "liew")),)


CPU_STUDY_SLICES = study_slices(CPU_STUDY_COMPUTE)
CPU_STUDY_DESCRIPTION = (
    "the sparsity study for 2 CPU cores, in named slices: sparsity (2 layers, d_model 64, 4 heads, E 1-64 at "
    "k 1 and 2, E 16/32/64 at k 4), size (6 widths/depths, dense and E8 k1), liew (N_total 5e5 +- 5%, s = 4: "
    "E8 k2, E16 k4, E32 k8), at C = 5e11, 1e12, 2e12 FLOPs, and seeds 1, 2 of every architecture at 5e11; "
    "1,024-token steps, peak lr 5e-3 * sqrt(64 / d_model); 200 individuals, 1-2 hop pointers, 1-2 op arithmetic"
)

# gpu-small: the cpu-study's design and recipe scaled to one H100/H200: widths x4 (core d_model 256, 4 heads
# of 64), so parameters x~16; tokens per run x16 at the same TPP (budgets x256), in steps of 16,384 tokens
# (x16, so each run takes the cpu-study run's number of steps), the same learning-rate rule, and a knowledge
# base x16 (3,200 individuals) so the facts keep their size relative to the models. Liew's N_total 7.25e6,
# where d_model must be a multiple of 64. 4.5B tokens and 3.2e16 FLOPs in all, in ~280k optimizer steps (about
# the cpu-study's count; these models are step-bound, not FLOP-bound): an hour if a step takes ~13 ms. An
# estimate: no GPU has timed it yet.
GPU_SMALL_COMPUTE = (1.28e14, 2.56e14, 5.12e14)
GPU_SMALL_TRAIN: dict = {**CPU_STUDY_TRAIN, "data": {**CPU_STUDY_DATA, "n_people": 3200}, "batch_tokens": 16384,
                         "device": "cuda", "dtype": "bfloat16"}
GPU_SMALL_DESCRIPTION = (
    "the cpu-study scaled to one H100/H200 (an hour, estimated, not yet timed on a GPU): the same slices with "
    "widths x4 (core: 2 layers, d_model 256, 4 heads, E 1-64 at k 1/2/4), budgets C = 1.28e14, 2.56e14, "
    "5.12e14 FLOPs, 16,384-token steps, 3,200 individuals, bf16: 140 runs, 4.5B tokens, 3.2e16 FLOPs"
)
GPU_SMALL_SLICES = study_slices(GPU_SMALL_COMPUTE, scale=4, head_dim=64, liew_total=7.25e6)

# cpu-study-demo: the part of the cpu-study that `make demo` trains in a few minutes: the sparsity
# slice's top-1 models (E 1-32) at the two larger budgets, where the study's runs learn. Same
# architectures, tokens, seeds and training block, so the same run ids as the study's runs.
CPU_STUDY_DEMO_SLICES = (
    StudySlice("sparsity", (GridSpace(n_layers=(2,), d_model=(64,), n_experts=(1, 2, 4, 8, 16, 32), top_k=(1,),
                                      head_dim=16, vocab_size=512, seq_len=128, granularity=(0.5,)),),
               CPU_STUDY_COMPUTE[1:]),
)
CPU_STUDY_DEMO_DESCRIPTION = (
    "the demo's part of the cpu-study: its sparsity slice's top-1 models (2 layers, d_model 64, E 1-32) at "
    "C = 1e12 and 2e12 FLOPs, with the study's recipe (the same run ids): 12 runs"
)


PRESETS = {
    "optimal-sparsity": Preset(
        name="optimal-sparsity",
        description=(
            "Nakamura et al. 2025 (arXiv 2508.18672): 16 layers, d_model 512/1024/2048 with 4/8/16 heads, "
            "expert width 2*d_model, E 8-256, k 2-16 (k <= E; d_model 2048 up to E = 128), vocab 99,574, "
            "125B tokens: 23 + 23 + 19 = 65 models"
        ),
        spaces=(
            GridSpace(n_layers=(16,), d_model=(512, 1024), n_experts=_E, top_k=_K, granularity=(0.5,), head_dim=128),
            GridSpace(n_layers=(16,), d_model=(2048,), n_experts=_E[:-1], top_k=_K, granularity=(0.5,), head_dim=128),
        ),
        tokens=125_000_000_000,
    ),
    "cpu-tiny": Preset(
        name="cpu-tiny",
        description=CPU_TINY_DESCRIPTION,
        spaces=_isoflop_spaces(n_layers=2, d_model=64, head_dim=32, vocab_size=512, seq_len=128),
        tokens=500_000,
        compute=CPU_TINY_COMPUTE,
        train=CPU_TINY_TRAIN,
    ),
    "gpu-small": Preset(
        name="gpu-small",
        description=GPU_SMALL_DESCRIPTION,
        spaces=(),
        tokens=0,
        compute=GPU_SMALL_COMPUTE,
        train=GPU_SMALL_TRAIN,
        slices=GPU_SMALL_SLICES,
    ),
    "cpu-study": Preset(
        name="cpu-study",
        description=CPU_STUDY_DESCRIPTION,
        spaces=(),
        tokens=0,
        compute=CPU_STUDY_COMPUTE,
        train=CPU_STUDY_TRAIN,
        slices=CPU_STUDY_SLICES,
    ),
    "cpu-study-demo": Preset(
        name="cpu-study-demo",
        description=CPU_STUDY_DEMO_DESCRIPTION,
        spaces=(),
        tokens=0,
        compute=CPU_STUDY_COMPUTE[1:],
        train=CPU_STUDY_TRAIN,
        slices=CPU_STUDY_DEMO_SLICES,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a MoescaleError lists the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise MoescaleError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None



