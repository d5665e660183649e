"""Small layout pieces shared by the pages: notices, run selectors, "add an analysis" hints.

No data access beyond the run view handed in, no callbacks, no analysis named.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

import pandas as pd
from dash import dcc, html

from probe.dashboards.render import grid
from probe.views import RunView, Table


def notice(*children: Any, id: str | None = None) -> html.Div:
    """A highlighted one-paragraph message."""
    props = {"id": id} if id else {}
    return html.Div(list(children), className="notice", **props)


def run_dropdown(id: str, names: Sequence[str], value: str | None,
                 label: str = "run") -> html.Div:
    """A labelled run selector."""
    return html.Div([html.Label(label), dcc.Dropdown(id=id, options=list(names), value=value,
                                                      clearable=False)])


def choice_dropdown(id: str, label: str, choices: tuple[list[str], str | None]) -> html.Div:
    """A labelled selector holding its ``(options, value)`` from the start.

    The options are in the layout, not filled by a first callback: Dash's dropdown,
    given options later for the value it already holds, can keep showing an empty
    box when that response comes back quickly (a warm server). A page's callback
    refills them only when the run changes (``prevent_initial_call``).
    """
    options, value = choices
    return html.Div([html.Label(label), dcc.Dropdown(id=id, options=options, value=value,
                                                     clearable=False)])


def layer_dropdown(id: str, run: str | None, value: str | None,
                   label: str = "layer") -> html.Div:
    """A labelled layer selector holding ``run``'s layers (:func:`layer_choices`)."""
    return choice_dropdown(id, label, layer_choices(run, value))


def layer_choices(run: str | None, current: str | None) -> tuple[list[str], str | None]:
    """A run's layers for a layer selector; the current one kept when the run has it."""
    from probe.dashboards.data import get_source
    from probe.errors import ProbeError

    if not run:
        return [], None
    try:
        source = get_source()
        layers = source.layers(source.run(run))
    except ProbeError:
        return [], None
    return layers, current if current in layers else (layers[0] if layers else None)


def table(frame: pd.DataFrame, id: str, caption: str = "", links: dict[str, str] | None = None,
          **kwargs: Any) -> html.Div:
    """A DataFrame as a sortable, filterable grid with CSV download."""
    return grid(Table(frame, caption=caption, name=id, links=links or {}, **kwargs), id)


def feedable(analysis: type, dataset: Any) -> bool:
    """Whether ``dataset`` (a loaded data set or ``None``) gives what ``analysis`` requires."""
    passes = getattr(analysis, "passes", 1)
    if dataset is None:
        return passes == 0
    needs = set(getattr(analysis, "requires", ()))
    if "masks" in needs and not getattr(dataset, "has_masks", False):
        return False
    return not ("labels" in needs and getattr(dataset, "num_classes", 0) <= 0)


def add_command(view: RunView, analysis: str) -> str:
    """The run's own command with ``--analysis NAME`` added (what re-runs it with that one).

    The run directory accumulates analyses, so the command adds the new one and
    keeps the completed ones.
    """
    recorded = str(view.manifest.get("command") or "")
    words = shlex.split(recorded) if recorded else []
    if words and words[0].endswith("probe") and len(words) > 1 and words[1] == "run":
        kept: list[str] = []
        skip = False
        for word in words:
            if skip:
                skip = False
                continue
            if word in ("--analysis", "-a"):
                skip = True
                continue
            if word.startswith("--analysis="):
                continue
            kept.append(word)
        kept = ["probe", *kept[1:]]
        return shlex.join([*kept, "--analysis", analysis])
    arch = (view.manifest.get("arch") or {}).get("name") or "ARCH"
    data = (view.manifest.get("dataset") or {}).get("name")
    parts = ["probe", "run", "--arch", str(arch)]
    if data:
        parts += ["--dataset", str(data)]
    return shlex.join([*parts, "--analysis", analysis, "--out", str(view.run.path)])


def suggestions(view: RunView, where: str) -> list[Any]:
    """Installed analyses this run lacks and its data set can feed, with the command to add each."""
    from probe.host import get_host

    registry = get_host().analyses
    have = set(view.run.analyses)
    dataset = view.dataset()
    missing = [name for name in registry.names() if name not in have
               and feedable(registry.get(name), dataset)]
    if not missing:
        return []
    items = [html.Li([html.B(name), f" — {getattr(registry.get(name), 'description', '')}: ",
                      html.Code(add_command(view, name))]) for name in missing]
    return [html.Details([html.Summary(f"More analyses for this run ({len(missing)})"),
                          html.Ul(items)], id=f"{where}-suggestions", className="suggestions")]
