"""The app shell: pages from ``pages/``, a navigation bar from the page registry.

Each page module in ``pages/`` defines ``layout`` and ``register(app)``, which
registers the page and adds its callbacks to that app; what pages show comes
from the analyses' view hooks rendered by :mod:`probe.dashboards.render`.
Plugin pages (``PageSpec`` with ``placement="page"``) are registered here at
``/plugin/<name>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import dash
from dash import ALL, MATCH, Dash, Input, Output, dcc, html

from probe.dashboards import routes, slots
from probe.dashboards.data import CONFIG_KEY, RunSource, set_source
from probe.dashboards.pages import analysis, compare, layers, runs, unit, units

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
#: The app's own pages, each with ``register(app)``.
PAGES = (runs, layers, units, compare, analysis, unit)


def export_csv(clicks: object) -> bool:
    """A table's CSV button: tell its grid to download its rows as CSV."""
    return bool(clicks)


def create_app(runs_dir: str | Path, *, title: str = "probe") -> Dash:
    """Build the dashboard for the runs under ``runs_dir`` (nothing is read yet).

    Args:
        runs_dir: A folder of run directories, or a single run directory.
        title: Browser tab title.

    Raises:
        ProbeError: when ``runs_dir`` is not a folder.
    """
    source = RunSource(runs_dir)
    set_source(source)
    # Pages are registered explicitly (no folder import), and every callback is added
    # to this app with ``app.callback``: a second app in one process gets its own.
    app = Dash("probe.dashboards", use_pages=True, pages_folder="",
               assets_folder=str(ASSETS_DIR), title=title,
               suppress_callback_exceptions=True, on_error=routes.callback_error)
    app.server.config[CONFIG_KEY] = source
    from probe.dashboards.plugin_pages import register_plugin_pages

    for key in [k for k in dash.page_registry if k.startswith("probe.dashboards.pages.")]:
        del dash.page_registry[key]
    for page in PAGES:
        page.register(app)
    slots.register(app)
    register_plugin_pages()
    app.callback(Output({"type": "probe-grid", "id": MATCH}, "exportDataAsCsv"),
                 Input({"type": "probe-grid-csv", "id": MATCH}, "n_clicks"),
                 prevent_initial_call=True)(export_csv)
    app.layout = shell
    app.callback(Output({"type": "app-nav", "path": ALL}, "href"),
                 Input("_pages_location", "pathname"),
                 Input("_pages_location", "search"))(carry_run)
    routes.add_routes(app.server)
    routes.harden(app)
    return app


def nav_pages() -> list[dict[str, Any]]:
    """Registered pages that appear in the navigation bar, in their ``order``."""
    pages = [p for p in dash.page_registry.values() if p.get("nav", False)]
    return sorted(pages, key=lambda p: (p.get("order") if p.get("order") is not None else 99,
                                        p["name"]))


def shell() -> html.Div:
    """The whole page: header, navigation, the current page."""
    links = [dcc.Link(page["name"], href=page["relative_path"],
                      id={"type": "app-nav", "path": page["path"]}, className="nav-link")
             for page in nav_pages()]
    return html.Div([
        html.Header([html.Span("probe", className="brand"), html.Nav(links, id="app-nav")],
                    className="app-header"),
        html.Main(dash.page_container, className="app-main"),
    ])


def run_from_location(pathname: str | None, search: str | None) -> str | None:
    """The run a URL is about: ``?run=NAME`` or ``/unit/<run>/...``."""
    pathname = pathname if isinstance(pathname, str) else ""
    search = search if isinstance(search, str) else ""
    query = parse_qs((search or "").lstrip("?"))
    if query.get("run"):
        return query["run"][0]
    parts = (pathname or "").strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "unit":
        return parts[1]
    return None


def carry_run(pathname: str | None, search: str | None) -> list[str]:
    """Keep the current run in every navigation link."""
    run = run_from_location(pathname, search)
    hrefs = []
    for page in nav_pages():
        href = page["relative_path"]
        hrefs.append(f"{href}?run={quote(run)}" if run else href)
    return hrefs
