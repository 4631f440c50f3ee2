"""The :class:`Law`: a scaling law's named, bounded parameters, start grid, equation and source.

A :class:`Law` evaluates its prediction for a *batch* of parameter sets at once:
``law.model(T, X)`` takes ``T``, a list of arrays of shape ``(b, 1)`` (one per
parameter, in ``law.params`` order), and ``X``, a dict of prepared variable arrays
of shape ``(n,)``, and returns an array of shape ``(b, n)``. The prediction lives
in ``law.space``: ``"log"`` (the natural log of y, for laws fitted in log-sum-exp
form) or ``"linear"`` (y itself). Laws with a cheap closed-form Jacobian provide
``law.jacobian`` and, for the gradient of a fit objective, ``law.vjp`` (the
vector-Jacobian product, which never forms the Jacobian); the others are
differentiated by complex-step differentiation
(``T_j + i·h``, h = 1e-30, derivative = imag/h), exact to machine precision, so
every ``model`` is written with complex-safe numpy operations.

The built-in laws and the registry are in :mod:`scaling.laws`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from scaling.errors import MoescaleError

LN10 = math.log(10.0)
INF = math.inf


def lse(*zs):
    """Complex-safe log-sum-exp of arrays of the same shape: m + log(sum exp(z - m)), m = max real part.

    ``np.logaddexp`` rejects complex input, which complex-step differentiation needs.
    """
    m = np.real(zs[0])
    for z in zs[1:]:
        m = np.maximum(m, np.real(z))
    total = sum(np.exp(z - m) for z in zs)
    return m + np.log(total)


@dataclass(frozen=True, eq=False)
class Law:
    """A scaling law: its parameters (ordered, bounded), variables, start grid and equation.

    Attributes:
        name: registry name, or the formula text for a user formula.
        params: parameter names in the order of the optimizer's vector.
        variables: the variables the law reads, e.g. ("N", "D").
        equation: the equation in plain text.
        citation: the source paper.
        model: ``model(T, X) -> (b, n)`` prediction in ``space`` (see module docstring).
        space: ``"log"`` (model returns ln y) or ``"linear"`` (model returns y).
        bounds: name -> (lo, hi); missing names are unbounded.
        start_grid: name -> start values; the product over parameters is the multi-start grid.
        default_loss: objective used when ``fit`` is not given one.
        jacobian: optional ``jacobian(T, X) -> (f, [df/dT_j])``; complex step otherwise.
        vjp: optional ``vjp(T, X) -> (f, pullback)`` with ``pullback(v) = sum_n v_n df_n/dT_j``,
            shape (b, n_params) for v of shape (b, n): the gradient of any objective of f
            at the cost of a few passes over (b, n), sharing the exps of ``f``.
        prepare: ``prepare(X) -> X'`` precomputes arrays (logs) once per fit.
        positive: variables that must be > 0 (a log is taken of them).
        derived: ``derived(params) -> dict`` of reported quantities (E = exp(e), ...).
        notes: extra lines printed under the summary (e.g. why a form was chosen).
        warnings: optional ``warnings(params) -> [str]``: lines a fit's summary prints when
            its parameters mean something implausible (an accuracy above 1).
        shear: optional ``shear(X) -> {(p, q): c}``: the optimizer works in z with
            p = z_p + c·z_q, a linear change of variables that decorrelates parameters
            (a − α·log N = (a − α·c) − α·(log N − c) with c = mean log N); bounded
            parameters must not be sheared.
    """

    name: str
    params: tuple[str, ...]
    variables: tuple[str, ...]
    equation: str
    citation: str
    model: Callable
    space: str = "linear"
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    start_grid: Mapping[str, Sequence[float]] = field(default_factory=dict)
    default_loss: str = "huber"
    jacobian: Callable | None = None
    vjp: Callable | None = None
    prepare: Callable | None = None
    positive: tuple[str, ...] = ()
    derived: Callable | None = None
    notes: str = ""
    warnings: Callable | None = None
    shear: Callable | None = None

    @property
    def n_params(self) -> int:
        return len(self.params)

    def bound(self, name: str) -> tuple[float, float]:
        return tuple(self.bounds.get(name, (-INF, INF)))

    def starts(self, overrides: Mapping[str, Sequence[float]] | None = None) -> np.ndarray:
        """The product grid of start values, shape (n_starts, n_params), in ``params`` order."""
        grid = dict(self.start_grid)
        grid.update(overrides or {})
        values = [list(grid.get(p, (1.0,))) for p in self.params]
        return np.array(list(itertools.product(*values)), dtype=float).reshape(-1, len(self.params))

    def prepared(self, X: Mapping[str, np.ndarray]) -> dict:
        """Variables as float arrays plus what ``prepare`` precomputes (e.g. their logs)."""
        missing = [v for v in self.variables if v not in X]
        if missing:
            raise MoescaleError(f"law {self.name!r} needs variable(s) {', '.join(missing)}; got {', '.join(X) or 'none'}")
        out = {v: np.asarray(X[v], dtype=float).reshape(-1) for v in self.variables}
        return self.prepare(out) if self.prepare else out

    def _param_arrays(self, params) -> list[np.ndarray]:
        if isinstance(params, Mapping):
            missing = [p for p in self.params if p not in params]
            if missing:
                raise MoescaleError(f"law {self.name!r}: missing parameter(s) {', '.join(missing)}")
            vec = np.array([[float(params[p]) for p in self.params]])
        else:
            vec = np.atleast_2d(np.asarray(params, dtype=float))
            if vec.shape[-1] != self.n_params:
                raise MoescaleError(f"law {self.name!r} has {self.n_params} parameters, got {vec.shape[-1]} values")
        return [vec[:, j : j + 1] for j in range(self.n_params)]

    def log_predict(self, params, X: Mapping[str, np.ndarray]) -> np.ndarray:
        """ln y at the points ``X`` for one parameter set (dict or vector) or a batch (b, k) -> (b, n)."""
        f = self.model(self._param_arrays(params), self.prepared(X))
        f = np.array(f if self.space == "log" else np.log(f), dtype=float)
        return f[0] if isinstance(params, Mapping) or np.ndim(params) == 1 else f

    def predict(self, params, X: Mapping[str, np.ndarray]) -> np.ndarray:
        """y at the points ``X`` for one parameter set (dict or vector) or a batch (b, k) -> (b, n)."""
        f = self.model(self._param_arrays(params), self.prepared(X))
        f = np.array(np.exp(f) if self.space == "log" else f, dtype=float)
        return f[0] if isinstance(params, Mapping) or np.ndim(params) == 1 else f

    def report(self, params: Mapping[str, float]) -> dict[str, float]:
        """The fitted parameters followed by derived quantities (E = exp(e), ...)."""
        out = {p: float(params[p]) for p in self.params}
        if self.derived:
            out.update({k: float(v) for k, v in self.derived(out).items()})
        return out

    def __str__(self) -> str:
        return f"{self.name}: {self.equation}"
