"""scaling.presets: the cpu-study's named slices meet the study design they promise."""

import collections

import numpy as np
import pytest

from scaling.errors import MoescaleError
from scaling.planner import GridSpace, Sweep, plan
from scaling.presets import PRESETS, StudySlice, plan_slices


@pytest.fixture(scope="module")
def study():
    return plan("cpu-study")


def _parts(run):
    return set(run.slice.split("+"))


def test_every_run_names_its_slices_and_run_ids_are_unique(study):
    assert len({r.run_id for r in study.runs}) == len(study.runs)
    parts = collections.Counter(p for r in study.runs for p in _parts(r))
    assert set(parts) == {"sparsity", "size", "liew", "seeds"}
    assert study.train["batch_tokens"] == 1024


def test_sparsity_slice_spans_experts_1_to_64_at_top_k_1_2_and_4(study):
    runs = [r for r in study.runs if "sparsity" in _parts(r)]
    assert {(r.architecture.d_model, r.architecture.n_layers) for r in runs} == {(64, 2)}
    pairs = {(r.architecture.n_experts, r.architecture.top_k) for r in runs}
    assert {E for E, k in pairs if k == 1} == {1, 2, 4, 8, 16, 32, 64}
    assert {E for E, k in pairs if k == 2} == {2, 4, 8, 16, 32, 64} and {E for E, k in pairs if k == 4} == {16, 32, 64}
    assert len({r.compute for r in runs}) == 3


def test_size_slice_has_six_sizes_per_budget_and_tpp_from_1_to_100(study):
    runs = [r for r in study.runs if "size" in _parts(r) and r.seed == 0]
    for c in PRESETS["cpu-study"].compute:
        for E in (1, 8):
            sizes = {(r.architecture.d_model, r.architecture.n_layers) for r in runs
                     if r.compute == c and r.architecture.n_experts == E}
            assert len(sizes) == 6
    tpp = np.array([r.architecture.tpp(r.tokens) for r in runs if r.architecture.n_experts == 1])
    assert tpp.min() < 1 and tpp.max() > 100 and ((tpp > 10) & (tpp < 40)).sum() >= 3


def test_liew_slice_holds_n_total_within_5_percent_at_sparsity_4(study):
    runs = [r for r in study.runs if "liew" in _parts(r) and r.seed == 0]
    archs = {r.architecture for r in runs}
    assert {(a.n_experts, a.top_k) for a in archs} == {(8, 2), (16, 4), (32, 8)}
    n = np.array([a.n_total for a in archs])
    assert np.all(np.abs(n / 5e5 - 1) <= 0.05) and {a.sparsity for a in archs} == {4.0}


def test_every_architecture_runs_with_three_seeds_at_the_smallest_budget(study):
    low = min(PRESETS["cpu-study"].compute)
    seeds = collections.defaultdict(set)
    for r in study.runs:
        if r.compute == low:
            seeds[r.architecture].add(r.seed)
    assert seeds and all(s == {0, 1, 2} for s in seeds.values())


def test_the_sweep_file_round_trips_with_its_slices(study, tmp_path):
    path = tmp_path / "s.yaml"
    study.to_yaml(path)
    again = Sweep.from_yaml(path)
    assert [r.slice for r in again.runs] == [r.slice for r in study.runs]
    assert [r.run_id for r in again.runs] == [r.run_id for r in study.runs]


def test_a_liew_target_no_architecture_meets_is_one_line():
    sl = StudySlice("liew", (GridSpace(n_layers=(2,), d_model=(64,), n_experts=(8,), top_k=(2,), head_dim=16,
                                       vocab_size=512, seq_len=128),), (1e12,), total_params=1e9)
    with pytest.raises(MoescaleError, match="slice 'liew': no architecture with n_experts"):
        plan_slices([sl])


def test_gpu_small_is_the_cpu_study_at_four_times_the_width(study):
    """gpu-small: the same slices and experts per slice, every d_model x4, the same recipe (learning-rate
    rule, tasks) with 16x the tokens a step and 16x the individuals, on a GPU in bf16."""
    gpu = plan("gpu-small")

    def shapes(sweep, scale):
        return collections.Counter((r.slice, r.seed, r.architecture.n_experts, r.architecture.top_k,
                                    r.architecture.n_layers if "liew" not in _parts(r) else 0,
                                    r.architecture.d_model // scale if "liew" not in _parts(r) else 0)
                                   for r in sweep.runs)

    assert len(gpu.runs) == len(study.runs) == 140 and shapes(gpu, 4) == shapes(study, 1)
    tr, cpu = gpu.train, study.train
    assert {k: v for k, v in tr.items() if k not in ("data", "batch_tokens", "device", "dtype")} == \
        {k: v for k, v in cpu.items() if k not in ("data", "batch_tokens")}
    assert tr["batch_tokens"] == 16 * cpu["batch_tokens"] and tr["data"]["n_people"] == 16 * cpu["data"]["n_people"]
    assert (tr["device"], tr["dtype"]) == ("cuda", "bfloat16")
    liew = [r.architecture.n_total for r in gpu.runs if "liew" in _parts(r)]
    assert np.all(np.abs(np.array(liew) / 7.25e6 - 1) <= 0.05)
