"""Fit a scaling law to a table: ``fit(data, law, x={...}, y=...) -> FitResult``.

The variables are selected with DuckDB SQL over a table named ``data``
(``SELECT <x exprs> AS <names>, <y> AS y FROM data WHERE <where>``; see
:mod:`scaling.selection`: one SQL expression each, on a connection that can reach
neither the store nor a file). The law is
minimized from every start of its grid at once (``scaling.optimize``), the best
candidates are polished with scipy L-BFGS-B, and uncertainty comes from a
bootstrap over runs and lmfit standard errors (``scaling.bootstrap``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError
from scaling.laws import MOE_X, Law, get_law
from scaling.objectives import LossProblem, Objective
from scaling.optimize import distinct_best, minimize_batch, polish, projected_grad
from scaling.schema import quote
from scaling.selection import check_expression, fingerprint, select  # noqa: F401  (re-exported)
from scaling.tables import is_file_or_dataset, read_table

#: Candidates polished with scipy after the batched multi-start.
N_POLISH = 5


@dataclass
class FitResult:
    """A fitted law: estimates, uncertainty, the objective and how the optimizer ended.

    ``params`` holds the fitted parameters followed by derived ones (for
    ``chinchilla``: e, a, b, alpha, beta, then E, A, B). ``ci`` holds 95%
    bootstrap percentile intervals (empty without bootstrap), ``stderr`` lmfit
    standard errors (may be empty), ``correl`` their correlations.
    """

    law: Law
    params: dict[str, float]
    objective: float
    n_points: int
    loss: str
    delta: float
    converged: bool
    at_bound: list[str]
    fixed: dict[str, float]
    data: pd.DataFrame
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    correl: dict[str, dict[str, float]] = field(default_factory=dict)
    message: str = ""
    n_starts: int = 0
    n_starts_converged: int = 0
    n_starts_pruned: int = 0
    bootstrap: dict | None = None
    spec: dict = field(default_factory=dict)
    fingerprint: str = ""
    fit_id: str | None = None

    @property
    def n_free(self) -> int:
        return self.law.n_params - len(self.fixed)

    def vector(self) -> np.ndarray:
        """The law's parameters in ``law.params`` order."""
        return np.array([self.params[p] for p in self.law.params])

    def predict(self, df) -> np.ndarray:
        """Predicted y at the rows of ``df``.

        ``df`` is either a mapping (dict) of the law's variables, e.g. ``{"N": [7e10], "D":
        [1.4e12]}``, or a DataFrame of the source table, to which the fit's own ``x``
        mapping is applied first (``SELECT <x exprs> FROM data``, as statsmodels' formula
        results do), so ``fit(df, law, x={"M": "tok_mult"}).predict(df)`` predicts at the
        fitted rows. A DataFrame that lacks the source columns but holds every law
        variable is read as variables.
        """
        mapping = self.spec.get("x") or {}
        if isinstance(df, pd.DataFrame) and mapping:
            try:
                sel, _ = select(df, mapping, None)
            except MoescaleError:
                if not all(v in df.columns for v in self.law.variables):
                    raise
            else:
                X = {v: sel[v].to_numpy() for v in self.law.variables}
                return self.law.predict(self.vector(), X)
        missing = [v for v in self.law.variables if v not in df]
        if missing:
            raise MoescaleError(
                f"predict needs the law's variable(s) {', '.join(missing)} or a DataFrame of the source "
                f"columns of the mapping {mapping}"
            )
        X = {v: np.asarray(df[v], dtype=float) for v in self.law.variables}
        return self.law.predict(self.vector(), X)

    def to_json(self) -> dict:
        """The result as JSON-ready dict: law, params, ci, objective, n_points, loss, delta, converged, ..."""
        return {
            "law": self.law.name,
            "params": dict(self.params),
            "ci": {k: [lo, hi] for k, (lo, hi) in self.ci.items()},
            "objective": self.objective,
            "n_points": self.n_points,
            "loss": self.loss,
            "delta": self.delta,
            "converged": self.converged,
            "at_bound": list(self.at_bound),
            "fixed": dict(self.fixed),
            "stderr": dict(self.stderr),
        }

    def summary(self) -> str:
        """A statsmodels-like table: law, equation, data, objective, convergence and the estimates."""
        width = 78
        rule, thin = "=" * width, "-" * width
        head = [
            ("Law:", self.law.name if len(self.law.name) < 40 else "formula"),
            ("Points:", str(self.n_points)),
            ("Loss:", self.loss + (f" (delta={self.delta:g})" if self.loss == "huber" else "")),
            ("Objective:", f"{self.objective:.6e}"),
            ("Converged:", "yes" if self.converged else "NO"),
            ("Starts:", f"{self.n_starts_converged}/{self.n_starts} converged"
                        + (f", {self.n_starts_pruned} stopped early as redundant or behind" if self.n_starts_pruned else "")),
        ]
        if self.bootstrap:
            head.append(("Bootstrap:", f"{self.bootstrap['n']} resamples of {self.bootstrap['n_runs']} runs, seed {self.bootstrap['seed']}"))
        lines = [rule, f"{'Scaling-law fit':^{width}}", rule]
        lines += [f"{k:<12}{v}" for k, v in head]
        lines.append(f"{'Equation:':<12}{self.law.equation}")
        lines.append(f"{'Source:':<12}{self.law.citation}")
        lines.append(thin)
        lines.append(f"{'':<10}{'estimate':>14}{'std err':>12}{'[0.025':>14}{'0.975]':>14}  flags")
        lines.append(thin)
        for name, value in self.params.items():
            se = self.stderr.get(name)
            lo, hi = self.ci.get(name, (None, None))
            flags = []
            if name in self.fixed:
                flags.append("fixed")
            if name in self.at_bound:
                flags.append("AT BOUND")
            lines.append(
                f"{name:<10}{value:>14.6g}{(f'{se:.4g}' if se is not None else ''):>12}"
                f"{(f'{lo:.6g}' if lo is not None else ''):>14}{(f'{hi:.6g}' if hi is not None else ''):>14}  {' '.join(flags)}"
            )
        lines.append(rule)
        notes = []
        if not self.converged:
            notes.append(f"WARNING: the optimizer did not converge ({self.message}).")
        if self.at_bound:
            notes.append(f"WARNING: parameter(s) at a bound: {', '.join(self.at_bound)}.")
        if self.bootstrap and self.bootstrap.get("n", 0) < 100:
            notes.append(f"WARNING: only {self.bootstrap['n']} bootstrap resamples: the intervals are rough "
                         "(use 1000 or more).")
        if self.bootstrap and self.bootstrap.get("n_failed"):
            notes.append(f"WARNING: {self.bootstrap['n_failed']} bootstrap refits did not converge.")
        if self.law.warnings:
            notes.extend(self.law.warnings(dict(self.params)))
        if self.law.notes:
            notes.append(self.law.notes)
        return "\n".join(lines + notes)

    def __str__(self) -> str:
        return self.summary()


def _check(law: Law, sel: pd.DataFrame, x: Mapping[str, str], y: str, objective: Objective, n_free: int) -> None:
    exprs = dict(x)
    exprs["y"] = y
    rows = sel.attrs.get("source_rows", np.arange(len(sel)))
    for col in sel.columns:
        v = sel[col].to_numpy()
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise MoescaleError(f"{col} = {exprs[col]!r} is NaN or infinite in data row {rows[bad[0]]} ({bad.size} rows)")
    need_pos = list(law.positive) + (["y"] if objective.space == "log" else [])
    for col in need_pos:
        v = sel[col].to_numpy()
        bad = np.flatnonzero(v <= 0)
        if bad.size:
            raise MoescaleError(
                f"{col} = {exprs[col]!r} must be > 0 (a log is taken) but is {v[bad[0]]:g} in data row {rows[bad[0]]} ({bad.size} rows)"
            )
    if len(sel) < n_free:
        raise MoescaleError(f"{len(sel)} points selected but law {law.name!r} has {n_free} free parameters: need at least {n_free}")


# --------------------------------------------------------------------------- fitting


def _at_bound(law: Law, params: Mapping[str, float], fixed: Mapping[str, float]) -> list[str]:
    out = []
    for p in law.params:
        lo, hi = law.bound(p)
        v = params[p]
        if p not in fixed and any(math.isfinite(b) and abs(v - b) <= 1e-8 * max(1.0, abs(b)) for b in (lo, hi)):
            out.append(p)
    return out


def _parse_starts(law: Law, starts: Mapping[str, Sequence[float]] | None) -> dict:
    starts = dict(starts or {})
    unknown = [p for p in starts if p not in law.params]
    if unknown:
        raise MoescaleError(f"start values for unknown parameter(s) {', '.join(unknown)}; law {law.name!r} has {', '.join(law.params)}")
    return {p: [float(v) for v in (vals if isinstance(vals, (list, tuple, np.ndarray)) else [vals])] for p, vals in starts.items()}


def optimize_law(problem: LossProblem, starts: np.ndarray, *, n_polish: int = N_POLISH):
    """Multi-start: batched L-BFGS from every start (pruned), then scipy polish of the best distinct candidates.

    Works in the problem's sheared coordinates (``Law.shear``). Returns (best free-parameter
    vector, objective, converged, message, batch result).
    """
    fun = problem.value_grad_z
    # The batch only has to rank the starts (ftol 1e-7); the polish converges the best ones.
    # prune: a start stops once a better start shares its small cell (the same basin) or once
    # its pace cannot bring it to the best objective within max_iter, so few starts run to the end.
    batch = minimize_batch(fun, problem.to_z(starts), problem.lower, problem.upper, ftol=1e-7, max_iter=500,
                           prune=True)
    candidates = distinct_best(batch, n_polish)
    if not candidates:
        raise MoescaleError(f"law {problem.law.name!r}: the objective is not finite at any start; check the data and start values")
    best = None
    for i in candidates:
        pol = polish(fun, batch.x[i], problem.lower, problem.upper)
        if best is None or pol.fun < best.fun:
            best = pol
    # scipy stops with "abnormal termination in line search" once no float64 step can lower the
    # objective; that is convergence when the scaled gradient is also negligible: below 1e-6 of
    # the objective, or below 1e-3 of it after such a stop (a flat, weakly identified direction,
    # as in Clark et al.'s law, leaves gradient noise of ~1e-4 relative at the float64 floor, and
    # its size there differs between CPUs' BLAS kernels).
    _, g = fun(best.x[None, :], np.array([0]), True)
    scale = np.maximum(np.abs(best.x), 1.0)
    free_g = projected_grad(best.x, g[0], problem.lower, problem.upper)
    rel_grad = np.max(np.abs(free_g) * scale) / max(abs(best.fun), 1e-12)
    stalled = "ABNORMAL" in str(best.message).upper()
    small_grad = rel_grad <= (1e-3 if stalled else 1e-6) or np.max(np.abs(free_g)) <= 1e-12
    converged = bool(best.success or small_grad)
    return problem.from_z(best.x)[0], best.fun, converged, best.message, batch


def fit(data, law, x: Mapping[str, str] | None = None, y: str = "val_loss", where: str | None = None,
        loss: str | None = None, delta: float = 1e-3, bootstrap: int = 0, seed: int = 0, store=None,
        fix: Mapping[str, float] | None = None, starts: Mapping[str, Sequence[float]] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None, stderr: bool = True, progress=None,
        save: bool = True) -> FitResult:
    """Fit a scaling law to data selected with DuckDB SQL; see the module docstring.

    Args:
        data: a DataFrame, a file, a registry dataset name or a store table/view.
        law: a registry name (``scaling.laws.LAWS``), a formula, or a Law.
        x: variable name -> SQL expression over ``data`` (default: :func:`default_x`: the variable's
            own column, else the law's mapping onto the ``final`` view, e.g. ``MOE_X`` for moe).
        y: SQL expression of the fitted quantity.
        where: SQL filter.
        loss: huber | mse | mse-log | mse-log10 (default: the law's).
        delta: Huber δ.
        bootstrap: number of resamples of runs for percentile CIs (0: none).
        seed: bootstrap seed.
        store: a Store (or a path) to save the fit to, or None.
        fix: parameter -> value held fixed (not free; e.g. {"lam": 0.0} for a nested moe law).
        starts: parameter -> start values replacing the law's grid for that parameter.
        bounds: parameter -> (lo, hi) replacing the law's bounds.
        stderr: compute lmfit standard errors.
        progress: optional callable(done, total) for bootstrap progress.
        save: save the fit to ``store`` (False: ``store`` is only read; see :func:`save_fit`).

    Every argument is validated before any work (MoescaleError naming it): bootstrap is 0
    or 2 .. :data:`MAX_BOOTSTRAP` (and bootstrap × points at most :data:`MAX_BOOTSTRAP_CELLS`),
    seed is a non-negative integer, bounds have lo < hi, fixed and start values are
    finite, and at least one parameter is free.
    """
    x = dict(x or {})
    variables = tuple(x) if x else None
    law = get_law(law, variables)
    unknown = [v for v in x if v not in law.variables]
    if unknown:
        raise MoescaleError(f"unknown variable(s) {', '.join(unknown)} for law {law.name!r}; its variables are {', '.join(law.variables)}")
    unmapped = [v for v in law.variables if v not in x] if x else []  # none given: default_x, once the data is read
    if unmapped:
        raise MoescaleError(f"variable(s) {', '.join(unmapped)} of law {law.name!r} not mapped: give x={{{unmapped[0]!r}: SQL}} (--map {unmapped[0]}=SQL)")
    if bounds:
        bad = [p for p in bounds if p not in law.params]
        if bad:
            raise MoescaleError(f"bounds for unknown parameter(s) {', '.join(bad)}; law {law.name!r} has {', '.join(law.params)}")
        for p, (lo, hi) in bounds.items():
            if math.isnan(float(lo)) or math.isnan(float(hi)) or not float(lo) < float(hi):
                raise MoescaleError(f"bound of {p}: lower {lo} must be below upper {hi}")
        law = replace(law, bounds={**law.bounds, **{p: (float(lo), float(hi)) for p, (lo, hi) in bounds.items()}})
    objective = Objective(loss or law.default_loss, float(delta))
    fixed = {p: float(v) for p, v in (fix or {}).items()}
    _validate(law, fixed, starts, bootstrap, seed)
    st = _store_object(store)
    try:
        return _fit(data, law, x, y, where, objective, fixed, starts, bounds, int(bootstrap), int(seed), st if save else None,
                    stderr, progress, read_store=st)
    finally:
        if st is not None and st is not store:
            st.close()


#: The largest bootstrap accepted, and the largest bootstrap × points (the weight matrix, 8 bytes a cell).
MAX_BOOTSTRAP = 1_000_000
MAX_BOOTSTRAP_CELLS = 50_000_000


def _validate(law: Law, fixed: Mapping[str, float], starts, bootstrap, seed) -> None:
    """Arguments that are wrong whatever the data: refused before any reading or fitting."""
    for what, value in (("bootstrap", bootstrap), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MoescaleError(f"{what} must be an integer, got {value!r}")
    if bootstrap < 0 or bootstrap == 1 or bootstrap > MAX_BOOTSTRAP:
        raise MoescaleError(f"bootstrap must be 0 (none) or 2 .. {MAX_BOOTSTRAP:,} resamples, got {bootstrap}")
    if seed < 0 or seed >= 2**63:
        raise MoescaleError(f"seed must be an integer in 0 .. 2^63 - 1, got {seed}")
    unknown = [p for p in fixed if p not in law.params]
    if unknown:
        raise MoescaleError(f"cannot fix {', '.join(unknown)}: law {law.name!r} has parameters {', '.join(law.params)}")
    for p, v in fixed.items():
        if not math.isfinite(v):
            raise MoescaleError(f"fixed value of {p} must be a finite number, got {v}")
    if all(p in fixed for p in law.params):
        raise MoescaleError(f"every parameter of law {law.name!r} is fixed ({', '.join(law.params)}): nothing to fit")
    for p, values in _parse_starts(law, starts).items():
        if not values or not all(math.isfinite(v) for v in values):
            raise MoescaleError(f"start values of {p} must be finite numbers, got {values}")


#: Laws whose variables have a documented mapping onto the store's ``final`` view, used when
#: no mapping is given: the moe law's ``scaling.laws.MOE_X`` (N_total, sparsity, n_experts, tokens).
FINAL_X = {"moe": MOE_X}


def default_x(law: Law, columns, data="data") -> dict[str, str]:
    """The mapping of ``law``'s variables when none is given: each variable's own column when
    the data has it, else the law's documented mapping onto the store's ``final`` view
    (``FINAL_X``) when the data has those columns; MoescaleError naming the ``--map`` still
    missing otherwise (e.g. chinchilla on ``final``: N could be n_total or n_active)."""
    columns = [str(c) for c in columns]
    final = FINAL_X.get(law.name)
    if final and not all(v in columns for v in law.variables) and all(c in columns for c in final.values()):
        return dict(final)
    missing = [v for v in law.variables if v not in columns]
    if missing:
        maps = " ".join(f"--map {v}=SQL" for v in missing)
        raise MoescaleError(f"law {law.name!r}: no column named {', '.join(missing)} in {data} and no mapping given: "
                            f"give {maps} (x={{{missing[0]!r}: SQL}}); its columns: {', '.join(columns[:12])}"
                            + (" ..." if len(columns) > 12 else ""))
    return {v: quote(v) for v in law.variables}


def _fit(data, law, x, y, where, objective, fixed, starts, bounds, bootstrap, seed, st, stderr, progress, read_store=None) -> FitResult:
    df = read_table(data, store=read_store)
    x = x or default_x(law, df.columns, data if isinstance(data, (str, Path)) else "the DataFrame")
    sel, runs = select(df, x, y, where)
    n_free = law.n_params - len([p for p in fixed if p in law.params])
    _check(law, sel, x, y, objective, n_free)
    if bootstrap * len(sel) > MAX_BOOTSTRAP_CELLS:
        raise MoescaleError(f"bootstrap {bootstrap:,} × {len(sel):,} points exceeds {MAX_BOOTSTRAP_CELLS:,} weights; "
                            f"use at most {MAX_BOOTSTRAP_CELLS // max(len(sel), 1):,} resamples")
    X = {v: sel[v].to_numpy() for v in law.variables}
    problem = LossProblem(law, X, sel["y"].to_numpy(), objective, fixed=fixed)
    grid = law.starts(_parse_starts(law, starts))
    grid_free = grid[:, [law.params.index(p) for p in problem.free]]
    grid_free = np.unique(np.clip(grid_free, problem.lower, problem.upper), axis=0)
    theta, value, converged, message, batch = optimize_law(problem, grid_free)
    full = problem.full(theta[None, :])[0]
    params = law.report(dict(zip(law.params, full)))
    result = FitResult(
        law=law, params=params, objective=float(value), n_points=len(sel), loss=objective.name, delta=objective.delta,
        converged=converged, at_bound=_at_bound(law, params, fixed), fixed=fixed, data=sel, message=message,
        n_starts=len(grid_free), n_starts_converged=int(batch.converged.sum()), n_starts_pruned=int(batch.pruned.sum()),
    )
    if stderr:
        from scaling.bootstrap import standard_errors

        result.stderr, result.correl = standard_errors(problem, theta)
    if bootstrap:
        from scaling.bootstrap import bootstrap_ci

        result.ci, result.bootstrap = bootstrap_ci(problem, theta, int(bootstrap), seed=int(seed), runs=runs, progress=progress)
    result.fingerprint = fingerprint(sel)
    result.spec = {
        "law": law.name, "x": x, "y": y, "where": where, "loss": objective.name, "delta": objective.delta,
        "bootstrap": int(bootstrap), "seed": int(seed), "fix": fixed, "starts": _parse_starts(law, starts),
        "bounds": {p: list(b) for p, b in (bounds or {}).items()},
        "data": str(data) if isinstance(data, (str, Path)) else "<DataFrame>",
        "result": {"converged": converged, "at_bound": result.at_bound, "stderr": result.stderr,
                   "message": str(message), "n_starts": result.n_starts, "n_starts_converged": result.n_starts_converged,
                   "n_starts_pruned": result.n_starts_pruned,
                   "bootstrap": result.bootstrap},
    }
    if st is not None:
        save_fit(st, result)
    return result


def save_fit(store, result: FitResult) -> str:
    """Record ``result`` in the store's ``fits`` table; sets and returns its ``fit_id``."""
    result.fit_id = store.add_fit(result.law.name, result.spec, result.params, {k: list(v) for k, v in result.ci.items()},
                                  result.objective, result.n_points, result.fingerprint)
    return result.fit_id


def load_fit(store, fit_id: str) -> FitResult:
    """A fit saved in the store (``fits`` row ``fit_id``) back as a :class:`FitResult`.

    The law is rebuilt from the saved spec (registry name or formula, the variables of
    ``x``, the bounds given), and the parameters are the saved float64 values, so the
    result predicts exactly as the fit that was saved. ``data`` is empty: the rows are
    not stored (``fingerprint`` identifies them).

    >>> res = load_fit(Store(), "3f2a...")
    >>> res.predict(Store().table("final"))
    """
    store = _store_object(store)
    row = store.fit_record(fit_id)
    spec = row["spec"]
    x = spec.get("x") or {}
    law = get_law(spec.get("law", row["law"]), tuple(x) or None)
    if spec.get("bounds"):
        law = replace(law, bounds={**law.bounds, **{p: (float(lo), float(hi)) for p, (lo, hi) in spec["bounds"].items()}})
    missing = [p for p in law.params if row["params"].get(p) is None]
    if missing:
        raise MoescaleError(f"fit {fit_id!r}: parameter(s) {', '.join(missing)} missing or not finite in the store")
    params = {k: (math.nan if v is None else float(v)) for k, v in row["params"].items()}
    done = spec.get("result") or {}
    return FitResult(
        law=law, params=params, objective=float(row["objective"]) if row["objective"] is not None else math.nan,
        n_points=int(row["n_points"]), loss=spec.get("loss", law.default_loss), delta=float(spec.get("delta", 1e-3)),
        converged=bool(done.get("converged", True)), at_bound=list(done.get("at_bound", [])),
        fixed={k: float(v) for k, v in (spec.get("fix") or {}).items()}, data=pd.DataFrame(columns=[*x, "y"]),
        ci={k: (float(lo), float(hi)) for k, (lo, hi) in row["ci"].items() if lo is not None and hi is not None},
        stderr={k: float(v) for k, v in (done.get("stderr") or {}).items() if v is not None},
        message=done.get("message", ""), n_starts=int(done.get("n_starts", 0)),
        n_starts_converged=int(done.get("n_starts_converged", 0)), n_starts_pruned=int(done.get("n_starts_pruned", 0)),
        bootstrap=done.get("bootstrap"),
        spec=spec, fingerprint=row["fingerprint"] or "", fit_id=str(row["fit_id"]),
    )


def _store_object(store):
    """A Store for ``store`` (a Store, a path, or None); a path must name an existing store."""
    if store is None or not isinstance(store, (str, Path)):
        return store
    from scaling.store import Store

    return Store(store, create=False)


def open_fit_store(data, store: str | Path | None = None):
    """The store a fit of ``data`` reads its table from and is saved to, opened (never created), or None.

    A store is opened when ``store`` names one, or when ``data`` is neither an existing file
    nor a registered dataset, so it names a table or view of the default store
    ($MOESCALE_STORE, else ./moescale.duckdb); this is what ``moescale fit`` does. When that
    default store is missing, the MoescaleError says what ``data`` could have been.
    """
    if store is None and is_file_or_dataset(data):
        return None
    from scaling.store import Store

    try:
        return Store(store, create=False)
    except MoescaleError as exc:
        if store is not None:
            raise
        from scaling.datasets import names

        raise MoescaleError(f"{data!r} is neither a file, a dataset ({', '.join(names())}) nor a store "
                            f"table: {exc}") from None
