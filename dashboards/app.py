"""The app shell: pages from ``pages/``, a navigation bar from the page registry.

Each page module in ``pages/`` registers itself with ``dash.register_page``,
defines ``layout`` and holds its own short callbacks; figures come from
:mod:`probe.dashboards.figures`. Plugin pages (``PageSpec`` with
``placement="page"``) are registered here at ``/plugin/<name>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import dash
from dash import ALL, Dash, Input, Output, dcc, html

from probe.dashboards import routes
from probe.dashboards.data import CONFIG_KEY, RunSource, set_source

PACKAGE_DIR = Path(__file__).resolve().parent
PAGES_DIR = PACKAGE_DIR / "pages"
ASSETS_DIR = PACKAGE_DIR / "assets"


def _forget_stale_callbacks() -> None:
    # Dash re-executes the page modules for every app it builds, and their
    # ``dash.callback`` registrations land in process-wide lists that only the
    # first served app drains; clearing them first keeps a second app in the
    # same process (tests, benchmarks) from inheriting duplicates.
    from dash import _callback

    _callback.GLOBAL_CALLBACK_LIST.clear()
    _callback.GLOBAL_CALLBACK_MAP.clear()
    _callback.GLOBAL_INLINE_SCRIPTS.clear()


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
    _forget_stale_callbacks()
    app = Dash("probe.dashboards", use_pages=True, pages_folder=str(PAGES_DIR),
               assets_folder=str(ASSETS_DIR), title=title,
               suppress_callback_exceptions=True, on_error=routes.callback_error)
    app.server.config[CONFIG_KEY] = source
    from probe.dashboards.plugin_pages import register_plugin_pages

    register_plugin_pages()
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
