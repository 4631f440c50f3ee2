"""Linear and generalized linear scaling models, estimated with statsmodels.

Two models cover the laws that are linear in their parameters after a transform:

- ``loglog_ols``: a power law y = k * prod_i x_i^b_i, fitted as the ordinary
  least squares regression log y = c + sum_i b_i log x_i (natural logs).
- ``accuracy_glm``: task accuracy as a binomial GLM with a logit link,
  logit p = c + sum_i b_i log x_i, the form used for downstream accuracy against
  log compute or log parameters (e.g. Gadre et al. 2024; Bhagia et al. 2024 fit
  the same sigmoid in log FLOPs).

Both return a ``LinearFit``: named parameters, standard errors, confidence
intervals, ``summary()`` (statsmodels' table) and ``predict()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError


@dataclass
class LinearFit:
    """A fitted linear model: parameters by name, their standard errors and CIs.

    Parameter names are ``const`` for the intercept and the name of each
    regressor column for its slope on log(column) (on the column itself when
    ``log_x`` is False).
    """

    kind: str  # "ols-loglog" or "glm-binomial-logit"
    y: str
    x: tuple[str, ...]
    log_x: bool
    params: dict[str, float]
    stderr: dict[str, float]
    ci: dict[str, tuple[float, float]]
    n_points: int
    alpha: float
    result: Any = field(repr=False)  # the statsmodels results object

    def design(self, df: pd.DataFrame | dict) -> np.ndarray:
        """The design matrix [1, log x_1, ...] of new data."""
        frame = pd.DataFrame(df)
        return _design(frame, self.x, self.log_x, where="predict")

    def predict(self, df: pd.DataFrame | dict) -> np.ndarray:
        """Predicted y (OLS: k * prod x_i^b_i) or success probability (GLM)."""
        eta = self.design(df) @ np.array([self.params[n] for n in self.param_names])
        if self.kind == "ols-loglog":
            return np.exp(eta)
        return 1.0 / (1.0 + np.exp(-eta))

    @property
    def param_names(self) -> list[str]:
        return ["const", *self.x]

    def summary(self) -> str:
        """statsmodels' summary table, with the model named above it."""
        head = f"{self.kind}: " + (
            f"log {self.y} = const + " + " + ".join(f"{n}*log {n}" for n in self.x)
            if self.kind == "ols-loglog"
            else f"logit P({self.y}) = const + "
            + " + ".join(f"{n}*{'log ' if self.log_x else ''}{n}" for n in self.x)
        )
        return head + "\n" + str(self.result.summary(xname=self.param_names))


def _column(df: pd.DataFrame, name: str, where: str) -> np.ndarray:
    if name not in df.columns:
        raise MoescaleError(f"{where}: no column {name!r} (columns: {', '.join(map(str, df.columns))})")
    values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise MoescaleError(f"{where}: column {name!r} row {int(bad[0])} is not a finite number")
    return values


def _positive(values: np.ndarray, name: str, where: str) -> np.ndarray:
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise MoescaleError(
            f"{where}: column {name!r} row {int(bad[0])} is {values[bad[0]]:g}; its log needs values > 0"
        )
    return values


def _design(df: pd.DataFrame, x: tuple[str, ...], log_x: bool, where: str) -> np.ndarray:
    cols = [np.ones(len(df))]
    for name in x:
        v = _column(df, name, where)
        cols.append(np.log(_positive(v, name, where)) if log_x else v)
    return np.column_stack(cols)


def _as_frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    from scaling.tables import read_table  # a file, dataset name or store table

    return read_table(data)


def _names(x: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    names = (x,) if isinstance(x, str) else tuple(x)
    if not names:
        raise MoescaleError("give at least one regressor column x")
    return names


def _collect(kind, y, x, log_x, result, n, alpha) -> LinearFit:
    names = ["const", *x]
    params = np.asarray(result.params, dtype=float)
    bse = np.asarray(result.bse, dtype=float)
    ci = np.asarray(result.conf_int(alpha=alpha), dtype=float)
    return LinearFit(
        kind=kind,
        y=y,
        x=x,
        log_x=log_x,
        params=dict(zip(names, params.tolist())),
        stderr=dict(zip(names, bse.tolist())),
        ci={k: (float(lo), float(hi)) for k, (lo, hi) in zip(names, ci)},
        n_points=n,
        alpha=alpha,
        result=result,
    )


def loglog_ols(data, y: str, x: str | list[str], *, alpha: float = 0.05) -> LinearFit:
    """Fit a power law y = k * prod_i x_i^b_i by OLS in log-log space.

    Model: log y = c + sum_i b_i * log x_i + eps, eps ~ N(0, s^2) i.i.d., with
    natural logs, so k = exp(c). Estimated with statsmodels OLS; the CIs are
    the t-intervals (1 - alpha) of the coefficients. This is the standard
    power-law fit of optima against compute (Kaplan et al. 2020; Hoffmann et
    al. 2022, Approaches 1 and 2).

    ``data``: a DataFrame, or anything ``scaling.tables.read_table`` accepts.
    """
    import statsmodels.api as sm

    df = _as_frame(data)
    names = _names(x)
    where = "loglog_ols"
    X = _design(df, names, True, where)
    yv = np.log(_positive(_column(df, y, where), y, where))
    if len(yv) < X.shape[1]:
        raise MoescaleError(f"{where}: {len(yv)} rows for {X.shape[1]} parameters; need at least as many rows")
    result = sm.OLS(yv, X).fit()
    return _collect("ols-loglog", y, names, True, result, len(yv), alpha)


def accuracy_glm(
    data,
    y: str,
    n_examples: str | int | float,
    x: str | list[str],
    *,
    y_kind: str = "accuracy",
    log_x: bool = True,
    alpha: float = 0.05,
) -> LinearFit:
    """Fit task accuracy with a binomial GLM and logit link.

    Model: successes_j ~ Binomial(n_j, p_j), logit p_j = c + sum_i b_i * log x_ij
    (x itself when ``log_x`` is False), by maximum likelihood (statsmodels GLM,
    IRLS); the CIs are Wald intervals (1 - alpha). Accuracy against log compute
    follows a sigmoid in this form (Gadre et al. 2024; Bhagia et al. 2024).

    ``y`` is a column of accuracies in [0, 1] (``y_kind="accuracy"``) or of
    success counts (``y_kind="successes"``); ``n_examples`` is the column of
    trial counts, or one number for all rows. Counts need not be integers
    (accuracy * n_examples), the binomial likelihood is used as a quasi-likelihood.
    """
    import statsmodels.api as sm

    df = _as_frame(data)
    names = _names(x)
    where = "accuracy_glm"
    if y_kind not in ("accuracy", "successes"):
        raise MoescaleError(f"{where}: y_kind must be 'accuracy' or 'successes', not {y_kind!r}")
    X = _design(df, names, log_x, where)
    yv = _column(df, y, where)
    if isinstance(n_examples, str):
        n = _column(df, n_examples, where)
    else:
        n = np.full(len(df), float(n_examples))
    bad = np.flatnonzero(n <= 0)
    if bad.size:
        raise MoescaleError(f"{where}: n_examples row {int(bad[0])} is {n[bad[0]]:g}; it must be > 0")
    successes = yv * n if y_kind == "accuracy" else yv
    bad = np.flatnonzero((successes < 0) | (successes > n * (1 + 1e-12)))
    if bad.size:
        raise MoescaleError(
            f"{where}: column {y!r} row {int(bad[0])} is {yv[bad[0]]:g}; "
            + ("accuracy must lie in [0, 1]" if y_kind == "accuracy" else "successes must lie in [0, n_examples]")
        )
    if len(yv) < X.shape[1]:
        raise MoescaleError(f"{where}: {len(yv)} rows for {X.shape[1]} parameters; need at least as many rows")
    endog = np.column_stack([successes, n - successes])
    result = sm.GLM(endog, X, family=sm.families.Binomial()).fit()
    return _collect("glm-binomial-logit", y, names, log_x, result, len(yv), alpha)
