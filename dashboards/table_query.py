"""Server-side filtering, sorting and paging for DataTables in custom mode."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

_CLAUSE = re.compile(r"^\{(?P<column>[^}]+)\}\s*(?:[si]?(?P<op>>=|<=|!=|<|>|=)|"
                     r"[si]?(?P<word>eq|ne|lt|le|gt|ge|contains)(?=\s|$))?\s*(?P<value>.*)$")
_SYMBOLS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def parse_filter_query(query: str | None) -> list[tuple[str, str, str]]:
    """Split a DataTable ``filter_query`` into ``(column, operator, value)`` triples.

    Understands what DataTable writes in custom filter mode: clauses
    ``{column} op value`` joined by ``&&``, with operators ``= != < <= > >=``
    (or ``eq ne lt le gt ge``, optionally prefixed ``s``/``i``) and
    ``contains``; a clause without an operator means ``contains``.

    Raises:
        ValueError: for a clause that is not of that form.
    """
    clauses = []
    for part in (query or "").split("&&"):
        part = part.strip()
        if not part:
            continue
        match = _CLAUSE.match(part)
        if match is None:
            raise ValueError(f"filter clause must look like '{{column}} op value', got {part!r}")
        op = match["op"] or match["word"] or "contains"
        value = match["value"].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'`":
            value = value[1:-1]
        clauses.append((match["column"], _SYMBOLS.get(op, op), value))
    return clauses


def filter_sort_page(table: pd.DataFrame, filter_query: str | None = None,
                     sort_by: Sequence[Mapping[str, str]] | None = None,
                     page: int = 0, page_size: int = 25) -> tuple[pd.DataFrame, int]:
    """Server-side filter, sort and paging of a table, as a DataTable in custom mode asks.

    Returns:
        ``(rows of the requested page, number of pages)``.

    Raises:
        ValueError: for an unknown column or a bad filter value.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    rows = table
    for column, op, value in parse_filter_query(filter_query):
        if column not in rows:
            raise ValueError(f"unknown column {column!r}; columns: {', '.join(rows.columns)}")
        series = rows[column]
        if op == "contains":
            mask = series.astype(str).str.contains(value, case=False, regex=False)
        else:
            target: Any = value
            if pd.api.types.is_bool_dtype(series):
                target = value.lower() in ("true", "1", "yes")
            elif pd.api.types.is_numeric_dtype(series):
                try:
                    target = float(value)
                except ValueError:
                    raise ValueError(f"column {column!r} is numeric, got {value!r}") from None
            else:
                series = series.astype(str)
            mask = {"=": series == target, "!=": series != target, "<": series < target,
                    "<=": series <= target, ">": series > target, ">=": series >= target}[op]
        rows = rows[mask.fillna(False).astype(bool)]
    if sort_by:
        valid = [s for s in sort_by if isinstance(s, Mapping)
                 and isinstance(s.get("column_id"), str) and s["column_id"] in rows]
        columns = [s["column_id"] for s in valid]
        ascending = [s.get("direction", "asc") != "desc" for s in valid]
        if columns:
            rows = rows.sort_values(columns, ascending=ascending, kind="stable")
    pages = max(1, -(-len(rows) // page_size))
    page = min(max(int(page or 0), 0), pages - 1)
    return rows.iloc[page * page_size:(page + 1) * page_size], pages
