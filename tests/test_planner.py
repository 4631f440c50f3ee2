"""The planner: presets, constraints honored by every run, YAML round trip, messages, CLI."""

import json
import subprocess
import sys
from collections import Counter

import pytest

from scaling.architecture import Architecture
from scaling.errors import MoescaleError
from scaling.planner import PRESETS, Constraints, GridSpace, PlannedRun, Sweep, candidates, plan, run_id_for


def test_optimal_sparsity_preset_is_the_65_model_grid():
    sweep = plan("optimal-sparsity")
    per_width = Counter(r.architecture.d_model for r in sweep.runs)
    assert per_width == {512: 23, 1024: 23, 2048: 19}
    assert len(sweep.runs) == 65
    for r in sweep.runs:
        a = r.architecture
        assert (a.n_layers, a.d_ff, a.n_heads, a.vocab_size) == (16, 2 * a.d_model, a.d_model // 128, 99574)
        assert not a.tied_embeddings and a.top_k <= a.n_experts
        assert a.n_experts in (8, 16, 32, 64, 128, 256) and a.top_k in (2, 4, 8, 16)
        assert r.tokens == 125_000_000_000
    assert max(r.architecture.n_experts for r in sweep.runs if r.architecture.d_model == 2048) == 128
    assert len({r.run_id for r in sweep.runs}) == 65


def test_optimal_sparsity_preset_contains_the_published_models():
    from conftest import dataset_path
    import pandas as pd

    df = pd.read_csv(dataset_path("optimal_sparsity_models.csv"))
    planned = {(r.architecture.d_model, r.architecture.n_experts, r.architecture.top_k) for r in plan("optimal-sparsity").runs}
    assert set(zip(df.d_model, df.n_experts, df.top_k)) <= planned


ISOFLOP_ARCHS = {(1, 1), (4, 1), (8, 1), (16, 1), (4, 2), (16, 2)}


@pytest.mark.parametrize("name", ["cpu-tiny"])
def test_isoflop_presets_span_sparsity_at_each_budget(name):
    preset = PRESETS[name]
    sweep = plan(name)
    assert len(preset.compute) == 3 and len(sweep.runs) == 18 and sweep.constraints.compute == preset.compute
    per_budget = {}
    for r in sweep.runs:
        a = r.architecture
        # isoFLOP: every run spends its budget C = flops_per_token * D, within half a token
        assert abs(a.training_flops(r.tokens) - r.compute) <= a.flops_per_token / 2
        assert a.d_ff == 2 * a.d_model and a.n_heads == a.d_model // (32 if name == "cpu-tiny" else 64)
        per_budget.setdefault(r.compute, set()).add((a.n_experts, a.top_k))
    assert set(per_budget) == set(preset.compute)
    assert all(archs == ISOFLOP_ARCHS for archs in per_budget.values())
    sparsities = sorted({r.architecture.sparsity for r in sweep.runs})
    assert sparsities == [1, 2, 4, 8, 16]
    assert f"{len(sweep.runs)} runs" in preset.description and "6 x 3" in preset.description
    assert sweep.train == preset.train and sweep.train is not preset.train


def test_cpu_tiny_preset_is_small():
    sweep = plan("cpu-tiny")
    for r in sweep.runs:
        a = r.architecture
        # the synthetic corpus's vocabulary (<= 512 tokens) and the model's fixed shape
        assert (a.n_layers, a.d_model, a.vocab_size, a.seq_len, a.d_model // a.n_heads) == (2, 64, 512, 128, 32)
        assert a.n_total < 1_000_000 and r.tokens <= 1_000_000
    total = sum(r.architecture.training_flops(r.tokens) for r in sweep.runs)
    assert total == pytest.approx(6 * sum(PRESETS["cpu-tiny"].compute), rel=1e-6)  # minutes on 2 CPU cores


def test_preset_budgets_give_way_to_explicit_ones():
    assert {r.compute for r in plan("cpu-tiny", Constraints(compute=(1e12,))).runs} == {1e12}
    runs = plan("cpu-tiny", Constraints(tokens=1000)).runs
    assert len(runs) == 6 and {r.tokens for r in runs} == {1000} and {r.compute for r in runs} == {None}


def test_sweep_train_block_round_trips_and_is_checked(tmp_path):
    sweep = plan("cpu-tiny")
    sweep.train = {"lr": 0.003, "data": {"kind": "synthetic", "n_people": 100}}
    again = Sweep.from_yaml(sweep.to_yaml(tmp_path / "s.yaml"))
    assert again.train == sweep.train and [r.run_id for r in again.runs] == [r.run_id for r in sweep.runs]
    text = (tmp_path / "s.yaml").read_text()
    assert text.index("train:") < text.index("runs:")  # the settings come before the long list of runs
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: s\ntrain: [1, 2]\nruns: []\n")
    with pytest.raises(MoescaleError, match="'train' must be a mapping"):
        Sweep.from_yaml(bad)
    bad.write_text("name: s\nruns: [3]\n")
    with pytest.raises(MoescaleError, match="'runs' must be a list of runs"):
        Sweep.from_yaml(bad)
    assert "train" not in Sweep(name="s", runs=[]).to_dict()


SPACE = GridSpace(
    n_layers=(2, 4, 8), d_model=(64, 128, 256), n_experts=(1, 2, 4, 8, 16), top_k=(1, 2, 4), granularity=(0.25, 0.5, 1.0),
    head_dim=32, vocab_size=1024, seq_len=256,
)


@pytest.mark.parametrize(
    "constraints",
    [
        Constraints(total_params=3e6, tolerance=0.2, tokens=1e6),
        Constraints(active_params=1e6, tolerance=0.1, compute=(1e13, 3e13, 1e14)),
        Constraints(total_params=5e6, flops_per_token=6e6, tolerance=0.3, compute=(1e14,)),
        Constraints(total_params=2e6, active_params=1.2e6, flops_per_token=7e6, tolerance=0.25, tokens=5e5),
    ],
)
def test_every_planned_run_honors_every_constraint(constraints):
    sweep = plan(SPACE, constraints, seed=3)
    assert sweep.runs
    tol = constraints.tolerance
    for r in sweep.runs:
        a = r.architecture
        assert a.top_k <= a.n_experts and a.n_heads * 32 == a.d_model
        assert a.n_layers in SPACE.n_layers and a.d_model in SPACE.d_model
        assert a.n_experts in SPACE.n_experts and a.top_k in SPACE.top_k
        assert a.d_model / a.d_ff in SPACE.granularity
        for target, value in (
            (constraints.total_params, a.n_total),
            (constraints.active_params, a.n_active),
            (constraints.flops_per_token, a.flops_per_token),
        ):
            if target is not None:
                assert (1 - tol) * target <= value <= (1 + tol) * target
        if constraints.compute:
            assert r.compute in constraints.compute
            assert abs(a.flops_per_token * r.tokens - r.compute) <= a.flops_per_token / 2  # D = C / F, rounded
        else:
            assert r.tokens == constraints.tokens and r.compute is None
        assert r.seed == 3
    if constraints.compute:  # isoFLOP: every architecture at every budget
        per_arch = Counter(r.architecture for r in sweep.runs)
        assert set(per_arch.values()) == {len(constraints.compute)}


def test_planner_keeps_exactly_the_admissible_candidates():
    # Independent brute force over the same axes.
    c = Constraints(total_params=3e6, active_params=1e6, tolerance=0.25)
    expected = set()
    for L in SPACE.n_layers:
        for d in SPACE.d_model:
            for E in SPACE.n_experts:
                for k in SPACE.top_k:
                    for G in SPACE.granularity:
                        if k > E:
                            continue
                        a = Architecture(d_model=d, n_layers=L, n_heads=d // 32, d_ff=int(d / G), n_experts=E, top_k=k,
                                         vocab_size=1024, seq_len=256)
                        if abs(a.n_total - 3e6) <= 0.75e6 and abs(a.n_active - 1e6) <= 0.25e6:
                            expected.add(a)
    assert expected and set(candidates(SPACE, c)) == expected


def test_sweep_yaml_round_trip(tmp_path):
    sweep = plan(SPACE, Constraints(active_params=1e6, compute=(1e13, 1e14)), name="iso", seed=7)
    path = tmp_path / "sweep.yaml"
    text = sweep.to_yaml(path)
    assert path.read_text() == text
    back = Sweep.from_yaml(path)
    assert back == sweep
    assert Sweep.from_yaml(text) == sweep
    assert back.to_yaml() == text


def test_run_id_is_deterministic_and_distinguishes_configs():
    a = Architecture(d_model=64, n_layers=2, n_heads=2, d_ff=128, n_experts=4, top_k=2)
    assert run_id_for(a, 1000, 0) == run_id_for(Architecture(**a.to_dict()), 1000, 0)
    assert run_id_for(a, 1000, 0).startswith("d64-l2-e4-k2-f128-")
    assert len({run_id_for(a, 1000, 0), run_id_for(a, 1001, 0), run_id_for(a, 1000, 1)}) == 3
    assert PlannedRun.create(a, 1000).run_id == run_id_for(a, 1000, 0)


def test_infeasible_budget_names_the_constraint():
    with pytest.raises(MoescaleError, match=r"total_params = 1e\+12 .* excludes all 65 remaining") as err:
        plan("optimal-sparsity", Constraints(total_params=1e12))
    assert "n_total spans" in str(err.value)
    # total_params alone leaves the d512 E128 models; active_params then removes everything
    with pytest.raises(MoescaleError, match=r"active_params = 1e\+09 .*total_params removed 61"):
        plan("optimal-sparsity", Constraints(total_params=3.3e9, active_params=1e9, tolerance=0.05))
    with pytest.raises(MoescaleError, match="flops_per_token"):
        plan(SPACE, Constraints(flops_per_token=1.0, tokens=1))


def test_infeasible_structure_names_the_rule():
    with pytest.raises(MoescaleError, match="top_k <= n_experts excludes all"):
        plan(GridSpace(n_layers=(2,), d_model=(64,), n_experts=(2,), top_k=(4,), head_dim=32), Constraints(tokens=10))
    with pytest.raises(MoescaleError, match="d_model divisible by head_dim"):
        plan(GridSpace(n_layers=(2,), d_model=(100,)), Constraints(tokens=10))


def test_bad_inputs():
    with pytest.raises(MoescaleError, match="unknown preset 'nope'"):
        plan("nope")
    with pytest.raises(MoescaleError, match="tolerance"):
        Constraints(tolerance=1.5)
    with pytest.raises(MoescaleError, match="either compute budgets or tokens"):
        Constraints(compute=(1e18,), tokens=1e9)
    with pytest.raises(MoescaleError, match="--compute"):
        plan(SPACE, Constraints())
    with pytest.raises(MoescaleError, match="less than one token"):
        plan(SPACE, Constraints(compute=(10.0,)))
    with pytest.raises(MoescaleError, match="'name' and 'runs'"):
        Sweep.from_yaml("just: text\n")
    with pytest.raises(MoescaleError, match="no such file"):
        Sweep.from_yaml("missing/sweep.yaml")
    with pytest.raises(MoescaleError, match="unknown key"):
        Constraints.from_dict({"total_param": 1e9})


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "scaling.cli", "plan", *args], capture_output=True, text=True)


def test_cli_count_json():
    out = _cli("count", "--d-model", "512", "--n-layers", "16", "--n-heads", "4", "--d-ff", "1024",
               "--n-experts", "8", "--top-k", "2", "--vocab", "99574", "--json")
    assert out.returncode == 0, out.stderr
    # hand counts: see tests/test_architecture.py::test_hand_counted_d512_e8_k2
    assert json.loads(out.stdout) == {
        "n_total": 320_150_016,
        "n_active": 169_155_072,
        "n_total_nonembed": 218_186_240,
        "n_active_nonembed": 67_191_296,
        "flops_per_token": 910_264_320,
        "flops_per_token_6n": 6 * 169_155_072,
        "sparsity": 4.0,
        "density": 0.25,
        "granularity": 0.5,
    }
    table = _cli("count", "--d-model", "64", "--n-layers", "2", "--n-heads", "2", "--d-ff", "128", "--tied")
    assert table.returncode == 0 and "n_total" in table.stdout


def test_cli_grid_writes_a_sweep(tmp_path):
    out = tmp_path / "sweep.yaml"
    res = _cli("grid", "--preset", "cpu-tiny", "--compute", "1e12", "3e12", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "12 runs" in res.stdout
    sweep = Sweep.from_yaml(out)
    assert len(sweep.runs) == 12 and sweep.preset == "cpu-tiny" and sweep.constraints.compute == (1e12, 3e12)


def test_cli_errors_are_one_line_exit_2():
    res = _cli("grid", "--preset", "optimal-sparsity", "--total-params", "1.3B")
    assert res.returncode == 2
    assert res.stderr.startswith("error: no architecture meets the constraints: total_params")
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _cli("count", "--d-model", "64", "--n-layers", "2", "--n-heads", "3", "--d-ff", "128")
    assert res.returncode == 2 and "n_heads" in res.stderr
    res = _cli("grid", "--preset", "cpu-tiny", "--d-model", "64")
    assert res.returncode == 2 and "--preset fixes the grid" in res.stderr


def test_presets_are_registered():
    assert set(PRESETS) == {"optimal-sparsity", "cpu-tiny", "gpu-small", "cpu-study", "cpu-study-demo"}


def test_plan_grid_takes_a_preset_or_axes_but_not_both():
    from scaling.planner import plan_grid

    sweep = plan_grid(axes={"d_model": (256,), "n_layers": (4,), "n_experts": (1, 8), "top_k": None}, tokens=1e6)
    assert sweep == plan(GridSpace(n_layers=(4,), d_model=(256,), n_experts=(1, 8)), Constraints(tokens=1e6))
    assert plan_grid("cpu-tiny") == plan("cpu-tiny")
    with pytest.raises(MoescaleError, match="plan grid: --preset fixes the grid; drop --n-layers, --vocab, --tied"):
        plan_grid("cpu-tiny", {"vocab_size": 1000, "n_layers": (2,)}, tied_embeddings=True)
    with pytest.raises(MoescaleError, match="give --preset, or at least --d-model and --n-layers"):
        plan_grid(axes={"d_model": (256,)})
    with pytest.raises(MoescaleError, match="either compute budgets or tokens"):  # budgets are checked first
        plan_grid(axes={"d_model": (256,)}, compute=(1e15,), tokens=1e6)


def test_sweep_file_not_utf8_or_with_a_key_twice_is_one_line(tmp_path):
    from scaling.planner import load_yaml

    text = plan("cpu-tiny").to_yaml()
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(text.encode() + b"# r\xe9sum\xe9\n")
    with pytest.raises(MoescaleError, match=rf"^sweep {bad}: not UTF-8 text \(byte 0xe9 at offset {len(text.encode()) + 3}\)$"):
        Sweep.from_yaml(bad)
    twice = tmp_path / "twice.yaml"
    twice.write_text(text.replace("name: cpu-tiny\n", "name: cpu-tiny\nname: other\n", 1))
    with pytest.raises(MoescaleError, match=rf"^sweep {twice}:2:1: not valid YAML \(duplicate key 'name' \(first given on line 1\)\)$"):
        Sweep.from_yaml(twice)
    # nested mappings too; YAML merge keys ("<<") may still be overridden
    with pytest.raises(MoescaleError, match=r"^t:3:3: not valid YAML \(duplicate key 'lr' \(first given on line 2\)\)$"):
        load_yaml("train:\n  lr: 1\n  lr: 2\n", "t")
    assert load_yaml("a: &A {x: 1, y: 2}\nb: {<<: *A, x: 3}\n", "t") == {"a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 2}}


def test_planned_run_ids_are_the_trained_run_ids(tmp_path):
    # One id per run (issue 18): the id in the sweep file names the run directory and the store row.
    from runner.config import TrainConfig
    from runner.sweep.settings import resolve

    for name in ("cpu-tiny", "gpu-small"):
        sweep = plan(name)
        path = tmp_path / f"{name}.yaml"
        sweep.to_yaml(path)
        _, runs = resolve(path, tmp_path / "runs")
        assert [r.run_id for r in runs] == [r.run_id for r in sweep.runs]
        assert [r.dir.name for r in runs] == [r.run_id for r in sweep.runs]
        assert all(len(r.run_id.rsplit("-", 1)[1]) == 10 for r in sweep.runs)
    # a changed training setting is another run, with another id
    first = sweep.runs[0]
    assert TrainConfig.from_planned(first, {**sweep.train, "lr": 5e-4}).run_id != first.run_id
    # planning imports no torch
    code = "import sys; from scaling.planner import plan; plan('cpu-tiny'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
