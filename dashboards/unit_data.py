"""The Units page's data: every analysis's unit columns of one layer merged, and cards.

The columns, the card title, the default sort and the flag come
from the analyses' ``unit_columns`` hooks; which analysis names the units and
which flags them is whatever each declares, so a third-party analysis can do
either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from probe.dashboards.run_view import DashRunView
from probe.views import UnitColumns
from probe.views.contributions import contributions


@dataclass
class UnitGrid:
    """One layer's units: merged columns and what the cards show."""

    frame: pd.DataFrame                     # unit + "<analysis>: <column>"-free merged columns
    labels: dict[str, str] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    title: str | None = None                # column naming each card
    score: str | None = None                # default sort (descending)
    flag: str | None = None                 # boolean column: passes the criterion
    flag_label: str = ""
    search: str | None = None
    thumbnails_from: str | None = None      # analysis asked for card pictures
    sources: dict[str, str] = field(default_factory=dict)  # column -> analysis
    problems: list[str] = field(default_factory=list)

    @property
    def units(self) -> int:
        """How many units the layer has (largest unit number + 1; 0 when unknown)."""
        return int(self.frame["unit"].max()) + 1 if len(self.frame) else 0


def unit_grid(view: DashRunView, layer: str) -> UnitGrid:
    """Merge every completed analysis's :class:`UnitColumns` of ``layer`` (cached per run)."""
    return view.source.memo(view.run, ("unit-grid", layer), lambda: _unit_grid(view, layer))


def _unit_grid(view: DashRunView, layer: str) -> UnitGrid:
    grid = UnitGrid(pd.DataFrame({"unit": pd.Series([], dtype=int)}))
    merged: pd.DataFrame | None = None
    for item in contributions(view, "unit_columns", layer):
        if item.problem:
            grid.problems.append(item.problem)
            continue
        columns: UnitColumns | None = item.value
        if columns is None or columns.frame.empty or "unit" not in columns.frame:
            continue
        frame = columns.frame.copy()
        taken = set(merged.columns) if merged is not None else {"unit"}
        renames = {c: f"{item.analysis}: {c}" for c in frame.columns if c != "unit" and c in taken}
        frame = frame.rename(columns=renames)
        for column in frame.columns:
            if column == "unit":
                continue
            original = next((k for k, v in renames.items() if v == column), column)
            grid.sources[column] = item.analysis
            grid.labels[column] = columns.labels.get(original, original.replace("_", " "))
            if original in columns.formats:
                grid.formats[column] = columns.formats[original]

        def renamed(name: str | None, mapping: dict[str, str] = renames) -> str | None:
            return mapping.get(name, name) if name else None

        # the analysis that names the units also sorts, flags and searches them (when it
        # declares those); otherwise the first analysis that declares each one
        names = columns.title is not None and grid.title is None
        if names:
            grid.title, grid.thumbnails_from = renamed(columns.title), item.analysis
        if columns.score and (grid.score is None or names):
            grid.score = renamed(columns.score)
        if columns.flag and (grid.flag is None or names):
            grid.flag, grid.flag_label = renamed(columns.flag), columns.flag_label
        if columns.search and (grid.search is None or names):
            grid.search = renamed(columns.search)
        merged = frame if merged is None else merged.merge(frame, on="unit", how="outer")
    if merged is not None:
        merged["unit"] = merged["unit"].astype(int)
        if grid.flag is not None:
            merged[grid.flag] = merged[grid.flag].astype("boolean").fillna(False).astype(bool)
        grid.frame = merged.sort_values("unit").reset_index(drop=True)
    return grid


def thumbnail_sources(view: DashRunView, grid: UnitGrid) -> list[str]:
    """Analyses to ask for card pictures: the one naming the units first, then the others."""
    names = view.completed()
    first = [grid.thumbnails_from] if grid.thumbnails_from in names else []
    return [*first, *(n for n in names if n not in first)]


def card_pictures(view: DashRunView, grid: UnitGrid, layer: str, units: list[int],
                  size: int = 128) -> dict[int, bytes]:
    """``{unit: png}`` for the cards shown (first analysis with a picture wins; cached)."""
    from probe.views.contributions import call_hook

    def compute() -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for name in thumbnail_sources(view, grid):
            wanted = [u for u in units if u not in out]
            if not wanted:
                break
            item = call_hook(name, "unit_thumbnails", view, layer, wanted, size)
            if not item.problem and isinstance(item.value, dict):
                out.update({int(k): v for k, v in item.value.items() if isinstance(v, bytes)})
        return out
    return view.source.memo(view.run, ("unit-cards", layer, tuple(units), size), compute)


def search_units(view: DashRunView, text: str, limit: int = 200) -> pd.DataFrame:
    """Units of every layer whose searchable column (concept name) contains ``text``."""
    text = text.strip().lower()
    rows: list[dict[str, Any]] = []
    if not text:
        return pd.DataFrame(rows)
    for layer in view.layers:
        grid = unit_grid(view, layer)
        if grid.search is None or grid.search not in grid.frame:
            continue
        hits = grid.frame[grid.frame[grid.search].astype(str).str.lower().str.contains(
            text, regex=False)]
        for record in hits.to_dict("records"):
            rows.append({"layer": layer, "unit": int(record["unit"]),
                         "concept": record.get(grid.search),
                         "score": record.get(grid.score) if grid.score else None,
                         "flagged": bool(record.get(grid.flag)) if grid.flag else None,
                         "href": view.unit_link(layer, int(record["unit"]))})
    frame = pd.DataFrame(rows)
    if not frame.empty and frame["score"].notna().any():
        frame = frame.sort_values("score", ascending=False, kind="stable")
    return frame.head(limit)
