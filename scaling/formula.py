"""User formulas as laws: ``"E + A*N**-alpha + B*D**-beta"``.

The formula is parsed with Python's ``ast`` and checked against a whitelist
(numbers, names, + - * / **, unary minus, calls to a few math functions; no
attributes, subscripts, keywords or anything else). Names that are variables
become the law's variables, the others its parameters, in order of first
appearance (the idea of lmfit's ExpressionModel). The compiled expression is
evaluated vectorized with numpy over a batch of parameter sets, complex-safe so
that it can be differentiated by complex step.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from scaling.errors import MoescaleError


def _abs(z):
    # np.abs of a complex number is its modulus, which would break complex-step derivatives.
    return np.where(np.real(z) < 0, -z, z)


#: Functions a formula may call.
FUNCTIONS = {
    "exp": np.exp,
    "log": np.log,
    "log10": np.log10,
    "log2": np.log2,
    "sqrt": np.sqrt,
    "abs": _abs,
    "tanh": np.tanh,
}

#: A formula's variables when the caller does not name them.
DEFAULT_VARIABLES = ("N", "D", "C", "G", "M", "s", "n_exp", "x", "L")

_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name, ast.Load, ast.Constant,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd,
)  # fmt: skip


def parse_formula(text: str, variables: Sequence[str] | None = None) -> tuple[ast.Expression, tuple[str, ...], tuple[str, ...]]:
    """Parse and check a formula; return (tree, parameters, variables), names in order of appearance."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise MoescaleError(f"formula {text!r} does not parse: {exc.msg} at column {exc.offset}") from None
    names: list[str] = []
    called = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise MoescaleError(f"formula {text!r}: {type(node).__name__} is not allowed (only numbers, names, + - * / **, and {', '.join(FUNCTIONS)})")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or not isinstance(node.value, (int, float))):
            raise MoescaleError(f"formula {text!r}: only numeric constants are allowed, got {node.value!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords or len(node.args) != 1:
                raise MoescaleError(f"formula {text!r}: only one-argument calls to {', '.join(FUNCTIONS)} are allowed")
            called.add(id(node.func))
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name)), key=lambda n: (n.lineno, n.col_offset)):
        if id(node) in called:
            continue
        if node.id.startswith("_") or node.id in FUNCTIONS:
            raise MoescaleError(f"formula {text!r}: {node.id!r} cannot be a parameter or variable name")
        if node.id not in names:
            names.append(node.id)
    var_set = set(DEFAULT_VARIABLES if variables is None else variables)
    params = tuple(n for n in names if n not in var_set)
    variables_used = tuple(n for n in names if n in var_set)
    if not params:
        raise MoescaleError(f"formula {text!r} has no free parameters (variables: {', '.join(variables_used) or 'none'})")
    return tree, params, variables_used


@dataclass(frozen=True)
class Formula:
    """A compiled user formula: its parameters and variables (in order of appearance), the
    batched complex-safe ``model(T, X)`` and the default start grid. ``scaling.laws`` wraps
    it in a Law (this module sits below laws and never imports it)."""

    text: str
    params: tuple[str, ...]
    variables: tuple[str, ...]
    model: Callable
    start_grid: dict


def compile_formula(text: str, variables: Sequence[str] | None = None) -> Formula:
    """Parse, check and compile a formula evaluated in linear space (y itself).

    The default start grid is the product of (−0.5, 0.5, 2.0) per parameter (two values
    when there are more than six), overridable with ``fit(starts=...)`` / ``--start NAME=V1,V2``.
    """
    tree, params, used = parse_formula(text, variables)
    if variables is not None:
        used = tuple(v for v in variables if v in used)
    code = compile(tree, "<formula>", "eval")

    def model(T, X):
        env = dict(FUNCTIONS)
        env.update({p: t for p, t in zip(params, T)})
        env.update({v: X[v] for v in used})
        with np.errstate(all="ignore"):
            out = eval(code, {"__builtins__": {}}, env)  # noqa: S307 - whitelisted AST only
        return np.broadcast_to(out, np.broadcast_shapes(np.shape(out), (T[0].shape[0], len(X[used[0]]) if used else 1)))

    grid_values = (-0.5, 0.5, 2.0) if len(params) <= 6 else (0.5, 2.0)
    return Formula(text=text, params=params, variables=used, model=model, start_grid={p: grid_values for p in params})
