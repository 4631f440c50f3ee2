"""Benchmark: coverage of the bootstrap's 95% intervals on sweeps simulated from a known truth.

For each sweep size R (``--runs``) and each of ``--n`` sweeps drawn from ``scaling.simulate``
(``Truth()``: the moe law's documented defaults, seed noise 0.004; R runs drawn from the
default grid and budgets, so the designs vary from sweep to sweep), in one process:

1. fit the ``moe`` law as the claims do (``scaling.fitting.fit``, multi-start; lam fixed at 0
   when the sweep has one top_k, and then a, gamma and lam are left out: their targets shift);
2. refit it on ``--bootstrap`` resamples of runs (``scaling.bootstrap``; failed refits dropped,
   as the claims drop them) and, for BCa, on the R leave-one-run-out jackknife samples;
3. form each method's 95% interval (``scaling.intervals``: percentile, Efron & Tibshirani 1993
   ch. 13; BCa, Efron 1987) of every parameter (e, a, b, alpha, beta, gamma, lam, as the
   bootstrap gives them) and of the optimum's predicted loss at each budget (the best of the
   sweep's own runs at that budget by the fitted law, its interval that of the predicted loss of
   that run as ``scaling.optimum`` reports it; target: that run's true loss);
4. count, over the sweeps where the parameter is identified by that interval
   (``scaling.identify.check_parameters``), how often the interval holds the truth.

Prints a table (method, runs, parameter, n, coverage, mean width, within the 90-98% target)
and the timings. The simulated sweeps are ``simulate_sweep``'s runs tables, the rows a store's
``final`` view holds (the path through run directories and DuckDB is ``tests/test_simulate.py``'s).

Default: 200 sweeps of 18 and of 60 runs with 200 resamples, tens of minutes on 2 cores.
Usage: python benchmarks/bench_coverage.py [--n 200] [--runs 18 60] [--bootstrap 200]
       [--method percentile bca] [--seed 0] [--out coverage.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from scaling.bootstrap import refit_weighted, resample_runs
from scaling.errors import MoescaleError
from scaling.fitting import fit
from scaling.identify import check_parameters
from scaling.intervals import bca_interval, percentile_interval
from scaling.laws import MOE, MOE_X
from scaling.simulate import Truth, simulate_sweep, true_loss

METHODS = ("percentile", "bca")
TARGET = (0.90, 0.98)


def simulated_final(truth: Truth, n_runs: int, seed: int) -> pd.DataFrame:
    """A simulated sweep of ``n_runs`` runs as the ``final`` view's rows (run_id, n_total, sparsity,
    n_experts, top_k, tokens, val_loss, active_flops, compute, ...)."""
    runs, _, _ = simulate_sweep(truth, n_runs=n_runs, curve_points=2, seed=seed)
    final = runs.rename(columns={"loss": "val_loss"})
    final["active_flops"] = final["flops_per_token"] * final["tokens"]
    final["sparsity"] = final["n_experts"] / final["top_k"]
    return final.sort_values("run_id").reset_index(drop=True)


def _intervals(method, estimate, boot, jack):
    if method == "percentile":
        return percentile_interval(boot)
    return bca_interval(estimate, boot, jack)


def cover_sweep(final: pd.DataFrame, truth: Truth, n_boot: int, seed: int, methods=METHODS,
                starts: dict | None = None) -> tuple[list[dict], dict]:
    """Whether each method's 95% interval holds the truth on one simulated sweep.

    Returns (records: method, parameter, identified, covered, width; timings in seconds: fit,
    bootstrap, jackknife). ``starts``: start values for ``fit`` (default its multi-start grid; the
    test passes the truth to save time).
    """
    t0 = time.perf_counter()
    one_k = final["top_k"].nunique() < 2
    res = fit(final, "moe", x=MOE_X, y="val_loss", stderr=False, fix={"lam": 0.0} if one_k else None,
              starts={p: [v] for p, v in starts.items() if not (one_k and p == "lam")} if starts else None)
    t1 = time.perf_counter()
    full, ok = refit_weighted(res, resample_runs(final["run_id"], n_boot, seed))
    boot = full[ok]
    t2 = time.perf_counter()
    jack = None
    if "bca" in methods:
        jack, _ = refit_weighted(res, 1.0 - np.eye(len(final)))  # each row is one run: leave it out
    t3 = time.perf_counter()
    true = truth.moe_params
    names = [p for p in MOE.params if not (one_k and p in ("a", "gamma", "lam"))]
    est = res.vector()
    records = []
    for method in methods:
        lo, hi = _intervals(method, est, boot, jack)
        ci = {p: (float(lo[j]), float(hi[j])) for j, p in enumerate(MOE.params)}
        status = {c.name: c.identified for c in check_parameters(res, ci)}
        for p in names:
            j = MOE.params.index(p)
            finite = bool(np.isfinite(lo[j]) and np.isfinite(hi[j]))
            records.append({"method": method, "parameter": p, "identified": status.get(p, False) and finite,
                            "covered": bool(lo[j] <= true[p] <= hi[j]), "width": float(hi[j] - lo[j])})
    X = {v: final[c].to_numpy(float) for v, c in MOE_X.items()}
    for C, at in final.groupby("compute").indices.items():
        if len(at) < 2:
            continue
        Xc = {v: x[at] for v, x in X.items()}
        i = int(np.argmin(MOE.predict(est, Xc)))
        target = float(true_loss(truth, *(Xc[v][i] for v in ("N", "s", "n_exp", "D"))))
        v_boot = np.atleast_2d(MOE.predict(boot, Xc))[:, i]
        v_jack = np.atleast_2d(MOE.predict(jack, Xc))[:, i] if jack is not None else None
        for method in methods:
            lo, hi = _intervals(method, MOE.predict(est, Xc)[i], v_boot[np.isfinite(v_boot)], v_jack)
            finite = bool(np.isfinite(lo) and np.isfinite(hi))
            records.append({"method": method, "parameter": f"L_opt@C={C:.0e}", "identified": finite,
                            "covered": bool(lo <= target <= hi), "width": float(hi - lo)})
    return records, {"fit": t1 - t0, "bootstrap": t2 - t1, "jackknife": t3 - t2}


def coverage_table(records: pd.DataFrame) -> pd.DataFrame:
    """Per method, runs and parameter: n (sweeps where identified), coverage, mean width, within target."""
    ident = records[records["identified"]]
    g = ident.groupby(["method", "runs", "parameter"], sort=False)
    table = g.agg(n=("covered", "size"), coverage=("covered", "mean"), mean_width=("width", "mean")).reset_index()
    table["target"] = np.where(table["coverage"].between(*TARGET), "yes", "no")
    order = {p: i for i, p in enumerate([*METHODS, *MOE.params])}
    key = lambda col: col.map(lambda v: order.get(v, len(order)) if isinstance(v, str) else v)  # noqa: E731
    return table.sort_values(["method", "runs", "parameter"], key=key, kind="stable").reset_index(drop=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="simulated sweeps per size (default 200)")
    ap.add_argument("--runs", type=int, nargs="+", default=[18, 60], help="runs per sweep (default 18 60)")
    ap.add_argument("--bootstrap", type=int, default=200, help="resamples per sweep (default 200)")
    ap.add_argument("--method", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the table and timings as JSON here")
    args = ap.parse_args(argv)
    if args.n < 1 or args.bootstrap < 10 or any(r < 10 for r in args.runs):
        ap.error("--n must be >= 1, --bootstrap >= 10 and every --runs >= 10 (the moe law's claims need 10 runs)")
    truth = Truth()
    records, timings, skipped = [], [], 0
    start = time.perf_counter()
    for R in args.runs:
        for k in range(args.n):
            seed = args.seed + 100_000 * R + k
            final = simulated_final(truth, R, seed)
            try:
                recs, t = cover_sweep(final, truth, args.bootstrap, seed, args.method)
            except MoescaleError as exc:  # a failed fit is a result of the benchmark, not its end
                skipped += 1
                print(f"sweep {k} of {R} runs skipped: {exc}", file=sys.stderr)
                continue
            records += [{**r, "runs": R, "sweep": k} for r in recs]
            timings.append({"runs": R, **t})
            if (k + 1) % 10 == 0:
                print(f"  {R} runs: {k + 1}/{args.n} sweeps, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    total = time.perf_counter() - start
    if not records:
        print(f"no sweep could be fitted ({skipped} skipped)", file=sys.stderr)
        return 1
    table = coverage_table(pd.DataFrame(records))
    print(f"Coverage of 95% intervals: {args.n} simulated sweeps per size, {args.bootstrap} resamples, "
          f"truth Truth() (noise {truth.noise:g}); target {TARGET[0]:.0%}-{TARGET[1]:.0%}; n = sweeps where identified")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    tm = pd.DataFrame(timings).groupby("runs").mean()
    print("\nTimings (mean seconds per sweep):")
    print(tm.to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"total {total:.1f} s for {len(timings)} sweeps" + (f"; {skipped} skipped (fit failed)" if skipped else ""))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "table": table.to_dict(orient="records"),
                       "timings": tm.reset_index().to_dict(orient="records"), "total_s": total,
                       "skipped": skipped}, fh, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
