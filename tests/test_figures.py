"""figures/: every figure renders from a small simulated store, with labelled axes and the right series."""

from pathlib import Path

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
    """Every store figure is drawn; a fit's flags reach the captions of its figures; temp files of a killed
    call are removed first, and figure files of an earlier call that this call did not draw are removed
    (only FIGURES names in the formats written), saying so."""
    import dataclasses

    flag = "not identified: gamma (on bound)"
    analysis = dataclasses.replace(fx.analysis, claims=dataclasses.replace(fx.analysis.claims, flags={"moe": flag}))
    (tmp_path / ".law_fit_moe.png.x1y2.tmp.png").write_bytes(b"half")  # left by a kill -9
    for name in ("chinchilla_epoch.png", "chinchilla_epoch.pdf", "notes.png"):  # an earlier call's, and the user's
        (tmp_path / name).write_bytes(b"old")
    missing = {"chinchilla_epoch": "its dataset chinchilla_epoch was not found", "clark_experts": "not found either"}
    res = draw_all(fx.store, tmp_path, analysis, public=True, public_skipped=missing, formats=("png",))
    assert sorted(res.figures) == sorted(STORE_FIGURES)
    assert res.skipped == missing
    for name, paths in res.figures.items():
        assert [p.name for p in paths] == [f"{name}.png"]
        data = paths[0].read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
    assert not list(tmp_path.glob(".*")), "temporary files left behind"
    assert "skipped:" in res.summary()
    assert res.removed == [tmp_path / "chinchilla_epoch.png"] and not res.removed[0].exists()
    assert (tmp_path / "chinchilla_epoch.pdf").exists() and (tmp_path / "notes.png").exists()
    removed = "removed 1 figure file(s) of an earlier call that this call did not draw: chinchilla_epoch.png"
    assert removed in res.summary()
    for name in ("law_fit_moe", "isoflop_curves", "optima_vs_compute"):
        assert res.caption(name).endswith(f"Fit flags: the moe law: {flag}."), name
    assert "Fit flags" not in res.caption("error_vs_loss") and res.to_json()["captions"]["law_fit_moe"] == res.caption(
        "law_fit_moe")
    # the training-curves caption names the metric it plots
    drawn = curves.curve_metric(fx.metrics)
    assert res.caption("training_curves").endswith(f"Here: {drawn}.")
    assert "validation loss" not in FIGURES["training_curves"]


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
    # the store comes from MOESCALE_STORE when --store is not given, as in every other command
    monkeypatch.setenv("MOESCALE_STORE", str(fx.path))
    assert main(["figures", "--out", str(tmp_path / "f"), "--no-public", "--quiet", "--format", "pdf"]) == 0
    out = capsys.readouterr().out
    assert "accuracy_vs_tpp" in out.split("skipped:")[1] and "need at least 10" in out
    assert "public-dataset figures not asked for" in out
    assert (tmp_path / "f" / "error_vs_loss.pdf").stat().st_size > 0
    assert not (tmp_path / "f" / "error_vs_loss.png").exists()
    assert main(["figures", "--store", str(tmp_path / "missing.duckdb"), "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and not (tmp_path / "g").exists()


def _toy_runs():
    """Four runs at one budget: E 8 k 1 and E 16 k 2 (both sparsity 8, density 1/8) and E 4 k 1 and E 4 k 2, which
    share an N_total (top_k does not change it) with losses 2.48 and 1.99; facts accuracy, 200 examples each."""
    rows = [("a", 8, 1, 2e6, 2.30, 0.40), ("b", 16, 2, 4e6, 2.20, 0.50), ("c", 4, 1, 1e6, 2.48, 0.10),
            ("d", 4, 2, 1e6, 1.99, 0.00)]
    final = pd.DataFrame(rows, columns=["run_id", "n_experts", "top_k", "n_total", "val_loss", "acc"])
    final = final.assign(sparsity=final["n_experts"] / final["top_k"], density=final["top_k"] / final["n_experts"],
                         n_active=final["n_total"] / 4, tokens=1e7, active_flops=1e14)
    final["tpp"] = final["tokens"] / final["n_total"]
    evals = pd.DataFrame({"run_id": final["run_id"], "step": 10, "tokens": 1e7, "task": "facts",
                          "task_kind": "memorization", "metric": "accuracy", "value": final["acc"], "n_examples": 200})
    metrics = pd.concat([pd.DataFrame({"run_id": r, "step": [1, 2, 3, 4], "tokens": [1e6, 2e6, 3e6, 4e6],
                                       "name": "train_loss", "value": [4.0, 3.0, 2.5, 2.2]}) for r in final["run_id"]])
    return final.drop(columns="acc"), evals, metrics


def _wilson(k, n, z=1.959963984540054):
    """The Wilson score interval, written out (the independent reference for figures.style.wilson_interval)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_interval_matches_the_formula():
    from figures.style import wilson_interval

    acc, n = np.array([0.0, 0.125, 0.5, 1.0]), np.array([200, 512, 300, 40])
    lo, hi = wilson_interval(acc, n)
    want_lo, want_hi = _wilson(acc * n, n)
    np.testing.assert_allclose(lo, want_lo, atol=1e-12)
    np.testing.assert_allclose(hi, want_hi, atol=1e-12)
    assert hi[0] > 0 and lo[-1] < 1  # never zero-width at 0 or 1


def test_accuracy_figures_draw_chance_and_wilson_bars():
    from matplotlib.collections import LineCollection

    final, evals, _ = _toy_runs()
    chance = {"facts": 0.125}
    fig = acc_fig.error_vs_loss(final, evals, chance=chance)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines["chance"].get_ydata()) == [0.875, 0.875]  # error at chance = 1 - chance
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    segs = np.vstack([np.array(seg)[:, 1] for b in bars for seg in b.get_segments()])
    lo, hi = _wilson(evals["value"].to_numpy() * 200, 200)
    np.testing.assert_allclose(np.sort(segs[:, 0]), np.sort(1 - hi), atol=1e-12)  # error bars: 1 - the interval
    np.testing.assert_allclose(np.sort(segs[:, 1]), np.sort(1 - lo), atol=1e-12)
    # one series per architecture; the two of density 1/8 (E 8 k 1, E 16 k 2) get different markers
    scat = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(scat) == 4
    labels = [c.get_label() for c in scat]
    a, b = (scat[labels.index(t)] for t in ("1/8 (E 8, k 1)", "1/8 (E 16, k 2)"))
    assert a.get_facecolor().tolist() == b.get_facecolor().tolist()
    assert not np.array_equal(a.get_paths()[0].vertices, b.get_paths()[0].vertices)
    fig = acc_fig.accuracy_vs_density(final, evals, chance=chance)
    assert [list(ln.get_ydata()) for ln in fig.axes[0].get_lines() if ln.get_label() == "chance"] == [[0.125, 0.125]]
    assert len([c for c in fig.axes[0].collections if isinstance(c, LineCollection)]) == 1
    # without a known chance rate: no line, nothing invented
    assert not [ln for ln in acc_fig.error_vs_loss(final, evals).axes[0].get_lines() if ln.get_label() == "chance"]


def test_chance_rates_from_evals_or_run_directories(tmp_path):
    import json

    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "run.json").write_text(json.dumps(
        {"data_stats": {"tasks": {"facts": {"chance": 0.015625}, "pointer": {"chance": 0.125}}}}))
    runs = pd.DataFrame({"run_id": ["r1", "r2"], "source_dir": [str(tmp_path / "r1"), str(tmp_path / "gone")]})
    evals = pd.DataFrame({"run_id": ["r1"], "task": ["pointer"], "metric": ["chance"], "value": [0.25]})
    assert acc_fig.chance_rates(evals, runs) == {"facts": 0.015625, "pointer": 0.25}  # a logged metric wins
    assert acc_fig.chance_rates(evals.iloc[0:0], runs) == {"facts": 0.015625, "pointer": 0.125}
    assert acc_fig.chance_rates(None, None) == {}


def test_accuracy_vs_tpp_chance_lines_and_no_overflow(fx):
    import copy
    import warnings

    acc = copy.deepcopy(fx.analysis.accuracy)
    for model in acc.models.values():
        model.bootstrap_params = model.bootstrap_params * 1e3  # logits of +-1e3 and beyond: exp would overflow
    tasks = {t for m in acc.models.values() for t in m.tasks}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = acc_fig.accuracy_vs_tpp(acc, chance={t: 0.1 for t in tasks})
    chance = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label().startswith("chance")]
    assert sorted(ln.get_label() for ln in chance) == sorted(f"chance ({t})" for t in tasks)
    assert all(list(ln.get_ydata()) == [0.1, 0.1] for ln in chance)


def test_loss_vs_total_skipped_when_each_sparsity_has_one_size():
    final, _, _ = _toy_runs()
    one_each = final[final["run_id"] != "d"]  # sparsities 8, 8 (two sizes), 4: still drawable
    assert len(loss.loss_vs_total(one_each).axes) == 2
    single = final[final["run_id"].isin(["a", "c"])]
    with pytest.raises(NoData, match="each sparsity has runs at a single N_total"):
        loss.loss_vs_total(single)


def test_isoflop_curves_never_average_architecture_families():
    """E 4 k 1 (2.48) and E 4 k 2 (1.99) share an N_total: the budget's curve goes through the better run, 1.99,
    never their mean 2.235; each family is its own line, marked by top_k."""
    final, _, _ = _toy_runs()
    fig = loss.isoflop_curves(final)
    left = fig.axes[0]
    env = [ln for ln in left.get_lines() if ln.get_label().startswith("C = ")]
    assert len(env) == 1
    x, y = env[0].get_xdata(), env[0].get_ydata()
    assert y[np.argmin(np.abs(np.asarray(x) - 1e6))] == pytest.approx(1.99)
    assert not np.isclose(np.asarray(y, dtype=float), 2.235).any()
    fams = [ln for ln in left.get_lines() if ln.get_label().startswith("_family")]
    assert sorted(ln.get_label() for ln in fams) == [f"_family {f}" for f in ("E16 k2", "E4 k1", "E4 k2", "E8 k1")]
    assert {ln.get_label(): ln.get_marker() for ln in fams}["_family E4 k1"] != {
        ln.get_label(): ln.get_marker() for ln in fams}["_family E4 k2"]
    right = fig.axes[1]
    (sline,) = [ln for ln in right.get_lines() if ln.get_label().startswith("C = ")]
    # at s = 8, E 8 k 1 (2.30) and E 16 k 2 (2.20): the better run, not their mean
    assert dict(zip(sline.get_xdata(), sline.get_ydata()))[8.0] == pytest.approx(2.20)


def test_training_curves_tell_architectures_of_one_sparsity_apart():
    final, _, metrics = _toy_runs()
    fig = curves.training_curves(metrics, final)
    styles = [ln.get_linestyle() for ln in fig.axes[0].get_lines()]  # runs a, b, c, d in run_id order
    assert styles == ["-", "--", "-", "--"]  # k 1 solid, k 2 dashed: E 8 k 1 and E 16 k 2 (both s = 8) differ


def test_law_fit_band_is_clipped_so_the_data_stay_visible(fx):
    """Resamples of a poorly identified fit can predict 1e13 (the demo's band reached 2e13): the panel keeps the
    data's range and the band is clipped to it, saying so."""
    claims = fx.analysis.claims
    fit = claims.fits["moe"]
    P = claims.bootstrap_params[list(fit.law.params)].to_numpy(dtype=float).copy()
    P[::2, list(fit.law.params).index("a")] += 30.0  # half the resamples: A * e^30
    y = fit.data["y"].to_numpy(dtype=float)
    yhat = fit.predict(fit.data)
    for x in (None, "N"):
        fig = loss.law_fit(fit, x, samples=P)
        top = fig.axes[0]
        lo, hi = top.get_ylim()
        span = max(y.max(), yhat.max()) - min(y.min(), yhat.min())
        assert hi <= max(y.max(), yhat.max()) + 0.2 * span and lo >= min(y.min(), yhat.min()) - 0.2 * span
        band = [c for c in top.collections if not isinstance(c, PathCollection) and len(c.get_paths())]
        verts = np.vstack([p.vertices for c in band for p in c.get_paths()])
        assert verts[:, 1].max() <= hi + 1e-9
        assert any("clipped to the plotted range" in t.get_text() for t in top.get_legend().get_texts())


def _cli(argv) -> int:
    """``main(argv)``'s exit code, argparse's usage errors (SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _one_line_error(capsys, *starts):
    cap = capsys.readouterr()
    assert cap.err.startswith("error: ") and cap.err.count("\n") == 1 and "Traceback" not in cap.err, cap.err
    for text in starts:
        assert text in cap.err, cap.err
    return cap.err


def test_cli_figures_and_report_refuse_bad_input_before_any_work(fx, tmp_path, monkeypatch, capsys):
    from scaling.store import Store

    def boom(*a, **kw):
        raise AssertionError("work started")

    monkeypatch.setattr("scaling.analysis.analyze", boom)
    for cmd in ("figures", "report"):
        assert _cli([cmd, "--store", str(fx.path), "--out", str(tmp_path / cmd), "--seed", "-1"]) == 2
        _one_line_error(capsys, "--seed", "-1 must be >= 0")
        assert not (tmp_path / cmd).exists()
    # a store with no finished runs: one line, exit 2, nothing written
    empty = tmp_path / "empty.duckdb"
    Store(empty).close()
    assert main(["figures", "--store", str(empty), "--out", str(tmp_path / "e"), "--quiet"]) == 2
    _one_line_error(capsys, "no finished runs to draw (no runs at all)")
    assert not (tmp_path / "e").exists()
    # MOESCALE_STORE names the report's store too
    seen = {}

    def report_store(store, out, **kw):
        seen["store"], seen["commands"] = store, kw["commands"]
        raise demo_error("stop here")

    from scaling import demo
    from scaling.errors import MoescaleError as demo_error

    monkeypatch.setattr(demo, "report_store", report_store)
    monkeypatch.setenv("MOESCALE_STORE", str(tmp_path / "a dir" / "s.duckdb"))
    assert main(["report", "--out", str(tmp_path / "r")]) == 2
    assert seen["store"] == str(tmp_path / "a dir" / "s.duckdb")
    assert f"--store '{tmp_path / 'a dir' / 's.duckdb'}'" in seen["commands"][0]  # shell-quoted


def test_report_store_removes_temp_files_of_a_killed_report(fx, tmp_path, monkeypatch):
    from scaling import demo

    out = tmp_path / "r"
    out.mkdir()
    (out / ".report.html.ab12.tmp.html").write_text("half")
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr("scaling.demo.analyze_or_skip", lambda st, **kw: (None, "skipped in this test"))
    monkeypatch.setattr("figures.report.write_report", lambda st, o, **kw: sorted(p.name for p in Path(o).iterdir()))
    assert demo.report_store(fx.path, out) == ["notes.txt"]
    with pytest.raises(MoescaleError, match="seed = -1"):
        demo.report_store(fx.path, out, seed=-1)
    with pytest.raises(MoescaleError, match="seed = -1"):
        demo.draw_store(fx.path, out, seed=-1)
