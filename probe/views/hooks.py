"""The view hooks every analysis has: what it shows on each page and in the report.

:class:`AnalysisViews` is a base of :class:`probe.Analysis`; built-in and
third-party analyses override the same classmethods, and the dashboard and
the report call nothing else. Every hook takes a :class:`~probe.views.RunView`
(and a layer, a unit) and returns blocks from :mod:`probe.views.blocks`. The
defaults read only what the analysis declares in ``tables``, so an analysis
that overrides nothing still gets a layer summary, a units-page column set, a
unit panel, a comparison across runs and a report section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from probe.views.blocks import Facts, Figure, Headline, Note, Section, Table, UnitColumns
from probe.views.format import heading, layer_depth
from probe.views.run_view import RunView

#: Layers a report shows in detail by default (first, middle, last).
REPORT_LAYERS = 3
#: Declared columns that index rows rather than measure something.
INDEX_COLUMNS = frozenset({"layer", "unit", "rank", "image"})


class AnalysisViews:
    """View hooks of an analysis (all classmethods, all optional).

    Where each one appears:

    ============================  ==================================================
    ``run_views(run)``            the analysis's section of the report, the
                                  dashboard's Analyses page
    ``layer_views(run, layer)``   the Layers page, one section per layer; the report
    ``unit_views(run, layer, u)`` the unit page, one section per analysis
    ``layer_summary(run)``        columns of the per-layer summary table (Layers
                                  page, report, Compare page)
    ``unit_columns(run, layer)``  columns, title, sort and flag of the Units page
    ``unit_thumbnails(...)``      the pictures on the Units page's cards
    ``compare_figures(runs)``     the Compare page and the report's comparison
    ``headlines(run)``            numbers on the report's one-page summary
    ``report_sections(run)``      the report's sections for this analysis
    ============================  ==================================================
    """

    name: ClassVar[str] = ""
    tables: ClassVar[Mapping[str, Sequence[str]]] = {}
    #: Modules (import paths) holding the hooks as plain functions named after them
    #: (``def unit_views(run, layer, unit)``); the first module that has one wins.
    #: A hook overridden on the class wins over both.
    views_from: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _view_function(cls, hook: str) -> Any:
        """The function implementing ``hook`` in :attr:`views_from`, or ``None``."""
        import importlib

        for path in cls.views_from:
            function = getattr(importlib.import_module(path), hook, None)
            if callable(function):
                return function
        return None

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        """Plotly figures from the tables alone (the simplest view; used by ``run_views``)."""
        return []

    @classmethod
    def run_views(cls, run: RunView) -> list[Any]:
        """Run-level blocks; by default :meth:`figures` of the run's tables."""
        if (function := cls._view_function("run_views")) is not None:
            return function(run)
        return [Figure(f, name=f"{cls.name}-{i}")
                for i, f in enumerate(cls.figures(run.tables(cls.name)) or [])]

    @classmethod
    def layer_views(cls, run: RunView, layer: str) -> list[Any]:
        """Blocks about one layer; by default the layer's rows of each per-layer table."""
        if (function := cls._view_function("layer_views")) is not None:
            return function(run, layer)
        out: list[Any] = []
        for table, columns in cls.tables.items():
            if "layer" not in columns or "unit" in columns:
                continue
            frame = run.table(cls.name, table, layer=layer)
            if frame is not None and not frame.empty:
                out.append(Table(frame.drop(columns=["layer"]), caption=f"table {table}",
                                 name=f"{cls.name}-{table}"))
        return out

    @classmethod
    def unit_views(cls, run: RunView, layer: str, unit: int) -> list[Any]:
        """Blocks about one unit; by default its row of each one-row-per-unit table."""
        if (function := cls._view_function("unit_views")) is not None:
            return function(run, layer, unit)
        out: list[Any] = []
        for table in per_unit_tables(cls):
            rows = run.unit_rows(cls.name, table, layer, unit)
            if rows is None or rows.empty:
                continue
            row = rows.iloc[0]
            items = [(heading(c), row[c]) for c in cls.tables[table]
                     if c not in INDEX_COLUMNS and c in row.index]
            if items:
                out.append(Facts(items, name=f"{cls.name}-{table}"))
        return out

    @classmethod
    def layer_summary(cls, run: RunView) -> Table | None:
        """One row per layer (``layer`` + columns); by default means of declared measures.

        Float columns are averaged, booleans give the share of units; integer
        columns (counts, indices, sizes) and tables with several rows per unit are
        left out, so nothing meaningless such as a mean layer index appears.
        """
        if (function := cls._view_function("layer_summary")) is not None:
            return function(run)
        frames = []
        for table in per_unit_tables(cls):
            frame = run.table(cls.name, table, columns=cls.tables[table])
            if frame is None or frame.empty:
                continue
            measures = [c for c in cls.tables[table] if c not in INDEX_COLUMNS
                        and c in frame.columns and (pd.api.types.is_float_dtype(frame[c])
                                                    or pd.api.types.is_bool_dtype(frame[c]))]
            if not measures:
                continue
            grouped = frame.assign(layer=frame["layer"].astype(str)).groupby("layer", sort=False)
            summary = grouped[measures].mean(numeric_only=False)
            summary.columns = [f"{'share' if frame[c].dtype == bool else 'mean'} {heading(c)}"
                               for c in measures]
            frames.append(summary)
        if not frames:
            return None
        merged = pd.concat(frames, axis=1)
        merged = merged.loc[:, ~merged.columns.duplicated()].reset_index()
        return Table(merged, caption=f"{cls.name} per layer", name=f"{cls.name}-layers")

    @classmethod
    def unit_columns(cls, run: RunView, layer: str) -> UnitColumns | None:
        """The Units page's columns; by default the declared one-row-per-unit measures."""
        if (function := cls._view_function("unit_columns")) is not None:
            return function(run, layer)
        frames = []
        for table in per_unit_tables(cls):
            frame = run.table(cls.name, table, columns=cls.tables[table], layer=layer)
            if frame is None or frame.empty:
                continue
            keep = ["unit", *(c for c in cls.tables[table] if c not in INDEX_COLUMNS
                              and c in frame.columns)]
            frames.append(frame[keep].set_index("unit"))
        if not frames:
            return None
        merged = pd.concat(frames, axis=1)
        merged = merged.loc[:, ~merged.columns.duplicated()].reset_index()
        return UnitColumns(merged)

    @classmethod
    def unit_thumbnails(cls, run: RunView, layer: str, units: Sequence[int],
                        size: int = 96) -> dict[int, bytes]:
        """PNG thumbnails ``{unit: png}`` for the Units page's cards (none by default)."""
        if (function := cls._view_function("unit_thumbnails")) is not None:
            return function(run, layer, units, size)
        return {}

    @classmethod
    def compare_figures(cls, runs: Sequence[RunView]) -> list[Any]:
        """Blocks comparing runs; by default each layer-summary column by relative depth.

        Runs of different architectures line up by relative depth (first layer 0,
        last layer 1); all runs share one y-scale per measure.
        """
        if (function := cls._view_function("compare_figures")) is not None:
            return function(runs)
        import plotly.graph_objects as go

        summaries = []
        for run in runs:
            table = cls.layer_summary(run)
            if table is not None:
                summaries.append((run, table))
        if len(summaries) < 2:
            return []
        columns = [c for c in summaries[0][1].frame.columns if c != "layer"
                   and pd.api.types.is_numeric_dtype(summaries[0][1].frame[c])]
        out: list[Any] = []
        for column in columns[:6]:
            fig = go.Figure()
            for run, table in summaries:
                frame = table.frame
                if column not in frame.columns:
                    continue
                order = [layer for layer in run.layers if layer in set(frame["layer"])] or \
                    list(frame["layer"])
                depth = layer_depth(order)
                rows = frame.set_index("layer").reindex(order)
                fig.add_trace(go.Scatter(x=[depth[x] for x in order],
                                         y=rows[column].astype(float), mode="lines+markers",
                                         name=run.label, text=order,
                                         hovertemplate="%{text}: %{y:.4g}"))
            label = table.labels.get(column, column) if summaries else column
            fig.update_layout(title=f"{label} by relative depth", height=340,
                              xaxis={"title": "relative depth (first layer 0, last 1)",
                                     "range": [-0.05, 1.05]}, yaxis_title=label)
            out.append(Figure(fig, caption="One line per run; runs of different depth line "
                              "up by relative depth.", name=f"{cls.name}-compare-{len(out)}"))
        return out

    @classmethod
    def headlines(cls, run: RunView) -> list[Headline]:
        """The few numbers of this analysis on the report's first page (none by default)."""
        if (function := cls._view_function("headlines")) is not None:
            return function(run)
        return []

    @classmethod
    def report_sections(cls, run: RunView) -> list[Section]:
        """The report's sections: run-level views, then the layer views of a few layers.

        A report is read page by page: by default it shows the first, the middle and
        the last layer that have views (:data:`REPORT_LAYERS`), and says where the
        others are (the dashboard's Layers page; every table in the appendix).
        """
        if (function := cls._view_function("report_sections")) is not None:
            return function(run)
        sections = [Section(cls.name, cls.run_views(run), analysis=cls.name)]
        analysed = analysed_layers(cls, run)
        shown = representative(analysed, REPORT_LAYERS)
        for layer in shown:
            blocks = cls.layer_views(run, layer)
            if blocks:
                sections.append(Section(f"{cls.name} · {layer}", blocks, analysis=cls.name,
                                        layer=layer))
        others = [layer for layer in analysed if layer not in shown]
        if others and len(sections) > 1:
            sections[0] = Section(cls.name, [*sections[0].blocks, Note(
                f"Layer by layer below: {', '.join(shown)}. The other {len(others)} layers "
                f"({', '.join(others[:6])}{', …' if len(others) > 6 else ''}) are on the "
                f"dashboard's Layers page; all their numbers are in the appendix.")],
                analysis=cls.name)
        return sections


def analysed_layers(cls: Any, run: RunView) -> list[str]:
    """The run's layers (in network order) that have rows in the analysis's tables.

    An analysis with its own ``layers`` option (the lenses) covers only some of the
    run's layers; the report shows those, not layers it never looked at. When no
    table has a ``layer`` column, every layer of the run counts.
    """
    seen: set[str] = set()
    found_layer_column = False
    for table, columns in cls.tables.items():
        if "layer" not in columns:
            continue
        frame = run.table(cls.name, table, columns=["layer"])
        if frame is None or "layer" not in frame.columns:
            continue
        found_layer_column = True
        seen.update(frame["layer"].astype(str).unique())
    if not found_layer_column:
        return list(run.layers)
    return [layer for layer in run.layers if layer in seen]


def representative(layers: Sequence[str], count: int) -> list[str]:
    """Up to ``count`` layers spread over the network: first, last and evenly between."""
    if len(layers) <= count:
        return list(layers)
    picks = sorted({round(i * (len(layers) - 1) / (count - 1)) for i in range(count)})
    return [layers[i] for i in picks]


def per_unit_tables(cls: Any) -> list[str]:
    """Declared tables with one row per unit (``layer`` and ``unit``, no ``rank``)."""
    return [t for t, cols in cls.tables.items()
            if "layer" in cols and "unit" in cols and "rank" not in cols]


def finite(values: Any) -> np.ndarray:
    """Values as floats with infinities as NaN (left out of means and plots)."""
    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, np.nan)
