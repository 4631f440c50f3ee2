"""figures/report.py: report.md and a self-contained report.html of a store."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from figure_store import fixture_store
from figures.report import data_fingerprint, write_report
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
