"""scaling/demo.py and `moescale demo`: the store-to-report path and the demo's summary and helpers
(the training itself is the runner's, tested there; `make demo` runs it end to end)."""

import pytest

from figure_store import fixture_store
from figures.draw import DrawResult
from figures.report import write_report
from scaling import demo
from scaling.cli import main


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of the shared store with the figures left out (the summary reads only their counts)."""
    fx = fixture_store()
    out = tmp_path_factory.mktemp("demo")
    draw = DrawResult(out=out / "report" / "figures")
    return fx, out, write_report(fx.store, out / "report", analysis=fx.analysis, draw=draw, public=False,
                                 commands=["moescale demo x"])


def test_demo_summary_and_helpers(report, tmp_path, monkeypatch):
    fx, out, res = report
    # offline and without MOESCALE_DATA the public datasets are reported missing, never downloaded
    monkeypatch.setenv("MOESCALE_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("MOESCALE_CACHE", str(tmp_path / "cache"))
    public = demo.public_data()
    assert public == {"chinchilla_epoch": None, "clark_routing": None}
    result = demo.DemoResult(out=out, sweep=out / "cpu-tiny.yaml", n_runs=18, store=fx.path, report=res,
                             public=public, seconds=1.0)
    text = result.summary()
    assert f"report   {res.html}" in text and "chinchilla_epoch: not found (set MOESCALE_DATA" in text
    for line in fx.analysis.headline():
        assert f"  {line}" in text
    assert text.count("[agrees]") == 6
    js = result.to_json()
    assert js["n_runs"] == 18 and js["report"]["html"] == str(res.html) and len(js["papers"]) == 6
    assert js["headline"] == fx.analysis.headline() and js["public"] == {"chinchilla_epoch": None, "clark_routing": None}
    # the sweep file is planned once and left alone when unchanged (a rerun reuses finished runs)
    path, n = demo.plan_sweep("cpu-tiny", tmp_path)
    assert n == 18 and path.is_file()
    mtime = path.stat().st_mtime_ns
    assert demo.plan_sweep("cpu-tiny", tmp_path) == (path, 18) and path.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_demo_refuses_bad_arguments(capsys):
    assert main(["demo", "--workers", "0", "--out", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: --workers 0")
    with pytest.raises(demo.MoescaleError, match="workers = 0"):
        demo.run_demo("x", workers=0)


def test_run_demo_wires_plan_train_analysis_and_report(tmp_path, monkeypatch):
    """run_demo with the training, the analysis and the drawing replaced by stand-ins that record their
    calls: the analysis runs once, on the store the sweep filled, and the report and its figures get it."""
    from scaling.simulate import write_store

    fx = fixture_store()
    monkeypatch.setenv("MOESCALE_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("MOESCALE_CACHE", str(tmp_path / "cache"))
    calls = {"train": [], "analyze": [], "draw": []}

    def train(sweep_path, store, runs, *, workers, quiet):
        calls["train"].append((sweep_path.name, store, workers, quiet))
        write_store(store, n_runs=12, runs_dir=runs).close()
        return "sweep: 12 runs finished"

    def analyze(store, **kw):
        calls["analyze"].append((str(store.path), kw))
        return fx.analysis

    def draw_all(store, out, analysis, **kw):
        calls["draw"].append((out, analysis, kw["public"]))
        return DrawResult(out=out)

    monkeypatch.setattr(demo, "train_sweep", train)
    monkeypatch.setattr("scaling.analysis.analyze", analyze)
    monkeypatch.setattr("figures.draw.draw_all", draw_all)
    said = []
    d = tmp_path / "d"
    res = demo.run_demo(d, workers=1, bootstrap=7, quiet=True, progress=said.append)
    assert calls["train"] == [("cpu-tiny.yaml", d / "moescale.duckdb", 1, True)]
    assert calls["analyze"] == [(str(d / "moescale.duckdb"), {"bootstrap": 7, "seed": 0})]
    assert calls["draw"] == [(d / "report" / "figures", fx.analysis, False)]
    assert said[0] == f"planned 18 runs of cpu-tiny into {d / 'cpu-tiny.yaml'}"
    assert "sweep: 12 runs finished" in said and said[-1] == "figures and report"
    assert res.report.analysis is fx.analysis and res.report.html.is_file()
    md = res.report.markdown.read_text()
    assert f"moescale demo --out {d} --workers 1 --preset cpu-tiny --bootstrap 7 --seed 0" in md
    assert f"moescale report --store {d / 'moescale.duckdb'} --out {d / 'report'} --bootstrap 7 --seed 0" in md
    text = res.summary()
    assert text.startswith("demo: done in ") and "  public   clark_routing: not found" in text
    assert text.count("[agrees]") == 6
