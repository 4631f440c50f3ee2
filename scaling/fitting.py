"""Fit a scaling law to a table: ``fit(data, law, x={...}, y=...) -> FitResult``.

The variables are selected with DuckDB SQL over a table named ``data``
(``SELECT <x exprs> AS <names>, <y> AS y FROM data WHERE <where>``), the law is
minimized from every start of its grid at once (``scaling.optimize``), the best
candidates are polished with scipy L-BFGS-B, and uncertainty comes from a
bootstrap over runs and lmfit standard errors (``scaling.bootstrap``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import duckdb
import numpy as np
import pandas as pd

from scaling.errors import MoescaleError
from scaling.laws import Law, get_law
from scaling.objectives import LossProblem, Objective
from scaling.optimize import distinct_best, minimize_batch, polish, projected_grad
from scaling.tables import read_table

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
        """Predicted y at the rows of ``df`` (DataFrame or dict with the law's variable names)."""
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
            ("Starts:", f"{self.n_starts_converged}/{self.n_starts} converged"),
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
        if self.bootstrap and self.bootstrap.get("n_failed"):
            notes.append(f"WARNING: {self.bootstrap['n_failed']} bootstrap refits did not converge.")
        if self.law.notes:
            notes.append(self.law.notes)
        return "\n".join(lines + notes)

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------- data selection


# Row number of each input row, carried through the selection for error messages.
_ROW = "__moescale_row"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def select(df: pd.DataFrame, x: Mapping[str, str], y: str, where: str | None = None, run_id: str = "run_id") -> tuple[pd.DataFrame, np.ndarray | None]:
    """Evaluate the mapping with DuckDB: ``SELECT <x> AS <names>, <y> AS y FROM data WHERE <where>``.

    Returns the selected variables and y as float columns, and the run id of each
    row when ``data`` has a ``run_id`` column (else None: each row is its own run).
    """
    if not x:
        raise MoescaleError("no variables mapped: give x={'N': 'n_total', ...} (--map N=SQL)")
    cols = [f"({expr}) AS {_quote(name)}" for name, expr in x.items()]
    cols.append(f"({y}) AS y")
    has_run = run_id in df.columns
    if has_run:
        cols.append(f"{_quote(run_id)} AS __run_id")
    cols.append(f"{_ROW} AS {_ROW}")
    query = f"SELECT {', '.join(cols)} FROM data" + (f" WHERE {where}" if where else "")
    con = duckdb.connect()
    try:
        con.register("data", df.assign(**{_ROW: np.arange(len(df))}))
        out = con.execute(query).df()
    except duckdb.Error as exc:
        raise MoescaleError(f"mapping does not evaluate: {_one_line(exc)}") from None
    finally:
        con.close()
    runs = out.pop("__run_id").to_numpy() if has_run else None
    out.attrs["source_rows"] = out.pop(_ROW).to_numpy()
    for col in out.columns:
        try:
            out[col] = pd.to_numeric(out[col]).astype(float)
        except (TypeError, ValueError):
            raise MoescaleError(f"variable {col} is not numeric (mapping {x.get(col, y)!r})") from None
    return out, runs


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


def fingerprint(sel: pd.DataFrame) -> str:
    """sha256 of the selected data: columns sorted by name, rows sorted, values as 17-digit floats."""
    cols = sorted(sel.columns)
    rows = sorted(tuple(float(v) for v in row) for row in sel[cols].itertuples(index=False))
    text = ",".join(cols) + "\n" + "\n".join(",".join(format(v, ".17g") for v in row) for row in rows)
    return hashlib.sha256(text.encode()).hexdigest()


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
    """Multi-start: batched L-BFGS from every start, then scipy polish of the best distinct candidates.

    Works in the problem's sheared coordinates (``Law.shear``). Returns (best free-parameter
    vector, objective, converged, message, batch result).
    """
    fun = problem.value_grad_z
    # The batch only has to rank the starts (ftol 1e-7); the polish converges the best ones.
    batch = minimize_batch(fun, problem.to_z(starts), problem.lower, problem.upper, ftol=1e-7, max_iter=500)
    candidates = distinct_best(batch, n_polish)
    if not candidates:
        raise MoescaleError(f"law {problem.law.name!r}: the objective is not finite at any start; check the data and start values")
    best = None
    for i in candidates:
        pol = polish(fun, batch.x[i], problem.lower, problem.upper)
        if best is None or pol.fun < best.fun:
            best = pol
    # scipy stops with "abnormal termination in line search" once no float64 step can lower the
    # objective; that is convergence when the scaled gradient is also negligible.
    _, g = fun(best.x[None, :], np.array([0]), True)
    scale = np.maximum(np.abs(best.x), 1.0)
    free_g = projected_grad(best.x, g[0], problem.lower, problem.upper)
    small_grad = np.max(np.abs(free_g) * scale) <= 1e-6 * max(abs(best.fun), 1e-12) or np.max(np.abs(free_g)) <= 1e-12
    converged = bool(best.success or small_grad)
    return problem.from_z(best.x)[0], best.fun, converged, best.message, batch


def fit(data, law, x: Mapping[str, str] | None = None, y: str = "val_loss", where: str | None = None,
        loss: str | None = None, delta: float = 1e-3, bootstrap: int = 0, seed: int = 0, store=None,
        fix: Mapping[str, float] | None = None, starts: Mapping[str, Sequence[float]] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None, stderr: bool = True, progress=None) -> FitResult:
    """Fit a scaling law to data selected with DuckDB SQL; see the module docstring.

    Args:
        data: a DataFrame, a file, a registry dataset name or a store table/view.
        law: a registry name (``scaling.laws.LAWS``), a formula, or a Law.
        x: variable name -> SQL expression over ``data`` (default: the variable's own name).
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
    """
    x = dict(x or {})
    variables = tuple(x) if x else None
    law = get_law(law, variables)
    if not x:
        x = {v: _quote(v) for v in law.variables}
    unknown = [v for v in x if v not in law.variables]
    if unknown:
        raise MoescaleError(f"unknown variable(s) {', '.join(unknown)} for law {law.name!r}; its variables are {', '.join(law.variables)}")
    unmapped = [v for v in law.variables if v not in x]
    if unmapped:
        raise MoescaleError(f"variable(s) {', '.join(unmapped)} of law {law.name!r} not mapped: give x={{{unmapped[0]!r}: SQL}} (--map {unmapped[0]}=SQL)")
    if bounds:
        bad = [p for p in bounds if p not in law.params]
        if bad:
            raise MoescaleError(f"bounds for unknown parameter(s) {', '.join(bad)}; law {law.name!r} has {', '.join(law.params)}")
        law = replace(law, bounds={**law.bounds, **{p: (float(lo), float(hi)) for p, (lo, hi) in bounds.items()}})
    objective = Objective(loss or law.default_loss, float(delta))
    fixed = {p: float(v) for p, v in (fix or {}).items()}
    st = _store_object(store)
    try:
        return _fit(data, law, x, y, where, objective, fixed, starts, bounds, int(bootstrap), int(seed), st, stderr, progress)
    finally:
        if st is not None and st is not store:
            st.close()


def _fit(data, law, x, y, where, objective, fixed, starts, bounds, bootstrap, seed, st, stderr, progress) -> FitResult:
    df = read_table(data, store=st)
    sel, runs = select(df, x, y, where)
    n_free = law.n_params - len([p for p in fixed if p in law.params])
    _check(law, sel, x, y, objective, n_free)
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
        n_starts=len(grid_free), n_starts_converged=int(batch.converged.sum()),
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
    }
    if st is not None:
        result.fit_id = st.add_fit(law.name, result.spec, result.params, {k: list(v) for k, v in result.ci.items()},
                                   result.objective, result.n_points, result.fingerprint)
    return result


def _store_object(store):
    if store is None or not isinstance(store, (str, Path)):
        return store
    from scaling.store import Store

    return Store(store)
