"""Model comparison: information criteria, likelihood-ratio tests and held-out
extrapolation error of fitted scaling laws.

Likelihood convention (one for every function here). Whatever objective a law
was fitted with, its residuals r_i are taken in the fit's residual space,

    r = ln y - ln y_hat        (loss "huber" and "mse-log"),
    r = log10 y - log10 y_hat  ("mse-log10"),
    r = y - y_hat              ("mse"),

and scored with the Gaussian log-likelihood maximized over the noise variance
s^2 = RSS / n:

    logL = -n/2 * (ln(2 pi RSS / n) + 1),   RSS = sum_i r_i^2.

The parameter count k is the number of FREE law parameters (those not fixed
with ``fix=``) plus one for the variance s^2. For a Huber fit this Gaussian
logL is evaluated at the Huber optimum, not the Gaussian one: an approximation
that is close when few residuals exceed delta, and the same for every model
compared, as long as all were fitted with the same loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaling.errors import MoescaleError

__all__ = [
    "residuals",
    "log_likelihood",
    "free_params",
    "n_free_params",
    "aic",
    "bic",
    "likelihood_ratio_test",
    "compare",
    "Holdout",
    "leave_one_out",
    "leave_largest_out",
]


# --------------------------------------------------------------------------- likelihood


# residual space of each loss (module docstring)
_SPACE = {"huber": "ln", "mse-log": "ln", "mse-log10": "log10", "mse": "linear"}


def _loss_name(result) -> str:
    name = result.loss
    if name not in _SPACE:
        raise MoescaleError(f"cannot score a fit with loss {name!r}: expected one of {', '.join(_SPACE)}")
    return name


def _to_space(values: np.ndarray, loss: str) -> np.ndarray:
    space = _SPACE[loss]
    if space == "linear":
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(values) if space == "log10" else np.log(values)


def residuals(result) -> np.ndarray:
    """Residuals of a fit in its residual space (see the module docstring), one per point."""
    loss = _loss_name(result)
    data = result.data
    law = result.law
    X = {v: data[v].to_numpy(dtype=float) for v in law.variables}
    y = _observed(result)
    yhat = np.asarray(law.predict(result.params, X), dtype=float)
    r = _to_space(y, loss) - _to_space(yhat, loss)
    if not np.all(np.isfinite(r)):
        raise MoescaleError(f"fit of law {law.name!r} has non-finite residuals; cannot compute a likelihood")
    return r


def _observed(result) -> np.ndarray:
    if "y" not in result.data.columns:
        raise MoescaleError(f"fit data has no observed column 'y' (columns: {list(result.data.columns)})")
    return result.data["y"].to_numpy(dtype=float)


def log_likelihood(result) -> float:
    """Gaussian log-likelihood of a fit's residuals: logL = -n/2 (ln(2 pi RSS/n) + 1).

    RSS is the residual sum of squares in the fit's residual space (module
    docstring); the variance is profiled out at its MLE RSS/n.
    """
    r = residuals(result)
    n = r.size
    rss = float(np.sum(r * r))
    if rss <= 0:
        raise MoescaleError(f"fit of law {result.law.name!r} has zero residuals; its likelihood is unbounded")
    return -0.5 * n * (math.log(2 * math.pi * rss / n) + 1.0)


def free_params(result) -> tuple[str, ...]:
    """The law parameters a fit estimated (not fixed with ``fix=``)."""
    return tuple(p for p in result.law.params if p not in result.fixed)


def n_free_params(result) -> int:
    """k = number of free law parameters + 1 (the Gaussian noise variance)."""
    return len(free_params(result)) + 1


def aic(result) -> float:
    """Akaike's information criterion AIC = 2k - 2 logL (Akaike 1974).

    k = free law parameters + 1 (variance); logL Gaussian in the fit's residual
    space (module docstring). Lower is better; differences matter, not levels.
    """
    return 2.0 * n_free_params(result) - 2.0 * log_likelihood(result)


def bic(result) -> float:
    """Schwarz's Bayesian information criterion BIC = k ln(n) - 2 logL (Schwarz 1978).

    k as in ``aic``; n = number of fitted points.
    """
    return n_free_params(result) * math.log(_n(result)) - 2.0 * log_likelihood(result)


def _n(result) -> int:
    return int(result.n_points)


# --------------------------------------------------------------------------- likelihood-ratio test


def _same_data(a, b) -> bool:
    if a.fingerprint and b.fingerprint:  # sha256 of the selected data (scaling.fitting.fingerprint)
        return a.fingerprint == b.fingerprint
    ya, yb = _observed(a), _observed(b)
    return ya.shape == yb.shape and np.array_equal(ya, yb)


def likelihood_ratio_test(restricted, full) -> tuple[float, int, float]:
    """Likelihood-ratio test of a restricted fit nested in a full one (Wilks 1938).

    statistic = 2 (logL_full - logL_restricted) = n ln(RSS_restricted / RSS_full),
    df = (free parameters of full) - (free parameters of restricted),
    p = P(chi2_df > statistic). Under the null (the restriction holds) the
    statistic is asymptotically chi-square with df degrees of freedom; a
    restriction on a bound (e.g. a variance component = 0) makes p conservative.

    Nesting is checked: same number of points and the same data (fingerprint,
    or identical observed y), the restricted fit's free parameters a strict
    subset of the full fit's. A negative statistic (the restricted fit scores
    better, possible when Huber fits are scored with a Gaussian likelihood or
    an optimizer stopped early) is reported as is, with p = 1.

    Returns (statistic, df, p_value).
    """
    from scipy.stats import chi2

    if _n(restricted) != _n(full):
        raise MoescaleError(f"not nested: restricted fit has {_n(restricted)} points, full fit {_n(full)}")
    if not _same_data(restricted, full):
        raise MoescaleError(
            "not nested: the two fits were made on different data (fingerprints differ); "
            "fit nested variants of one law on one table, the restricted one with fix={...}"
        )
    if _loss_name(restricted) != _loss_name(full):
        raise MoescaleError(
            f"not comparable: restricted fit used loss {_loss_name(restricted)!r}, full fit {_loss_name(full)!r}"
        )
    fr, ff = set(free_params(restricted)), set(free_params(full))
    if not fr < ff:
        raise MoescaleError(
            "not nested: restricted free parameters "
            f"{sorted(fr)} are not a strict subset of the full fit's {sorted(ff)}"
        )
    stat = 2.0 * (log_likelihood(full) - log_likelihood(restricted))
    df = len(ff) - len(fr)
    p = 1.0 if stat <= 0 else float(chi2.sf(stat, df))
    return float(stat), int(df), p


# --------------------------------------------------------------------------- table


def compare(results: Mapping[str, object], sort_by: str = "AIC") -> pd.DataFrame:
    """A comparison table of fits on the same data, best first.

    Columns: n_params (k, free + variance), n_points, objective (each fit's own
    objective, comparable only between fits with the same loss), logL, AIC,
    BIC, dAIC, dBIC (differences to the smallest). Burnham & Anderson's rule
    of thumb: dAIC < 2 is substantial support, > 10 essentially none.
    """
    if not results:
        raise MoescaleError("compare needs at least one fit")
    if sort_by not in ("AIC", "BIC"):
        raise MoescaleError(f"compare: sort_by must be 'AIC' or 'BIC', not {sort_by!r}")
    ns = {name: _n(r) for name, r in results.items()}
    if len(set(ns.values())) > 1:
        raise MoescaleError(f"compare: fits have different numbers of points {ns}; AIC/BIC need the same data")
    spaces = {name: _SPACE[_loss_name(r)] for name, r in results.items()}
    if len(set(spaces.values())) > 1:
        raise MoescaleError(f"compare: fits have residuals in different spaces {spaces}; refit them with one loss")
    rows = []
    for name, r in results.items():
        rows.append(
            {
                "model": name,
                "law": r.law.name,
                "n_params": n_free_params(r),
                "n_points": _n(r),
                "objective": float(r.objective),
                "logL": log_likelihood(r),
                "AIC": aic(r),
                "BIC": bic(r),
            }
        )
    table = pd.DataFrame(rows).set_index("model")
    table["dAIC"] = table["AIC"] - table["AIC"].min()
    table["dBIC"] = table["BIC"] - table["BIC"].min()
    return table.sort_values(sort_by)


# --------------------------------------------------------------------------- held-out error


@dataclass
class Holdout:
    """Held-out prediction errors of refits.

    ``points``: one row per held-out point with the fold, the law's variables,
    y, y_pred, rel_err = (y_pred - y) / y and log_err = ln y_pred - ln y.
    ``metrics``: n_folds, n_points, rmse_log = sqrt(mean log_err^2),
    mean_abs_rel = mean |rel_err|, max_abs_rel.
    """

    points: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        m = self.metrics
        return (
            f"{m['n_folds']} folds, {m['n_points']} held-out points: RMSE(log) = {m['rmse_log']:.4g}, "
            f"mean |rel err| = {m['mean_abs_rel']:.4%}, max |rel err| = {m['max_abs_rel']:.4%}"
        )


def _metrics(points: pd.DataFrame, n_folds: int) -> dict[str, float]:
    return {
        "n_folds": int(n_folds),
        "n_points": int(len(points)),
        "rmse_log": float(np.sqrt(np.mean(points["log_err"] ** 2))),
        "mean_abs_rel": float(np.mean(np.abs(points["rel_err"]))),
        "max_abs_rel": float(np.max(np.abs(points["rel_err"]))),
    }


def _holdout(df: pd.DataFrame, law, folds, *, x, y, where, warm_start, fit_kwargs, progress, label) -> Holdout:
    """Refit without each fold's rows, predict them, collect errors.

    ``folds``: list of (fold name, boolean mask over the rows of ``df``).
    """
    from scaling.fitting import fit
    from scaling.selection import select

    fit_kwargs = {"stderr": False} | dict(fit_kwargs)
    if warm_start and "starts" not in fit_kwargs:
        # one start at the full-data optimum: a refit on n-1 groups moves little from it
        full = fit(df, law, x=x, y=y, where=where, **fit_kwargs)
        fit_kwargs["starts"] = {p: [full.params[p]] for p in full.law.params if p not in full.fixed}
    parts = []
    iterator = folds
    if progress:
        from rich.progress import track

        iterator = track(folds, description=label, transient=True)
    for name, mask in iterator:
        test, _ = select(df[mask], x, y, where)
        if test.empty:
            continue
        train = df[~mask]
        result = fit(train, law, x=x, y=y, where=where, **fit_kwargs)
        X = {v: test[v].to_numpy(dtype=float) for v in result.law.variables}
        pred = np.asarray(result.law.predict(result.params, X), dtype=float)
        parts.append(pd.DataFrame({"fold": name, **X, "y": test["y"].to_numpy(dtype=float), "y_pred": pred}))
    if not parts:
        raise MoescaleError("no held-out points: every fold was empty after the where filter")
    points = pd.concat(parts, ignore_index=True)
    points["rel_err"] = (points["y_pred"] - points["y"]) / points["y"]
    with np.errstate(divide="ignore", invalid="ignore"):
        points["log_err"] = np.log(points["y_pred"]) - np.log(points["y"])
    return Holdout(points, _metrics(points, len(parts)))


def leave_one_out(
    data,
    law,
    *,
    x: Mapping[str, str],
    y: str = "val_loss",
    where: str | None = None,
    group: str = "run_id",
    warm_start: bool = True,
    progress: bool = True,
    **fit_kwargs,
) -> Holdout:
    """Leave-one-group-out cross-validation of a law.

    For each value g of the column ``group`` (a run, so that all rows of one
    run's curve leave together), refit on the rows with group != g with
    ``scaling.fitting.fit`` (same law, mappings, where, loss and other
    ``fit_kwargs``), predict the held-out rows and record
    rel_err = (y_hat - y) / y and log_err = ln y_hat - ln y. Aggregates:
    RMSE of log_err, mean and max |rel_err| (see ``Holdout``).

    ``warm_start``: start every refit from the full-data optimum only (one
    start instead of the law's grid: fast, and a refit without one run moves
    little from it); False refits from the law's full grid. ``fit_kwargs`` go
    to ``fit`` (loss, delta, fix, starts, bounds, ...); standard errors are
    skipped unless ``stderr=True`` is given; a ``store`` only supplies the
    data (a table or view name), refits are not saved. A rich progress bar
    shows the folds when ``progress`` is True.
    """
    from scaling.tables import read_table

    # a store only supplies the data: the refits are not saved to it
    df = read_table(data, store=fit_kwargs.pop("store", None)).reset_index(drop=True)
    if group not in df.columns:
        raise MoescaleError(f"leave_one_out: no column {group!r} to group by (columns: {', '.join(map(str, df.columns))})")
    values = pd.unique(df[group])
    if len(values) < 2:
        raise MoescaleError(f"leave_one_out: column {group!r} has {len(values)} distinct value(s); need at least 2")
    folds = [(v, (df[group] == v).to_numpy()) for v in values]
    return _holdout(df, law, folds, x=x, y=y, where=where, warm_start=warm_start, fit_kwargs=fit_kwargs,
                    progress=progress, label=f"leave-one-{group}-out")


def leave_largest_out(
    data,
    law,
    *,
    x: Mapping[str, str],
    y: str = "val_loss",
    where: str | None = None,
    by: str = "N",
    n_groups: int = 1,
    **fit_kwargs,
) -> Holdout:
    """Extrapolation error: fit without the largest values of a variable, predict them.

    The rows whose law variable ``by`` (after the mapping ``x``, e.g. N) takes
    one of its ``n_groups`` largest distinct values are held out together, the
    law is refitted on the rest and the held-out rows are predicted: the error
    of extrapolating to the largest scale (the test of Hoffmann et al. 2022 and
    Besiroglu et al. 2024 of whether a fit predicts the next model). Errors as
    in ``leave_one_out`` (one fold).
    """
    from scaling.selection import select
    from scaling.tables import read_table

    df = read_table(data, store=fit_kwargs.pop("store", None)).reset_index(drop=True)
    if by not in x:
        raise MoescaleError(f"leave_largest_out: by={by!r} is not a mapped variable ({', '.join(x)})")
    if n_groups < 1:
        raise MoescaleError(f"leave_largest_out: n_groups = {n_groups} must be >= 1")
    # the variable on every row that passes the where filter
    rows = df.assign(__row=np.arange(len(df)))
    sel, _ = select(rows, {by: x[by], "__row": "__row"}, "1", where)
    distinct = np.unique(sel[by].to_numpy())
    if len(distinct) <= n_groups:
        raise MoescaleError(f"leave_largest_out: {by} has {len(distinct)} distinct values; cannot hold out {n_groups}")
    cut = distinct[-n_groups]
    mask = np.zeros(len(df), dtype=bool)
    mask[sel["__row"].to_numpy(dtype=int)[sel[by].to_numpy() >= cut]] = True
    return _holdout(df, law, [(f"{by} >= {cut:g}", mask)], x=x, y=y, where=where, warm_start=False,
                    fit_kwargs=fit_kwargs, progress=False, label="leave-largest-out")
