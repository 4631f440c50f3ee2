"""scaling/study.py: the study's questions, checked against statsmodels and plain pandas."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from figure_store import fixture_store
from scaling.study import COLUMNS, capacity, memorization_vs_total, seed_noise, study_questions


def _study(b_n=0.8, n=400, seed=0):
    """A sparsity slice (top-1, E 1..32 at two budgets, one facts task) plus size-slice runs, with facts
    accuracy drawn from logit p = b_n (ln N_total - 13) + 0.5 [larger budget]; and a seeds repeat."""
    rng = np.random.default_rng(seed)
    rows, evals = [], []
    for budget, shift in ((1e12, 0.0), (2e12, 0.5)):
        for E in (1, 2, 4, 8, 16, 32):
            for s in (0, 1):
                n_total = 1.5e5 + 4e4 * E
                rid = f"e{E}-c{budget:.0e}-s{s}"
                rows.append({"run_id": rid, "slice": "sparsity+seeds" if s else "sparsity", "top_k": 1,
                             "n_experts": E, "n_total": n_total, "n_active": 1.5e5, "sparsity": float(E),
                             "tokens": budget / 1e6, "flops_per_token": 1e6, "active_flops": budget,
                             "tpp": budget / 1e6 / n_total, "val_loss": 1.0, "seed": s, "d_model": 64,
                             "n_layers": 2})
                p = 1 / (1 + np.exp(-(b_n * (np.log(n_total) - 13) + shift)))
                evals.append({"run_id": rid, "step": 10, "task": "facts", "task_kind": "memorization",
                              "metric": "accuracy", "value": rng.binomial(n, p) / n, "n_examples": n})
    # a top-2 run and a size-slice run: both outside question 1's selection
    for rid, sl, k in (("k2", "sparsity", 2), ("size", "size", 1)):
        rows.append({**rows[0], "run_id": rid, "slice": sl, "top_k": k, "n_total": 9e6})
        evals.append({**evals[0], "run_id": rid, "value": 0.0})
    return SimpleNamespace(runs=pd.DataFrame(rows), evals=pd.DataFrame(evals), bootstrap=200, seed=0)


def test_memorization_slope_matches_statsmodels_and_is_supported():
    a = _study()
    row = memorization_vs_total(a)
    sel = a.runs[(a.runs["slice"].str.contains("sparsity")) & (a.runs["top_k"] == 1)]
    data = a.evals.merge(sel, on="run_id")
    X = pd.DataFrame({"const": 1.0, "big": (data["active_flops"] > 1.5e12).astype(float),
                      "logn": np.log(data["n_total"])})
    ref = sm.GLM(data["value"], X, family=sm.families.Binomial(), var_weights=data["n_examples"]).fit()
    assert row["n_runs"] == 24
    assert row["estimate"] == pytest.approx(ref.params["logn"], rel=1e-6)
    assert row["ci_low"] < 0.8 < row["ci_high"] and row["ci_low"] > 0
    assert row["verdict"].startswith("supported: b_N = ")


def test_memorization_without_an_effect_is_inconclusive_and_without_slices_not_testable():
    row = memorization_vs_total(_study(b_n=0.0, seed=3))
    assert row["ci_low"] < 0 < row["ci_high"] and row["verdict"].startswith("inconclusive")
    plain = _study()
    plain.runs = plain.runs.drop(columns="slice")
    assert memorization_vs_total(plain)["verdict"].startswith("not testable: no sparsity slice")


def test_seed_noise_is_the_standard_deviation_across_seeds():
    a = _study()
    noise = seed_noise(a.runs, a.evals)
    assert len(noise) == 12 and set(noise["seeds"]) == {2}
    acc = a.evals.set_index("run_id")["value"]
    one = noise[(noise["n_experts"] == 4) & (noise["tokens"] == 1e6)].iloc[0]
    assert one["sd_facts_accuracy"] == pytest.approx(np.std([acc["e4-c1e+12-s0"], acc["e4-c1e+12-s1"]], ddof=1))
    assert one["sd_val_loss"] == 0.0


def test_capacity_reads_the_facts_tasks_bits_per_parameter():
    a = _study()
    ev = pd.DataFrame([{"run_id": "e1-c1e+12-s0", "step": 10, "metric": m, "value": v}
                       for m, v in (("knowledge_bits", 3000.0), ("bits_per_param", 0.0158))])
    cap = capacity(a.runs, ev)
    assert cap[["run_id", "knowledge_bits", "bits_per_param"]].to_dict("records") == [
        {"run_id": "e1-c1e+12-s0", "knowledge_bits": 3000.0, "bits_per_param": 0.0158}]


def test_study_questions_lists_every_question_with_a_verdict():
    fx = fixture_store()
    table = study_questions(fx.analysis)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 1 + 3 + 2 + len(fx.analysis.optimum.best)
    words = ("supported", "contradicted", "inconclusive", "not testable", "undetermined", "determined")
    assert all(str(v).split(":")[0] in words for v in table["verdict"])
    assert table.iloc[0]["verdict"].startswith("not testable")  # the fixture's runs name no slices


def test_the_store_carries_each_runs_slice_into_final(tmp_path):
    from scaling.architecture import Architecture
    from scaling.ingest import ingest
    from scaling.rundir import RunWriter
    from scaling.store import Store

    arch = Architecture(d_model=32, n_layers=1, n_heads=2, d_ff=32, n_experts=4, top_k=1, vocab_size=64, seq_len=16)
    for rid, extra in (("a", {"slice": "sparsity+seeds"}), ("b", {})):
        config = {"architecture": arch.to_dict(), "tokens": 1000, "seed": 0, **extra}
        w = RunWriter(tmp_path / "runs" / rid, rid, config, columns={**arch.to_dict(), **arch.summary(),
                                                                       "tokens_planned": 1000, "seed": 0})
        w.log(10, 1000, train_loss=2.0, val_loss=2.1)
        w.finish("finished")
    with Store(tmp_path / "s.duckdb") as store:
        ingest(store, [tmp_path / "runs"])
        rows = store.sql("SELECT run_id, slice FROM final ORDER BY run_id")
    assert rows["slice"].tolist()[0] == "sparsity+seeds" and rows["slice"].isna().tolist() == [False, True]


def test_the_report_has_a_study_section_only_for_a_store_of_slices():
    from figures.study import has_slices, study_blocks

    fx = fixture_store()
    assert not has_slices(fx.analysis.runs)
    runs = fx.analysis.runs.assign(slice="sparsity")
    assert has_slices(runs)
    blocks = study_blocks(SimpleNamespace(**{**vars(fx.analysis), "runs": runs}))
    assert blocks[0] == ("h2", "The study's questions")
    table = next(b[1] for b in blocks if b[0] == "table")
    assert list(table.columns) == list(COLUMNS) and len(table) == 1 + 3 + 2 + len(fx.analysis.optimum.best)


def test_runs_of_one_budget_share_one_intercept_despite_rounding_of_their_flops():
    # A run's active FLOPs miss its budget by up to half a token's FLOPs (tokens = round(C / flops_per_token)):
    # such runs are one budget (scaling.budgets.budget_groups), not one intercept each.
    a = _study()
    jittered = _study()
    jittered.runs["tokens"] *= 1 + 1e-4 * np.sin(np.arange(len(jittered.runs)))
    jittered.runs["active_flops"] = jittered.runs["tokens"] * jittered.runs["flops_per_token"]
    assert memorization_vs_total(jittered)["estimate"] == pytest.approx(memorization_vs_total(a)["estimate"], rel=1e-9)
