"""The built-in scaling laws, the registry :data:`LAWS` and :func:`get_law`.

Each law is a :class:`scaling.law.Law` (named, bounded parameters, a start grid, an
equation and its source; see :mod:`scaling.law` for how a law evaluates a batch of
parameter sets and is differentiated).

Identifiability (audited for every built-in law): a law's bounds leave one parameter
set per curve wherever the data can tell them apart. ``sigmoid`` is unchanged under
(a, k, x0, b) -> (-a, -k, x0, a + b), so k >= 0 is imposed (and a in [-1, 1], b in
[0, 1] as an accuracy law). The others have no exact symmetry, only degenerate or weak
directions, reported rather than constrained: chinchilla/moe/power/krajewski lose
their exponent when its coefficient goes to 0 (A = 0 leaves alpha free); krajewski's
g and a are confounded when every G is equal; exp_error's k and gamma trade off when
L spans a narrow range; clark's E_start and E_max (p_start, p_max) are weakly
identified (its notes say so). Tests compare predictions, or parameters only where the
law is identified on the test's data.

The registry :data:`LAWS` holds the built-in laws; :func:`get_law` also accepts a
user formula such as ``"E + A*N**-alpha + B*D**-beta"`` (see ``scaling.formula``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from scaling.errors import MoescaleError
from scaling.formula import compile_formula
from scaling.law import INF, LN10, Law, lse  # noqa: F401  (re-exported: Law is part of this module's API)

# --------------------------------------------------------------------------- chinchilla


def _document(law: Law, doc: str) -> None:
    object.__setattr__(law, "__doc__", doc)


def _log_vars(*names):
    def prepare(X):
        X = dict(X)
        for v in names:
            X["log_" + v] = np.log(X[v])
        return X

    return prepare


def _chinchilla_model(T, X):
    e, a, b, alpha, beta = T
    return lse(a - alpha * X["log_N"], b - beta * X["log_D"], e + 0 * X["log_N"])


def _chinchilla_jacobian(T, X):
    # Direct sum instead of LSE: two exps of (b, n) arrays instead of three (E is per row);
    # an overflow gives inf, which the optimizer's line search rejects.
    e, a, b, alpha, beta = T
    lN, lD = X["log_N"], X["log_D"]
    E, u1, u2 = np.exp(e), np.exp(a - alpha * lN), np.exp(b - beta * lD)
    total = E + u1 + u2
    p1, p2 = u1 / total, u2 / total
    return np.log(total), [E / total, p1, p2, -p1 * lN, -p2 * lD]


def _lse_vjp(c, terms):
    """ln y = ln(c + sum_k exp(z_k)) and its pullback, for the log-sum-exp laws (chinchilla, moe).

    ``c`` (b, 1) is the constant term (E = e^e); each term is (z_k (b, n), its features): one
    (n,) array ∂z_k/∂θ_j per parameter θ_j of the term, None for 1 (e.g. z = a − alpha·log N
    has features [None, −log N]). With u_k = exp(z_k), total = c + sum_k u_k and q = v/total,
    the pullback sum_n v_n·∂ln y_n/∂θ is sum_n q_n·c for the constant's parameter (θ = ln c) and
    sum_n q_n·u_k,n·feature_n for θ_j: the exps of the prediction are reused, no Jacobian is formed.
    Every sum runs along one row, so a start's gradient does not depend on the other rows of the batch.
    """
    u = [np.exp(z) for z, _ in terms]
    total = u[0] + c
    for uk in u[1:]:
        total += uk

    def pullback(v):
        q = v / total
        cols = [q.sum(axis=1) * c[:, 0]]
        for uk, (_, features) in zip(u, terms):
            qu = q * uk
            cols += [qu.sum(axis=1) if x is None else np.einsum("bn,n->b", qu, x) for x in features]
        return np.stack(cols, axis=1)

    return np.log(total), pullback


def _chinchilla_vjp(T, X):
    e, a, b, alpha, beta = T
    lN, lD = X["log_N"], X["log_D"]
    f, pull = _lse_vjp(np.exp(e), [(a - alpha * lN, [None, -lN]), (b - beta * lD, [None, -lD])])
    return f, lambda v: pull(v)[:, [0, 1, 3, 2, 4]]  # pullback columns: e, a, alpha, b, beta


def _safe_exp(x: float) -> float:
    """e^x, inf (not OverflowError) when a runaway fit pushes x past the float range."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _exp_abe(p):
    return {"E": _safe_exp(p["e"]), "A": _safe_exp(p["a"]), "B": _safe_exp(p["b"])}


#: Epoch AI's grid (Besiroglu et al. 2024, after Hoffmann et al. 2022): 5·6·6·5·5 = 4,500 starts.
CHINCHILLA_GRID = {
    "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
    "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    "alpha": (0.0, 0.5, 1.0, 1.5, 2.0),
    "beta": (0.0, 0.5, 1.0, 1.5, 2.0),
}

CHINCHILLA = Law(
    name="chinchilla",
    params=("e", "a", "b", "alpha", "beta"),
    variables=("N", "D"),
    equation="L = E + A*N^-alpha + B*D^-beta, fitted as log L = LSE(a - alpha*log N, b - beta*log D, e), "
    "E = exp(e), A = exp(a), B = exp(b)",
    citation="Hoffmann et al. 2022 (arXiv 2203.15556); fit procedure of Besiroglu et al. 2024 (arXiv 2404.10102)",
    model=_chinchilla_model,
    jacobian=_chinchilla_jacobian,
    vjp=_chinchilla_vjp,
    space="log",
    start_grid=CHINCHILLA_GRID,
    default_loss="huber",
    prepare=_log_vars("N", "D"),
    positive=("N", "D"),
    derived=_exp_abe,
    shear=lambda X: {("a", "alpha"): X["log_N"].mean(), ("b", "beta"): X["log_D"].mean()},
)
_document(CHINCHILLA, """Chinchilla loss law L(N, D) = E + A·N^-α + B·D^-β (Hoffmann et al. 2022).

Fitted in the log-sum-exp form log L = LSE(a − α·log N, b − β·log D, e), with
A = e^a, B = e^b, E = e^e, by Huber(δ = 1e-3) on log residuals summed over points,
from Epoch AI's 4,500-start grid (Besiroglu et al. 2024).""")


# --------------------------------------------------------------------------- moe


def _moe_model(T, X):
    e, a, b, alpha, beta, gamma, lam = T
    z1 = a - alpha * X["log_N"] + gamma * X["log_s"] + lam * X["log_n_exp"]
    return lse(z1, b - beta * X["log_D"], e + 0 * X["log_N"])


def _moe_jacobian(T, X):
    e, a, b, alpha, beta, gamma, lam = T
    lN, ls, lE, lD = X["log_N"], X["log_s"], X["log_n_exp"], X["log_D"]
    E, u1, u2 = np.exp(e), np.exp(a - alpha * lN + gamma * ls + lam * lE), np.exp(b - beta * lD)
    total = E + u1 + u2
    p1, p2 = u1 / total, u2 / total
    return np.log(total), [E / total, p1, p2, -p1 * lN, -p2 * lD, p1 * ls, p1 * lE]


def _moe_vjp(T, X):
    e, a, b, alpha, beta, gamma, lam = T
    lN, ls, lE, lD = X["log_N"], X["log_s"], X["log_n_exp"], X["log_D"]
    z1 = a - alpha * lN + gamma * ls + lam * lE
    f, pull = _lse_vjp(np.exp(e), [(z1, [None, -lN, ls, lE]), (b - beta * lD, [None, -lD])])
    return f, lambda v: pull(v)[:, [0, 1, 5, 2, 6, 3, 4]]  # pullback columns: e, a, alpha, gamma, lam, b, beta


MOE_NOTES = (
    "moe form: L = E + A*N^-alpha*s^gamma*n_exp^lam + B*D^-beta with N = N_total, s = n_experts/top_k.\n"
    "Nested tests of Liew et al. 2026 (arXiv 2601.08215): gamma = lam = 0 is chinchilla in N_total\n"
    "(s adds nothing over N_total); lam = 0: n_experts and top_k cancel within s; lam > 0: more experts\n"
    "at fixed N_total and s carry their own penalty. Dense models (s = n_exp = 1) reduce to chinchilla."
)

#: The moe law's variables as columns of the store's ``final`` view (its default mapping).
MOE_X = {"N": "n_total", "s": "sparsity", "n_exp": "n_experts", "D": "tokens"}
#: The N_active alternative: the chinchilla law in (N_active, D) over ``final``'s columns.
ACTIVE_X = {"N": "n_active", "D": "tokens"}

MOE = Law(
    name="moe",
    params=("e", "a", "b", "alpha", "beta", "gamma", "lam"),
    variables=("N", "s", "n_exp", "D"),
    equation="L = E + A*N^-alpha*s^gamma*n_exp^lam + B*D^-beta, fitted as "
    "log L = LSE(a - alpha*log N + gamma*log s + lam*log n_exp, b - beta*log D, e)",
    citation="this project, after Hoffmann et al. 2022, Clark et al. 2022 and Liew et al. 2026 (arXiv 2601.08215)",
    model=_moe_model,
    jacobian=_moe_jacobian,
    vjp=_moe_vjp,
    space="log",
    bounds={"gamma": (-1.0, 1.0), "lam": (-1.0, 1.0)},
    start_grid={
        # 972 starts: Epoch's a, b values, a coarser e, alpha, beta, and gamma = lam = 0 (the
        # Chinchilla fit), from which the MoE terms are a small correction.
        "e": (-1.0, 0.0, 1.0),
        "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
        "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
        "alpha": (0.2, 0.5, 1.0),
        "beta": (0.2, 0.5, 1.0),
        "gamma": (0.0,),
        "lam": (0.0,),
    },
    default_loss="huber",
    prepare=_log_vars("N", "s", "n_exp", "D"),
    positive=("N", "s", "n_exp", "D"),
    derived=_exp_abe,
    shear=lambda X: {("a", "alpha"): X["log_N"].mean(), ("b", "beta"): X["log_D"].mean(),
                     ("a", "gamma"): -X["log_s"].mean(), ("a", "lam"): -X["log_n_exp"].mean()},
    notes=MOE_NOTES,
)
_document(MOE, f"""MoE loss law in total parameters, sparsity, expert count and tokens.

log L = LSE(a − α·log N + γ·log s + λ·log n_exp, b − β·log D, e), i.e.
L = E + A·N^−α·s^γ·n_exp^λ + B·D^−β with N = N_total, s = n_experts/top_k,
n_exp = n_experts, D = tokens; γ, λ ∈ [−1, 1].

Why this form: it is the Chinchilla law in N_total with a multiplicative
correction of the parameter term, so each claim of Liew et al. 2026
(arXiv 2601.08215) is a nested restriction testable by a likelihood-ratio test
(fit with ``fix={{"lam": 0.0}}`` or ``fix={{"gamma": 0.0, "lam": 0.0}}``):

{MOE_NOTES}
""")


# --------------------------------------------------------------------------- power laws


def _power_model(T, X):
    E, A, alpha = T
    return E + A * X["x"] ** -alpha


POWER = Law(
    name="power",
    params=("E", "A", "alpha"),
    variables=("x",),
    equation="y = E + A*x^-alpha",
    citation="Kaplan et al. 2020 (arXiv 2001.08361); Hoffmann et al. 2022",
    model=_power_model,
    space="linear",
    start_grid={"E": (0.0, 1.0, 2.0), "A": (1.0, 10.0, 100.0, 1000.0), "alpha": (0.05, 0.2, 0.5, 1.0)},
    default_loss="huber",
    positive=("x",),
)
_document(POWER, "Saturating power law y = E + A·x^−α (Kaplan et al. 2020; Hoffmann et al. 2022).")


def _power_pure_model(T, X):
    a, alpha = T
    return a + alpha * X["log_x"]


POWER_PURE = Law(
    name="power_pure",
    params=("a", "alpha"),
    variables=("x",),
    equation="y = A*x^alpha, fitted as log y = a + alpha*log x, A = exp(a)",
    citation="Hoffmann et al. 2022 (arXiv 2203.15556), optima against compute",
    model=_power_pure_model,
    space="log",
    start_grid={"a": (-20.0, -5.0, 0.0, 5.0), "alpha": (-1.0, 0.0, 0.5, 1.0)},
    default_loss="mse-log",
    prepare=_log_vars("x"),
    positive=("x",),
    derived=lambda p: {"A": math.exp(p["a"])},
)
_document(POWER_PURE, """Pure power law y = A·x^α, as log y = a + α·log x with A = e^a.

Used for compute-optimal N_opt(C), D_opt(C) (Hoffmann et al. 2022, Approach 2).""")


# --------------------------------------------------------------------------- clark


def _clark_model(T, X):
    a, b, c, d, p_start, p_max = T
    E = X["E"]
    e_start, e_max = 2.0**p_start, 2.0**p_max
    inv_hat = 1.0 / (E - 1.0 + 1.0 / (1.0 / e_start - 1.0 / e_max)) + 1.0 / e_max
    log10_e_hat = -np.log(inv_hat) / LN10
    log10_n = X["log10_N"]
    return LN10 * (a * log10_n + b * log10_e_hat + c * log10_n * log10_e_hat + d)


def _clark_prepare(X):
    X = dict(X)
    X["log10_N"] = np.log10(X["N"])
    return X


CLARK = Law(
    name="clark",
    params=("a", "b", "c", "d", "p_start", "p_max"),
    variables=("N", "E"),
    equation="log10 L = a*log10 N + b*log10 Ê + c*log10 N*log10 Ê + d, "
    "1/Ê = 1/(E - 1 + (1/E_start - 1/E_max)^-1) + 1/E_max, E_start = 2^p_start, E_max = 2^p_max",
    citation="Clark et al. 2022, Unified Scaling Laws for Routed Language Models (arXiv 2202.01169)",
    model=_clark_model,
    space="log",
    start_grid={
        "a": (-0.1,),
        "b": (-0.1,),
        "c": (0.0, 0.01),
        "d": (1.0,),
        "p_start": (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0),
        "p_max": (4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0),
    },
    default_loss="mse-log10",
    prepare=_clark_prepare,
    positive=("N", "E"),
    derived=lambda p: {"E_start": 2.0 ** p["p_start"], "E_max": 2.0 ** p["p_max"]},
    notes="clark: E_start and E_max (p_start, p_max) are weakly identified: many pairs fit almost equally\n"
    "well when the expert counts do not reach the saturation; read their intervals, not their point values.",
)
_document(CLARK, """Clark et al. 2022 routed-model law with a saturating expert count.

log10 L = a·log10 N + b·log10 Ê + c·log10 N·log10 Ê + d, where
1/Ê = 1/(E − 1 + (1/E_start − 1/E_max)^−1) + 1/E_max, E_start = 2^p_start,
E_max = 2^p_max; N = dense parameter count, E = number of experts.
Objective: mean squared error in log10 space.""")


# --------------------------------------------------------------------------- krajewski


def _krajewski_model(T, X):
    c, g, gamma, a, alpha, b, beta = T
    return c + (g / X["G"] ** gamma + a) * X["N"] ** -alpha + b * X["D"] ** -beta


KRAJEWSKI = Law(
    name="krajewski",
    params=("c", "g", "gamma", "a", "alpha", "b", "beta"),
    variables=("N", "D", "G"),
    equation="L = c + (g/G^gamma + a)*N^-alpha + b*D^-beta",
    citation="Krajewski et al. 2024, Scaling Laws for Fine-Grained Mixture of Experts (arXiv 2402.07871)",
    model=_krajewski_model,
    space="linear",
    start_grid={
        "c": (0.5, 1.5),
        "g": (0.0, 10.0),
        "gamma": (0.5,),
        "a": (10.0, 100.0, 1000.0),
        "alpha": (0.2, 0.4),
        "b": (100.0, 1000.0, 10000.0),
        "beta": (0.2, 0.4),
    },
    default_loss="huber",
    positive=("N", "D", "G"),
)
_document(KRAJEWSKI, """Fine-grained MoE law L(N, D, G) = c + (g/G^γ + a)·N^−α + b·D^−β.

G = granularity (Krajewski et al. 2024, arXiv 2402.07871).""")


# --------------------------------------------------------------------------- downstream


def _exp_error_model(T, X):
    eps, k, gamma = T
    return eps - k * np.exp(-gamma * X["L"])


EXP_ERROR = Law(
    name="exp_error",
    params=("eps", "k", "gamma"),
    variables=("L",),
    equation="Err = eps - k*exp(-gamma*L)",
    citation="Gadre et al. 2024, Language models scale reliably with over-training (arXiv 2403.08540)",
    model=_exp_error_model,
    space="linear",
    start_grid={"eps": (0.5, 0.9, 1.0), "k": (0.5, 2.0, 10.0), "gamma": (0.1, 0.5, 1.0, 2.0)},
    default_loss="mse",
)
_document(EXP_ERROR, "Downstream error from loss, Err(L) = ε − k·exp(−γ·L) (Gadre et al. 2024, arXiv 2403.08540).")


def _sigmoid_model(T, X):
    a, k, x0, b = T
    # exp overflows to inf far on the low side, where a / (1 + inf) = 0 is the curve's exact limit
    with np.errstate(over="ignore"):
        return a / (1.0 + np.exp(-k * (X["x"] - x0))) + b


def _sigmoid_asymptotes(p) -> dict:
    """The curve's supremum and infimum over x: the larger and smaller of b and a + b."""
    return {"ceiling": max(p["b"], p["a"] + p["b"]), "floor": min(p["b"], p["a"] + p["b"])}


def _sigmoid_warnings(p) -> list[str]:
    out = []
    asym = _sigmoid_asymptotes(p)
    if asym["ceiling"] > 1.0:
        out.append(f"WARNING: the curve's ceiling max(b, a + b) = {asym['ceiling']:.4g} exceeds 1: "
                   "as an accuracy law, bound it with --bound a=LO:HI.")
    if asym["floor"] < 0.0:
        out.append(f"WARNING: the curve's floor min(b, a + b) = {asym['floor']:.4g} is below 0: "
                   "as an accuracy law, bound it with --bound a=LO:HI.")
    return out


SIGMOID = Law(
    name="sigmoid",
    params=("a", "k", "x0", "b"),
    variables=("x",),
    equation="Acc = a/(1 + exp(-k*(x - x0))) + b",
    citation="Bhagia et al. 2024, Establishing Task Scaling Laws via Compute-Efficient Model Ladders (arXiv 2412.04403)",
    model=_sigmoid_model,
    space="linear",
    # k >= 0 removes the mirror symmetry (a, k, x0, b) -> (-a, -k, x0, a + b), which gives the
    # same curve; a in [-1, 1] and b in [0, 1] keep an accuracy law's asymptotes b and a + b
    # within [-1, 2] and its x -> -inf asymptote b (the ceiling when a < 0, accuracy falling
    # with loss) within [0, 1]. The other asymptote a + b is reported (``ceiling``/``floor``)
    # and warned about when it leaves [0, 1].
    bounds={"a": (-1.0, 1.0), "k": (0.0, INF), "b": (0.0, 1.0)},
    start_grid={"a": (-1.0, -0.5, 0.5, 1.0), "k": (0.3, 1.0, 3.0, 10.0), "x0": (0.5, 1.0, 2.0, 3.0), "b": (0.0, 0.25, 0.5, 1.0)},
    default_loss="mse",
    derived=_sigmoid_asymptotes,
    notes="sigmoid: k >= 0, a in [-1, 1], b in [0, 1] (one parameter set per curve; the ceiling b <= 1 when a < 0).",
    warnings=_sigmoid_warnings,
)
_document(SIGMOID, """Accuracy from loss (or log compute), Acc(x) = a/(1 + exp(−k(x − x0))) + b (Bhagia et al. 2024).

Identifiable by construction: k ≥ 0 (the curve is unchanged under (a, k, x0, b) →
(−a, −k, x0, a + b), so one sign of k is chosen), a ∈ [−1, 1], b ∈ [0, 1]. As x → −∞
the curve tends to b, as x → +∞ to a + b: for accuracy against loss (a < 0) the
ceiling b is at most 1 and the floor a + b at least −1. For accuracy rising with x
(a > 0) the ceiling is a + b: the fit reports ``ceiling`` = max(b, a + b) and ``floor``
= min(b, a + b) and its summary warns when either leaves [0, 1]. a = 0 leaves k and x0
unidentified (a flat curve).""")


LAWS: dict[str, Law] = {
    law.name: law for law in (CHINCHILLA, POWER, POWER_PURE, CLARK, KRAJEWSKI, MOE, EXP_ERROR, SIGMOID)
}


def get_law(name_or_formula: str | Law, variables: Sequence[str] | None = None) -> Law:
    """The registered law of that name, or a :class:`Law` built from a user formula.

    A formula's names that are in ``variables`` are variables, the others parameters
    (as lmfit's ExpressionModel). Without ``variables``, a formula's variables are the
    names among ``scaling.formula.DEFAULT_VARIABLES`` (N, D, C, G, M, s, n_exp, x, L).
    """
    if isinstance(name_or_formula, Law):
        return name_or_formula
    text = str(name_or_formula).strip()
    if text in LAWS:
        return LAWS[text]
    if text.isidentifier():
        raise MoescaleError(f"unknown law {text!r}; known laws: {', '.join(LAWS)}, or a formula such as 'E + A*N**-alpha'")
    return formula_law(text, variables)


def formula_law(text: str, variables: Sequence[str] | None = None) -> Law:
    """A :class:`Law` evaluating a user formula in linear space (see :func:`scaling.formula.compile_formula`).

    Default bounds are (−inf, inf); the start grid is the formula's default grid.
    """
    f = compile_formula(text, variables)
    return Law(name=f.text, params=f.params, variables=f.variables, equation=f"y = {f.text}",
               citation="user formula", model=f.model, space="linear", start_grid=f.start_grid, default_loss="huber")
