"""Sections that fill themselves: a page shows at once, each analysis's views follow.

A page puts a :func:`slot` where one analysis's section goes (the layers page
one per analysis, the unit page one per analysis of the unit, ...). One
pattern-matching callback per app (:func:`register`) answers every slot when it
appears, by calling the renderer its page registered with :func:`renders`. So
the browser asks for the sections side by side, the page's own answer carries
only its frame (summary, navigation), a slow analysis never holds up the
others, and a failing one fails in its own place. Each renderer keeps its own
result in the run's memo, so a section is computed once per run, not per page.

A page whose sections are kept already can send them filled (:func:`with_kept`:
no slot request at all), and :func:`render_ahead` computes the sections of a
page the user is likely to open next (the unit page's neighbours) in the
background, so that page then comes whole in one answer.
"""

from __future__ import annotations

import contextvars
import copy
import json
from collections.abc import Callable, Iterable
from typing import Any

from dash import MATCH, Dash, Input, Output, dcc, html

#: The ``type`` of every slot's pattern-matching id.
SLOT = "view-slot"
#: The ``type`` of a slot sent already filled (its answer was kept): no callback answers it.
KEPT = "view-slot-kept"
#: A slot's class once it has been answered.
FILLED = "view-slot filled"
_RENDERERS: dict[str, Callable[..., Any]] = {}
#: True while :func:`kept_answer` asks the renderers: answer only what is kept.
_PEEK: contextvars.ContextVar[bool] = contextvars.ContextVar("probe_slot_peek", default=False)


class NotKept(Exception):
    """Raised inside a renderer asked for a kept answer that is not kept."""


def renders(page: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``fn(**args)`` fills the slots of kind ``page`` (one renderer per kind)."""

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        _RENDERERS[page] = fn
        return fn

    return add


def slot_id(page: str, **args: str | int) -> dict[str, Any]:
    """The id of the slot filled by the ``page`` renderer called with ``args``."""
    return {"type": SLOT, "page": page, "key": json.dumps(args, sort_keys=True)}


def slot(page: str, **args: str | int) -> Any:
    """A placeholder, filled by the ``page`` renderer called with ``args`` (JSON values)."""
    return dcc.Loading(html.Div(id=slot_id(page, **args), className="view-slot"), type="dot",
                       parent_className="view-slot-loading")


def fill(ident: dict[str, Any]) -> tuple[Any, str]:
    """What the slot ``ident`` shows (its renderer's answer for the slot's arguments), and
    its class, ``view-slot filled`` (so a page, a test or a benchmark can tell an
    answered slot from a waiting one, even when the answer is empty)."""
    renderer = _RENDERERS.get(str(ident.get("page")))
    if renderer is None:
        return (html.Div(f"nothing renders sections of kind {ident.get('page')!r}",
                         className="notice notice-warning"), FILLED)
    return renderer(**json.loads(str(ident.get("key") or "{}"))), FILLED


def kept_answer(ident: dict[str, Any]) -> Any | None:
    """What the slot ``ident`` shows if its renderer keeps the answer already, else ``None``
    (nothing is computed)."""
    token = _PEEK.set(True)
    try:
        return fill(ident)[0]
    except NotKept:
        return None
    finally:
        _PEEK.reset(token)


def with_kept(component: Any) -> Any:
    """``component`` (a page) with each slot whose answer is kept sent filled, so the
    browser draws it from the page's own answer instead of asking for it; ``component``
    itself (a kept page) is left as it is."""
    children = getattr(component, "children", None)
    if not isinstance(children, list):
        return component
    out: list[Any] = []
    changed = False
    for child in children:
        ident = slot_ident(child)
        answer = kept_answer(ident) if ident is not None else None
        if answer is None:
            out.append(child)
            continue
        out.append(html.Div(answer, id={**ident, "type": KEPT}, className=FILLED))
        changed = True
    if not changed:
        return component
    page = copy.copy(component)
    page.children = out
    return page


def slot_ident(component: Any) -> dict[str, Any] | None:
    """The id of the slot :func:`slot` made as ``component`` (``None``: not a waiting slot)."""
    inner = getattr(component, "children", None) if isinstance(component, dcc.Loading) else None
    ident = getattr(inner, "id", None)
    return ident if isinstance(ident, dict) and ident.get("type") == SLOT else None


def render_ahead(idents: Iterable[dict[str, Any]]) -> None:
    """Compute (and keep) the answers of slots the user is likely to open next: called by a
    background prefetch once the dashboard is quiet, so a following page finds them kept."""
    for ident in idents:
        try:
            fill(ident)
        except Exception:  # a section that fails says so when it is really asked for
            continue


def register(app: Dash) -> None:
    """Add the one callback that fills every slot of ``app``'s pages."""
    ident = {"type": SLOT, "page": MATCH, "key": MATCH}
    app.callback(Output(ident, "children"), Output(ident, "className"),
                 Input(ident, "id"))(fill)


def run_section(run: str, key: tuple[Any, ...],
                build: Callable[[Any], tuple[Any, str | None]], *, pages: bool = False) -> Any:
    """A slot's section of run ``run``, computed by ``build(view)`` once per run and key.

    ``build`` gets the run's :class:`~probe.dashboards.run_view.DashRunView` and
    returns the section (``None``: nothing to show) and the problem it met; a
    section that met a problem is shown but not kept, so it is read again next
    time. ``pages``: keep it with the unit pages (many, least recently used first
    out) instead of the run's views.
    """
    from probe.dashboards.components import notice
    from probe.dashboards.data import get_source
    from probe.dashboards.render import plain_figures
    from probe.dashboards.run_view import DashRunView
    from probe.errors import ProbeError

    source = get_source()
    try:
        run_obj = source.run(run)
    except ProbeError as exc:
        return notice(str(exc))

    def compute() -> tuple[Any, str | None]:
        component, problem = build(DashRunView(source, run_obj))
        return (plain_figures(component) if component is not None else [], problem)

    if _PEEK.get():
        found, value = source.kept(run_obj, key, pages=pages)
        if not found:
            raise NotKept(key)
        return value[0]
    keep = source.page if pages else source.memo
    return keep(run_obj, key, compute, keep=lambda result: result[1] is None)[0]
