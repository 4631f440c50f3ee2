"""`moescale demo`: the whole path on 2 CPU cores, offline: plan, train, ingest, fit, claims, optimum,
figures, report.

Plans the cpu-tiny isoFLOP sparsity sweep (scaling.planner), trains it on the synthetic corpus
with the sweep runner (runner.sweep.run_sweep, which ingests each finished run into the store),
runs the analysis (scaling.analysis.analyze: the claims of Liew et al. 2026, the accuracy regimes
of Nakamura et al. 2025, isoFLOP minima, the optimum per budget and objective with bootstrap
uncertainty), draws the figures and writes the report (figures.report.write_report), then prints
where everything is and the headline answers. The public-dataset reproductions (the Chinchilla fit
on Epoch AI's data, Clark et al.'s expert-count figure) join only when their files are found
(MOESCALE_DATA; nothing is downloaded). Rerunning reuses finished runs.

Examples:
  moescale demo                      # into demo/, 2 workers
  moescale demo --out /tmp/d --workers 1 --bootstrap 100
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from scaling.cli import non_negative_int
from scaling.errors import MoescaleError

PUBLIC = ("chinchilla_epoch", "clark_routing")


def register(sub) -> None:
    p = sub.add_parser("demo", help="plan, train, analyse and report the cpu-tiny sweep end to end (offline)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo", metavar="DIR", help="folder for everything (default: demo)")
    p.add_argument("--workers", type=int, default=2, help="training worker processes (default 2)")
    p.add_argument("--preset", default="cpu-tiny", help="the sweep preset to plan (default cpu-tiny)")
    p.add_argument("--bootstrap", type=non_negative_int, default=200, metavar="B",
                   help="bootstrap resamples of runs in the analysis (default 200)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=handle)


def public_data() -> dict:
    """dataset name -> local path, or None when absent (never downloads)."""
    from scaling import datasets

    found = {}
    for name in PUBLIC:
        try:
            found[name] = datasets.path(name, download_missing=False)
        except MoescaleError:
            found[name] = None
    return found


def plan_sweep(preset: str, out: Path) -> tuple[Path, int]:
    """Plan ``preset`` and write its sweep file into ``out`` (rewritten only when it changed)."""
    from scaling.planner import plan

    sweep = plan(preset)
    path = out / f"{preset}.yaml"
    text = sweep.to_yaml()
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path, len(sweep.runs)


def train_sweep(sweep_path: Path, store: Path, runs: Path, *, workers: int, quiet: bool):
    """Train the sweep's missing runs with the sweep runner (it ingests each finished run into ``store``)."""
    try:
        from runner.sweep import run_sweep
    except ImportError as exc:
        raise MoescaleError(f"the demo trains models and needs the runner (torch): {exc}; "
                            "install with `pip install -e '.[runner]'` or `make install`") from None
    return run_sweep(sweep_path, store, runs, workers=workers, quiet=quiet)


def analyse_and_report(store, out: Path, *, bootstrap: int, seed: int, public: dict, commands: list[str],
                       say=None):
    """The analysis, the figures and the report of ``store`` into ``out/report``; returns the ReportResult."""
    from figures.report import write_report
    from scaling.analysis import analyze
    from scaling.claims import open_store

    st = open_store(store)
    say = say or (lambda msg: None)
    say(f"analysis: claims, accuracy, isoFLOP minima, optimum ({bootstrap} bootstrap resamples)")
    analysis = analyze(st, bootstrap=bootstrap, seed=seed)
    say("figures and report")
    return write_report(st, out / "report", analysis=analysis, public=any(v is not None for v in public.values()),
                        seed=seed, commands=commands, say=say)


def summary(out: Path, sweep_path: Path, n_runs: int, store: Path, result, public: dict, seconds: float) -> str:
    """What the demo prints at the end: where everything is, the headline answers and the papers' claims."""
    from figures.report import paper_comparison

    draw = result.draw
    lines = [f"demo: done in {seconds:.0f} s; everything is in {out}/",
             f"  sweep    {sweep_path} ({n_runs} runs)", f"  runs     {out / 'runs'}/", f"  store    {store}",
             f"  report   {result.html} (self-contained), {result.markdown}",
             f"  figures  {result.figures_dir}/ ({len(draw.figures)} figures, PNG and PDF)"]
    for name, path in public.items():
        lines.append(f"  public   {name}: " + (f"found at {path}" if path else
                                               "not found (set MOESCALE_DATA to the folder holding it); "
                                               "its reproduction is left out"))
    if draw.skipped:
        lines.append("skipped figures:")
        lines += [f"  {k}: {v}" for k, v in draw.skipped.items()]
    a = result.analysis
    if a is not None:
        lines.append("headline: optimal sparsity per budget and objective")
        lines += [f"  {h}" for h in a.headline()]
        lines.append("seed papers' claims against these runs:")
        for r in paper_comparison(a).itertuples(index=False):
            lines.append(f"  [{r.verdict}] {r.paper}: {r.claim} ({r.ours})")
    lines += result.notes
    return "\n".join(lines)


def handle(args) -> int:
    if args.workers < 1:
        raise MoescaleError(f"--workers {args.workers}: must be at least 1")
    began = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "moescale.duckdb"
    say = (lambda m: None) if args.quiet else (lambda m: print(f"demo: {m}", file=sys.stderr, flush=True))
    sweep_path, n_runs = plan_sweep(args.preset, out)
    say(f"planned {n_runs} runs of {args.preset} into {sweep_path}")
    public = public_data()
    for name, path in public.items():
        say(f"public dataset {name}: " + (f"found ({path})" if path else "not found; its figure is skipped"))
    say(f"training with {args.workers} workers into {out / 'runs'} (finished runs are reused)")
    swept = train_sweep(sweep_path, store, out / "runs", workers=args.workers, quiet=args.quiet)
    say(str(swept).splitlines()[0] if str(swept) else "sweep done")
    commands = [f"moescale demo --out {args.out} --workers {args.workers} --preset {args.preset} "
                f"--bootstrap {args.bootstrap} --seed {args.seed}",
                "# the same, step by step:",
                f"moescale plan grid --preset {args.preset} --out {sweep_path}",
                f"moescale sweep {sweep_path} --store {store} --out {out / 'runs'} --workers {args.workers}",
                f"moescale optimum --store {store} --compute <budgets> --objective loss memorization reasoning "
                f"--bootstrap {args.bootstrap}",
                f"moescale report --store {store} --out {out / 'report'} --bootstrap {args.bootstrap} --seed {args.seed}"]
    result = analyse_and_report(store, out, bootstrap=args.bootstrap, seed=args.seed, public=public,
                                commands=commands, say=say)
    print(summary(out, sweep_path, n_runs, store, result, public, time.monotonic() - began))
    return 0
