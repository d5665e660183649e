"""Pages and panels contributed by plugins through ``probe_register_dashboard_pages``.

A page (``placement="page"``) is served at ``/plugin/<name>?run=RUN``; panels
(``"layer"``, ``"unit"``) are rendered inside the layers and unit pages. A
view that raises shows its error in place; it never takes the page down.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import html

from probe.dashboard_api import PageSpec
from probe.dashboards.components import notice
from probe.dashboards.data import get_source
from probe.errors import ProbeError
from probe.host import get_host


def plugin_specs(placement: str | None = None) -> list[PageSpec]:
    """Registered views, optionally of one placement."""
    host = get_host()
    specs = [host.pages.get(name) for name in host.pages.names()]
    return [s for s in specs if placement is None or s.placement == placement]


def render_view(spec: PageSpec, run: Any, **where: Any) -> html.Div:
    """Render one view for a run, or say why it does not apply or what went wrong."""
    completed = {a for a in run.analyses if run.analysis_status(a) == "complete"}
    body: Any
    if not spec.applies_to(completed):
        need = ", ".join(sorted(set(spec.analyses) - completed))
        body = notice(f"{spec.title} needs {need}, which this run ({run.name}) lacks.")
    else:
        try:
            body = spec.render(run=run, **where)
        except Exception as exc:  # a plugin's failure stays inside its panel
            body = notice(f"{spec.title} failed: {type(exc).__name__}: {exc}")
    return html.Section([html.H4(spec.title), body], className="panel",
                        id=f"plugin-{spec.name}")


def panels(placement: str, run: Any, **where: Any) -> list[html.Div]:
    """Every applicable panel of one placement for a run."""
    completed = {a for a in run.analyses if run.analysis_status(a) == "complete"}
    return [render_view(spec, run, **where) for spec in plugin_specs(placement)
            if spec.applies_to(completed)]


def _page_layout(spec: PageSpec):
    def layout(run: str | None = None, **_: Any) -> html.Div:
        source = get_source()
        name = source.default_run(run)
        if name is None:
            return notice("No runs found.")
        try:
            return html.Div([html.H2(spec.title), html.P(f"run: {name}"),
                             render_view(spec, source.run(name))])
        except ProbeError as exc:
            return notice(str(exc))
    return layout


def register_plugin_pages() -> None:
    """Register every plugin page with Dash (call after the app is created).

    Pages of plugins from an earlier app in this process are dropped first.
    """
    for key in [k for k in dash.page_registry if k.startswith("probe_plugin_")]:
        del dash.page_registry[key]
    for spec in plugin_specs("page"):
        dash.register_page(f"probe_plugin_{spec.name}", path=f"/plugin/{spec.name}",
                           name=spec.title, title=spec.title, layout=_page_layout(spec),
                           nav=True, order=50)
