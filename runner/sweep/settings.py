"""A sweep's runs resolved into training configs: ``--set`` overrides, the trainer, ``resolve``.

Each planned run of a sweep file becomes a config through the trainer's
``config_class.from_planned(run, settings)``, where ``settings`` is the sweep file's
``train:`` block with the overrides (``--set key=value``) merged over it, once, for all runs
(later wins; a dotted key ``data.n_people=500`` sets one key inside a mapping). A run lives
in ``<out>/<config.run_id>``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from scaling.errors import MoescaleError
from scaling.planner import PlannedRun, Sweep

__all__ = ["SweepRun", "Trainer", "check_runs", "check_store_path", "default_trainer", "merge", "parse_overrides",
           "parse_value", "resolve"]


def parse_value(text: str):
    """A ``--set`` value: JSON first (numbers such as 3e-3, true, null, lists), then YAML, else the string."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None and text.strip() not in ("", "~", "null") else value


def parse_overrides(items) -> dict:
    """``["lr=3e-3", "data.n_people=500"]`` -> ``{"lr": 0.003, "data": {"n_people": 500}}``.

    A dotted key sets one key inside a mapping (merged into, not replacing, the rest).
    """
    out: dict = {}
    for item in items or ():
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise MoescaleError(f"--set {item!r}: expected key=value")
        parts = key.split(".")
        if any(not p for p in parts):
            raise MoescaleError(f"--set {item!r}: empty part in key {key!r}")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MoescaleError(f"--set {item!r}: {part!r} is already set to a value, not a mapping")
            node = child
        node[parts[-1]] = parse_value(raw)
    return out


def merge(base: dict, extra: dict) -> dict:
    """Deep merge: mappings merge key by key, anything else in ``extra`` replaces ``base``."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Trainer:
    """What a sweep trains with: the training function and the config class it takes.

    train: ``train(config, out, *, resume, quiet, threads, corpora) -> status`` (finished,
      diverged or failed), training ``config`` into ``<out>/<config.run_id>``; ``corpora`` is a
      ``runner.data.CorpusCache`` (or None) shared by the runs one worker process trains.
    config_class: builds a run's config, ``config_class.from_planned(planned_run, settings)``,
      whose ``run_id`` names the run directory. When it is a dataclass, its mapping fields'
      defaults take a dotted ``--set data.KEY=VALUE`` (one key changed, not the mapping
      replaced), and a ``sweep`` field receives the sweep's name.

    check: ``check(config, corpora=None)`` raises MoescaleError for a config that cannot train
      here (bad data, device, memory), without training or writing anything; a sweep calls it
      for every run before the first starts (``check_runs``). None: no check.

    Both are passed as objects, not by module name, and must be picklable by reference
    (module-level), since each run's ``train`` travels to a spawned worker or a submitit job.
    ``default_trainer()`` is ``runner.train.train`` with ``runner.config.TrainConfig`` and
    ``runner.config.check_trainable``.
    """

    train: Callable[..., str]
    config_class: type
    check: Callable[..., object] | None = None


def default_trainer() -> Trainer:
    """The real trainer: ``Trainer(runner.train.train, runner.config.TrainConfig)`` (imports torch)."""
    try:
        from runner.config import TrainConfig, check_trainable
        from runner.train import train
    except ImportError as exc:
        raise MoescaleError(f"sweep: cannot import the trainer runner.train ({exc}); install the runner extra") from None
    return Trainer(train=train, config_class=TrainConfig, check=check_trainable)


@dataclass
class SweepRun:
    """One run of a sweep, resolved: the planned run, its TrainConfig, run_id and directory."""

    planned: PlannedRun
    config: object
    run_id: str
    dir: Path

    @property
    def tokens(self) -> int:
        """Tokens this run trains for (the config's, which an override may have changed)."""
        return int(getattr(self.config, "tokens", None) or self.planned.tokens)

    @property
    def flops(self) -> float:
        """Planned training FLOPs: flops_per_token * tokens (Architecture accounting)."""
        return float(self.planned.architecture.flops_per_token) * self.tokens

    @property
    def cost(self) -> float:
        """Expected training time, in FLOP-equivalents: flops + 600 * N_total * steps.

        Besides the model FLOPs, every step pays work in proportion to the total parameters
        (the AdamW update, one matmul per expert): on the cpu-tiny sweep (2-core CPU) the run
        times fit 3.3e-11 s per FLOP + 2.0e-8 s per parameter-step, a ratio of ~600. Used
        only to start the longest runs first, so that no worker idles long at the end.
        """
        batch = getattr(self.config, "batch_tokens", None) or self.tokens
        steps = self.tokens / max(1, int(batch))
        return self.flops + 600.0 * float(self.planned.architecture.n_total) * steps


def resolve(sweep_path, out, overrides: dict | None = None, trainer: Trainer | None = None) -> tuple[Sweep, list[SweepRun]]:
    """Read a sweep file and build every run's config (sweep ``train:`` block, then ``overrides``).

    trainer: whose ``config_class`` builds the configs (default: ``default_trainer()``).
    Raises MoescaleError (nothing started) for a missing or malformed sweep file, an
    unknown or invalid training key, or two planned runs that resolve to one run_id.
    """
    path = Path(sweep_path)
    if not path.is_file():
        raise MoescaleError(f"sweep {sweep_path}: no such file")
    sweep = Sweep.from_yaml(path)
    if not sweep.runs:
        raise MoescaleError(f"sweep {sweep_path}: lists no runs")
    config_class = (trainer or default_trainer()).config_class
    given = merge(sweep.train, overrides or {})
    settings = merge(_mapping_defaults(config_class, given), given)
    if _has_field(config_class, "sweep"):  # the sweep's name, recorded in run.json
        settings["sweep"] = sweep.name
    runs, seen = [], {}
    for planned in sweep.runs:
        try:
            config = config_class.from_planned(planned, dict(settings))
        except (MoescaleError, TypeError, ValueError) as exc:
            raise _run_error(sweep_path, planned.run_id, exc) from None
        run_id = config.run_id
        if run_id in seen:
            raise MoescaleError(f"sweep {sweep_path}: runs {seen[run_id]} and {planned.run_id} are the same run {run_id}")
        seen[run_id] = planned.run_id
        runs.append(SweepRun(planned, config, run_id, Path(out) / run_id))
    return sweep, runs


def check_runs(sweep_path, runs: list[SweepRun], trainer: Trainer) -> None:
    """Run ``trainer.check`` on every run's config before any run starts (MoescaleError naming
    the sweep file and the run); runs that share a data spec and seed load their corpus once."""
    if trainer.check is None:
        return
    try:
        from runner.data import CorpusCache

        corpora = CorpusCache()  # keeps the latest corpus: check runs grouped by (data, seed)
    except ImportError:
        corpora = None
    key = lambda r: (json.dumps(getattr(r.config, "data", None), sort_keys=True, default=str),  # noqa: E731
                     str(getattr(r.config, "seed", "")))
    for run in sorted(runs, key=key):
        try:
            trainer.check(run.config, corpora=corpora)
        except MoescaleError as exc:
            raise _run_error(sweep_path, run.planned.run_id, exc) from None


def _run_error(sweep_path, run_id: str, exc: BaseException) -> MoescaleError:
    """``sweep PATH: run ID: message``, naming the run once when the message already starts with it."""
    text = str(exc)
    head = f"run {run_id}: "
    return MoescaleError(f"sweep {sweep_path}: {text if text.startswith(head) else head + text}")


def _mapping_defaults(config_class, settings: dict) -> dict:
    """For each mapping in ``settings`` whose config field defaults to a mapping (``data``),
    that default, so a dotted ``--set data.KEY=VALUE`` changes one key instead of replacing it."""
    out = {}
    for f in getattr(config_class, "__dataclass_fields__", {}).values():
        if isinstance(settings.get(f.name), dict) and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if isinstance(default, dict):
                out[f.name] = default
    return out


def _has_field(config_class, name: str) -> bool:
    """Whether the config class is a dataclass with a field ``name``."""
    return name in getattr(config_class, "__dataclass_fields__", {})


def check_store_path(store, *, verify: bool = False) -> str | None:
    """The store path a sweep ingests into (None: no store); MoescaleError for :memory:, a missing
    folder, or a path that is no store: a table file name (``notstore.csv``), or, with
    ``verify``, an existing file that does not open as a store or cannot be read back whole
    (``Store.verify``: a truncated store). A new path is fine: the first ingest creates it."""
    if store is None:
        return None
    store = str(store)
    if store == ":memory:":
        raise MoescaleError("sweep: the store must be a file (workers ingest into it), not :memory:")
    parent = Path(store).expanduser().resolve().parent
    if not parent.is_dir():
        raise MoescaleError(f"{store}: folder {parent} does not exist")
    path = Path(store).expanduser()
    from scaling.store import Store, check_store_file

    check_store_file(path, create=True)
    if verify and path.exists():
        Store(path, create=False).verify()
    return str(path)
