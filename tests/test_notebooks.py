"""Notebooks are documentation: each one's code cells must run top to bottom (in one namespace, as a kernel would)."""

import json
from pathlib import Path

import matplotlib
import pytest

from conftest import dataset_path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _run(notebook: Path) -> dict:
    matplotlib.use("Agg")
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells
    namespace: dict = {}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{notebook.name}[cell {i}]", "exec"), namespace)
    return namespace


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == ["explore.ipynb", "quickstart.ipynb"]


def test_quickstart_notebook(tmp_path, monkeypatch):
    dataset_path("chinchilla_epoch.csv")
    monkeypatch.chdir(tmp_path)
    namespace = _run(NOTEBOOKS / "quickstart.ipynb")
    assert namespace["result"].converged
    assert namespace["result"].objective == pytest.approx(1.01827e-3, rel=1e-5)


def test_explore_notebook(tmp_path, monkeypatch):
    from figure_store import fixture_store

    fx = fixture_store()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOESCALE_STORE", str(fx.path))
    ns = _run(NOTEBOOKS / "explore.ipynb")
    assert len(ns["final"]) == len(fx.final)
    assert ns["result"].law.name == "moe" and ns["result"].converged
    # the notebook's fit is the analysis's full moe fit (same data, same law, same engine)
    ref = fx.analysis.claims.fits["moe"]
    assert ns["result"].objective == pytest.approx(ref.objective, rel=1e-6)
    best = ns["optimum"].best
    assert len(best) == len(ns["budgets"]) == 3
    ref_best = fx.analysis.optimum.best[fx.analysis.optimum.best["objective"] == "loss"]
    assert list(best["arch"]) == list(ref_best["arch"])
    for name in ("fig_fit", "fig_error", "fig_iso"):
        assert ns[name].axes and all(ax.get_ylabel() for ax in ns[name].axes)
