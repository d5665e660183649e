"""One unit, at a permanent link ``/unit/<run>/<layer>/<unit>``.

Rendered on the server from the URL: the title and navigation, a slot per
analysis (:mod:`probe.dashboards.slots`) that its ``unit_views`` hook fills
(headed with the analysis, layer and unit), then the unit panels plugins
register as Dash components. Left/right arrow keys move to the
previous/next unit.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
from dash import dcc, html

from probe.dashboards.components import notice, suggestions
from probe.dashboards.data import RunSource, get_source
from probe.dashboards.plugin_pages import panels
from probe.dashboards.render import plain_figures, slug, view_section
from probe.dashboards.run_view import DashRunView, unit_href
from probe.dashboards.slots import (
    render_ahead,
    renders,
    run_section,
    slot,
    slot_id,
    slot_ident,
    with_kept,
)
from probe.dashboards.unit_data import unit_grid
from probe.errors import ProbeError
from probe.views.contributions import call_hook

__all__ = ["layout", "parse_unit", "register", "render_page", "unit_href", "unit_sections",
           "unit_views_section"]


def register(app: dash.Dash) -> None:
    """Add this page to ``app`` (it has no callbacks: everything comes from the URL)."""
    dash.register_page(__name__, path_template="/unit/<run>/<layer>/<unit>", name="Unit",
                       title="probe: unit", nav=False, layout=layout)


def parse_unit(unit: object) -> int:
    """A unit number from the URL.

    Raises:
        ProbeError: when it is not a non-negative integer.
    """
    text = str(unit)
    if not text.isdigit() or len(text) > 9:
        raise ProbeError(f"unit must be a non-negative integer, got {unit!r}")
    return int(text)


def layout(run: str | None = None, layer: str | None = None, unit: str | None = None,
           **_: Any) -> html.Div:
    """The unit page (rendered once per run, layer and unit, then served from memory)."""
    source = get_source()
    try:
        run_obj = source.run(run)
        layer = source.check_layer(run_obj, layer)
        number = parse_unit(unit)
    except ProbeError as exc:
        return html.Div([html.H2("Unit"), notice(str(exc), id="unit-error")])
    page = kept_page(source, run_obj, layer, number)
    # the next unit is likely in the same run: decode its per-unit tables in the background,
    # then render its neighbours' pages (← → keys, next/previous links)
    source.prefetch(run_obj, then=lambda: render_neighbours(source, run_obj, layer, number))
    return whole_page(source, run_obj, layer, number, page)


def whole_page(source: RunSource, run: Any, layer: str, unit: int, page: Any) -> Any:
    """``page`` with the sections answered before (or rendered ahead) in it; kept once every
    section is, so a page seen whole is served as it is."""
    found, whole = source.kept(run, ("unit-page-whole", layer, unit), pages=True)
    if found:
        return whole
    filled = with_kept(page)
    if filled is not page and not any(slot_ident(c) for c in filled.children):
        source.page(run, ("unit-page-whole", layer, unit), lambda: filled)
    return filled


def kept_page(source: RunSource, run: Any, layer: str, unit: int) -> html.Div:
    """The unit's page with its sections in slots, rendered once and kept (a page that met
    a problem is not kept)."""
    return source.page(run, ("unit-page", layer, unit),
                       lambda: render_page(source, run, layer, unit),
                       keep=lambda result: not result[1])[0]


def render_neighbours(source: RunSource, run: Any, layer: str, unit: int) -> None:
    """Render and keep the pages of units ``unit + 1`` and ``unit - 1``, every section
    included, so moving to either finds it ready (called in the background, when quiet)."""
    count = unit_grid(DashRunView(source, run), layer).units or None
    for other in (unit + 1, unit - 1):
        if other < 0 or (count is not None and other >= count):
            continue
        kept_page(source, run, layer, other)
        render_ahead(section_id(run.name, layer, other, name) for name in source.completed(run))


def section_id(run: str, layer: str, unit: int, analysis: str) -> dict[str, Any]:
    """The slot id of one analysis's section of one unit's page."""
    return slot_id("unit", run=run, layer=layer, unit=unit, analysis=analysis)


def render_page(source: RunSource, run: Any, layer: str, unit: int) -> tuple[html.Div, list[str]]:
    """The unit page and the problems met (a page with problems is not kept)."""
    problems: list[str] = []
    page = html.Div(unit_sections(source, run, layer, unit, problems), id="unit-page")
    return plain_figures(page), problems


def unit_sections(source: RunSource, run: Any, layer: str, unit: int,
                  problems: list[str] | None = None) -> list[Any]:
    """The title, navigation and a slot per analysis for its views of this unit."""
    problems = [] if problems is None else problems
    view = DashRunView(source, run)
    grid = unit_grid(view, layer)
    problems.extend(grid.problems)
    count = grid.units or None
    if count is not None and unit >= count:
        return [html.H2("Unit"), notice(f"layer {layer} of run {run.name} has {count} units; "
                                        f"there is no unit {unit}", id="unit-error")]
    nav: list[Any] = [dcc.Link("← units of this layer",
                               href=f"/units?run={quote(run.name)}&layer={quote(layer)}"), " · "]
    if unit > 0:
        nav += [dcc.Link("← previous", href=unit_href(run.name, layer, unit - 1),
                         id="unit-prev"), " · "]
    if count is None or unit + 1 < count:
        nav += [dcc.Link("next →", href=unit_href(run.name, layer, unit + 1), id="unit-next"),
                " · "]
    nav += ["permalink: ", html.Code(unit_href(run.name, layer, unit)),
            html.Span(" (← → keys move between units)", className="caption")]
    out: list[Any] = [html.H2(f"{run.name} · {layer} · unit {unit}", id="unit-title"),
                      html.P(nav)]
    out.extend(slot("unit", run=run.name, layer=layer, unit=unit, analysis=name)
               for name in view.completed())
    if not view.completed():
        out.append(notice(f"No analysis of run {run.name} shows units.", id="unit-empty"))
    out.extend(panels("unit", run, layer=layer, unit=unit))
    out.extend(suggestions(view, "unit"))
    return out


@renders("unit")
def unit_views_section(run: str, layer: str, unit: int, analysis: str) -> Any:
    """One analysis's views of one unit (``unit_views``), headed ``analysis · layer · unit``.

    Kept with the unit pages; not kept while the run's data set cannot be loaded
    (its pictures would be missing), nor when the hook met a problem.
    """

    def build(view: DashRunView) -> tuple[Any, str | None]:
        item = call_hook(analysis, "unit_views", view, layer, unit)
        problem = item.problem
        if problem is None and view.why_no_images() and \
                (view.run.manifest.get("dataset") or {}).get("name"):
            problem = "data set not loaded"  # try again later
        if not item.blocks:
            return None, problem
        return (view_section(f"{analysis} · {layer} · unit {unit}", item.blocks,
                             slug("unit", analysis), analysis), problem)

    return run_section(run, ("unit-section", layer, unit, analysis), build, pages=True)
