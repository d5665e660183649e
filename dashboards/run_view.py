"""The :class:`~probe.views.RunView` the dashboard hands to views: cached reads, unit links."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pandas as pd

from probe.dashboards.data import RunSource
from probe.store import Run
from probe.views import RunView


def unit_href(run: str, layer: str, unit: int) -> str:
    """The permanent link of a unit page."""
    return f"/unit/{quote(run)}/{quote(layer)}/{int(unit)}"


class DashRunView(RunView):
    """A run as views see it, read through the dashboard's table and data-set caches."""

    def __init__(self, source: RunSource, run: Run, label: str | None = None) -> None:
        super().__init__(run, label)
        self.source = source

    @property
    def layers(self) -> list[str]:
        return self.source.layers(self.run)

    def table(self, analysis: str, table: str, columns: Sequence[str] | None = None,
              layer: str | None = None) -> pd.DataFrame | None:
        return self.source.optional(self.run, analysis, table,
                                    tuple(columns) if columns is not None else None, layer)

    def unit_rows(self, analysis: str, table: str, layer: str, unit: int,
                  unit_column: str = "unit") -> pd.DataFrame | None:
        if not self.run.has_table(analysis, table):
            return None
        return self.source.unit_rows(self.run, analysis, table, layer, unit, unit_column)

    def units_rows(self, analysis: str, table: str, layer: str, units: Sequence[int],
                   unit_column: str = "unit") -> pd.DataFrame | None:
        if not self.run.has_table(analysis, table):
            return None
        return self.source.units_rows(self.run, analysis, table, layer, units, unit_column)

    def _load_dataset(self) -> tuple[Any | None, str | None]:
        record = self.run.manifest.get("dataset") or {}
        if not record.get("name"):
            return None, "the run has no data set"
        dataset = self.source.dataset(self.run)
        if dataset is None:
            return None, (f"data set {record.get('name')!r} cannot be reloaded here (its "
                          f"plugin is missing or fails on the recorded options)")
        return dataset, None

    def memo(self, key: tuple[Any, ...], compute: Any) -> Any:
        return self.source.memo(self.run, ("view", *key), compute)

    def unit_link(self, layer: str, unit: int) -> str | None:
        return unit_href(self.run.name, layer, unit)
