"""data/studies/cpu-study: the shipped study is the cpu-study preset's sweep, whole, and its runs learn."""

from pathlib import Path

import numpy as np
import pytest

from scaling.demo import STUDY_DIR
from scaling.planner import plan

RUNS = STUDY_DIR / "runs"
pytestmark = pytest.mark.skipif(not RUNS.is_dir(), reason="the shipped study is not in this checkout")


@pytest.fixture(scope="module")
def final(tmp_path_factory):
    from scaling.ingest import ingest
    from scaling.store import Store

    with Store(tmp_path_factory.mktemp("study") / "s.duckdb") as store:
        ingest(store, [RUNS])
        return store.sql("SELECT * FROM final")


def test_the_shipped_runs_are_the_presets_runs_without_checkpoints():
    dirs = sorted(p for p in RUNS.iterdir() if p.is_dir())
    assert [d.name for d in dirs] == sorted(r.run_id for r in plan("cpu-study").runs)
    files = [f for f in RUNS.rglob("*") if f.is_file()]
    assert {f.name for f in files} == {"run.json", "metrics.jsonl", "evals.jsonl", "tokenizer.json"}
    assert sum(f.stat().st_size for f in files) <= 10 * 2**20
    assert (STUDY_DIR / "README.md").is_file() and (STUDY_DIR / "report" / "report.md").is_file()


def test_every_run_finished_in_its_slice_and_the_largest_budget_learns(final):
    assert len(final) == 140 and set(final["sweep"]) == {"cpu-study"}
    slices = {p for s in final["slice"] for p in s.split("+")}
    assert slices == {"sparsity", "size", "liew", "seeds"}
    top = final[np.isclose(final["active_flops"], 2e12, rtol=0.01)]
    # the study's promise (issue 19, section 3): at the largest budget the best model knows the facts
    # (>= 0.8) and solves each reasoning task at >= 3x its chance rate (arith 1/5, pointer 1/8) ...
    assert top["facts_accuracy"].max() >= 0.8
    assert top["arith_accuracy"].max() >= 3 * 0.2 and top["pointer_accuracy"].max() >= 3 * 0.125
    # ... and accuracies spread across the study (not all at the ceiling or at chance)
    for task, chance in (("facts", 1 / 64), ("arith", 0.2), ("pointer", 0.125)):
        acc = final[f"{task}_accuracy"]
        assert acc.min() < 2 * chance and acc.max() > 0.9 and acc.std() > 0.15, task


def test_the_study_readme_names_the_command_and_the_code_version():
    text = (STUDY_DIR / "README.md").read_text()
    assert "moescale plan grid --preset cpu-study --out s.yaml && moescale sweep s.yaml --store s.duckdb" in text
    assert "moescale ingest data/studies/cpu-study/runs/*" in text and "commit" in text
    assert Path(STUDY_DIR / "report" / "report.md").read_text().count("## The study's questions") == 1
