"""scaling.analysis: the whole analysis reads the store's ``final`` view once, and serializes."""

import json
import math
import re

import pytest

from scaling.analysis import analyze
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
