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


def test_fit_tables_carry_identifiability_flags(report):
    """Issue 22 §1: a flagged fit is flagged in the report's fit tables (status column, flags column, a flagged
    line under the table), in markdown and HTML alike, not only in the CLI summary."""
    from dataclasses import replace

    from figures.report import build_blocks, to_html, to_markdown

    fx, out, res = report
    md = res.markdown.read_text()
    params = md.split("## Fits with their confidence")[1].split("Variants (nested")[0]
    assert "| parameter | estimate | ci_low | ci_high | fixed | status |" in params
    for r in fx.analysis.claims.identifiability.query("variant == 'moe'").itertuples():
        assert f"| {r.parameter} | " in params and f" | {r.status} |" in params
    assert "| flags |" in md.split("Variants (nested")[1].split("\n\n")[1]
    flag = "not identified: gamma (on bound); degenerate: exponent alpha = 3.77 is outside the plausible range [0.02, 2]"
    claims = replace(fx.analysis.claims, flags={**fx.analysis.claims.flags, "moe": flag, "active": "not identified: alpha"})
    blocks = build_blocks(replace(fx.analysis, claims=claims), res.draw, store_path="s", fingerprint="f",
                          commands=["x"], final=fx.final)
    md, page = to_markdown(blocks, base=out), to_html(blocks)
    assert f"- **flag** fit `moe`: {flag}" in md and "- **flag** variant `active`: not identified: alpha" in md
    assert "Every free parameter of the moe fit is identified" not in md
    assert f"<li><b>flag</b> fit <code>moe</code>: {flag}</li>" in page


def test_html_tables_scroll_and_verdicts_in_five_words(report):
    """Issue 18: the HTML optimum table hid its edge columns at 1,400 px; every table sits in a wrapper that
    scrolls sideways and long text cells wrap. Verdict cells are coloured by their word."""
    fx, _, res = report
    page = res.html.read_text()
    assert "div.scroll{overflow-x:auto;max-width:100%" in page and "white-space:normal" in page
    opt = page.split("Optimum per budget and objective</h2>")[1].lstrip()
    assert opt.startswith("<div class='scroll'><table><thead><tr>")
    head = opt.split("</thead>")[0]
    for col in ("objective", "compute", "arch", "sparsity", "frequency", "at_edge", "edge"):
        if col in fx.analysis.optimum.best.columns:
            assert f"<th>{col}</th>" in head
    assert page.count("<div class='scroll'><table>") == page.count("<table>")
    words = {v.split(":")[0] for v in fx.analysis.claims.table["verdict"]}
    for w in words:
        assert f"class='t {w.replace(' ', '-')}'" in page
    assert "class='t agrees'" not in page


def test_commands_are_real_and_quoted(report, tmp_path, monkeypatch):
    """Issue 18: the command list held a `--compute <budgets>` placeholder, and the exact command was not
    shell-quoted (an output path with a space failed when pasted)."""
    fx, _, res = report
    out = tmp_path / "my report"
    monkeypatch.setattr("sys.argv", ["moescale", "report", "--out", str(out)])
    r = write_report(fx.store, out, analysis=fx.analysis, draw=res.draw, public=False)
    md = r.markdown.read_text()
    assert f"moescale report --out '{out}'\n" in md
    assert f"moescale report --store {fx.path} --out '{out}' --bootstrap 200 --seed 0" in md
    r = write_report(fx.store, out, analysis=fx.analysis, draw=res.draw, public=False,
                     commands=[f"moescale optimum --store {fx.path} --compute <budgets> --bootstrap 20"])
    md = r.markdown.read_text()
    assert "<budgets>" not in md and "--compute 3e+13 1e+14 3e+14 --bootstrap 20" in md
    assert fx.analysis.compute == pytest.approx([3e13, 1e14, 3e14], rel=0.05)


def test_stale_temp_files_of_a_killed_report_are_removed(report, tmp_path):
    """Issue 18: kill -9 during `report` left hidden temp files (.report.md.XXXX.tmp.md, .name.XXXX.tmp.pdf)."""
    fx, _, res = report
    out = tmp_path / "r"
    (out / "figures").mkdir(parents=True)
    stale = [out / ".report.md.k3j2.tmp.md", out / ".report.html.x1.tmp.html", out / "figures" / ".a.pdf.zz.tmp.pdf"]
    for p in stale:
        p.write_text("half")
    keep = out / "notes.txt"
    keep.write_text("mine")
    write_report(fx.store, out, analysis=fx.analysis, draw=res.draw, public=False, commands=["x"])
    assert not any(p.exists() for p in stale) and keep.read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["figures", "notes.txt", "report.html", "report.md"]
