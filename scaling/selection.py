"""Selecting a fit's variables from a table with DuckDB SQL, and fingerprinting what was selected.

``select(df, x, y, where)`` runs ``SELECT <x exprs> AS <names>, <y> AS y FROM data WHERE
<where>``. Each expression must be one SQL expression over the data
(:func:`check_expression`): the query is checked to be a single SELECT with exactly the
expected columns, and runs on an in-memory DuckDB connection that holds only ``data``
and has file-system access disabled (no ATTACH, COPY or file reads), so no mapping can
reach the store or a file. :func:`scaling.fitting.fit` calls it; so does cross-validation
(:mod:`scaling.compare`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping

import duckdb
import numpy as np
import pandas as pd

from scaling.errors import MoescaleError, first_line
from scaling.schema import quote

# Row number of each input row, carried through the selection for error messages.
_ROW = "__moescale_row"


def check_expression(expr: str, what: str, clause: str = "select") -> None:
    """MoescaleError unless ``expr`` is one SQL expression (a select-list item or a WHERE
    condition over ``data``): it must parse, alone, as a single SELECT statement."""
    if not isinstance(expr, str) or not expr.strip():
        raise MoescaleError(f"{what}: empty SQL expression")
    query = f"SELECT ({expr}) AS v FROM data" if clause == "select" else f"SELECT * FROM data WHERE ({expr})"
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise MoescaleError(f"{what} {expr!r} is not one SQL expression: {first_line(exc)}") from None
    if len(statements) != 1 or statements[0].type.name != "SELECT":
        raise MoescaleError(f"{what} {expr!r} is not one SQL expression (it holds {len(statements)} statements)")
    # DuckDB's own parse tree: one SELECT node over data, one select-list item, no set operation,
    # no GROUP BY/HAVING/LIMIT smuggled in after the expression.
    tree = json.loads(duckdb.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])
    node = tree["statements"][0]["node"] if not tree.get("error") else {}
    shape_ok = (node.get("type") == "SELECT_NODE" and len(node.get("select_list", [])) == 1
                and not node.get("modifiers") and not node.get("group_expressions") and node.get("having") is None
                and node.get("qualify") is None and node.get("sample") is None
                and (node.get("from_table") or {}).get("table_name") == "data")
    if not shape_ok:
        raise MoescaleError(f"{what} {expr!r} is not one SQL expression over data")


def _data_connection():
    """An in-memory DuckDB connection that can read only what is registered in it."""
    return duckdb.connect(config={"enable_external_access": False})


def select(df: pd.DataFrame, x: Mapping[str, str], y: str | None, where: str | None = None, run_id: str = "run_id") -> tuple[pd.DataFrame, np.ndarray | None]:
    """Evaluate the mapping with DuckDB: ``SELECT <x> AS <names>, <y> AS y FROM data WHERE <where>``.

    Returns the selected variables (and y, unless ``y`` is None) as float columns, and the
    run id of each row when ``data`` has a ``run_id`` column (else None: each row is its
    own run). Every expression must be a single SQL expression over ``data`` (see
    :func:`check_expression`); the query runs on a connection holding only ``data``.
    """
    if not x:
        raise MoescaleError("no variables mapped: give x={'N': 'n_total', ...} (--map N=SQL)")
    for name, expr in x.items():
        check_expression(expr, f"mapping {name}")
    if y is not None:
        check_expression(y, "y")
    if where:
        check_expression(where, "where", clause="where")
    cols = [f"({expr}) AS {quote(name)}" for name, expr in x.items()]
    if y is not None:
        cols.append(f"({y}) AS y")
    has_run = run_id in df.columns
    if has_run:
        cols.append(f"{quote(run_id)} AS __run_id")
    cols.append(f"{_ROW} AS {_ROW}")
    query = f"SELECT {', '.join(cols)} FROM data" + (f" WHERE ({where})" if where else "") + f" ORDER BY {_ROW}"
    expected = list(x) + (["y"] if y is not None else []) + (["__run_id"] if has_run else []) + [_ROW]
    try:
        if len(duckdb.extract_statements(query)) != 1:
            raise MoescaleError("the mapping, y and where together are not one SELECT; check their parentheses")
    except duckdb.Error as exc:
        raise MoescaleError(f"mapping does not evaluate: {first_line(exc)}") from None
    con = _data_connection()
    try:
        con.register("data", df.assign(**{_ROW: np.arange(len(df))}))
        out = con.execute(query).df()
    except duckdb.Error as exc:
        raise MoescaleError(f"mapping does not evaluate: {first_line(exc)}") from None
    finally:
        con.close()
    if list(out.columns) != expected:
        raise MoescaleError(f"the mapping selects columns {', '.join(map(str, out.columns))}, not {', '.join(expected)}: "
                            "each --map and --y must be one expression")
    runs = out.pop("__run_id").to_numpy() if has_run else None
    out.attrs["source_rows"] = out.pop(_ROW).to_numpy()
    for col in out.columns:
        try:
            out[col] = pd.to_numeric(out[col]).astype(float)
        except (TypeError, ValueError, OverflowError):
            raise MoescaleError(f"variable {col} is not numeric (mapping {x.get(col, y)!r})") from None
    return out, runs


def fingerprint(sel: pd.DataFrame) -> str:
    """sha256 of the selected data: columns sorted by name, rows sorted, values as 17-digit floats."""
    cols = sorted(sel.columns)
    rows = sorted(tuple(float(v) for v in row) for row in sel[cols].itertuples(index=False))
    text = ",".join(cols) + "\n" + "\n".join(",".join(format(v, ".17g") for v in row) for row in rows)
    return hashlib.sha256(text.encode()).hexdigest()
