"""Notebooks are documentation: each one runs top to bottom in a real Jupyter kernel (nbclient and ipykernel,
as Jupyter would run it: from the notebook's own folder), and its figures are displayed as images."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import dataset_path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
MARK = "__nbtest__"


def _execute(notebook: Path, cwd: Path, check: str | None = None):
    """Run ``notebook`` in a python3 kernel started in ``cwd``; ``check``: code appended as a last cell that
    prints one JSON line (read back as a dict). Returns (executed notebook, that dict or None)."""
    nb = nbformat.read(notebook, as_version=4)
    if check:
        nb.cells.append(nbformat.v4.new_code_cell(f"import json as _json\nprint({MARK!r} + _json.dumps({check}))"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    found = None
    if check:
        for out in nb.cells[-1].outputs:
            text = out.get("text", "")
            if MARK in text:
                found = json.loads(text.split(MARK, 1)[1])
    return nb, found


def _outputs_of(nb, last_line: str) -> list:
    """The outputs of the code cell whose source ends with ``last_line``."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.strip().endswith(last_line)]
    return cell.outputs


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == ["explore.ipynb", "quickstart.ipynb"]


def test_quickstart_notebook(tmp_path, monkeypatch):
    dataset_path("chinchilla_epoch.csv")
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "quickstart.ipynb", work)
    _, got = _execute(work / "quickstart.ipynb", work,
                      check='{"converged": bool(result.converged), "objective": float(result.objective)}')
    assert got["converged"]
    assert got["objective"] == pytest.approx(1.01827e-3, rel=1e-5)
    assert not list(work.glob("*.duckdb")), "the in-memory store wrote a file"


def test_explore_notebook_from_its_own_folder_shows_its_figures(tmp_path, monkeypatch):
    """From its own folder (Jupyter's working directory) and without MOESCALE_STORE, the notebook finds the
    repository's demo store (here a copy of the simulated store in a repository-shaped folder), and each
    figure cell displays a PNG, not ``<Figure size ...>``."""
    from figure_store import fixture_store

    fx = fixture_store()
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "demo").mkdir()
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    shutil.copy(NOTEBOOKS / "explore.ipynb", repo / "notebooks")
    shutil.copy(fx.path, repo / "demo" / "moescale.duckdb")
    monkeypatch.delenv("MOESCALE_STORE", raising=False)
    check = ('{"store": store_path, "final": len(final), "law": result.law.name, "converged": bool(result.converged), '
             '"objective": float(result.objective), "arch": list(optimum.best["arch"]), "budgets": len(budgets), '
             '"ylabels": {n: [ax.get_ylabel() for ax in globals()[n].axes] '
             'for n in ("fig_fit", "fig_error", "fig_iso")}}')
    nb, got = _execute(repo / "notebooks" / "explore.ipynb", repo / "notebooks", check=check)
    assert got["store"] == str(repo / "demo" / "moescale.duckdb")
    assert not (repo / "notebooks" / "demo").exists(), "a store was created beside the notebook"
    assert got["final"] == len(fx.final)
    assert got["law"] == "moe" and got["converged"]
    # the notebook's fit is the analysis's full moe fit (same data, same law, same engine)
    assert got["objective"] == pytest.approx(fx.analysis.claims.fits["moe"].objective, rel=1e-6)
    ref_best = fx.analysis.optimum.best[fx.analysis.optimum.best["objective"] == "loss"]
    assert got["budgets"] == 3 and got["arch"] == list(ref_best["arch"])
    for name, labels in got["ylabels"].items():
        assert labels and all(labels), name
    for name in ("fig_fit", "fig_error", "fig_iso"):
        outs = _outputs_of(nb, name)
        assert any("image/png" in o.get("data", {}) for o in outs), f"{name} is not displayed as an image"
        texts = [o.get("data", {}).get("text/plain", "") for o in outs if "image/png" not in o.get("data", {})]
        assert not any("<Figure size" in t for t in texts), name


def test_explore_notebook_refuses_a_missing_store(tmp_path, monkeypatch):
    """Without a store, the first cell fails naming the path, and no store file is created."""
    from nbclient.exceptions import CellExecutionError

    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(NOTEBOOKS / "explore.ipynb", work)
    monkeypatch.setenv("MOESCALE_STORE", str(tmp_path / "none.duckdb"))
    with pytest.raises(CellExecutionError, match="none.duckdb"):
        _execute(work / "explore.ipynb", work)
    assert not (tmp_path / "none.duckdb").exists()
