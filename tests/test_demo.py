"""scaling/demo.py and `moescale demo`: the store-to-report path and the demo's summary and helpers
(the training itself is the runner's, tested there; `make demo` runs it end to end)."""

import pytest

from figure_store import fixture_store
from figures.draw import DrawResult
from figures.report import write_report
from scaling import demo
from scaling.cli import main


def _claims_listed(text: str, analysis) -> None:
    """Every seed-paper claim of ``paper_comparison`` is a line of the summary, with its verdict."""
    from scaling.papers import paper_comparison

    table = paper_comparison(analysis)
    assert len(table) == 6
    for r in table.itertuples(index=False):
        assert f"  [{r.verdict}] {r.paper}: {r.claim} ({r.ours})" in text.splitlines()


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
    _claims_listed(text, fx.analysis)
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
        return DrawResult(out=out, skipped=dict(kw["public_skipped"]))

    monkeypatch.setattr(demo, "train_sweep", train)
    monkeypatch.setattr("scaling.analysis.analyze", analyze)
    monkeypatch.setattr("figures.draw.draw_all", draw_all)
    said = []
    d = tmp_path / "d"
    res = demo.run_demo(d, workers=1, preset="cpu-tiny", bootstrap=7, quiet=True, progress=said.append, study=False)
    assert calls["train"] == [("cpu-tiny.yaml", d / "moescale.duckdb", 1, True)]
    assert calls["analyze"] == [(str(d / "moescale.duckdb"), {"bootstrap": 7, "seed": 0})]
    # the public figures are asked for; those whose data is missing are skipped saying so, not "not asked for"
    assert calls["draw"] == [(d / "report" / "figures", fx.analysis, True)]
    assert said[0] == f"planned 18 runs of cpu-tiny into {d / 'cpu-tiny.yaml'}"
    assert "sweep: 12 runs finished" in said and said[-1] == "figures and report"
    assert res.report.analysis is fx.analysis and res.report.html.is_file()
    md = res.report.markdown.read_text()
    assert f"moescale demo --out {d} --workers 1 --preset cpu-tiny --bootstrap 7 --seed 0" in md
    assert f"moescale report --store {d / 'moescale.duckdb'} --out {d / 'report'} --bootstrap 7 --seed 0" in md
    text = res.summary()
    assert text.startswith("demo: done in ") and "  public   clark_routing: not found" in text
    assert "  clark_experts: its dataset clark_routing was not found (set MOESCALE_DATA" in text
    assert "not asked for" not in text
    _claims_listed(text, fx.analysis)


def _cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return exc.code


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_demo_refuses_bad_arguments_before_any_work(tmp_path, monkeypatch, capsys):
    def train(*a, **kw):
        raise AssertionError("training started")

    monkeypatch.setattr(demo, "train_sweep", train)
    d = tmp_path / "d"
    assert _cli(["demo", "--out", str(d), "--seed", "-1"]) == 2
    assert "--seed: -1 must be >= 0" in _one_line(capsys) and not d.exists()
    with pytest.raises(demo.MoescaleError, match="seed = -1"):
        demo.run_demo(d, seed=-1)
    with pytest.raises(demo.MoescaleError, match="bootstrap = -2"):
        demo.run_demo(d, bootstrap=-2)
    assert _cli(["demo", "--out", str(d), "--preset", "no-such-preset"]) == 2
    assert "no-such-preset" in _one_line(capsys) and not d.exists()


def test_demo_surfaces_a_sweep_the_runner_refuses(tmp_path, monkeypatch, capsys):
    """``demo --preset gpu-small`` on a CPU: the sweep runner refuses every run before the first starts (a
    MoescaleError); the demo says that in one line, exit 2, with no store created."""
    monkeypatch.setenv("MOESCALE_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("MOESCALE_CACHE", str(tmp_path / "cache"))

    def refuse(sweep_path, store, runs, **kw):
        raise demo.MoescaleError("run d64-e8: device cuda: CUDA is not available on this machine")

    monkeypatch.setattr(demo, "train_sweep", refuse)
    d = tmp_path / "d"
    assert _cli(["demo", "--out", str(d), "--quiet"]) == 2
    err = _one_line(capsys)
    assert "CUDA is not available" in err and "no such store file" not in err
    assert not (d / "moescale.duckdb").exists()
    # a sweep that finished no run (every run failed) is said as such, not as a missing store file
    monkeypatch.setattr(demo, "train_sweep", lambda *a, **kw: "sweep: 0 runs finished, 18 failed")
    assert _cli(["demo", "--out", str(d), "--quiet"]) == 2
    err = _one_line(capsys)
    assert "the sweep finished no run" in err and "no such store file" not in err
    assert not (d / "moescale.duckdb").exists()


def test_the_demo_trains_part_of_the_study_with_the_studys_run_ids(tmp_path):
    """The default preset, cpu-study-demo, is the cpu-study's top-1 sparsity runs at its two larger
    budgets: the same run ids as those runs of the study (the slice name is not part of an id)."""
    from scaling.planner import plan

    part = plan(demo.DEMO_PRESET)
    study = {r.run_id: r for r in plan("cpu-study").runs}
    assert len(part.runs) == 12 and part.train == plan("cpu-study").train
    for r in part.runs:
        assert r.run_id in study and r.architecture.top_k == 1 and r.compute in (1e12, 2e12)
        assert "sparsity" in study[r.run_id].slice.split("+")


def test_report_study_ingests_shipped_runs_and_writes_their_report(tmp_path, monkeypatch):
    """report_study: a folder of run directories in, a store and a report out (no training); the demo's
    summary then names the study's report and lists each of its questions with a verdict."""
    from scaling.simulate import write_store
    from scaling.study import study_questions

    runs = tmp_path / "shipped"
    write_store(tmp_path / "source.duckdb", n_runs=12, runs_dir=runs).close()
    res = demo.report_study(tmp_path / "study", runs, bootstrap=20)
    assert (tmp_path / "study" / "moescale.duckdb").is_file() and res.markdown.is_file()
    md = res.markdown.read_text()
    assert f"moescale ingest {runs}/* --store {tmp_path / 'study' / 'moescale.duckdb'}" in md
    fx = fixture_store()
    result = demo.DemoResult(out=tmp_path, sweep=tmp_path / "s.yaml", n_runs=12, store=fx.path, report=res,
                             study=res)
    text = result.summary()
    assert f"the shipped study (cpu-study): report {res.html}" in text
    for r in study_questions(res.analysis).itertuples(index=False):
        assert f"  {r.question}: {r.verdict}" in text
    with pytest.raises(demo.MoescaleError, match="no such folder of study runs"):
        demo.report_study(tmp_path / "x", tmp_path / "missing")
