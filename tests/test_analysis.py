"""scaling.analysis: the whole analysis reads the store's ``final`` view once, and serializes."""

import json
import math
import re

import pandas as pd
import pytest

from scaling.analysis import analyze, isoflop
from scaling.final import FinalRuns, load_final
from scaling.simulate import write_store
from scaling.store import Store


class CountingStore(Store):
    """A Store that counts the queries reading the ``final`` view (through ``sql`` or ``table``)."""

    def __init__(self, *args, **kwargs):
        self.final_reads = 0
        self._in_table = False
        super().__init__(*args, **kwargs)

    def sql(self, query, *args, **kwargs):
        if not self._in_table and re.search(r"\bfinal\b", query, re.IGNORECASE):
            self.final_reads += 1
        return super().sql(query, *args, **kwargs)

    def table(self, name):
        self.final_reads += name == "final"
        self._in_table = True
        try:
            return super().table(name)
        finally:
            self._in_table = False


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = write_store(CountingStore(tmp_path_factory.mktemp("analysis") / "s.duckdb"), n_runs=36, seed=3)
    yield st
    st.close()


@pytest.fixture(scope="module")
def analysis(store):
    store.final_reads = 0
    result = analyze(store, bootstrap=6, seed=0)
    result.final_reads = store.final_reads
    return result


def test_analyze_reads_final_once(analysis, store):
    assert analysis.final_reads == 1
    # every part ran on the runs read: claims, accuracy (the store has evals), isoFLOP minima, optimum
    assert analysis.claims.n_runs == len(analysis.runs) == 36
    assert analysis.accuracy is not None and set(analysis.objectives) == {"loss", "memorization", "reasoning"}
    assert len(analysis.optimum.best) == len(analysis.compute) * len(analysis.objectives)
    # the counter itself sees a read of the view
    store.final_reads = 0
    store.sql("SELECT count(*) FROM final")
    store.table("final")
    assert store.final_reads == 2


def test_loaded_runs_are_passed_down_with_one_set_of_resamples(store):
    """The steps take the loaded runs, read nothing more, and draw the same resamples of runs."""
    from scaling.accuracy import accuracy_models
    from scaling.claims import test_claims

    store.final_reads = 0
    runs = load_final(store)
    assert isinstance(runs, FinalRuns) and load_final(runs) is runs and store.final_reads == 1
    claims = test_claims(runs, bootstrap=3, seed=1, extrapolation=False)
    accuracy = accuracy_models(runs, bootstrap=3, seed=1, two_step=False)
    assert store.final_reads == 1 and accuracy.bootstrap == 3
    weights = runs.resample(3, 1)
    assert claims.bootstrap_weights is weights and weights.shape == (3, len(runs))
    assert (weights.sum(axis=1) == len(runs)).all()


def test_to_json_is_plain_json(analysis):
    payload = analysis.to_json()
    text = json.dumps(payload, allow_nan=False)  # NaN and infinities became null
    back = json.loads(text)
    assert back["n_runs"] == 36 and back["bootstrap"] == 6 and back["objectives"] == analysis.objectives
    assert back["headline"] == analysis.headline()
    assert [r["arch"] for r in back["optimum"]["best"]] == list(analysis.optimum.best.arch)
    assert back["optimum"] == json.loads(json.dumps(analysis.optimum.to_json()))
    claims = {r["parameter"]: r for r in back["claims"]["table"]}
    assert claims["alpha_active"]["ci_low"] is None and math.isnan(analysis.claims.table.ci_low.iloc[-1])
    assert claims["gamma"]["estimate"] == pytest.approx(analysis.claims.fits["moe"].params["gamma"])
    assert set(back["claims"]["fits"]) == set(analysis.claims.fits)
    assert set(back["accuracy"]["models"]) == set(analysis.accuracy.models)
    assert len(back["isoflop"]) == len(analysis.isoflop)


def test_headline_states_no_optimum_the_data_do_not_decide(analysis):
    """The default truth's optimum is the grid's highest sparsity (32): every headline says
    undetermined and why, and the one table carries the same verdicts."""
    best = analysis.optimum.best
    assert not best.determined.any() and best.why.str.contains("highest sparsity of the grid").all()
    lines = analysis.headline()
    assert len(lines) == len(best)
    assert all("optimal sparsity undetermined (fitted 32: " in h and "highest sparsity of the grid" in h for h in lines)
    table = analysis.table()
    assert list(table.columns) == ["part", "item", "estimate", "ci_low", "ci_high", "verdict"]
    opt = table[table.part == "optimum"]
    assert len(opt) == len(best) and opt.estimate.isna().all() and opt.verdict.str.startswith("undetermined: ").all()
    assert (table.part == "claim").sum() == len(analysis.claims.table)
    assert analysis.to_json()["table"][0]["part"] == "claim"


def _family_runs(budget=1e14):
    """Two families (k = 1 and k = 2) at one budget sharing the middle N_total: k = 1 has its minimum
    there (1.99), k = 2 is worst there (2.48); the average 2.235 belongs to no run."""
    rows = []
    for k, losses in ((1, (2.2, 1.99, 2.1)), (2, (2.3, 2.48, 2.25))):
        for n, loss in zip((1e6, 2e6, 4e6), losses):
            rows.append({"run_id": f"k{k}-{n:g}", "n_total": n, "n_active": n / 4, "sparsity": 8 / k,
                         "n_experts": 8, "top_k": k, "tokens": budget / (6 * n), "val_loss": loss,
                         "active_flops": budget})
    return pd.DataFrame(rows)


def test_isoflop_minima_per_family_never_average_families():
    from scaling.allocation import isoflop_minima

    iso, notes = isoflop(load_final(_family_runs()))
    assert set(iso.family) == {"E8-k1", "E8-k2", "envelope"} and "never averaged" in notes[0]
    per = iso.set_index("family")
    # each family's minimum is its own Akima minimum (reference: isoflop_minima on that family alone)
    for fam, k in (("E8-k1", 1), ("E8-k2", 2)):
        alone = isoflop_minima(_family_runs()[lambda d: d.top_k == k].assign(budget=1e14), budget="budget",
                               size="n_total", loss="val_loss")
        assert per.loc[fam, "loss_opt"] == pytest.approx(alone.loss_opt.iloc[0])
    assert per.loc["E8-k1", "loss_opt"] <= 1.99 and per.loc["E8-k2", "loss_opt"] <= 2.25
    # the envelope takes the better family at each N_total: 2.2, 1.99, 2.1 (not the averages 2.25, 2.235, 2.175)
    assert per.loc["envelope", "loss_opt"] == pytest.approx(per.loc["E8-k1", "loss_opt"])


def test_analyze_argument_errors_are_one_line(store):
    from scaling.errors import MoescaleError

    store.final_reads = 0
    for kwargs, message in (({"seed": -1}, "seed = -1: must be an integer >= 0"),
                            ({"compute": "abc"}, "compute budget 'abc' must be a finite number > 0"),
                            ({"compute": [1e14, -1.0]}, "compute budget -1.0 must be a finite number > 0"),
                            ({"bootstrap": 2.5}, "bootstrap = 2.5: must be an integer >= 0")):
        with pytest.raises(MoescaleError, match=re.escape(message)):
            analyze(store, **kwargs)
    assert store.final_reads == 0  # refused before reading anything


def test_analyze_takes_a_scalar_budget_and_a_data_frame(store):
    final = store.sql("SELECT * FROM final")
    result = analyze(final, compute=1e14, bootstrap=0, objectives=["loss"])
    assert result.compute == [1e14] and len(result.optimum.best) == 1
    assert result.headline()[0].startswith("C = 1e+14, loss: optimal sparsity undetermined (fitted ")
    assert "no bootstrap resamples" in result.headline()[0]


def test_cli_analyze_prints_one_table(store, tmp_path, capsys):
    from scaling.cli import main

    out = tmp_path / "a.json"
    assert main(["analyze", "--store", str(store.path), "--bootstrap", "3", "--compute", "1e14", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:3] == ["part", "item", "estimate"] and "headline:" in text
    payload = json.loads(out.read_text())
    assert payload["compute"] == [1e14] and payload["bootstrap"] == 3
    assert {r["part"] for r in payload["table"]} == {"claim", "accuracy", "optimum"}
    for argv, message in ((["--seed", "-1"], "--seed: -1 must be >= 0"),
                          (["--memory", "-5"], "--memory: -5 must be > 0"),
                          (["--sweep", "nope"], "sweep 'nope' is not in the store")):
        try:
            code = main(["analyze", "--store", str(store.path), *argv])
        except SystemExit as exc:  # argparse's own checks exit there, with the same one line
            code = exc.code
        assert code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
