"""The blocks a view is made of: figures, tables, pictures, facts, notes, sections.

An analysis describes what it shows as a list of these plain values; the
dashboard and the report each render them (interactive grid and graph, or
static HTML and PDF), so one view function serves both. Nothing here imports
Dash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Figure:
    """A plotly figure.

    Args:
        figure: A ``plotly.graph_objects.Figure`` (or its JSON dict).
        caption: One or two sentences under the figure: what is plotted and how to read it.
        name: Short file-safe name (element id, download file name).
    """

    figure: Any
    caption: str = ""
    name: str = "figure"


@dataclass(frozen=True)
class Table:
    """A table for people: labelled, formatted, sortable.

    Args:
        frame: The rows (scalar columns only are shown; arrays stay out).
        caption: What the table holds.
        name: Short file-safe name (element id, CSV file name).
        labels: ``{column: heading}``; columns not named keep their own name.
        formats: ``{column: format}`` with ``"int"``, ``"percent"``, ``"fixed2"``,
            ``"fixed3"``, ``"sci"`` or ``"text"``; floats default to 4 significant digits.
        links: ``{column: href column}``: the cell links to the href column's value
            (the href column itself is not shown).
        muted: A boolean column; its true rows are shown greyed (e.g. units below
            a threshold), with ``muted_label`` saying why.
        sort: ``(column, descending)`` initial order.
        hidden: Columns kept for links or muting but not shown.
    """

    frame: pd.DataFrame
    caption: str = ""
    name: str = "table"
    labels: Mapping[str, str] = field(default_factory=dict)
    formats: Mapping[str, str] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    muted: str | None = None
    muted_label: str = ""
    sort: tuple[str, bool] | None = None
    hidden: Sequence[str] = ()


@dataclass(frozen=True)
class Picture:
    """One small image (PNG bytes) with a caption.

    Args:
        png: The encoded image.
        caption: Text under the picture.
        href: Where a click leads (a unit page); ``None``: the picture enlarges.
        muted: Greyed and marked (a unit that fails the criterion).
        badge: A short label drawn on the card (a word such as ``"selective"``).
    """

    png: bytes
    caption: str = ""
    href: str | None = None
    muted: bool = False
    badge: str = ""


@dataclass(frozen=True)
class Pictures:
    """A row (wrapping) of pictures."""

    items: Sequence[Picture]
    caption: str = ""
    name: str = "pictures"


@dataclass(frozen=True)
class Facts:
    """A short list of ``(label, value)`` pairs (a unit's statistics, a layer's numbers)."""

    items: Sequence[tuple[str, Any]]
    name: str = "facts"
    formats: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Note:
    """A sentence the reader must see: ``level`` is ``"info"`` or ``"warning"``."""

    text: str
    level: str = "info"


@dataclass(frozen=True)
class Section:
    """A titled group of blocks, belonging to one analysis and optionally one layer."""

    title: str
    blocks: Sequence[Any]
    analysis: str = ""
    layer: str | None = None


@dataclass(frozen=True)
class Choice:
    """Alternative views of one thing, one shown at a time.

    The dashboard shows one tab per option (the first open; switching happens in
    the browser, nothing is recomputed); the report, which cannot switch, shows every
    option in turn under ``"{label}: {option}"``.

    Args:
        options: ``(option label, blocks)`` per option, in the order offered.
        label: What is chosen (``"method"``).
        name: Element id stem.
    """

    options: Sequence[tuple[str, Sequence[Any]]]
    label: str = ""
    name: str = "choice"


@dataclass(frozen=True)
class Headline:
    """One number of a run's one-page summary (``"units analysed"``).

    Args:
        label: What the number is.
        value: The number or short text (formatted with ``format``).
        detail: A few words of context (``"of 1,152 units"``).
        format: As in :class:`Table`'s ``formats``.
    """

    label: str
    value: Any
    detail: str = ""
    format: str = ""


@dataclass(frozen=True)
class UnitColumns:
    """An analysis's columns of the units page for one layer (one row per unit).

    Args:
        frame: ``unit`` plus the columns to show.
        labels: ``{column: heading}``.
        formats: As in :class:`Table`.
        title: Column naming each unit on its card, if the analysis names units.
        score: Column the units are sorted by by default (descending).
        flag: Boolean column marking the units that pass the analysis's criterion;
            the others are shown greyed, and a "flagged only" toggle hides them.
        flag_label: What a flagged unit is (a word such as ``"selective"``).
        search: Column searched by the units page's search box (names of concepts).
    """

    frame: pd.DataFrame
    labels: Mapping[str, str] = field(default_factory=dict)
    formats: Mapping[str, str] = field(default_factory=dict)
    title: str | None = None
    score: str | None = None
    flag: str | None = None
    flag_label: str = ""
    search: str | None = None


#: Every block a view may return.
BLOCKS = (Figure, Table, Pictures, Facts, Note, Section, Choice)
