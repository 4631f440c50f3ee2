"""scaling.final: selecting one variant of a sweep (where=, sweep=) and refusing stores that mix variants."""

import json

import pandas as pd
import pytest

from scaling.errors import MoescaleError
from scaling.final import config_variants, load_final, open_store


def _runs(lrs, *, per_size=False, data_kind="synthetic"):
    """Runs of two architectures (d_model 64, 128) at two budgets each, with the given lr per run."""
    rows = []
    for i, lr in enumerate(lrs):
        d = (64, 128)[i % 2]
        cfg = {"architecture": {"d_model": d, "n_layers": 4}, "tokens": 1000 + i, "seed": 0,
               "lr": (3e-3 if d == 64 else 1e-3) if per_size else lr, "data": {"kind": data_kind},
               "log_interval": 10 + i, "device": "cpu" if i % 2 else "cuda"}
        rows.append({"run_id": f"r{i:02d}", "sweep": "s", "config": json.dumps(cfg), "d_model": d, "n_layers": 4,
                     "n_heads": 2, "d_ff": 2 * d, "n_experts": 4, "top_k": 1, "vocab_size": 512, "seq_len": 128,
                     "n_total": 1e6 * d, "n_active": 3e5 * d, "sparsity": 4.0, "tokens": 1000.0 + i,
                     "val_loss": 3.0 - 0.01 * i, "active_flops": 1e14 * (1 + i // 2)})
    return pd.DataFrame(rows)


def test_a_store_mixing_variants_is_refused_naming_the_keys():
    mixed = _runs([3e-3, 3e-3, 3e-3, 3e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    assert config_variants(mixed) == {"lr": ["0.001", "0.003"]}
    with pytest.raises(MoescaleError, match=r"mix variants of a sweep that differ in lr \(0.001, 0.003\); "
                                            r"analyze one variant with --where"):
        load_final(mixed)
    # selecting one variant with where= (SQL over final) is accepted, and says how many were left out
    runs = load_final(mixed, where="json_extract_string(config, '$.lr') = '0.003'")
    assert len(runs) == 4 and runs.excluded["not selected"] == 4


def test_what_the_recipe_varies_per_run_or_per_size_is_not_a_variant():
    # lr set per architecture (one value per d_model), per-run keys (tokens, seed, log_interval, device)
    assert config_variants(_runs([0] * 8, per_size=True)) == {}
    assert len(load_final(_runs([0] * 8, per_size=True))) == 8
    # a changed data spec is a variant
    changed = pd.concat([_runs([3e-3] * 4), _runs([3e-3] * 4, data_kind="bin").assign(run_id=lambda d: d.run_id + "b")])
    assert list(config_variants(changed)) == ["data.kind"]


def test_sweep_and_where_errors_are_one_line():
    runs = _runs([3e-3] * 4)
    with pytest.raises(MoescaleError, match=r"sweep 'x' is not in the store \(sweeps: s\)"):
        load_final(runs, sweep="x")
    with pytest.raises(MoescaleError, match="where 'nope = 1': "):
        load_final(runs, where="nope = 1")
    assert len(load_final(runs, sweep="s")) == 4


def test_other_tables_are_accepted_or_named():
    import pyarrow as pa

    runs = _runs([3e-3] * 4)
    assert len(load_final(pa.Table.from_pandas(runs))) == 4  # an Arrow table of the final view
    with pytest.raises(MoescaleError, match=r"a pandas DataFrame of final runs, got builtins\.dict$"):
        open_store({"a": 1})
