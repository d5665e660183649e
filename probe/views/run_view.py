"""What a view reads: one run's tables, its data set's images and links to its units.

Views receive a :class:`RunView`, never a path: the report hands them one over
:func:`probe.load_run`, the dashboard one that reads through its caches and
links units to their pages. Both behave the same to the view.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from probe.errors import ProbeError
from probe.store import Run


class RunView:
    """Read-only access to one run for view functions.

    Args:
        run: The run (from :func:`probe.load_run`).
        label: The name shown for the run (defaults to ``run.name``).
    """

    def __init__(self, run: Run, label: str | None = None) -> None:
        self.run = run
        self.label = label or run.name
        self._dataset: Any = None
        self._dataset_problem: str | None = None
        self._dataset_loaded = False
        self._memo: dict[tuple[Any, ...], Any] = {}

    # -- what the run is -----------------------------------------------------------
    @property
    def name(self) -> str:
        """The run's name (its folder)."""
        return self.run.name

    @property
    def manifest(self) -> Mapping[str, Any]:
        """The run's manifest (read-only)."""
        return self.run.manifest

    @property
    def layers(self) -> list[str]:
        """The run's layers, in network order."""
        return [str(x) for x in self.run.manifest.get("layers") or []]

    def completed(self) -> list[str]:
        """Analyses of the run that completed, in run order."""
        return [a for a in self.run.analyses if self.run.analysis_status(a) == "complete"]

    def options(self, analysis: str) -> dict[str, Any]:
        """The resolved options ``analysis`` ran with (``{}`` when it did not run)."""
        entry = (self.run.manifest.get("analyses") or {}).get(analysis) or {}
        return dict(entry.get("options") or {})

    # -- tables --------------------------------------------------------------------
    def has(self, analysis: str, table: str) -> bool:
        """Whether the run holds the completed table."""
        return self.run.has_table(analysis, table)

    def table_names(self, analysis: str) -> list[str]:
        """The completed tables of ``analysis``."""
        return [t for _, t in self.run.tables(analysis)]

    def table(self, analysis: str, table: str, columns: Sequence[str] | None = None,
              layer: str | None = None) -> pd.DataFrame | None:
        """A completed table (``columns`` only, ``layer``'s rows only), or ``None``.

        Treat the result as read-only (it may be shared by a cache).

        Raises:
            ProbeError: the table exists but cannot be read (damaged file).
        """
        if not self.run.has_table(analysis, table):
            return None
        frame = self.run.table(analysis, table)
        if layer is not None and "layer" in frame.columns:  # also when ``columns`` lacks it
            frame = frame[frame["layer"].astype(str) == layer]
        if columns is not None:
            frame = frame[[c for c in columns if c in frame.columns]]
        return frame

    def unit_rows(self, analysis: str, table: str, layer: str, unit: int,
                  unit_column: str = "unit") -> pd.DataFrame | None:
        """The rows of one unit of one layer, or ``None`` when the table is absent."""
        frame = self.table(analysis, table, layer=layer)
        if frame is None:
            return None
        return frame[frame[unit_column] == unit]

    def units_rows(self, analysis: str, table: str, layer: str, units: Sequence[int],
                   unit_column: str = "unit") -> pd.DataFrame | None:
        """The rows of several units of one layer (cards, strips), or ``None`` when absent.

        Cheaper than :meth:`table` for a few units of a big table: only their rows
        are read.
        """
        frame = self.table(analysis, table, layer=layer)
        if frame is None:
            return None
        return frame[frame[unit_column].isin([int(u) for u in units])]

    def tables(self, analysis: str) -> Mapping[str, pd.DataFrame]:
        """The tables of ``analysis`` as a mapping that reads each one when asked."""
        return _LazyTables(self, analysis)

    # -- images --------------------------------------------------------------------
    def dataset(self) -> Any | None:
        """The run's data set reloaded from its manifest, or ``None`` (:meth:`why_no_images`)."""
        if not self._dataset_loaded:
            self._dataset_loaded = True
            self._dataset, self._dataset_problem = self._load_dataset()
        return self._dataset

    def _load_dataset(self) -> tuple[Any | None, str | None]:
        from probe.models import load_dataset

        record = self.run.manifest.get("dataset")
        if not record:
            return None, "the run has no data set"
        try:
            return load_dataset(record["name"], **(record.get("options") or {})), None
        except Exception as exc:  # a plugin missing here, or failing on these options
            return None, f"data set {record.get('name')!r} cannot be reloaded here: {exc}"

    def why_no_images(self) -> str | None:
        """Why :meth:`image` returns ``None`` (``None`` when images are available)."""
        self.dataset()
        return self._dataset_problem

    def image(self, index: int) -> Any | None:
        """Image ``index`` of the run's data set (``Tensor[C, H, W]`` in [0, 1]), or ``None``."""
        dataset = self.dataset()
        if dataset is None or not 0 <= int(index) < len(dataset):
            return None
        return dataset[int(index)]["image"]

    def class_name(self, label: int) -> str | None:
        """The data set's name of class ``label`` (``None`` for -1 or no data set)."""
        dataset = self.dataset()
        if dataset is None or label < 0:
            return None
        names = getattr(dataset, "class_names", ()) or ()
        return str(names[label]) if label < len(names) else str(label)

    def memo(self, key: tuple[Any, ...], compute: Any) -> Any:
        """``compute()`` kept under ``key`` for as long as the run is unchanged.

        For a view that is the same on many pages (a layer's figure on each of its
        unit pages): here it lives as long as this object; the dashboard keeps it
        per run until the run is rewritten. Keep plain values (a figure's
        ``to_plotly_json()``), and treat them as read-only.
        """
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # -- links ---------------------------------------------------------------------
    def unit_link(self, layer: str, unit: int) -> str | None:
        """Where a unit is explored (its dashboard page; ``None`` in a report)."""
        return None


class _LazyTables(Mapping[str, pd.DataFrame]):
    """An analysis's tables, each read only when asked for."""

    def __init__(self, view: RunView, analysis: str) -> None:
        self._view, self._analysis = view, analysis
        self._names = view.table_names(analysis)

    def __getitem__(self, name: str) -> pd.DataFrame:
        frame = self._view.table(self._analysis, name) if name in self._names else None
        if frame is None:
            raise KeyError(name)
        return frame

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def require(frame: pd.DataFrame | None, what: str) -> pd.DataFrame:
    """``frame``, or a :class:`ProbeError` saying the table ``what`` is missing."""
    if frame is None:
        raise ProbeError(f"the run has no table {what}")
    return frame
