"""The whole path as Python calls: a store to its figures and report, and the offline demo end to end.

- ``analyze_or_skip(store)``: ``scaling.analysis.analyze`` run once, or the reason it cannot run
  (too few runs, ...), so the store-only figures and the report are still made.
- ``draw_store(store, out)``: the analysis once, then ``figures.draw.draw_all`` (``moescale figures``).
- ``report_store(store, out)``: the analysis once, then ``figures.report.write_report``, which draws
  the figures with the same analysis (``moescale report``).
- ``report_study(out)``: the report of the cpu-study shipped with the project (its runs ingested, no training).
- ``run_demo(out)``: plans the cpu-study-demo sweep (``scaling.planner``), trains it on
  the synthetic corpus with the sweep runner (``runner.sweep.run_sweep``, which ingests each
  finished run into the store), runs the analysis (the claims of Liew et al. 2026, the accuracy
  regimes of Nakamura et al. 2025, isoFLOP minima, the optimum per budget and objective with
  bootstrap uncertainty), draws the figures and writes the report (``moescale demo``). The
  public-dataset reproductions join only when their files are found (MOESCALE_DATA; nothing is
  downloaded). Rerunning reuses finished runs.

The figures and the report draw an ``Analysis`` they are given; these functions are where a store
is analysed. Only ``run_demo`` needs torch (the runner), imported when it trains.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scaling.errors import MoescaleError
from scaling.files import atomic_write

if TYPE_CHECKING:
    from figures.draw import DrawResult
    from figures.report import ReportResult
    from scaling.analysis import Analysis

__all__ = ["DEMO_PRESET", "PUBLIC", "PUBLIC_FIGURES", "STUDY_DIR", "DemoResult", "analyze_or_skip", "draw_store",
           "plan_sweep", "public_data", "report_store", "report_study", "run_demo", "train_sweep"]

#: The public datasets whose reproductions join the demo when found.
PUBLIC = ("chinchilla_epoch", "clark_routing")
#: The preset the demo trains: the part of the cpu-study whose runs learn in a few minutes.
DEMO_PRESET = "cpu-study-demo"
#: The cpu-study shipped with the project: its run directories (run.json, metrics.jsonl, evals.jsonl;
#: no checkpoints) under ``runs/``, its README (command, code version) and report.md.
STUDY_DIR = Path(__file__).resolve().parents[1] / "data" / "studies" / "cpu-study"


def _quiet(msg: str) -> None:
    pass


def analyze_or_skip(store, *, bootstrap: int = 200, seed: int = 0, say=None) -> tuple[Analysis | None, str | None]:
    """(``analyze(store, bootstrap=bootstrap, seed=seed)``, None), or (None, the reason) when the store cannot
    be analysed. ``say``: optional callable(str) for a progress line."""
    from scaling.analysis import analyze

    (say or _quiet)(f"analysis ({bootstrap} bootstrap resamples)")
    try:
        return analyze(store, bootstrap=bootstrap, seed=seed), None
    except MoescaleError as exc:
        return None, str(exc)


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MoescaleError(f"seed = {seed!r}: must be an integer >= 0")


def _store_path(store):
    """``store``, or the default store ($MOESCALE_STORE, else ./moescale.duckdb) when it is None."""
    from scaling.store import default_path

    return default_path() if store is None else store


def draw_store(store=None, out="figures", *, bootstrap: int = 200, seed: int = 0, public: bool = True,
               formats=("png", "pdf"), say=None) -> DrawResult:
    """Analyse ``store`` once and draw every figure it has data for into ``out`` (the Python form of
    ``moescale figures``). ``store``: a Store or a path; None is $MOESCALE_STORE, else ./moescale.duckdb.
    A store without finished runs is refused (one line) before anything is written. When the analysis
    cannot run, its figures are skipped with the reason, in a note."""
    from figures.draw import draw_all, store_frames
    from scaling.final import open_store

    _check_seed(seed)
    st = open_store(_store_path(store))
    frames = store_frames(st)
    if not len(frames[0]):
        counts = st.sql("SELECT status, count(*) AS n FROM runs GROUP BY status ORDER BY status")
        have = ", ".join(f"{r.status} {r.n}" for r in counts.itertuples(index=False)) or "no runs at all"
        raise MoescaleError(f"{getattr(st, 'path', store)}: no finished runs to draw ({have})")
    analysis, why = analyze_or_skip(st, bootstrap=bootstrap, seed=seed, say=say)
    result = draw_all(st, out, analysis, public=public, formats=formats, seed=seed, say=say, no_analysis_reason=why,
                      frames=frames)
    if why is not None:
        result.notes.append(f"note: analysis failed, its figures are skipped: {why}")
    return result


def report_store(store=None, out="report", *, bootstrap: int = 200, seed: int = 0, public: bool = True,
                 commands: list[str] | None = None, say=None) -> ReportResult:
    """Analyse ``store`` once, draw its figures into ``out/figures`` and write ``out/report.md`` and
    ``out/report.html`` (the Python form of ``moescale report``; ``store`` None is $MOESCALE_STORE, else
    ./moescale.duckdb). Temp files a killed earlier report left in ``out`` are removed first. A store the
    analysis cannot handle still gets a report of its runs and store-only figures, with the reason."""
    from figures.report import write_report
    from scaling.files import remove_stale_temps
    from scaling.final import open_store

    _check_seed(seed)
    st = open_store(_store_path(store))
    remove_stale_temps(out)
    analysis, why = analyze_or_skip(st, bootstrap=bootstrap, seed=seed, say=say)
    return write_report(st, out, analysis=analysis, notes=[f"analysis skipped: {why}"] if why is not None else None,
                        bootstrap=bootstrap, seed=seed, public=public, commands=commands, say=say)


def report_study(out, runs=None, *, bootstrap: int = 200, seed: int = 0, say=None) -> ReportResult:
    """The shipped study's report without training: ingest its run directories (``runs``, default
    ``STUDY_DIR / "runs"``) into ``out/moescale.duckdb``, analyse them once and write the report into
    ``out/report`` (the same as ``moescale ingest RUNS/* --store S`` then ``moescale report --store S``)."""
    import shlex

    from figures.draw import draw_all, store_frames
    from figures.report import write_report
    from scaling.analysis import analyze
    from scaling.final import open_store
    from scaling.ingest import find_run_dirs, ingest
    from scaling.store import Store

    say = say or _quiet
    runs = Path(runs) if runs is not None else STUDY_DIR / "runs"
    if not runs.is_dir():
        raise MoescaleError(f"{runs}: no such folder of study runs")
    find_run_dirs([runs])
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    store = root / "moescale.duckdb"
    with Store.create_on_success(store) as st:
        ingest(st, [runs], progress=False)
    q = shlex.quote
    commands = [f"moescale ingest {q(str(runs))}/* --store {q(str(store))}",
                f"moescale report --store {q(str(store))} --out {q(str(root / 'report'))} --bootstrap {bootstrap} "
                f"--seed {seed}"]
    say(f"the shipped study: analysis of its runs ({bootstrap} bootstrap resamples)")
    st = open_store(store)
    analysis = analyze(st, bootstrap=bootstrap, seed=seed)
    draw = draw_all(st, root / "report" / "figures", analysis, public=False, seed=seed, say=say,
                    frames=store_frames(st))
    return write_report(st, root / "report", analysis=analysis, draw=draw, public=False, seed=seed,
                        commands=commands, say=say)


def public_data() -> dict[str, Path | None]:
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
    path = Path(out) / f"{preset}.yaml"
    text = sweep.to_yaml()
    if not path.is_file() or path.read_text() != text:
        atomic_write(path, text)
    return path, len(sweep.runs)


def train_sweep(sweep_path: Path, store: Path, runs: Path, *, workers: int, quiet: bool):
    """Train the sweep's missing runs with the sweep runner (it ingests each finished run into ``store``)."""
    try:
        from runner.sweep import run_sweep
    except ImportError as exc:
        raise MoescaleError(f"the demo trains models and needs the runner (torch): {exc}; "
                            "install with `pip install -e '.[runner]'` or `make install`") from None
    return run_sweep(sweep_path, store, runs, workers=workers, quiet=quiet)


@dataclass
class DemoResult:
    """What ``run_demo`` made: the folder, the sweep file and its run count, the store, the report
    (``figures.report.ReportResult``, holding the figures and the analysis), the public datasets found
    (name -> path or None) and the wall time."""

    out: Path
    sweep: Path
    n_runs: int
    store: Path
    report: ReportResult
    public: dict[str, Path | None] = field(default_factory=dict)
    seconds: float = 0.0
    study: ReportResult | None = None
    study_note: str = ""

    def summary(self) -> str:
        """Where everything is, the headline answers and the seed papers' claims against the runs."""
        from scaling.papers import paper_comparison

        out, result = self.out, self.report
        draw = result.draw
        lines = [f"demo: done in {self.seconds:.0f} s; everything is in {out}/",
                 f"  sweep    {self.sweep} ({self.n_runs} runs)", f"  runs     {out / 'runs'}/",
                 f"  store    {self.store}", f"  report   {result.html} (self-contained), {result.markdown}",
                 f"  figures  {result.figures_dir}/ ({len(draw.figures)} figures, PNG and PDF)"]
        for name, path in self.public.items():
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
        lines += self._study_lines()
        return "\n".join(lines)

    def _study_lines(self) -> list[str]:
        """Where the shipped study's report is, and its headline: each question's verdict."""
        from scaling.study import study_questions

        if self.study is None:
            return [f"the shipped study: {self.study_note}"] if self.study_note else []
        lines = [f"the shipped study ({STUDY_DIR.name}): report {self.study.html}, {self.study.markdown}"]
        if self.study.analysis is not None:
            lines.append("its headline: the study's questions")
            for r in study_questions(self.study.analysis).itertuples(index=False):
                lines.append(f"  {r.question}: {r.verdict}")
        return lines

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> dict:
        """The paths, run count, public datasets, seconds, the report (``ReportResult.to_json``), the
        headline lines and the seed papers' comparison as records."""
        from scaling.papers import paper_comparison

        a = self.report.analysis
        return {"out": str(self.out), "sweep": str(self.sweep), "n_runs": self.n_runs, "store": str(self.store),
                "public": {k: (str(v) if v else None) for k, v in self.public.items()}, "seconds": self.seconds,
                "report": self.report.to_json(), "headline": a.headline() if a is not None else [],
                "papers": paper_comparison(a).to_dict("records") if a is not None else [],
                "study": self.study.to_json() if self.study is not None else None, "study_note": self.study_note}


#: public dataset -> the figure that reproduces it.
PUBLIC_FIGURES = {"chinchilla_epoch": "chinchilla_epoch", "clark_routing": "clark_experts"}


def run_demo(out="demo", *, workers: int = 2, preset: str = DEMO_PRESET, seed: int = 0, bootstrap: int = 200,
             quiet: bool = False, progress=None, study: bool = True) -> DemoResult:
    """Plan, train, analyse and report ``preset`` into ``out`` (see the module docstring); with
    ``study``, also write the shipped cpu-study's report into ``out/study`` (``report_study``; skipped
    with a note when the project's data/studies folder is not there, e.g. an installed package).

    ``workers``: training processes; ``bootstrap`` resamples of runs (``seed``) in the analysis;
    ``quiet``: no progress bars while training; ``progress``: optional callable(str) for progress lines.
    The store is ``out/moescale.duckdb``, the runs ``out/runs/``, the report ``out/report/``. Bad
    arguments, an unknown preset and a sweep the runner refuses (e.g. a GPU preset on a CPU) raise a
    one-line MoescaleError before any run starts and before the store is created.
    """
    import shlex

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise MoescaleError(f"workers = {workers}: must be at least 1")
    _check_seed(seed)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise MoescaleError(f"bootstrap = {bootstrap!r}: must be an integer >= 0")
    from figures.draw import draw_all, store_frames
    from figures.report import write_report
    from scaling.analysis import analyze
    from scaling.final import open_store
    from scaling.planner import plan

    began = time.monotonic()
    say = progress or _quiet
    plan(preset)  # an unknown preset is refused before the folder is made
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    store = root / "moescale.duckdb"
    sweep_path, n_runs = plan_sweep(preset, root)
    say(f"planned {n_runs} runs of {preset} into {sweep_path}")
    public = public_data()
    missing = {PUBLIC_FIGURES[name]: f"its dataset {name} was not found (set MOESCALE_DATA to the folder holding it)"
               for name, path in public.items() if path is None}
    for name, path in public.items():
        say(f"public dataset {name}: " + (f"found ({path})" if path else "not found; its figure is skipped"))
    say(f"training with {workers} workers into {root / 'runs'} (finished runs are reused)")
    swept = train_sweep(sweep_path, store, root / "runs", workers=workers, quiet=quiet)
    say(str(swept).splitlines()[0] if str(swept) else "sweep done")
    if not store.is_file():
        raise MoescaleError(f"the sweep finished no run, so there is no store to analyse; see the run directories "
                            f"in {root / 'runs'}")
    q = shlex.quote
    commands = [f"moescale demo --out {q(str(out))} --workers {workers} --preset {q(preset)} --bootstrap {bootstrap} "
                f"--seed {seed}",
                "# the same, step by step:",
                f"moescale plan grid --preset {q(preset)} --out {q(str(sweep_path))}",
                f"moescale sweep {q(str(sweep_path))} --store {q(str(store))} --out {q(str(root / 'runs'))} "
                f"--workers {workers}",
                f"moescale optimum --store {q(str(store))} --objective loss memorization reasoning "
                f"--bootstrap {bootstrap}",
                f"moescale report --store {q(str(store))} --out {q(str(root / 'report'))} --bootstrap {bootstrap} "
                f"--seed {seed}"]
    say(f"analysis: claims, accuracy, isoFLOP minima, optimum ({bootstrap} bootstrap resamples)")
    st = open_store(store)
    analysis = analyze(st, bootstrap=bootstrap, seed=seed)
    say("figures and report")
    draw = draw_all(st, root / "report" / "figures", analysis, public=True, seed=seed, say=say,
                    frames=store_frames(st), public_skipped=missing)
    report = write_report(st, root / "report", analysis=analysis, draw=draw, public=True, seed=seed,
                          commands=commands, say=say)
    shipped, note = None, ""
    if study and (STUDY_DIR / "runs").is_dir():
        shipped = report_study(root / "study", bootstrap=bootstrap, seed=seed, say=say)
    elif study:
        note = f"not reported: {STUDY_DIR / 'runs'} is not there (it ships with the project's source)"
    return DemoResult(out=root, sweep=sweep_path, n_runs=n_runs, store=store, report=report, public=public,
                      seconds=time.monotonic() - began, study=shipped, study_note=note)
