"""Compare: two runs side by side, layer by layer (by relative depth when they differ).

The runs table (with accuracy), the joined layer summaries with a difference
column, and a slot (:mod:`probe.dashboards.slots`) for each shared analysis's
``compare_figures``; no analysis named here.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Dash, Input, Output, dcc, html

from probe.dashboards.components import notice, run_dropdown
from probe.dashboards.data import RunSource, get_source
from probe.dashboards.render import grid, note, plain_figures, slug, view_section
from probe.dashboards.run_view import DashRunView
from probe.dashboards.slots import renders, slot
from probe.errors import ProbeError
from probe.views.contributions import call_hook
from probe.views.summary import options_differ, runs_table, side_by_side


def layout(a: str | None = None, b: str | None = None, run: str | None = None,
           **_: Any) -> html.Div:
    """The compare page; ``?a=RUN&b=RUN`` preselects (``run`` stands for ``a``)."""
    source = get_source()
    names = source.run_names()
    first = source.default_run(a or run)
    others = [n for n in names if n != first]
    second = b if b in names else (others[0] if others else first)
    return html.Div([
        html.H2("Compare two runs"),
        html.Div([run_dropdown("compare-a", names, first, "run A"),
                  run_dropdown("compare-b", names, second, "run B")], className="controls"),
        dcc.Loading(html.Div(compare_content(first, second), id="compare-content"),
                    type="dot"),  # in the page's own answer: no round trip before the slots
    ])


def compare_content(a: str | None, b: str | None) -> Any:
    """The side-by-side tables and every shared analysis's comparison of runs ``a`` and ``b``."""
    if not a or not b:
        return notice("Pick two runs.")
    source = get_source()
    try:
        run_a, run_b = source.run(a), source.run(b)
        key = ("compare", str(run_b.path), str(run_b.manifest.get("updated")))
        return source.memo(run_a, key, lambda: plain_figures(html.Div(
            compare_view(source, run_a, run_b))))
    except ProbeError as exc:  # an unknown run, or a damaged table of one
        return notice(str(exc), id="compare-error")


def compare_view(source: RunSource, run_a: Any, run_b: Any) -> list[Any]:
    """Runs table, layer-by-layer table with differences, then a slot per shared analysis."""
    va, vb = _views(source, run_a, run_b)
    layers, problems = side_by_side(va, vb)
    out: list[Any] = [grid(runs_table([va, vb]), "compare-runs"),
                      grid(layers, "compare-table"), *[note(p, "warning") for p in problems]]
    out.extend(slot("compare", a=run_a.name, b=run_b.name, analysis=name)
               for name in va.completed() if name in vb.completed())
    only = sorted(set(va.completed()) ^ set(vb.completed()))
    if only:
        out.append(notice("Not compared (in one run only): " + ", ".join(only),
                          id="compare-only-one"))
    return out


def _views(source: RunSource, run_a: Any, run_b: Any) -> tuple[DashRunView, DashRunView]:
    """The two runs as views, labelled by name (``(A)``/``(B)`` when both are one run)."""
    label_a, label_b = (run_a.name, run_b.name) if run_a.name != run_b.name else \
        (f"{run_a.name} (A)", f"{run_b.name} (B)")
    return DashRunView(source, run_a, label_a), DashRunView(source, run_b, label_b)


@renders("compare")
def compare_section(a: str, b: str, analysis: str) -> Any:
    """One shared analysis's ``compare_figures`` of runs ``a`` and ``b``, with a warning
    when the runs used different options for it."""
    source = get_source()
    try:
        run_a, run_b = source.run(a), source.run(b)
    except ProbeError as exc:
        return notice(str(exc), id="compare-error")

    def build() -> tuple[Any, str | None]:
        va, vb = _views(source, run_a, run_b)
        item = call_hook(analysis, "compare_figures", [va, vb])
        warning = options_differ([va, vb], analysis)
        blocks = ([warning] if warning else []) + item.blocks
        if not blocks:
            return [], item.problem
        section = view_section(f"{analysis}: {va.label} vs {vb.label}", blocks,
                               slug("compare", analysis), analysis)
        return plain_figures(section), item.problem

    key = ("compare-section", analysis, str(run_b.path), str(run_b.manifest.get("updated")))
    return source.memo(run_a, key, build, keep=lambda result: result[1] is None)[0]


def register(app: Dash) -> None:
    """Add this page and its callback to ``app``."""
    dash.register_page(__name__, path="/compare", name="Compare", title="probe: compare",
                       nav=True, order=3, layout=layout)
    app.callback(Output("compare-content", "children"), Input("compare-a", "value"),
                 Input("compare-b", "value"), prevent_initial_call=True)(compare_content)
