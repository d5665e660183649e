"""Read-only, cached access to the runs under ``RUNS_DIR`` for the dashboard.

Every name that arrives from a URL (run, layer, analysis, table, artifact path)
is checked against what is actually on disk before it touches the file system:
a run must be one of the directories listed under the root (symlinks that lead
outside the root are refused), a layer one of the run's layers, a table one
the manifest lists as complete. Nothing from a run is ever executed; pickled
or code-bearing files are never opened.

The reading and caching itself is :mod:`probe.dashboards.table_cache`: runs
and tables are cached keyed by the run path and the manifest's modification
time, so a run that is rewritten (or resumed) is re-read and an unchanged run
is read once. :func:`clear_caches` and :func:`wait_for_prefetch` stay
importable from here.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from probe.dashboards import quiet, table_cache
from probe.dashboards.memo import Memo
from probe.dashboards.source_context import (
    CONFIG_KEY,
    clear_caches,
    get_source,
    set_source,
    using,
)
from probe.dashboards.table_cache import UnreadableTable, wait_for_prefetch
from probe.dashboards.table_files import scalar_columns
from probe.errors import ProbeError
from probe.store import MANIFEST, Run, is_plain_name

#: Unit pages kept rendered per app (``PROBE_DASH_UNIT_PAGES``, default 256), LRU.
UNIT_PAGES = int(os.environ.get("PROBE_DASH_UNIT_PAGES", "256"))
#: Longest name accepted from a URL (a file name longer than this cannot exist on disk).
NAME_MAX = 255
#: Artifact types the dashboard is willing to serve, with their MIME types.
SERVABLE = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
            ".svg": "image/svg+xml", ".csv": "text/csv", ".txt": "text/plain",
            ".json": "application/json"}

__all__ = ["CONFIG_KEY", "SERVABLE", "NotFound", "RunSource", "UnreadableTable", "clear_caches",
           "get_source", "safe_name", "set_source", "using", "wait_for_prefetch"]


def unit_tables(run: Run) -> list[tuple[str, str]]:
    """``(analysis, table)`` of the run whose declared columns include ``unit``."""
    from probe.host import get_host

    registry = get_host().analyses
    out = []
    for analysis in run.analyses:
        if analysis in registry:
            declared = registry.get(analysis).tables
            out += [(analysis, t) for t, cols in declared.items() if "unit" in cols]
    return out


class NotFound(ProbeError):
    """A run, layer, table or file that is not part of the runs being served."""


def safe_name(name: object, what: str) -> str:
    """Return ``name`` if it is a plain file name (no separators, no ``..``), else raise."""
    if isinstance(name, str) and len(name) > NAME_MAX:
        raise NotFound(f"{what} name is longer than {NAME_MAX} characters "
                       f"({name[:40]!r}... of {len(name)})")
    if not is_plain_name(name):
        raise NotFound(f"{what} name must be letters, digits, '_', '-', '.', got {name!r}")
    return name


def _stamp(path: Path) -> int:
    """The run's cache key (manifest modification time); a vanished run is :class:`NotFound`."""
    try:
        return table_cache.stamp(path)
    except OSError:
        raise NotFound(f"run {path.name} has no readable {MANIFEST} any more") from None


class RunSource:
    """The runs under one root directory, as the dashboard reads them.

    Args:
        root: ``RUNS_DIR``: a folder of run directories, or one run directory.

    Raises:
        ProbeError: when ``root`` is not a directory.
    """

    def __init__(self, root: str | Path) -> None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise ProbeError(f"runs directory {str(root)!r} does not exist or is not a folder")
        self.root = path.resolve()
        self._memo = Memo(64)  # derived views: layer summaries, layers and compare pages
        self._pages = Memo(UNIT_PAGES)  # whole unit pages

    def __repr__(self) -> str:
        return f"RunSource({str(self.root)!r})"

    # -- runs ------------------------------------------------------------------
    def run_paths(self) -> dict[str, Path]:
        """``{run name: path}`` of every run directory directly under the root."""
        if (self.root / MANIFEST).is_file():
            return {self.root.name: self.root}
        out: dict[str, Path] = {}
        with os.scandir(self.root) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if not is_plain_name(entry.name) or not entry.is_dir():
                    continue
                path = Path(entry.path)
                # A symlinked run is served only when it resolves inside the root.
                if not path.resolve().is_relative_to(self.root):
                    continue
                if (path / MANIFEST).is_file():
                    out[entry.name] = path
        return out

    def run_names(self) -> list[str]:
        """Names of the runs, sorted."""
        return list(self.run_paths())

    def run(self, name: object) -> Run:
        """The run called ``name`` (cached until its manifest changes).

        Raises:
            NotFound: when ``name`` is not one of :meth:`run_names`.
            ProbeError: when its manifest cannot be read or is not a probe manifest.
        """
        safe_name(name, "run")
        path = self._run_path(str(name))
        if path is None:
            raise NotFound(f"no run {name!r} under {self.root}")
        return table_cache.load_run(str(path), _stamp(path))

    def _run_path(self, name: str) -> Path | None:
        """The folder of run ``name`` if :meth:`run_paths` would list it (without a scan)."""
        if (self.root / MANIFEST).is_file():
            return self.root if name == self.root.name else None
        path = self.root / name
        try:
            if not path.is_dir() or not path.resolve().is_relative_to(self.root):
                return None
            return path if (path / MANIFEST).is_file() else None
        except OSError:
            return None

    def scan(self) -> list[tuple[str, Run | None, str | None]]:
        """Every run folder: ``(name, run, None)``, or ``(name, None, reason)`` if unreadable."""
        out: list[tuple[str, Run | None, str | None]] = []
        for name in self.run_names():
            try:
                out.append((name, self.run(name), None))
            except ProbeError as exc:
                out.append((name, None, str(exc)))
        return out

    def runs(self) -> list[Run]:
        """Every run that can be read."""
        return [run for _, run, _ in self.scan() if run is not None]

    def unreadable(self) -> dict[str, str]:
        """``{run name: reason}`` of the run folders whose manifest cannot be used."""
        return {name: reason for name, run, reason in self.scan() if run is None and reason}

    def default_run(self, name: object = None) -> str | None:
        """``name`` if it is a run here, else the first run (``None`` when there is none)."""
        names = self.run_names()
        if isinstance(name, str) and name in names:
            return name
        return names[0] if names else None

    def memo(self, run: Run, key: tuple[Any, ...], compute: Callable[[], Any],
             keep: Callable[[Any], bool] | None = None) -> Any:
        """``compute()`` cached per run until its manifest changes (64 entries, LRU).

        For derived views (layer summaries, whole page contents) that are pure
        functions of the run's tables and ``key``; ``keep(value)`` false: not kept.
        """
        return self._memo.get((str(run.path), _stamp(run.path), *key), quiet.marked(compute), keep)

    def kept(self, run: Run, key: tuple[Any, ...], pages: bool = False) -> tuple[bool, Any]:
        """``(True, value)`` when :meth:`memo` (``pages``: :meth:`page`) keeps ``key`` for
        ``run``, else ``(False, None)``; nothing is computed."""
        return (self._pages if pages else self._memo).peek((str(run.path), _stamp(run.path),
                                                            *key))

    def keep(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """``compute()`` cached under ``key`` alone (with the run memo's 64 entries, LRU): for
        views of several runs, whose key holds each run's :meth:`stamp` itself."""
        return self._memo.get(("keep", *key), quiet.marked(compute))

    def stamp(self, run: Run) -> int:
        """The run's cache key: its manifest's modification time (ns)."""
        return _stamp(run.path)

    def page(self, run: Run, key: tuple[Any, ...], compute: Callable[[], Any],
             keep: Callable[[Any], bool] | None = None) -> Any:
        """Like :meth:`memo`, for whole unit pages (:data:`UNIT_PAGES` entries, LRU).

        ``keep(value)`` false: not kept (a page that met a damaged table).
        """
        return self._pages.get((str(run.path), _stamp(run.path), *key), quiet.marked(compute),
                               keep)

    # -- layers and tables -------------------------------------------------------
    def layers(self, run: Run) -> list[str]:
        """The run's layers, in network order."""
        return [str(x) for x in run.manifest.get("layers") or []]

    def check_layer(self, run: Run, layer: object) -> str:
        """Return ``layer`` if the run has it, else raise :class:`NotFound`."""
        layers = self.layers(run)
        if not isinstance(layer, str) or layer not in layers:
            raise NotFound(f"run {run.name} has no layer {layer!r}; it has: "
                           f"{', '.join(layers) or 'none'}")
        return layer

    def completed(self, run: Run) -> list[str]:
        """Analyses of the run that completed."""
        return [a for a in run.analyses if run.analysis_status(a) == "complete"]

    def has(self, run: Run, analysis: str, table: str) -> bool:
        """Whether the run holds a completed table."""
        return run.has_table(analysis, table)

    def table(self, run: Run, analysis: str, table: str,
              columns: Sequence[str] | None = None, layer: str | None = None
              ) -> pd.DataFrame:
        """A completed table, optionally only some columns and one layer's rows.

        The result is cached and shared: treat it as read-only.

        Raises:
            NotFound: when the run has no such completed table.
        """
        if not run.has_table(analysis, table):
            raise NotFound(f"run {run.name} has no completed table {analysis}/{table}")
        if columns is not None:
            available = self.columns(run, analysis, table)
            columns = tuple(c for c in columns if c in available)
        with quiet.working():
            return table_cache.read_table(str(run.path), _stamp(run.path), analysis, table,
                                          tuple(columns) if columns is not None else None,
                                          layer)

    def unit_rows(self, run: Run, analysis: str, table: str, layer: str, unit: int,
                  unit_column: str = "unit") -> pd.DataFrame:
        """The rows of one unit of one layer (only they are converted to pandas).

        Raises:
            NotFound: when the run has no such completed table.
        """
        if not run.has_table(analysis, table):
            raise NotFound(f"run {run.name} has no completed table {analysis}/{table}")
        with quiet.working():
            return table_cache.read_unit_rows(str(run.path), _stamp(run.path), analysis,
                                              table, layer, unit, unit_column)

    def units_rows(self, run: Run, analysis: str, table: str, layer: str,
                   units: Sequence[int], unit_column: str = "unit") -> pd.DataFrame:
        """The rows of some units of one layer (only they are converted to pandas).

        Raises:
            NotFound: when the run has no such completed table.
        """
        if not run.has_table(analysis, table):
            raise NotFound(f"run {run.name} has no completed table {analysis}/{table}")
        with quiet.working():
            return table_cache.read_units(str(run.path), _stamp(run.path), analysis, table,
                                          layer, units, unit_column)

    def prefetch(self, run: Run, tables: Sequence[tuple[str, str]] | None = None,
                 then: Callable[[], None] | None = None) -> None:
        """Read tables into the cache in a background thread (the next page is then warm),
        once the dashboard has been idle for ``quiet.QUIET`` seconds (so the
        sections of the page being answered are not slowed by it).

        ``None``: every table with a ``unit`` column that the run's installed analyses
        declare (what unit pages slice). ``then()``: called in that thread afterwards,
        when the dashboard is quiet again (with this app's context, so it can render).
        """
        chosen = unit_tables(run) if tables is None else list(tables)
        follow = None
        if then is not None:
            import flask

            app = flask.current_app._get_current_object() if flask.has_app_context() else None

            def follow() -> None:  # pages and sections read this source, whatever is active
                with contextlib.ExitStack() as stack:
                    if app is not None:
                        stack.enter_context(app.app_context())
                    stack.enter_context(using(self))
                    then()

        table_cache.prefetch(str(run.path), _stamp(run.path),
                             [(a, t) for a, t in chosen if run.has_table(a, t)], follow)

    def head(self, run: Run, analysis: str, table: str, rows: int) -> tuple[pd.DataFrame, int]:
        """The first ``rows`` rows of a table's scalar columns, and its total row count.

        Array and binary columns (stored maps, masks) are not read at all.

        Raises:
            NotFound: when the run has no such completed table.
        """
        import pyarrow.parquet as pq

        if not run.has_table(analysis, table):
            raise NotFound(f"run {run.name} has no completed table {analysis}/{table}")
        scalar = list(scalar_columns(str(run.path), _stamp(run.path), analysis, table))
        with table_cache.reading(str(run.path), analysis, table):
            file = pq.ParquetFile(run.path / analysis / f"{table}.parquet")
            total = file.metadata.num_rows
            if total == 0 or not scalar:
                return pd.DataFrame(columns=scalar), total
            batch = next(file.iter_batches(batch_size=max(1, rows), columns=scalar))
            return batch.to_pandas(), total

    def optional(self, run: Run, analysis: str, table: str,
                 columns: Sequence[str] | None = None, layer: str | None = None
                 ) -> pd.DataFrame | None:
        """Like :meth:`table`, but ``None`` when the run lacks the table."""
        if not run.has_table(analysis, table):
            return None
        return self.table(run, analysis, table, columns, layer)

    def columns(self, run: Run, analysis: str, table: str) -> list[str]:
        """Column names of a stored table (read from the parquet schema only)."""
        return table_cache.schema(str(run.path), _stamp(run.path), analysis, table)

    # -- files -------------------------------------------------------------------
    def artifact(self, run_name: object, analysis: object, relative: object) -> Path:
        """The path of a servable artifact file of a run.

        Raises:
            NotFound: for unknown runs or analyses, names with separators or
                ``..``, absolute paths, symlinks leading anywhere outside the
                analysis folder, missing files and types not in :data:`SERVABLE`.
        """
        run = self.run(run_name)
        safe_name(analysis, "analysis")
        if analysis not in run.analyses:
            raise NotFound(f"run {run.name} has no analysis {analysis!r}")
        if not isinstance(relative, str) or not relative or relative.startswith(("/", "\\")):
            raise NotFound(f"artifact path must be relative, got {relative[:80]!r}")
        if len(relative) > 1024:
            raise NotFound(f"artifact path is longer than 1024 characters ({len(relative)})")
        parts = relative.split("/")
        for part in parts:
            safe_name(part, "artifact")
        try:
            base = (run.path / analysis).resolve()
            target = base.joinpath(*parts)
            resolved = target.resolve()
            if not resolved.is_relative_to(base) or not resolved.is_relative_to(self.root):
                raise NotFound(f"artifact path {relative!r} leaves the run directory")
            if not resolved.is_file():
                raise NotFound(f"run {run.name} has no artifact {analysis}/{relative}")
        except OSError as exc:  # e.g. a name the file system cannot hold
            raise NotFound(f"run {run.name} has no artifact {analysis}/{relative[:80]} "
                           f"({exc.strerror or type(exc).__name__})") from None
        if resolved.suffix.lower() not in SERVABLE:
            raise NotFound(f"artifact type {resolved.suffix!r} is not served; served types: "
                           f"{', '.join(sorted(SERVABLE))}")
        return resolved

    # -- images ------------------------------------------------------------------
    def dataset(self, run: Run) -> Any | None:
        """The run's data set reloaded from its manifest (cached), or ``None``.

        Returns ``None`` when the run has no data set, its plugin is not
        installed here or fails to load it, so pages can say so instead of failing.
        """
        record = run.manifest.get("dataset") or {}
        name = record.get("name")
        if not name:
            return None
        options = json.dumps(record.get("options") or {}, sort_keys=True, default=str)
        try:
            return table_cache.load_dataset(str(name), options)
        except Exception:  # a plugin that is missing, or fails on these options
            return None
