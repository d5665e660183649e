"""A stored table's parquet file: its schema, its row groups, and any failure to read it
as one line (:class:`UnreadableTable`) instead of a pyarrow error.

Cached per run path and manifest stamp, like everything of
:mod:`probe.dashboards.table_cache`, which clears these caches with its own.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from probe.errors import ProbeError, first_line


class UnreadableTable(ProbeError):
    """A table the manifest lists as complete whose parquet file cannot be read."""


def one_line(exc: BaseException, path: str = "") -> str:
    text = first_line(exc)
    if path:  # the reader's message repeats the absolute path; the page names the file
        text = text.replace(f"'{path}'", "").replace(path, "").replace(" : ", ": ").strip()
    return text.rstrip(": ")


@contextlib.contextmanager
def reading(path: str, analysis: str, table: str) -> Iterator[None]:
    """Turn any failure while reading ``RUN/<analysis>/<table>.parquet`` into one line.

    Raises:
        UnreadableTable: ``run name/analysis/table.parquet cannot be read (reason)``.
    """
    try:
        yield
    except ProbeError:
        raise
    except Exception as exc:  # pyarrow raises several types for a damaged file
        file = str(Path(path) / analysis / f"{table}.parquet")
        raise UnreadableTable(f"{Path(path).name}/{analysis}/{table}.parquet cannot be read "
                              f"({one_line(exc, file)})") from None


@functools.lru_cache(maxsize=256)
def row_groups(path: str, stamp: int, analysis: str, table: str) -> int:
    """Number of parquet row groups of a stored table."""
    import pyarrow.parquet as pq

    with reading(path, analysis, table):
        return pq.ParquetFile(Path(path) / analysis / f"{table}.parquet").metadata.num_row_groups


@functools.lru_cache(maxsize=256)
def arrow_schema(path: str, stamp: int, analysis: str, table: str) -> Any:
    """A stored table's ``pyarrow.Schema`` (read from the file's footer only)."""
    import pyarrow.parquet as pq

    with reading(path, analysis, table):
        return pq.read_schema(Path(path) / analysis / f"{table}.parquet")


def schema(path: str, stamp: int, analysis: str, table: str) -> list[str]:
    """Column names of a stored table (read from the parquet schema only)."""
    return list(arrow_schema(path, stamp, analysis, table).names)


def scalar_columns(path: str, stamp: int, analysis: str, table: str) -> tuple[str, ...]:
    """The table's columns that are neither nested (lists, maps) nor binary (masks): what
    a view can decode whole in milliseconds."""
    import pyarrow as pa

    return tuple(f.name for f in arrow_schema(path, stamp, analysis, table)
                 if not (pa.types.is_nested(f.type) or pa.types.is_binary(f.type)
                         or pa.types.is_large_binary(f.type)))


def has_arrays(path: str, stamp: int, analysis: str, table: str) -> bool:
    """Whether the table holds nested or binary columns (maps, masks: the large ones)."""
    return len(scalar_columns(path, stamp, analysis, table)) < len(
        schema(path, stamp, analysis, table))
