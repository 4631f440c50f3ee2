"""The report of a store: ``report.md`` and a self-contained ``report.html`` (figures embedded as base64).

``write_report(store, out, analysis=...)`` renders an ``Analysis`` it is given (run once by the
caller, ``scaling.analysis.analyze``; None when it could not run, with the reason in ``notes``),
draws the figures (``figures.draw.draw_all``) into ``out/figures/`` unless given them, and writes
both documents with: the data fingerprint and the exact commands, the headline answers, the seed
papers' claims set against these runs (``scaling.papers.paper_comparison``: ``word: reason`` in the
five words of ``scaling.verdicts``), the claims table with verdicts, the accuracy questions, the fits
with their CIs and each parameter's identifiability (a ``status`` column, and a flagged line under
the table for every fit ``scaling.identify.fit_flags`` flags), the optimum per budget and objective,
the public-dataset fits against their published values, the figures (with what was skipped and why)
and the runs table. Both files are written last and atomically (``scaling.files.atomic_write``); the
temp files a killed earlier report left in the folder are removed first.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from figures.study import has_slices, study_blocks
from scaling.errors import MoescaleError
from scaling.files import atomic_write, remove_stale_temps
from scaling.papers import format_value, paper_comparison
from scaling.public_fits import EPOCH_PUBLISHED
from scaling.verdicts import AIC_THRESHOLD, WORDS

if TYPE_CHECKING:
    from figures.draw import DrawResult

__all__ = ["ReportResult", "write_report", "data_fingerprint", "build_blocks", "to_markdown", "to_html"]

RUN_COLUMNS = ["run_id", "n_layers", "d_model", "n_experts", "top_k", "sparsity", "n_total", "n_active", "tokens",
               "tpp", "active_flops", "val_loss"]


@dataclass
class ReportResult:
    """What ``write_report`` wrote: the two documents, the figures folder, the draw result and analysis."""

    markdown: Path
    html: Path
    figures_dir: Path
    draw: DrawResult
    analysis: object
    fingerprint: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The documents' and figures' paths, the figures drawn and skipped (``DrawResult.to_json``), the
        data fingerprint and the notes; the analysis serializes itself."""
        return {"markdown": str(self.markdown), "html": str(self.html), "figures_dir": str(self.figures_dir),
                "draw": self.draw.to_json(), "fingerprint": self.fingerprint, "notes": list(self.notes)}

    def summary(self) -> str:
        return "\n".join([f"report: {self.markdown}", f"        {self.html}", f"figures: {self.figures_dir}/ "
                          f"({len(self.draw.figures)} drawn, {len(self.draw.skipped)} skipped)",
                          f"data fingerprint: {self.fingerprint}"] + self.notes)


def data_fingerprint(final: pd.DataFrame, evals: pd.DataFrame | None = None) -> str:
    """sha256 (first 16 hex digits) of the finished runs (``final`` view, rows sorted by run_id, columns by
    name, floats to 17 digits) and of the evals rows: the same store content gives the same fingerprint."""
    h = hashlib.sha256()
    for frame in (final, evals):
        if frame is None or not len(frame):
            h.update(b"-\n")
            continue
        f = frame.drop(columns=[c for c in ("created_at", "config") if c in frame.columns])
        f = f[sorted(f.columns)]
        f = f.sort_values(list(f.columns)).reset_index(drop=True)
        h.update(f.to_csv(index=False, float_format="%.17g").encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- content


def _moe_params(claims) -> pd.DataFrame:
    """The full moe fit's parameters with their bootstrap intervals and identifiability status ("fixed" when held)."""
    fit = claims.fits["moe"]
    ident = getattr(claims, "identifiability", None)
    checks = {}
    if ident is not None and len(ident):
        checks = {r.parameter: r for r in ident[ident["variant"] == "moe"].itertuples(index=False)}
    rows = []
    for name, value in fit.params.items():
        c = checks.get(name)
        rows.append({"parameter": name, "estimate": value, "ci_low": c.ci_low if c else np.nan,
                     "ci_high": c.ci_high if c else np.nan, "fixed": name in fit.fixed,
                     "status": "fixed" if name in fit.fixed else (c.status if c else "")})
    return pd.DataFrame(rows)


def _flag_lines(flags: dict, what: str) -> list[str]:
    """One line per flagged fit (``scaling.identify.fit_flags``), for under its table."""
    return [f"**flag** {what} `{k}`: {v}" for k, v in (flags or {}).items() if v]


def _fill_budgets(commands: list[str], analysis) -> list[str]:
    """The commands with a ``<budgets>`` placeholder replaced by the analysis' budgets (``--compute 1e+14 ...``)."""
    if analysis is None or not getattr(analysis, "compute", None):
        return list(commands)
    budgets = " ".join(f"{float(c):g}" for c in analysis.compute)
    return [c.replace("<budgets>", budgets) for c in commands]


def build_blocks(analysis, draw, *, store_path: str, fingerprint: str, commands: list[str], final: pd.DataFrame,
                 excluded: dict | None = None, notes: list | None = None) -> list[tuple]:
    """The report as a list of blocks: ("h1"|"h2"|"p"|"code", text), ("list", items), ("table", DataFrame),
    ("figure", name, caption, png_path), rendered by ``to_markdown`` and ``to_html``."""
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    from scaling import __version__

    b: list[tuple] = [("h1", "moe-scaling report")]
    b.append(("p", f"Store `{store_path}`, {len(final)} finished runs"
                   + (f" (excluded: {', '.join(f'{v} {k}' for k, v in excluded.items() if v)})"
                      if excluded and any(excluded.values()) else "")
                   + f"; data fingerprint `{fingerprint}`; moe-scaling {__version__}; written {now}."))
    b.append(("h2", "How this was made"))
    b.append(("code", "\n".join(commands)))
    if analysis is not None:
        budgets = ", ".join(format_value(c, 3) for c in analysis.compute)
        b.append(("p", f"Analysis: `scaling.analysis.analyze` with {analysis.bootstrap} bootstrap resamples of runs, "
                       f"seed {analysis.seed}, budgets {budgets} FLOPs, objectives {', '.join(analysis.objectives)}."))
    b.append(("h2", "Headline: the optimal sparsity per budget and objective"))
    if analysis is None:
        b.append(("p", "No analysis: " + "; ".join(notes or ["it could not run"])))
    else:
        b.append(("list", analysis.headline()))
        if has_slices(analysis.runs):
            b += study_blocks(analysis)
        b.append(("h2", "The seed papers' claims against these runs"))
        b.append(("p", f"Each verdict is one of {', '.join(WORDS)}, with its reason (`scaling.verdicts`: an "
                       f"interval that excludes the null decides; |ΔAIC| < {AIC_THRESHOLD:g} is inconclusive; a claim "
                       "outside the sampled range is not testable; an unidentified parameter or degenerate fit is "
                       "undetermined). A synthetic corpus and models of a few million parameters need not reproduce "
                       "results at billions."))
        b.append(("table", paper_comparison(analysis)))
        c = analysis.claims
        b.append(("h2", "Claims of Liew et al. 2026 (nested moe-law tests)"))
        b.append(("list", [f"**{cl}**: {v}" for cl, v in zip(c.table["claim"], c.table["verdict"])]))
        cols = [x for x in ("claim", "parameter", "estimate", "ci_low", "ci_high", "lr_stat", "df", "p_value",
                            "delta_aic", "delta_bic", "extrapolation_error", "extrapolation_error_full")
                if x in c.table.columns]
        b.append(("table", c.table[cols]))
        b.append(("h2", "Fits with their confidence intervals"))
        b.append(("p", "The moe law L = E + A·N_total^−α·s^γ·n_exp^λ + B·D^−β (e, a, b are ln E, ln A, ln B), "
                       f"fitted to {c.n_runs} runs; 95% bootstrap percentile intervals over {c.bootstrap} resamples "
                       "of runs."))
        b.append(("table", _moe_params(c)))
        flags = getattr(c, "flags", {}) or {}
        moe_flag = _flag_lines({"moe": flags.get("moe", "")}, "fit")
        b.append(("list", moe_flag) if moe_flag else
                 ("p", "Every free parameter of the moe fit is identified and the fit is not degenerate."))
        b.append(("p", "Variants (nested restrictions and the N_active alternative; `flags`: parameters not "
                       "identified and degenerate fits, `scaling.identify`):"))
        b.append(("table", c.variants.drop(columns=[x for x in ("description",) if x in c.variants.columns])))
        if _flag_lines(flags, "variant"):
            b.append(("list", _flag_lines(flags, "variant")))
        acc = analysis.accuracy
        if acc is not None:
            b.append(("h2", "Accuracy: Nakamura et al. 2025's two regimes"))
            b.append(("list", acc.verdicts))
            b.append(("table", acc.coefficients))
            acc_flags = _flag_lines({k: m.flags for k, m in acc.models.items()}, "GLM")
            if acc_flags:
                b.append(("list", acc_flags))
            if len(acc.peaks):
                b.append(("table", acc.peaks.drop(columns=[x for x in ("verdict",) if x in acc.peaks.columns])))
            if len(acc.two_step):
                b.append(("p", "Two-step loss → accuracy path (Gadre et al. 2024, Bhagia et al. 2024), largest "
                               "budget held out:"))
                b.append(("table", acc.two_step))
        b.append(("h2", "Optimum per budget and objective"))
        opt = analysis.optimum
        cols = [x for x in ("objective", "compute", "arch", "n_experts", "top_k", "sparsity", "n_total", "n_active",
                            "tokens", "tpp", "predicted", "pred_low", "pred_high", "frequency", "sparsity_low",
                            "sparsity_high", "at_edge", "edge", "determined", "why", "extrapolation",
                            "extrapolation_reason")
                if x in opt.best.columns]
        b.append(("table", opt.best[cols]))
        if any(bool(v) for v in opt.best.get("at_edge", [])):
            b.append(("p", "An optimum at the edge of the searched grid means the best architecture may lie outside "
                           "it: widen the grid (`moescale optimum --n-experts ...`) before trusting it."))
        if len(opt.trend):
            b.append(("p", "Trend of the optimum against compute (log-log power law, ≥ 3 budgets):"))
            b.append(("table", opt.trend))
        if len(analysis.isoflop):
            b.append(("p", "IsoFLOP minima of loss against N_total (Akima spline, Porian et al. 2024):"))
            b.append(("table", analysis.isoflop))
        if notes or analysis.notes:
            b.append(("list", list(notes or []) + list(analysis.notes)))
    pub = getattr(draw, "public_fits", {}) or {}
    if "fit" in pub:
        f = pub["fit"]
        b.append(("h2", "Public data: the Chinchilla fit on Epoch AI's data"))
        tab = pd.DataFrame([{"parameter": k, "ours": f.params.get(k, np.nan), "Epoch AI (published)": v}
                            for k, v in EPOCH_PUBLISHED.items()])
        b.append(("table", tab))
    if "clark" in pub:
        b.append(("h2", "Public data: Clark et al. 2022's clark law per router"))
        b.append(("table", pd.DataFrame([{"router": r, "n_points": f.n_points, "objective (MSE log10)": f.objective,
                                          **{k: f.params[k] for k in list(f.params)[:4]}} for r, f in pub["clark"].items()])))
    b.append(("h2", "Figures"))
    for name, paths in draw.figures.items():
        png = next((p for p in paths if str(p).endswith(".png")), None)
        if png is not None:
            b.append(("figure", name, draw.caption(name), Path(png)))
    if draw.skipped:
        b.append(("p", "Skipped figures:"))
        b.append(("list", [f"`{k}`: {v}" for k, v in draw.skipped.items()]))
    b.append(("h2", "Runs"))
    cols = [x for x in RUN_COLUMNS if x in final.columns]
    acc_cols = sorted(x for x in final.columns if x.endswith("_accuracy"))
    b.append(("table", final.sort_values([x for x in ("active_flops", "sparsity", "run_id") if x in final.columns])
              [cols + acc_cols]))
    return b


def _cell(v) -> str:
    return format_value(v)


def _md_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(_cell(v).replace("|", "\\|") for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, sep] + rows)


def to_markdown(blocks, *, base: Path) -> str:
    """Markdown of the blocks; figures referenced by paths relative to ``base`` (the report's folder)."""
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h1":
            out.append(f"# {blk[1]}")
        elif kind == "h2":
            out.append(f"## {blk[1]}")
        elif kind == "p":
            out.append(blk[1])
        elif kind == "code":
            out.append("```bash\n" + blk[1] + "\n```")
        elif kind == "list":
            out.append("\n".join(f"- {x}" for x in blk[1]))
        elif kind == "table":
            out.append(_md_table(blk[1]))
        elif kind == "figure":
            _, name, caption, path = blk
            rel = os.path.relpath(path, base)
            out.append(f"![{name}]({rel})\n\n*{caption}*")
    return "\n\n".join(out) + "\n"


_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1120px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
div.scroll{overflow-x:auto;max-width:100%;margin:.6em 0}
table{border-collapse:collapse;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
td.t{white-space:normal;min-width:6em;max-width:32em;overflow-wrap:anywhere}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
pre{background:#f6f6f6;padding:.7em;overflow-x:auto;font-size:12px}
code{background:#f3f3f3;padding:0 3px}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;color:#555}
td.t{text-align:left}td.supported{background:#e6f4e6}td.contradicted{background:#fbe9e7}
td.inconclusive,td.not-testable,td.undetermined{background:#f4f4f4}
"""


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** spans."""
    import re

    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for r in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, r):
            text = _cell(v)
            cls = " class='t'" if isinstance(v, str) else ""
            word = v.split(":")[0] if isinstance(v, str) else ""
            if c == "verdict" and word in WORDS:
                cls = f" class='t {word.replace(' ', '-')}'"
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    # the wrapper scrolls sideways, so a wide table (the optimum's) shows every column at any window width
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def to_html(blocks, *, title: str = "moe-scaling report") -> str:
    """A self-contained HTML page of the blocks: the figures embedded as base64 PNG data URIs."""
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline(blk[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(blk[1])}</p>")
        elif kind == "code":
            out.append(f"<pre>{html.escape(blk[1])}</pre>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in blk[1]) + "</ul>")
        elif kind == "table":
            out.append(_html_table(blk[1]))
        elif kind == "figure":
            _, name, caption, path = blk
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            out.append(f"<figure id='{html.escape(name)}'><img alt='{html.escape(name)}' "
                       f"src='data:image/png;base64,{data}'><figcaption><b>{html.escape(name)}</b>: "
                       f"{html.escape(caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(store, out, *, analysis, draw=None, notes: list[str] | None = None, bootstrap: int = 200,
                 seed: int = 0, public: bool = True, commands: list[str] | None = None, say=None) -> ReportResult:
    """Render ``analysis`` (the store's ``Analysis``; None when it could not run, ``notes`` saying why), draw
    the figures into ``out/figures`` (unless ``draw``, a ``DrawResult``, is given) and write ``out/report.md``
    and ``out/report.html``.

    ``store``: a Store or store path, for the runs table, the fingerprint and the store-only figures.
    ``commands``: the command lines to record (default: this process's command line and the equivalent
    ``moescale report`` call with ``bootstrap`` and ``seed``, shell-quoted); a ``<budgets>`` placeholder in
    them becomes the analysis' budgets. A store the analysis cannot handle (too few
    runs, ...) still gets a report of its runs and store-only figures, with the reason.
    """
    from figures.draw import draw_all, store_frames
    from scaling.final import final_runs, open_store

    say = say or (lambda msg: None)
    out = Path(out)
    st = open_store(store)
    for folder in (out, out / "figures"):  # temp files of a report killed mid-write (only this call writes here)
        remove_stale_temps(folder)
    frames = store_frames(st)
    final, evals, _ = frames
    notes = list(notes or [])
    if analysis is not None:
        excluded = analysis.excluded
    else:
        try:
            _, excluded = final_runs(st)
        except MoescaleError:
            excluded = {}
    out.mkdir(parents=True, exist_ok=True)
    if draw is None:
        draw = draw_all(st, out / "figures", analysis, public=public, seed=seed, say=say, frames=frames,
                        no_analysis_reason="; ".join(notes) or None)
    fp = data_fingerprint(final, evals)
    store_path = str(getattr(st, "path", store))
    if commands is None:
        commands = []
        if Path(sys.argv[0]).name in ("moescale", "__main__.py"):
            commands.append(shlex.join(["moescale", *sys.argv[1:]]))
        commands.append(shlex.join(["moescale", "report", "--store", store_path, "--out", str(out), "--bootstrap",
                                    str(bootstrap), "--seed", str(seed)]))
    commands = _fill_budgets(commands, analysis)
    blocks = build_blocks(analysis, draw, store_path=store_path, fingerprint=fp, commands=commands, final=final,
                          excluded=excluded, notes=notes)
    md_path, html_path = out / "report.md", out / "report.html"
    md = to_markdown(blocks, base=out)
    page = to_html(blocks)
    atomic_write(md_path, md)
    atomic_write(html_path, page)
    return ReportResult(markdown=md_path, html=html_path, figures_dir=out / "figures", draw=draw, analysis=analysis,
                        fingerprint=fp, notes=notes)
