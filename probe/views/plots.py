"""Shared pieces of every figure: one colour per concept category, one per layer, layer
order, empty figures. Dashboard and report draw with these, so legends agree."""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from probe.views.columns import distinct

#: One colour per concept category, used by every chart, table and card.
CATEGORY_COLORS = {"color": "#8c564b", "texture": "#bcbd22", "material": "#17becf",
                   "part": "#ff7f0e", "object": "#1f77b4", "scene": "#2ca02c",
                   "none": "#c7c7c7"}
_OTHER_CATEGORIES = ("#9467bd", "#e377c2", "#7f7f7f", "#d62728", "#aec7e8", "#98df8a")

#: Twenty distinguishable colours for layers (Kelly's list without white and black).
LAYER_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31",
                "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363")


def category_color(category: object, index: int = 0) -> str:
    """The colour of a concept category (fixed for the known ones)."""
    return CATEGORY_COLORS.get(str(category), _OTHER_CATEGORIES[index % len(_OTHER_CATEGORIES)])


def layer_color(index: int) -> str:
    """The colour of the ``index``-th layer (distinct for up to 20)."""
    return LAYER_COLORS[index % len(LAYER_COLORS)]


def ordered_unique(series: pd.Series) -> list[str]:
    """Distinct values as strings, in order of first appearance."""
    return [str(x) for x in distinct(series)]


def layer_order(*frames: pd.DataFrame | None, layers: Sequence[str] | None = None) -> list[str]:
    """Layers in network order: ``layers`` first, then any others by first appearance."""
    out = list(layers or [])
    for frame in frames:
        if frame is not None and "layer" in frame:
            out.extend(x for x in ordered_unique(frame["layer"]) if x not in out)
    return out


def empty_figure(message: str, title: str = "") -> Any:
    """A blank figure that says ``message``."""
    return figure([], {"annotations": [{"font": {"size": 14}, "showarrow": False,
                                        "text": message, "x": 0.5, "xref": "paper", "y": 0.5,
                                        "yref": "paper"}],
                       "xaxis": {"visible": False}, "yaxis": {"visible": False},
                       "title": {"text": title}, "height": 260})


def legend_below(figure: Any, most: int = 6) -> Any:
    """``figure`` (a plotly figure or its dict) with its legend under the plot when it has more
    than ``most`` entries, taller by the rows it takes, so a legend never scrolls.

    A figure's JSON form (``to_plotly_json()``, template included) comes back a dict
    (a new one: the one given is left as it is), a figure the same figure, updated.
    """
    if isinstance(figure, dict) and "template" in (figure.get("layout") or {}):
        return _legend_below_plain(figure, most)
    import plotly.graph_objects as go

    fig = go.Figure(figure) if isinstance(figure, dict) else figure
    entries = sum(1 for trace in fig.data if trace.showlegend is not False)
    if entries <= most:
        return figure
    rows = entries // 4 + 1
    change = _legend_below(rows)
    fig.update_layout(legend=change["legend"], height=(fig.layout.height or 400) + 24 * rows,
                      margin=change["margin"])
    return fig


def _legend_below(rows: int) -> dict[str, Any]:
    return {"legend": {"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0,
                       "xanchor": "left"},
            "margin": {"b": 60 + 24 * rows}}


def _legend_below_plain(figure: dict[str, Any], most: int) -> dict[str, Any]:
    """:func:`legend_below` of a figure's JSON form, without building a plotly figure."""
    traces = figure.get("data") or []
    entries = sum(1 for trace in traces
                  if not (isinstance(trace, dict) and trace.get("showlegend") is False))
    if entries <= most:
        return figure
    rows = entries // 4 + 1
    change = _legend_below(rows)
    layout = dict(figure.get("layout") or {})
    layout["legend"] = {**(layout.get("legend") or {}), **change["legend"]}
    layout["height"] = (layout.get("height") or 400) + 24 * rows
    layout["margin"] = {**(layout.get("margin") or {}), **change["margin"]}
    return {**figure, "layout": layout}


def figure(data: Sequence[Mapping[str, Any]] = (), layout: Mapping[str, Any] | None = None,
           ) -> Any:
    """A plotly figure from its plain form: trace dicts (with ``type``) and a layout dict.

    Built without plotly's property validation, which checks and coerces every
    property of every trace and axis one by one and is most of the cost of a
    figure (``make_subplots`` and a few ``update_layout`` calls take tens of
    milliseconds). So the spec must be what plotly.js reads: full names
    (``{"title": {"text": ...}}``, not ``title_text``), arrays as lists or numpy
    arrays (``Series.to_numpy()``, as validation would make them). The result is
    an ordinary ``go.Figure`` (attributes, ``to_plotly_json``, ``to_json``); the
    default template is added as usual. ``tests/test_view_plots.py`` rebuilds
    every figure of the built-in views with validation and compares.
    """
    import plotly.graph_objects as go

    return go.Figure(data=[dict(trace) for trace in data], layout=dict(layout or {}),
                     _validate=False)


def subplots(rows: int = 1, cols: int = 1, **options: Any) -> dict[str, Any]:
    """The layout ``make_subplots(rows, cols, **options)`` makes (axes, domains, subplot
    titles), without its template, as a new dict; put traces on a cell with
    :func:`cell`. Options as ``make_subplots`` takes them (hashable values: tuples,
    not lists)."""
    return copy.deepcopy(_subplots(rows, cols, tuple(sorted(options.items()))))


@functools.lru_cache(maxsize=64)
def _subplots(rows: int, cols: int, options: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    from plotly.subplots import make_subplots

    layout = make_subplots(rows=rows, cols=cols, **dict(options)).to_plotly_json()["layout"]
    layout.pop("template", None)
    return layout


def cell(row: int, col: int, cols: int) -> dict[str, str]:
    """A trace's axes in cell (``row``, ``col``) of :func:`subplots` with ``cols`` columns,
    as ``add_trace(trace, row=row, col=col)`` sets them."""
    n = (row - 1) * cols + col
    suffix = "" if n == 1 else str(n)
    return {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}


def axes(layout: Mapping[str, Any], letter: str) -> list[str]:
    """The layout's axis keys of ``letter`` (``"x"``: ``xaxis``, ``xaxis2``, ...), in order
    (what ``update_xaxes`` without ``row``/``col`` updates)."""
    prefix = f"{letter}axis"
    return [k for k in layout if k == prefix or (k.startswith(prefix) and k[5:].isdigit())]


def hline(y: float, text: str, color: str, dash: str = "dash", xref: str = "x",
          yref: str = "y") -> tuple[dict[str, Any], dict[str, Any]]:
    """The shape and annotation ``add_hline(y, line_dash=dash, line_color=color,
    annotation_text=text)`` adds (a line across the plot, its label at the right end)."""
    shape = {"line": {"color": color, "dash": dash}, "type": "line", "x0": 0, "x1": 1,
             "xref": f"{xref} domain", "y0": y, "y1": y, "yref": yref}
    note = {"showarrow": False, "text": text, "x": 1, "xanchor": "right",
            "xref": f"{xref} domain", "y": y, "yanchor": "bottom", "yref": yref}
    return shape, note


def vline(x: float, text: str, dash: str = "dash", color: str | None = None,
          xref: str = "x", yref: str = "y", bottom: bool = False,
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shape and annotation ``add_vline(x, line_dash=dash, line_color=color,
    annotation_text=text)`` adds (a line up the plot, its label to the right of it at the
    top; at the bottom with ``bottom``, as ``annotation_position="bottom right"``)."""
    line = {"dash": dash, **({"color": color} if color else {})}
    shape = {"line": line, "type": "line", "x0": x, "x1": x, "xref": xref, "y0": 0, "y1": 1,
             "yref": f"{yref} domain"}
    note = {"showarrow": False, "text": text, "x": x, "xanchor": "left", "xref": xref,
            "y": 0 if bottom else 1, "yanchor": "bottom" if bottom else "top",
            "yref": f"{yref} domain"}
    return shape, note


def colorscale(name: str) -> list[list[Any]]:
    """A named plotly colour scale (``"RdBu_r"``, ``"Viridis"``) as the list of
    ``[position, colour]`` pairs validation makes of it (a new list)."""
    return [list(pair) for pair in _colorscale(name)]


@functools.lru_cache(maxsize=32)
def _colorscale(name: str) -> tuple[tuple[float, str], ...]:
    import plotly.graph_objects as go

    return tuple(tuple(pair) for pair in go.Heatmap(colorscale=name).to_plotly_json()
                 ["colorscale"])
