"""figures/: every figure renders from a small simulated store, with labelled axes and the right series."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer

from conftest import dataset_path
from figure_store import fixture_store
from figures import accuracy as acc_fig
from figures import curves, loss, public
from figures.draw import FIGURES, draw_all
from figures.style import NoData, log_axis, new_figure, save
from scaling import public_fits
from scaling.budgets import budget_groups
from scaling.cli import main
from scaling.errors import MoescaleError

PNG = b"\x89PNG\r\n\x1a\n"
STORE_FIGURES = [n for n in FIGURES if n not in ("chinchilla_epoch", "clark_experts")]


@pytest.fixture(scope="module")
def fx():
    return fixture_store()


def _labelled(fig):
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel() or ax.get_shared_x_axes().get_siblings(ax) != [ax], "x axis unlabelled"
        assert ax.get_ylabel(), "y axis unlabelled"


def _tasks(evals):
    return sorted(set(evals.loc[evals["metric"] == "accuracy", "task"]))


def test_draw_all_renders_every_store_figure(fx, tmp_path):
    res = draw_all(fx.store, tmp_path, fx.analysis, public=False, formats=("png",))
    assert sorted(res.figures) == sorted(STORE_FIGURES)
    assert set(res.skipped) == {"chinchilla_epoch", "clark_experts"}
    for name, paths in res.figures.items():
        assert [p.name for p in paths] == [f"{name}.png"]
        data = paths[0].read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    assert not list(tmp_path.glob(".*")), "temporary files left behind"
    assert "skipped:" in res.summary()


def test_error_vs_loss_one_panel_per_task_one_series_per_density(fx):
    fig = acc_fig.error_vs_loss(fx.final, fx.evals)
    tasks = _tasks(fx.evals)
    assert len(fig.axes) == len(tasks)
    kinds = dict(fx.evals[["task", "task_kind"]].drop_duplicates().itertuples(index=False))
    for ax in fig.axes:
        task = ax.get_title().split(" (")[0]
        assert ax.get_title() == f"{task} ({kinds[task]})"
        runs = fx.evals[(fx.evals["task"] == task) & (fx.evals["metric"] == "accuracy")]["run_id"]
        densities = fx.final[fx.final["run_id"].isin(runs)]["density"].nunique()
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(scatters) == densities
        # error = 1 - accuracy, plotted against val_loss
        pts = np.vstack([c.get_offsets() for c in scatters])
        last = fx.evals[(fx.evals["task"] == task) & (fx.evals["metric"] == "accuracy")].merge(
            fx.final[["run_id", "val_loss"]], on="run_id")
        want = np.column_stack([last["val_loss"], 1 - last["value"]])
        np.testing.assert_allclose(np.sort(pts, axis=0), np.sort(want, axis=0))
    _labelled(fig)


def test_accuracy_vs_density_one_line_per_budget(fx):
    fig = acc_fig.accuracy_vs_density(fx.final, fx.evals)
    n_budgets = len(np.unique(budget_groups(fx.final["active_flops"])))
    assert len(fig.axes) == len(_tasks(fx.evals))
    for ax in fig.axes:
        assert len(ax.get_lines()) == n_budgets
        task = ax.get_title().split(" (")[0]
        # each line goes through the best run at each density
        acc = fx.evals[(fx.evals["task"] == task) & (fx.evals["metric"] == "accuracy")].merge(fx.final, on="run_id")
        acc["budget"] = budget_groups(acc["active_flops"])
        top = acc[acc["budget"] == acc["budget"].max()].groupby("density")["value"].max()
        ys = {tuple(line.get_ydata()) for line in ax.get_lines()}
        assert tuple(top.sort_index().to_numpy()) in ys
    _labelled(fig)


def test_accuracy_vs_tpp_curve_per_task_and_peak(fx):
    acc = fx.analysis.accuracy
    fig = acc_fig.accuracy_vs_tpp(acc)
    assert len(fig.axes) == len(acc.models)
    for ax, kind in zip(fig.axes, acc.models):
        labels = [ln.get_label() for ln in ax.get_lines()]
        assert sorted(x for x in labels if not x.startswith("peak")) == sorted(acc.models[kind].tasks)
        peak = acc.peaks.set_index("kind").loc[kind]
        peak_lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("peak")]
        if peak["interior"]:
            assert len(peak_lines) == 1 and peak_lines[0].get_xdata()[0] == pytest.approx(peak["tpp_peak"])
        else:
            assert not peak_lines
    _labelled(fig)
    with pytest.raises(NoData, match="no accuracy model"):
        acc_fig.accuracy_vs_tpp(None)


def test_accuracy_figures_say_when_there_are_no_evals(fx):
    with pytest.raises(NoData, match="no evals"):
        acc_fig.error_vs_loss(fx.final, fx.evals.iloc[0:0])
    with pytest.raises(NoData, match="'pass_at_k'"):
        acc_fig.accuracy_vs_density(fx.final, fx.evals, metric="pass_at_k")


def test_loss_vs_total_panels_per_sparsity_lines_per_budget_and_experts(fx):
    fig = loss.loss_vs_total(fx.final)
    f = fx.final.assign(budget=budget_groups(fx.final["active_flops"]))
    sparsities = sorted(f["sparsity"].unique())
    assert len(fig.axes) == len(sparsities)
    for ax, s in zip(fig.axes, sparsities):
        assert ax.get_title() == f"sparsity s = {s:g}"
        assert len(ax.get_lines()) == f[f["sparsity"] == s].groupby(["budget", "n_experts"]).ngroups
    _labelled(fig)


def test_isoflop_curves_and_optima(fx):
    a = fx.analysis
    fig = loss.isoflop_curves(fx.final, a.isoflop, a.optimum)
    left, right = fig.axes
    n_budgets = len(np.unique(budget_groups(fx.final["active_flops"])))
    assert len([ln for ln in left.get_lines() if ln.get_label().startswith("C = ")]) == n_budgets
    # one star per budget at the isoFLOP minimum
    stars = [c for c in left.collections if len(c.get_offsets()) == 1]
    np.testing.assert_allclose(sorted(np.vstack([c.get_offsets() for c in stars])[:, 0]), sorted(a.isoflop["N_opt"]))
    assert len([ln for ln in right.get_lines() if ln.get_label().startswith("C = ")]) == n_budgets
    _labelled(fig)
    fig = loss.optima_vs_compute(a.isoflop, a.optimum)
    bars = [c for c in fig.axes[1].containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == a.optimum.best["objective"].nunique()
    _labelled(fig)
    with pytest.raises(NoData):
        loss.optima_vs_compute(pd.DataFrame(), None)


def test_law_fit_band_and_residuals(fx):
    claims = fx.analysis.claims
    fit = claims.fits["moe"]
    groups = budget_groups(fx.analysis.runs["active_flops"])
    fig = loss.law_fit(fit, None, groups=groups, samples=claims.bootstrap_params)
    top, res = fig.axes
    scat = [c for c in top.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    assert len(scat) == len(np.unique(groups))
    # residuals are ln(observed / fitted) at every point
    r = np.concatenate([c.get_offsets()[:, 1] for c in res.collections])
    want = np.log(fit.data["y"].to_numpy() / fit.predict(fit.data))
    np.testing.assert_allclose(np.sort(r), np.sort(want), rtol=1e-10, atol=1e-12)
    assert res.get_ylabel().startswith("ln(") and top.get_ylabel() == "observed"
    # along a variable: a curve per group, banded
    fig = loss.law_fit(fit, "N", groups=fx.analysis.runs["sparsity"].to_numpy(), samples=claims.bootstrap_params)
    assert len(fig.axes[0].get_lines()) == fx.analysis.runs["sparsity"].nunique()
    with pytest.raises(NoData, match="not a variable"):
        loss.law_fit(fit, "tokens")


def test_training_curves_and_routing_balance(fx):
    fig = curves.training_curves(fx.metrics, fx.final)
    f = fx.final.assign(budget=budget_groups(fx.final["active_flops"]))
    budgets = sorted(f["budget"].unique())
    assert len(fig.axes) == len(budgets)
    for ax, b in zip(fig.axes, budgets):
        assert len(ax.get_lines()) == (f["budget"] == b).sum()
    _labelled(fig)
    fig = curves.routing_balance(fx.metrics, fx.final)
    for ax, b in zip(fig.axes, budgets):
        assert len(ax.get_lines()) == ((f["budget"] == b) & (f["n_experts"] > 1)).sum()
    assert "load_cv" in fig.axes[0].get_ylabel()
    with pytest.raises(NoData, match="metrics: train_loss, val_loss"):
        curves.routing_balance(fx.metrics[fx.metrics["name"] != "load_cv"], fx.final)


def test_save_writes_png_and_pdf(tmp_path):
    fig, (ax,) = new_figure(1)
    ax.plot([1, 10, 100], [3, 2, 1])
    log_axis(ax, "x", "count")
    paths = save(fig, tmp_path / "sub", "line")
    assert [p.name for p in paths] == ["line.png", "line.pdf"]
    assert paths[0].read_bytes().startswith(PNG) and paths[1].read_bytes().startswith(b"%PDF")


def test_public_figures():
    dataset_path("clark_routing_curves.csv.gz")
    data, fits = public_fits.clark_fits(routers=("S-Base",))
    fig = public.clark_experts(data, fits)
    (ax,) = [a for a in fig.axes]
    sizes = data["N"].nunique()
    assert len(ax.get_lines()) == sizes and len(ax.collections) == sizes
    _labelled(fig)


@pytest.mark.slow
def test_chinchilla_figure():
    dataset_path("chinchilla_epoch.csv")
    res, samples = public_fits.chinchilla_epoch_fit(samples=20)
    assert res.params["alpha"] == pytest.approx(0.3473, abs=1e-3)
    fig = public.chinchilla_fit(res, samples, n_levels=4)
    top = fig.axes[0]
    assert len(top.get_lines()) == 4
    assert top.get_xlabel() == "" and fig.axes[1].get_xlabel().startswith("model size")


def test_cli_figures(fx, tmp_path, monkeypatch, capsys):
    def too_few(store, **kw):
        raise MoescaleError("3 finished runs; the moe law's claims need at least 10")

    # the analysis failing skips its figures, with its reason, and the store-only figures are still drawn
    monkeypatch.setattr("scaling.analysis.analyze", too_few)
    assert main(["figures", "--store", str(fx.path), "--out", str(tmp_path / "f"), "--no-public", "--quiet",
                 "--format", "pdf"]) == 0
    out = capsys.readouterr().out
    assert "accuracy_vs_tpp" in out.split("skipped:")[1] and "need at least 10" in out
    assert "public-dataset figures not asked for" in out
    assert (tmp_path / "f" / "error_vs_loss.pdf").stat().st_size > 0
    assert not (tmp_path / "f" / "error_vs_loss.png").exists()
    assert main(["figures", "--store", str(tmp_path / "missing.duckdb"), "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and not (tmp_path / "g").exists()
