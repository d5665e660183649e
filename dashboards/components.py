"""Small layout pieces shared by the pages (no data access, no callbacks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from dash import dash_table, dcc, html

#: How to make each built-in analysis, for the "run it" hints.
RUN_HINTS = {
    "unit-stats": "probe run --arch ARCH --dataset DATA --analysis unit-stats --out RUN",
    "dissection": "probe run --arch ARCH --dataset DATA --analysis dissection --out RUN",
    "filters": "probe run --arch ARCH --analysis filters --out RUN",
    "equivariance": "probe run --arch ARCH --dataset DATA --analysis equivariance --out RUN",
}


def notice(*children: Any, id: str | None = None) -> html.Div:
    """A highlighted one-paragraph message."""
    props = {"id": id} if id else {}
    return html.Div(list(children), className="notice", **props)


def missing(analysis: str, run: str, what: str = "", key: str = "") -> html.Div:
    """The message a page shows when the run lacks an analysis (``key`` keeps ids unique)."""
    hint = RUN_HINTS.get(analysis, f"probe run ... --analysis {analysis} ...")
    return notice(f"This run ({run}) has no {analysis}{' — ' + what if what else ''}. "
                  f"To add it, run ", html.Code(hint.replace("RUN", run)), ".",
                  id=f"missing-{analysis}" + (f"-{key}" if key else ""))


def run_dropdown(id: str, names: Sequence[str], value: str | None,
                 label: str = "run") -> html.Div:
    """A labelled run selector."""
    return html.Div([html.Label(label), dcc.Dropdown(id=id, options=list(names), value=value,
                                                      clearable=False)])


def scalar_columns(frame: pd.DataFrame) -> list[str]:
    """Columns a DataTable can show (drops arrays such as stored activation maps)."""
    out = []
    for column in frame.columns:
        series = frame[column]
        if series.dtype == object and len(series) and not isinstance(
                series.iloc[0], (str, int, float, bool, type(None))):
            continue
        out.append(column)
    return out


def table(frame: pd.DataFrame, id: str, page_size: int = 20,
          markdown: Sequence[str] = (), native: bool = True) -> dash_table.DataTable:
    """A DataTable of a DataFrame's scalar columns with native sort and filter."""
    shown = frame[scalar_columns(frame)]
    columns = [{"name": c, "id": c, **({"presentation": "markdown"} if c in markdown else {})}
               for c in shown.columns]
    return dash_table.DataTable(
        id=id, columns=columns, data=shown.round(4).to_dict("records"), page_size=page_size,
        sort_action="native" if native else "none", filter_action="native" if native else "none",
        markdown_options={"link_target": "_self"}, style_table={"overflowX": "auto"},
        style_cell={"fontSize": "0.85rem", "padding": "2px 6px", "textAlign": "left",
                    "whiteSpace": "normal", "height": "auto", "maxWidth": "28rem"})


def graph(figure: Any, id: str) -> dcc.Graph:
    """A plotly figure without the mode bar's logo."""
    return dcc.Graph(id=id, figure=figure, config={"displaylogo": False})
