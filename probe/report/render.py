"""Blocks (:mod:`probe.views.blocks`) as static HTML for the report and its PDF.

Tables are formatted for people and never run off the page: wide ones are
split into column groups (the first column repeated), long ones cut with the
count said. Legends of figures with many traces go below the plot, so they
never scroll. Pictures are inline PNGs.
"""

from __future__ import annotations

import base64
from typing import Any

import pandas as pd

from probe.report.assets import escape, figure_html
from probe.views import blocks
from probe.views.format import format_value, heading, table_layout
from probe.views.plots import legend_below

#: Most columns one printed table shows side by side (more are split into groups).
MAX_COLUMNS = 8
#: Rows a table shows in a section (the rest are in the attached CSV).
MAX_ROWS = 15


def render(block: Any) -> str:
    """One block as HTML."""
    if isinstance(block, blocks.Section):
        return section(block)
    if isinstance(block, blocks.Figure):
        return figure(block)
    if isinstance(block, blocks.Table):
        return table(block)
    if isinstance(block, blocks.Pictures):
        return pictures(block)
    if isinstance(block, blocks.Facts):
        return facts(block.items, block.formats)
    if isinstance(block, blocks.Note):
        return f'<p class="note note-{escape(block.level)}">{escape(block.text)}</p>'
    if isinstance(block, blocks.Headline):
        return facts([(block.label, block.value)], {block.label: block.format})
    if isinstance(block, blocks.Choice):
        return choice(block)
    return f'<p class="note note-warning">a view returned {escape(type(block).__name__)}, ' \
           f"which is not a view block</p>"


def choice(block: blocks.Choice) -> str:
    """Every option in turn, each under ``"{label}: {option}"`` (print cannot switch)."""
    parts = []
    for option, inner in block.options:
        title = f"{block.label}: {option}" if block.label else option
        body = "\n".join(render(b) for b in inner)
        parts.append(f'<div class="choice-option"><h5>{escape(title)}</h5>{body}</div>')
    return "\n".join(parts)


def section(block: blocks.Section, level: int = 3, anchor: str = "") -> str:
    """A titled section of rendered blocks."""
    ident = f' id="{escape(anchor)}"' if anchor else ""
    body = "\n".join(render(b) for b in block.blocks)
    return (f'<section class="view"{ident} data-analysis="{escape(block.analysis)}" '
            f'data-layer="{escape(block.layer or "")}"><h{level}>{escape(block.title)}'
            f"</h{level}>{body}</section>")


def figure(block: blocks.Figure) -> str:
    """A figure (its legend below the plot when it has many entries) and its caption."""
    fig = legend_below(block.figure)
    if isinstance(fig, dict):
        import plotly.graph_objects as go

        fig = go.Figure(fig)
    caption = f"<figcaption>{escape(block.caption)}</figcaption>" if block.caption else ""
    return f'<figure class="chart">{figure_html(fig)}{caption}</figure>'


def _cells(frame: pd.DataFrame, block: blocks.Table, columns: list[str]) -> list[list[str]]:
    rows = []
    for record in frame.to_dict("records"):
        cells = []
        for column in columns:
            text = escape(format_value(record.get(column), block.formats.get(column, "")))
            cells.append(text)
        rows.append(cells)
    return rows


def table(block: blocks.Table, max_rows: int = MAX_ROWS) -> str:
    """A table for print: headings, formatted cells, muted rows greyed, split when wide."""
    frame, columns = table_layout(block)
    if not columns:
        return ""
    shown = frame.head(max_rows)
    muted = list(shown[block.muted].astype(bool)) if block.muted else [False] * len(shown)
    note = f" (first {max_rows} of {len(frame)} rows; all rows in the appendix CSV)" \
        if len(frame) > max_rows else ""
    muted_note = f" Grey rows: {block.muted_label}." if block.muted and block.muted_label \
        and any(muted) else ""
    caption = f"<caption>{escape(block.caption)}{escape(note)}{escape(muted_note)}</caption>"
    key, rest = columns[0], columns[1:]
    groups = [rest[i:i + MAX_COLUMNS - 1] for i in range(0, len(rest), MAX_COLUMNS - 1)] or [[]]
    if len(groups) > 1 and len(groups[-1]) <= 2:  # no group of one or two orphan columns
        last = groups.pop()
        groups[-1] = groups[-1] + last
    parts = []
    for number, group in enumerate(groups):
        cols = [key, *group]
        head = "".join(f"<th>{escape(heading(c, block.labels))}</th>" for c in cols)
        body = "".join(
            f'<tr class="{"muted" if m else ""}">' + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>" for cells, m in zip(_cells(shown, block, cols), muted, strict=True))
        names = ", ".join(heading(c, block.labels) for c in group[:3])
        cap = caption if number == 0 else f"<caption>(continued: {escape(names)}…)</caption>"
        parts.append(f'<table class="data">{cap}<thead><tr>{head}</tr></thead>'
                     f"<tbody>{body}</tbody></table>")
    return "\n".join(parts)


def pictures(block: blocks.Pictures) -> str:
    """Pictures in a wrapping row with their captions."""
    items = []
    for picture in block.items:
        uri = "data:image/png;base64," + base64.b64encode(picture.png).decode("ascii")
        badge = f'<span class="badge">{escape(picture.badge)}</span>' if picture.badge else ""
        cls = "unit muted" if picture.muted else "unit"
        items.append(f'<figure class="{cls}">{badge}<img alt="{escape(picture.caption)}" '
                     f'src="{uri}"><figcaption>{escape(picture.caption)}</figcaption></figure>')
    caption = f'<p class="note">{escape(block.caption)}</p>' if block.caption else ""
    return f'{caption}<div class="units">{"".join(items)}</div>'


def facts(items: Any, formats: Any = None) -> str:
    """``(label, value)`` pairs as a two-column table."""
    formats = formats or {}
    rows = "".join(f"<tr><th>{escape(label)}</th>"
                   f"<td>{escape(format_value(value, formats.get(label, '')))}</td></tr>"
                   for label, value in items if format_value(value) != "")
    return f'<table class="meta">{rows}</table>'
