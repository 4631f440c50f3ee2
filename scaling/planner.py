"""Plan sweeps: enumerate architectures under parameter, inference and compute budgets.

The planner is the first arrow of the project (planner -> runner -> run directory -> store):
it turns a grid of (n_layers, d_model, n_experts, top_k, granularity) and a set of
constraints into a ``Sweep`` of ``PlannedRun``s, written as YAML for the runner.

Constraints (each a window target * (1 +- tolerance)):

- ``total_params``: N_total, the memory budget;
- ``active_params``: N_active, and/or ``flops_per_token``: exact training FLOPs per token,
  the inference budget;
- ``compute``: one or more training budgets C; each architecture gets one run per C with
  D = C / flops_per_token tokens (an isoFLOP grid across several C, Hoffmann et al. 2022).

Granularity is G = d_model / d_ff (see ``Architecture.granularity``); d_ff = d_model / G.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

import yaml

from scaling.architecture import Architecture, human  # noqa: F401  (human: re-exported)
from scaling.errors import MoescaleError, first_line


@dataclass(frozen=True)
class GridSpace:
    """The axes of a grid; every combination that forms a valid Architecture is a candidate.

    n_heads = d_model / head_dim; d_ff = d_model / granularity; combinations with top_k >
    n_experts, d_model not a multiple of head_dim, or a non-integer d_ff are skipped.
    """

    n_layers: tuple[int, ...]
    d_model: tuple[int, ...]
    n_experts: tuple[int, ...] = (1,)
    top_k: tuple[int, ...] = (1,)
    granularity: tuple[float, ...] = (0.5,)
    head_dim: int = 128
    vocab_size: int = 99574
    seq_len: int = 2048
    n_kv_heads: int | None = None
    tied_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_experts", "top_k", "granularity"):
            values = tuple(getattr(self, name))
            if not values:
                raise MoescaleError(f"grid: {name} needs at least one value")
            if any(v <= 0 for v in values):
                raise MoescaleError(f"grid: {name} values must be positive, got {list(values)}")
            object.__setattr__(self, name, values)
        if self.head_dim <= 0:
            raise MoescaleError(f"grid: head_dim must be positive, got {self.head_dim}")

    def combinations(self):
        """Every (n_layers, d_model, n_experts, top_k, granularity) of the axes, in order."""
        return itertools.product(self.n_layers, self.d_model, self.n_experts, self.top_k, self.granularity)

    def architecture(self, n_layers, d_model, n_experts, top_k, granularity) -> Architecture:
        """The Architecture of one combination (assumes it passed the structural rules)."""
        return Architecture(
            d_model=d_model, n_layers=n_layers, n_heads=d_model // self.head_dim, d_ff=round(d_model / granularity),
            n_experts=n_experts, top_k=top_k, vocab_size=self.vocab_size, n_kv_heads=self.n_kv_heads,
            seq_len=self.seq_len, tied_embeddings=self.tied_embeddings,
        )


# Structural rules a grid combination must satisfy: (name, predicate on the combination).
_STRUCTURE = (
    ("top_k <= n_experts", lambda s, L, d, E, k, G: k <= E),
    ("d_model divisible by head_dim", lambda s, L, d, E, k, G: d % s.head_dim == 0),
    ("integer d_ff = d_model / granularity", lambda s, L, d, E, k, G: abs(d / G - round(d / G)) < 1e-9),
)


@dataclass(frozen=True)
class Constraints:
    """Budgets a planned architecture must meet; None leaves a budget free.

    A budget X admits values within X * (1 - tolerance) .. X * (1 + tolerance).
    ``compute`` lists training budgets C (FLOPs; tokens D = C / flops_per_token);
    ``tokens`` fixes D instead when no compute budget is given.
    """

    total_params: float | None = None
    active_params: float | None = None
    flops_per_token: float | None = None
    tolerance: float = 0.1
    compute: tuple[float, ...] = ()
    tokens: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "compute", tuple(float(c) for c in self.compute))
        if not 0 <= self.tolerance < 1:
            raise MoescaleError(f"constraint tolerance must be in [0, 1), got {self.tolerance}")
        for name in ("total_params", "active_params", "flops_per_token", "tokens"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise MoescaleError(f"constraint {name} must be positive, got {value}")
        if any(not c > 0 for c in self.compute):
            raise MoescaleError(f"constraint compute budgets must be positive, got {list(self.compute)}")
        if self.compute and self.tokens is not None:
            raise MoescaleError("constraints: give either compute budgets or tokens, not both")

    def budgets(self) -> list[tuple[str, str, float]]:
        """The active budgets as (constraint name, Architecture attribute, target)."""
        pairs = (("total_params", "n_total"), ("active_params", "n_active"), ("flops_per_token", "flops_per_token"))
        return [(name, attr, getattr(self, name)) for name, attr in pairs if getattr(self, name) is not None]

    def admits(self, value: float, target: float) -> bool:
        """|value - target| <= tolerance * target."""
        return abs(value - target) <= self.tolerance * target * (1 + 1e-12)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Constraints:
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise MoescaleError(f"constraints: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{**data, "compute": tuple(data.get("compute") or ())})


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: an architecture trained for ``tokens`` tokens with ``seed``.

    ``compute`` is the budget C that set the tokens (None when tokens were given).
    run_id is deterministic: a readable prefix plus a hash of architecture, tokens and seed.
    """

    run_id: str
    architecture: Architecture
    tokens: int
    seed: int = 0
    compute: float | None = None
    slice: str | None = None

    @classmethod
    def create(cls, architecture: Architecture, tokens: int, seed: int = 0, compute: float | None = None,
               slice: str | None = None) -> PlannedRun:
        """A run with its deterministic run_id (the slice names the study part it serves; not in the id)."""
        return cls(run_id_for(architecture, tokens, seed), architecture, int(tokens), seed, compute, slice)

    def to_dict(self) -> dict:
        a = self.architecture
        return {
            "run_id": self.run_id,
            "architecture": a.to_dict(),
            "tokens": self.tokens,
            "seed": self.seed,
            "compute": self.compute,
            **({"slice": self.slice} if self.slice else {}),
            # for reading only; from_dict recomputes nothing from here
            "derived": {
                "n_total": a.n_total,
                "n_active": a.n_active,
                "flops_per_token": a.flops_per_token,
                "training_flops": a.training_flops(self.tokens),
                "tpp": round(a.tpp(self.tokens), 4),
                "sparsity": a.sparsity,
                "granularity": a.granularity,
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> PlannedRun:
        try:
            return cls(
                run_id=data["run_id"],
                architecture=Architecture.from_dict(data["architecture"]),
                tokens=int(data["tokens"]),
                seed=int(data.get("seed", 0)),
                compute=data.get("compute"),
                slice=data.get("slice"),
            )
        except KeyError as exc:
            raise MoescaleError(f"sweep run: missing key {exc.args[0]!r}") from None


def run_id(architecture: Architecture, payload: Mapping) -> str:
    """The one run id of the project: d{d_model}-l{n_layers}-e{n_experts}-k{top_k}-f{d_ff}-{10 hex of
    sha1(payload as sorted JSON)}. ``payload`` is everything that changes what the run computes
    (``runner.config.TrainConfig.run_id`` builds it); the same payload, the same id."""
    a = architecture
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    return f"d{a.d_model}-l{a.n_layers}-e{a.n_experts}-k{a.top_k}-f{a.d_ff}-{digest}"


def run_id_for(architecture: Architecture, tokens: int, seed: int) -> str:
    """The id of a run known only by architecture, tokens and seed (``run_id`` of that payload).

    ``plan`` replaces it with the id the trainer gives the run (``trained_run_id``) whenever
    the runner can be imported, so a planned run and its run directory share one id."""
    return run_id(architecture, {"architecture": architecture.to_dict(), "tokens": int(tokens), "seed": seed})


def trained_run_id(run: PlannedRun, train: Mapping | None = None) -> str | None:
    """The run_id the trainer gives ``run`` trained with the sweep's ``train`` settings
    (``runner.config.TrainConfig.from_planned(run, train).run_id``), or None when the runner's
    config cannot be built here. ``runner.config`` imports no torch."""
    try:
        from runner.config import TrainConfig
    except ImportError:
        return None
    try:
        return TrainConfig.from_planned(run, dict(train or {})).run_id
    except MoescaleError as exc:
        raise MoescaleError(f"plan: the sweep's train settings: {first_line(exc)}") from None


def with_trained_ids(runs: list[PlannedRun], train: Mapping | None = None) -> list[PlannedRun]:
    """``runs`` with each run_id replaced by the one its training will have (``trained_run_id``), so the
    sweep file, the run directory and the store name a run alike; unchanged where the runner is absent."""
    return [replace(r, run_id=trained_run_id(r, train) or r.run_id) for r in runs]


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping key given twice (PyYAML silently keeps the last)."""


def _strict_mapping(loader: _StrictLoader, node, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # merged keys ("<<") may be overridden; only keys written twice are refused
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            continue  # an unhashable key: construct_mapping gives its own error
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def load_yaml(source: str | Path, where: str | None = None):
    """Parse YAML strictly: a file (``Path``) must be UTF-8 text, and no mapping may give a key twice.

    ``source`` is a Path (read from disk) or YAML text; ``where`` names it in errors (default:
    the path). Any problem is one MoescaleError ``WHERE[:line:column]: ...``."""
    where = where or str(source)
    if isinstance(source, Path):
        try:
            source = source.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MoescaleError(f"{where}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
        except IsADirectoryError:
            raise MoescaleError(f"{where}: is a folder, not a YAML file") from None
    try:
        return yaml.load(source, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise MoescaleError(f"{where}{at}: not valid YAML ({problem})") from None


@dataclass
class Sweep:
    """A planned sweep: its name, where it came from (preset, constraints) and its runs.

    ``train`` (optional ``train:`` block of the YAML): training settings for every run,
    passed to the runner as overrides (``TrainConfig.from_planned(run, train)``); a
    sweep's ``--set key=value`` goes over it.
    """

    name: str
    runs: list[PlannedRun]
    preset: str | None = None
    constraints: Constraints = field(default_factory=Constraints)
    train: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "preset": self.preset,
            "constraints": self.constraints.to_dict(),
        }
        if self.train:
            out["train"] = self.train
        return {**out, "runs": [r.to_dict() for r in self.runs]}

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The sweep as YAML text; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, source: str | Path) -> Sweep:
        """Read a sweep from a YAML file path or YAML text."""
        text = source
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))):
            if not Path(source).is_file():
                raise MoescaleError(f"sweep {source}: no such file")
            text = Path(source)
        data = load_yaml(text, where=f"sweep {source}")
        if not isinstance(data, dict) or "runs" not in data or "name" not in data:
            raise MoescaleError(f"sweep {str(source)[:80]}: expected a mapping with 'name' and 'runs'")
        train = data.get("train") or {}
        if not isinstance(train, dict):
            raise MoescaleError(f"sweep {str(source)[:80]}: key 'train' must be a mapping of training settings")
        runs = data["runs"] or []
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise MoescaleError(f"sweep {str(source)[:80]}: key 'runs' must be a list of runs")
        try:
            return cls(
                name=str(data["name"]),
                runs=[PlannedRun.from_dict(r) for r in runs],
                preset=data.get("preset"),
                constraints=Constraints.from_dict(data.get("constraints") or {}),
                train=train,
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise MoescaleError(f"sweep {str(source)[:80]}: malformed run: {exc}") from None

    def table(self) -> str:
        """A plain-text table of the runs (one line each)."""
        head = ("run_id", "L", "d", "E", "k", "d_ff", "N_total", "N_active", "FLOPs/tok", "tokens", "tpp", "C")
        rows = [head]
        for r in self.runs:
            a = r.architecture
            rows.append((
                r.run_id, str(a.n_layers), str(a.d_model), str(a.n_experts), str(a.top_k), str(a.d_ff),
                human(a.n_total), human(a.n_active), f"{a.flops_per_token:.3g}", human(r.tokens),
                f"{a.tpp(r.tokens):.1f}", f"{a.training_flops(r.tokens):.3g}",
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
        return "\n".join(lines + [f"{len(self.runs)} runs"])


def candidates(spaces: tuple[GridSpace, ...] | GridSpace, constraints: Constraints) -> list[Architecture]:
    """The architectures of the spaces that meet every structural rule and budget.

    Each rule and budget is applied in turn; when one leaves nothing, the MoescaleError
    names it, says how many candidates it removed and the range of the constrained value,
    and lists what the earlier rules removed.
    """
    if isinstance(spaces, GridSpace):
        spaces = (spaces,)
    log: list[str] = []
    combos = [(s, *c) for s in spaces for c in s.combinations()]
    start = len(combos)
    for name, rule in _STRUCTURE:
        kept = [c for c in combos if rule(*c)]
        log.append(f"{name} removed {len(combos) - len(kept)}")
        if not kept:
            raise MoescaleError(
                f"no architecture meets the constraints: {name} excludes all {len(combos)} remaining of "
                f"{start} grid combinations ({'; '.join(log[:-1]) or 'nothing removed before'})"
            )
        combos = kept
    archs = list(dict.fromkeys(s.architecture(*c) for s, *c in combos))
    for name, attr, target in constraints.budgets():
        kept = [a for a in archs if constraints.admits(getattr(a, attr), target)]
        log.append(f"{name} removed {len(archs) - len(kept)}")
        if not kept:
            values = [getattr(a, attr) for a in archs]
            raise MoescaleError(
                f"no architecture meets the constraints: {name} = {target:.4g} +- {constraints.tolerance:.0%} "
                f"excludes all {len(archs)} remaining candidates, whose {attr} spans {min(values):.4g} to "
                f"{max(values):.4g} ({'; '.join(log[:-1])})"
            )
        archs = kept
    return archs


def plan(
    spaces: tuple[GridSpace, ...] | GridSpace | str,
    constraints: Constraints = Constraints(),
    name: str | None = None,
    seed: int = 0,
) -> Sweep:
    """A Sweep of every candidate architecture, one run per compute budget.

    ``spaces`` is a GridSpace, several, or a preset name. Tokens per run: D = C /
    flops_per_token for each compute budget C (rounded to an integer), else
    ``constraints.tokens``; with neither, a preset's own compute budgets, else its tokens.
    A preset's training settings become the sweep's ``train`` block.
    """
    from scaling.presets import get_preset, plan_slices

    preset = get_preset(spaces) if isinstance(spaces, str) else None
    if preset and preset.slices:
        if constraints != Constraints():
            raise MoescaleError(f"plan: preset {preset.name!r} is a study of named slices; it takes no constraints")
        return Sweep(name=name or preset.name, runs=with_trained_ids(plan_slices(preset.slices), preset.train),
                     preset=preset.name, constraints=constraints, train=copy.deepcopy(preset.train))
    if preset and preset.compute and not constraints.compute and constraints.tokens is None:
        constraints = replace(constraints, compute=preset.compute)
    archs = candidates(preset.spaces if preset else spaces, constraints)
    runs = []
    for arch in archs:
        if constraints.compute:
            for c in constraints.compute:
                tokens = round(c / arch.flops_per_token)
                if tokens < 1:
                    raise MoescaleError(
                        f"plan: compute budget {c:.3g} buys less than one token of {arch.flops_per_token:.3g} "
                        f"FLOPs for {run_id_for(arch, 0, seed).rsplit('-', 1)[0]}"
                    )
                runs.append(PlannedRun.create(arch, tokens, seed, compute=c))
        else:
            tokens = constraints.tokens or (preset.tokens if preset else None)
            if tokens is None:
                raise MoescaleError("plan: give compute budgets (--compute) or a token count (--tokens)")
            runs.append(PlannedRun.create(arch, round(tokens), seed))
    train = copy.deepcopy(preset.train) if preset else {}
    return Sweep(name=name or (preset.name if preset else "sweep"), runs=with_trained_ids(runs, train),
                 preset=preset.name if preset else None, constraints=constraints, train=train)


#: The grid axes ``moescale plan grid`` takes as options (GridSpace field -> option), in order.
GRID_OPTIONS = {
    "n_layers": "--n-layers", "d_model": "--d-model", "n_experts": "--n-experts", "top_k": "--top-k",
    "granularity": "--granularity", "head_dim": "--head-dim", "vocab_size": "--vocab", "seq_len": "--seq-len",
    "n_kv_heads": "--n-kv-heads",
}  # fmt: skip


def plan_grid(preset: str | None = None, axes: Mapping | None = None, tied_embeddings: bool = False,
              name: str | None = None, seed: int = 0, **budgets) -> Sweep:
    """The sweep of ``moescale plan grid``: a preset's grid, or the GridSpace of the axes given.

    ``axes`` maps GridSpace fields to values (None: not given, the field's default); a preset
    fixes its grid, so no axis may be given with one, and without one d_model and n_layers
    are required. ``budgets`` are the :class:`Constraints` fields. See :func:`plan`.
    """
    given = {k: v for k, v in (axes or {}).items() if v is not None}
    if preset:
        options = [GRID_OPTIONS[k] for k in GRID_OPTIONS if k in given] + (["--tied"] if tied_embeddings else [])
        if options:
            raise MoescaleError(f"plan grid: --preset fixes the grid; drop {', '.join(options)}")
    constraints = Constraints(**budgets)
    if not preset and ("d_model" not in given or "n_layers" not in given):
        raise MoescaleError("plan grid: give --preset, or at least --d-model and --n-layers")
    space = preset or GridSpace(**given, tied_embeddings=tied_embeddings)
    return plan(space, constraints, name=name, seed=seed)


def __getattr__(name: str):
    # The presets live in scaling.presets (which imports this module); kept importable from here.
    if name in ("PRESETS", "Preset", "get_preset"):
        import scaling.presets

        return getattr(scaling.presets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
