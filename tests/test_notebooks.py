"""Notebooks are documentation: each one's code cells must run top to bottom."""

import json
from pathlib import Path

import matplotlib
import pytest

from conftest import dataset_path

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(notebook, tmp_path, monkeypatch):
    dataset_path("chinchilla_epoch.csv")
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells
    namespace: dict = {}
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{notebook.name}[cell {i}]", "exec"), namespace)
    assert namespace["result"].converged
    assert namespace["result"].objective == pytest.approx(1.01827e-3, rel=1e-5)
