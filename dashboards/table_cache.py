"""The dashboard's caches of runs, decoded tables and data sets (no name checking here).

Everything is keyed by the run path and the manifest's modification time
(:func:`stamp`), so a run that is rewritten (or resumed) is re-read and an
unchanged run is read once. Callers pass paths that
:class:`probe.dashboards.data.RunSource` has already checked against what is
on disk; this module only reads and caches.

* runs: :func:`load_run` (``functools.lru_cache``);
* tables: each parquet file is decoded once into Arrow form (:func:`read_arrow`,
  an LRU cache of at most :data:`ARROW_BUDGET` bytes) and slices of it (some
  columns, one layer, one unit) become pandas objects on demand
  (:func:`read_table`, :func:`read_unit_rows`). A request for scalar columns
  decodes all of the table's scalar columns once (any later choice of them is
  a selection); maps and masks are decoded only when asked for, one layer's or
  one unit's row groups at a time until the whole table is decoded;
  :func:`prefetch` fills the cache in a background thread once the dashboard
  is quiet (:mod:`probe.dashboards.quiet`);
* data sets: :func:`load_dataset` reloads a run's data set by name.

A damaged file never escapes as a pyarrow or JSON error: a manifest that is
not a probe manifest raises :class:`~probe.errors.ProbeError` with the reason,
and a table that cannot be read raises :class:`UnreadableTable`, one line
naming the file, so a page can show it in place.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe.dashboards.quiet import wait_until_quiet
from probe.dashboards.table_files import (
    UnreadableTable,
    arrow_schema,
    has_arrays,
    one_line,
    reading,
    row_groups,
    scalar_columns,
    schema,
)
from probe.errors import ProbeError
from probe.store import MANIFEST, Run
from probe.store import load_run as _read_run

# the file-level helpers stay importable from here
__all__ = ["UnreadableTable", "cached_keys", "clear", "load_dataset", "load_run", "prefetch",
           "read_arrow", "read_table", "read_unit_rows", "read_units", "reading", "schema",
           "stamp", "unit_index", "wait_for_prefetch"]


_ARROW: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_ARROW_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_ARROW_GUARD = threading.Lock()
#: Most bytes of decoded tables kept (``PROBE_DASH_CACHE_MB``, default 1 GiB); the
#: least recently used go first, but the newest table always stays.
ARROW_BUDGET = int(float(os.environ.get("PROBE_DASH_CACHE_MB", "1024")) * 2**20)
_INDEX: dict[tuple[Any, ...], dict[tuple[str, int], Any]] = {}
_PREFETCHING: list[threading.Thread] = []
_IN_FLIGHT: set[tuple[Any, ...]] = set()
#: Name of the threads that decode tables in the background.
LOADER = "probe-dash-prefetch"
_AHEAD = threading.Lock()
_ahead: dict[str, Any] = {"job": None, "thread": None}  # the newest work ahead, its thread


def stamp(path: Path) -> int:
    """The manifest's modification time in nanoseconds (the cache key of a run)."""
    return (path / MANIFEST).stat().st_mtime_ns


@functools.lru_cache(maxsize=64)
def load_run(path: str, stamp: int) -> Run:
    """The run at ``path`` (read once per manifest ``stamp``).

    Raises:
        ProbeError: when the manifest cannot be read or is not a probe manifest
            (one line with the reason).
    """
    file = Path(path) / MANIFEST
    try:
        run = _read_run(path)
    except ProbeError:
        raise
    except Exception as exc:  # unreadable bytes, permissions, a store that raises otherwise
        raise ProbeError(f"{file} cannot be read ({one_line(exc)})") from None
    return run


def read_arrow(path: str, stamp: int, analysis: str, table: str,
               columns: tuple[str, ...] | None, threads: bool = True) -> Any:
    """A whole table (or some columns) as a ``pyarrow.Table``, decoded once and kept.

    ``threads`` false: decoded on the calling thread only (a background prefetch, so
    that the request being answered meanwhile keeps the other cores).
    """
    # The whole file is read once (a parquet file written in one row group
    # cannot be read in parts) and kept in Arrow form: slicing a layer or a
    # unit out of it later costs milliseconds, and only those rows ever
    # become pandas objects. A per-key lock lets a background prefetch and a
    # request share one read instead of decoding the file twice.
    import pyarrow.parquet as pq

    key = (path, stamp, analysis, table, columns)
    with _ARROW_GUARD:
        lock = _ARROW_LOCKS.setdefault(key, threading.Lock())
    with lock:
        with _ARROW_GUARD:
            if key in _ARROW:
                _ARROW.move_to_end(key)
                return _ARROW[key]
        with reading(path, analysis, table):  # ParquetFile: no dataset set-up, ~1 ms less
            data = pq.ParquetFile(Path(path) / analysis / f"{table}.parquet").read(
                columns=list(columns) if columns else None, use_threads=threads)
        with _ARROW_GUARD:
            _ARROW[key] = data
            while len(_ARROW) > 1 and sum(t.nbytes for t in _ARROW.values()) > ARROW_BUDGET:
                old, _ = _ARROW.popitem(last=False)
                for index_key in [k for k in _INDEX if k[:len(old)] == old]:
                    del _INDEX[index_key]
        return data


def _decoded(path: str, stamp: int, analysis: str, table: str,
             columns: tuple[str, ...] | None) -> Any:
    """``columns`` of a table from what is decoded already (the same columns, the whole
    table, or its scalar columns), or ``None`` when a read is needed."""
    with _ARROW_GUARD:
        data = _ARROW.get((path, stamp, analysis, table, columns))
        if data is not None or columns is None:
            return data
        for held in (None, *(k[4] for k in _ARROW if k[:4] == (path, stamp, analysis, table)
                             and k[4] is not None)):
            whole = _ARROW.get((path, stamp, analysis, table, held))
            if whole is not None and set(columns) <= set(whole.column_names):
                return whole.select(list(columns))
    return None


def cached_keys() -> list[tuple[Any, ...]]:
    """Keys ``(path, stamp, analysis, table, columns)`` of the decoded tables, oldest first."""
    with _ARROW_GUARD:
        return list(_ARROW)


@functools.lru_cache(maxsize=256)
def read_table(path: str, stamp: int, analysis: str, table: str,
               columns: tuple[str, ...] | None, layer: str | None) -> pd.DataFrame:
    """Some columns (``None``: all) and optionally one layer's rows of a table, as pandas."""
    wanted = columns
    if columns is not None and layer is not None and "layer" not in columns:
        wanted = (*columns, "layer")
    scalar = scalar_columns(path, stamp, analysis, table)
    arrays = has_arrays(path, stamp, analysis, table)
    small = set(wanted) <= set(scalar) if wanted is not None else not arrays
    data = _decoded(path, stamp, analysis, table, wanted)
    if data is None and small:
        # Only scalar columns asked for: decode them all once (a few ms even for 5,000 rows)
        # and select, so the other views' column choices cost no further read.
        data = read_arrow(path, stamp, analysis, table, scalar if arrays else None)
        data = data.select(list(wanted)) if wanted is not None else data
    if data is None and layer is not None and row_groups(path, stamp, analysis, table) > 1:
        # One layer of a table written in row groups: parquet's statistics skip the
        # groups of other layers, so a layer's view never decodes the whole table.
        import pyarrow.parquet as pq

        with reading(path, analysis, table):
            data = pq.read_table(Path(path) / analysis / f"{table}.parquet",
                                 columns=list(wanted) if wanted else None,
                                 filters=[("layer", "==", layer)])
            if columns is not None:
                data = data.select(list(columns))
            return data.to_pandas().reset_index(drop=True)
    if data is None:
        data = read_arrow(path, stamp, analysis, table, wanted)
    with reading(path, analysis, table):
        if layer is not None:
            import pyarrow.compute as pc

            data = data.filter(pc.equal(data["layer"], layer))
        if columns is not None:
            data = data.select(list(columns))
        return data.to_pandas().reset_index(drop=True)


def read_unit_rows(path: str, stamp: int, analysis: str, table: str, layer: str, unit: int,
                   unit_column: str = "unit") -> pd.DataFrame:
    """The rows of one unit of one layer (only they are converted to pandas).

    Raises:
        UnreadableTable: when the file cannot be read.
    """
    key = (path, stamp, analysis, table, None)
    with _ARROW_GUARD:
        data = _ARROW.get(key)
    with reading(path, analysis, table):
        if data is None and has_arrays(path, stamp, analysis, table) \
                and row_groups(path, stamp, analysis, table) > 1:
            # Maps or masks, written in small row groups (probe.store): statistics let
            # parquet skip all but the groups holding this unit, so nothing else is
            # decoded. A table of scalars is decoded whole instead (as fast as one group).
            import pyarrow.parquet as pq

            file = Path(path) / analysis / f"{table}.parquet"
            data = pq.read_table(file, filters=[("layer", "==", layer),
                                                (unit_column, "==", unit)])
            return data.to_pandas()  # a fresh RangeIndex already
        if data is None:
            data = read_arrow(path, stamp, analysis, table, None)
        rows = unit_index(key, data, unit_column).get((layer, unit))
        if rows is None:
            return data.slice(0, 0).to_pandas()
        if isinstance(rows, tuple):  # contiguous rows (as written): a zero-copy slice
            return data.slice(rows[0], rows[1]).to_pandas()
        return data.take(rows).to_pandas()


def unit_index(key: tuple[Any, ...], data: Any, unit_column: str) -> dict[tuple[str, int], Any]:
    """``{(layer, unit): rows}`` of a decoded table, built once per table and column.

    ``rows`` is ``(offset, length)`` when the unit's rows are contiguous (tables
    are written layer by layer, unit by unit), else the row numbers. Slicing one
    unit out of a decoded table is then a zero-copy slice (or a ``take`` of a
    few rows) instead of a comparison over every row.
    """
    index_key = (*key, unit_column)
    with _ARROW_GUARD:
        index = _INDEX.get(index_key)
    if index is not None:
        return index
    index = _runs_index(data, unit_column)
    with _ARROW_GUARD:
        if key in _ARROW:  # keep it only as long as its table
            _INDEX[index_key] = index
    return index


def _runs_index(data: Any, unit_column: str) -> dict[tuple[str, int], Any]:
    """:func:`unit_index`'s mapping: one pass for the runs of equal ``(layer, unit)``, and
    a group-by only when some unit's rows are not contiguous."""
    import pyarrow as pa

    column = data["layer"].combine_chunks() if isinstance(data["layer"], pa.ChunkedArray) \
        else data["layer"]
    encoded = column if pa.types.is_dictionary(column.type) else column.dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = [str(x) for x in encoded.dictionary.to_pylist()]
    units = data[unit_column].to_numpy(zero_copy_only=False)
    if len(units) == 0:
        return {}
    change = np.flatnonzero((codes[1:] != codes[:-1]) | (units[1:] != units[:-1])) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(units)]]))
    keys = list(zip([names[c] for c in codes[starts].tolist()],
                    [int(u) for u in units[starts].tolist()], strict=True))
    if len(set(keys)) == len(keys):  # every unit's rows contiguous (as written)
        return {key: (int(start), int(length))
                for key, start, length in zip(keys, starts.tolist(), lengths.tolist(),
                                              strict=True)}
    groups = pd.DataFrame({"layer": [names[c] for c in codes.tolist()], "unit": units}) \
        .groupby(["layer", "unit"], sort=False).indices
    return {(str(layer), int(u)): (int(rows[0]), len(rows))
            if rows[-1] - rows[0] + 1 == len(rows) else rows
            for (layer, u), rows in groups.items()}


def prefetch(path: str, stamp: int, tables: Sequence[tuple[str, str]],
             then: Callable[[], None] | None = None) -> None:
    """Decode whole tables ``(analysis, table)`` in a background thread (skips cached ones),
    each once the dashboard is quiet (:func:`wait_until_quiet`); then ``then()`` (work for
    the page likely next) through :func:`work_ahead`."""
    with _ARROW_GUARD:  # skip what is cached or already being read
        wanted = [(a, t) for a, t in tables
                  if (path, stamp, a, t, None) not in _ARROW
                  and (path, stamp, a, t, None) not in _IN_FLIGHT]
        _IN_FLIGHT.update((path, stamp, a, t, None) for a, t in wanted)

    def load() -> None:
        for analysis, table in wanted:
            try:
                wait_until_quiet()  # the page's own sections first, the next page's after
                # one core: pyarrow's pool would take every core from the request
                # thread answering meanwhile (a 2-core machine's next cards doubled)
                read_arrow(path, stamp, analysis, table, None, threads=False)
            except ProbeError:
                pass  # a damaged table: the page that reads it says so
            finally:
                with _ARROW_GUARD:
                    _IN_FLIGHT.discard((path, stamp, analysis, table, None))

    if wanted:
        thread = threading.Thread(target=load, name=LOADER, daemon=True)
        thread.start()
        _PREFETCHING.append(thread)
    if then is not None:
        work_ahead(then)


def work_ahead(job: Callable[[], None]) -> None:
    """Run ``job()`` in the background once the tables being decoded are and the dashboard
    is quiet. Only the newest job waiting is kept (a page opened later replaces the work an
    earlier one asked for: under load nothing piles up), and one thread runs them; a job
    that fails is dropped (the page it prepared says so when it is really asked for)."""
    with _AHEAD:
        _ahead["job"] = job
        if _ahead["thread"] is None or not _ahead["thread"].is_alive():
            thread = threading.Thread(target=_run_ahead, name="probe-dash-ahead", daemon=True)
            _ahead["thread"] = thread
            thread.start()
            _PREFETCHING.append(thread)


def _run_ahead() -> None:
    try:
        while True:
            for loader in [t for t in list(_PREFETCHING) if t.name == LOADER]:
                loader.join()
            wait_until_quiet()
            with _AHEAD:
                job, _ahead["job"] = _ahead["job"], None
                if job is None:
                    return
            with contextlib.suppress(Exception):
                job()
    finally:  # however it ends (a job may even raise SystemExit), the next asks anew
        with _AHEAD:
            if _ahead["thread"] is threading.current_thread():
                _ahead["thread"] = None


def wait_for_prefetch(timeout: float | None = None) -> None:
    """Wait until background prefetches have finished (benchmarks and tests)."""
    while _PREFETCHING:
        _PREFETCHING.pop().join(timeout)


@functools.lru_cache(maxsize=16)
def load_dataset(name: str, options_json: str) -> Any:
    """A data set by plugin name and JSON options (cached)."""
    from probe.api import load_dataset as load

    return load(name, **json.loads(options_json))


def clear() -> None:
    """Forget every cached run, table and data set."""
    for cached in (load_run, read_table, load_dataset, arrow_schema, row_groups):
        cached.cache_clear()
    with _ARROW_GUARD:
        _ARROW.clear()
        _ARROW_LOCKS.clear()
        _INDEX.clear()


def read_units(path: str, stamp: int, analysis: str, table: str, layer: str,
               units: Sequence[int], unit_column: str = "unit") -> pd.DataFrame:
    """The rows of some units of one layer (only they are converted to pandas).

    From the decoded table when it is cached, else straight from the file with
    parquet's row-group statistics and a row filter.

    Raises:
        UnreadableTable: when the file cannot be read.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    key = (path, stamp, analysis, table, None)
    wanted = pa.array(sorted({int(u) for u in units}), type=pa.int64())
    with _ARROW_GUARD:
        data = _ARROW.get(key)
    with reading(path, analysis, table):
        if data is None:
            import pyarrow.parquet as pq

            file = Path(path) / analysis / f"{table}.parquet"
            data = pq.read_table(file, filters=[("layer", "==", layer),
                                                (unit_column, "in", wanted.to_pylist())])
            return data.to_pandas()
        mask = pc.and_(pc.equal(data["layer"], layer),
                       pc.is_in(pc.cast(data[unit_column], pa.int64()), value_set=wanted))
        return data.filter(mask).to_pandas()
