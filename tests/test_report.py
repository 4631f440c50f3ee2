"""figures/report.py: report.md and a self-contained report.html of a store."""

import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from figure_store import fixture_store
from figures.report import data_fingerprint, paper_comparison, write_report
from scaling.cli import main
from scaling.errors import MoescaleError


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    fx = fixture_store()
    out = tmp_path_factory.mktemp("report")
    return fx, out, write_report(fx.store, out, analysis=fx.analysis, public=False, commands=["moescale report x"])


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v is not None]


def test_html_is_self_contained(report):
    fx, out, res = report
    page = res.html.read_text()
    parser = _Refs()
    parser.feed(page)
    assert parser.refs, "no images"
    for ref in parser.refs:
        # every reference is embedded, or a file that exists beside the report; nothing remote
        assert ref.startswith("data:image/png;base64,") or (out / ref).is_file(), ref[:80]
    assert len([r for r in parser.refs if r.startswith("data:")]) == len(res.draw.figures)
    assert "http://" not in page and "https://" not in page


def test_markdown_links_resolve_and_content(report):
    fx, out, res = report
    md = res.markdown.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == len(res.draw.figures)
    assert all((out / link).is_file() for link in links)
    for heading in ("How this was made", "Headline", "The seed papers' claims", "Fits with their confidence",
                    "Optimum per budget and objective", "Figures", "Runs"):
        assert f"## {heading}" in md
    assert "moescale report x" in md and res.fingerprint in md
    for verdict in fx.analysis.claims.table["verdict"]:
        assert verdict in md
    for line in fx.analysis.headline():
        assert line in md
    # the runs table has one row per finished run
    runs = md.split("## Runs")[1]
    assert sum(1 for ln in runs.splitlines() if ln.startswith("| sim-")) == len(fx.final)


def test_fingerprint_tracks_content(report):
    fx, _, res = report
    assert data_fingerprint(fx.final, fx.evals) == res.fingerprint
    shuffled = fx.final.sample(frac=1.0, random_state=1)[list(reversed(fx.final.columns))]
    assert data_fingerprint(shuffled, fx.evals) == res.fingerprint
    changed = fx.final.copy()
    changed.loc[0, "val_loss"] += 1e-9
    assert data_fingerprint(changed, fx.evals) != res.fingerprint


def test_paper_comparison_agrees_on_the_simulated_truth(report):
    fx, _, _ = report
    # the truth: gamma, lam > 0; reasoning accuracy rises with active FLOPs, peaks at TPP 20; facts does neither
    table = paper_comparison(fx.analysis)
    assert list(table["verdict"]) == ["agrees"] * 6, table.to_string()


def _fake(lam_p=0.4, mem_ci=(0.1, 0.3), reason_ci=(-0.2, 0.1), interior=False):
    claims = SimpleNamespace(alpha=0.05, table=pd.DataFrame([
        {"claim": "sparsity adds nothing", "parameter": "gamma", "estimate": 0.1, "ci_low": 0.05, "ci_high": 0.2,
         "p_value": 1e-4, "delta_aic": 10.0},
        {"claim": "cancel", "parameter": "lam", "estimate": 0.01, "ci_low": -0.02, "ci_high": 0.03,
         "p_value": lam_p, "delta_aic": -1.0},
        {"claim": "N_active instead of s", "parameter": "alpha_active", "estimate": 0.3, "ci_low": np.nan,
         "ci_high": np.nan, "p_value": np.nan, "delta_aic": -3.0}]))
    q = pd.DataFrame([{"kind": "memorization", "question": "active_flops", "estimate": 0.2, "ci_low": mem_ci[0],
                       "ci_high": mem_ci[1]},
                      {"kind": "reasoning", "question": "active_flops", "estimate": 0.0, "ci_low": reason_ci[0],
                       "ci_high": reason_ci[1]}])
    peaks = pd.DataFrame([{"kind": "reasoning", "tpp_peak": 300.0 if interior else np.nan,
                           "ci_low": 200.0 if interior else np.nan, "ci_high": 400.0 if interior else np.nan,
                           "interior": interior, "tpp_min": 1.0, "tpp_max": 1000.0}])
    return SimpleNamespace(claims=claims, accuracy=SimpleNamespace(questions=q, peaks=peaks))


def test_paper_comparison_says_where_runs_disagree():
    v = list(paper_comparison(_fake())["verdict"])
    assert v == ["agrees", "disagrees (not significant)", "disagrees", "disagrees", "disagrees (CI includes 0)",
                 "disagrees (no interior peak)"]
    v = list(paper_comparison(_fake(interior=True, reason_ci=(-0.3, -0.1)))["verdict"])
    assert v[4:] == ["disagrees", "disagrees (peak elsewhere)"]
    no_acc = paper_comparison(SimpleNamespace(claims=None, accuracy=None))
    assert list(no_acc["verdict"]) == ["not testable"]


def test_cli_report(report, tmp_path, monkeypatch, capsys):
    fx, _, _ = report
    def too_few(store, **kw):
        raise MoescaleError("3 finished runs; the moe law's claims need at least 10")

    # an analysis that cannot run still gives a report of the runs and the store-only figures, saying why
    monkeypatch.setattr("scaling.analysis.analyze", too_few)
    out = tmp_path / "r"
    assert main(["report", "--store", str(fx.path), "--out", str(out), "--no-public", "--quiet",
                 "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "report.html") in printed and "skipped figures" in printed
    md = (out / "report.md").read_text()
    assert f"moescale report --store {fx.path} --out {out} --bootstrap 20 --seed 0 --no-public" in md
    assert "No analysis: analysis skipped: 3 finished runs" in md and "`law_fit_moe`: no analysis" in md
    assert (out / "figures" / "training_curves.png").is_file() and not (out / "figures" / "law_fit_moe.png").exists()
    assert main(["report", "--store", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: ") and not Path(tmp_path / "x").exists()


def test_demo_summary_and_helpers(report, tmp_path, monkeypatch):
    from scaling.cli import demo

    fx, out, res = report
    # offline and without MOESCALE_DATA the public datasets are reported missing, never downloaded
    monkeypatch.setenv("MOESCALE_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("MOESCALE_CACHE", str(tmp_path / "cache"))
    public = demo.public_data()
    assert public == {"chinchilla_epoch": None, "clark_routing": None}
    text = demo.summary(out, out / "cpu-tiny.yaml", 18, fx.path, res, public, 1.0)
    assert f"report   {res.html}" in text and "chinchilla_epoch: not found (set MOESCALE_DATA" in text
    for line in fx.analysis.headline():
        assert f"  {line}" in text
    assert text.count("[agrees]") == 6
    # the sweep file is planned once and left alone when unchanged (a rerun reuses finished runs)
    path, n = demo.plan_sweep("cpu-tiny", tmp_path)
    assert n == 18 and path.is_file()
    mtime = path.stat().st_mtime_ns
    assert demo.plan_sweep("cpu-tiny", tmp_path) == (path, 18) and path.stat().st_mtime_ns == mtime


def test_demo_refuses_bad_arguments(capsys):
    assert main(["demo", "--workers", "0", "--out", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: --workers 0")
