"""One unit, at a permanent link ``/unit/<run>/<layer>/<unit>``.

Rendered entirely on the server from the URL: top exemplars with the unit's
activation overlaid, concept ranking, statistics, filter (with Gabor fit),
part→object links and the equivariance of its layer, plus plugin panels.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
import numpy as np
import pandas as pd
from dash import dcc, html

from probe.dashboards import images
from probe.dashboards.components import graph, missing, notice, table
from probe.dashboards.data import RunSource, get_source
from probe.dashboards.figures import make_concept_ranking_figure, make_equivariance_figure
from probe.dashboards.plugin_pages import panels
from probe.errors import ProbeError

dash.register_page(__name__, path_template="/unit/<run>/<layer>/<unit>", name="Unit",
                   title="probe: unit", nav=False)


def unit_href(run: str, layer: str, unit: int) -> str:
    """The permanent link of a unit."""
    return f"/unit/{quote(run)}/{quote(layer)}/{int(unit)}"


def parse_unit(unit: object) -> int:
    """A unit number from the URL.

    Raises:
        ProbeError: when it is not a non-negative integer.
    """
    text = str(unit)
    if not text.isdigit():
        raise ProbeError(f"unit must be a non-negative integer, got {unit!r}")
    return int(text)


def exemplar_rows(source: RunSource, run: Any, layer: str, unit: int) -> pd.DataFrame:
    """The unit's top images (unit-stats ``top_images``), best first."""
    rows = source.table(run, "unit-stats", "top_images", layer=layer)
    mine = rows[rows["unit"] == unit]
    return mine.sort_values("rank")


def make_exemplars(rows: pd.DataFrame, dataset: Any, threshold: float | None = None
                   ) -> list[html.Figure]:
    """Exemplar figures (image with activation overlay and a caption) for ``rows``."""
    if rows.empty:
        return []
    scale = float(rows["value"].max()) if "value" in rows else None
    out = []
    for row in rows.itertuples(index=False):
        index = int(row.image)
        caption = [f"#{int(row.rank) + 1} · image {index} · act {float(row.value):.3g}"]
        label = int(getattr(row, "label", -1))
        if dataset is not None and label >= 0 and label < len(dataset.class_names):
            caption.append(f"class {dataset.class_names[label]}")
        elif label >= 0:
            caption.append(f"class {label}")
        if dataset is None or index >= len(dataset):
            picture: Any = html.Div("image unavailable", className="filter-img")
        else:
            act = None
            stored = getattr(row, "map", None)
            if stored is not None and int(getattr(row, "map_height", 0) or 0) > 0:
                act = np.asarray(stored, dtype=np.float32).reshape(int(row.map_height),
                                                                    int(row.map_width))
            # The stored map is downsampled; show it as a heat overlay scaled to
            # the unit's best exemplar, or as Network Dissection's mask when a
            # threshold is known.
            rgb = images.overlay(dataset[index]["image"], act, scale=scale,
                                 threshold=threshold)
            picture = html.Img(src=images.data_uri(rgb), alt=f"image {index}")
        out.append(html.Figure([picture, html.Figcaption(" · ".join(caption))],
                               className="exemplar", id=f"unit-exemplar-{int(row.rank)}"))
    return out


def stats_table(values: dict[str, Any]) -> html.Table:
    """A two-column key/value table."""
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
    return html.Table([html.Tr([html.Th(k), html.Td(fmt(v))]) for k, v in values.items()],
                      className="stats", id="unit-stats")


def _row(frame: pd.DataFrame | None, unit: int) -> dict[str, Any]:
    if frame is None or frame.empty:
        return {}
    rows = frame[frame["unit"] == unit]
    return {} if rows.empty else rows.iloc[0].to_dict()


def layout(run: str | None = None, layer: str | None = None, unit: str | None = None,
           **_: Any) -> html.Div:
    """The unit page."""
    source = get_source()
    try:
        run_obj = source.run(run)
        layer = source.check_layer(run_obj, layer)
        number = parse_unit(unit)
    except ProbeError as exc:
        return html.Div([html.H2("Unit"), notice(str(exc), id="unit-error")])
    return html.Div(unit_sections(source, run_obj, layer, number), id="unit-page")


def unit_sections(source: RunSource, run: Any, layer: str, unit: int) -> list[Any]:
    """Every section of the unit page."""
    units = source.optional(run, "unit-stats", "units", layer=layer)
    dissection = source.optional(run, "dissection", "units", layer=layer)
    count = int(units["unit"].max()) + 1 if units is not None and not units.empty else None
    if count is not None and unit >= count:
        return [html.H2("Unit"), notice(f"layer {layer} of run {run.name} has {count} units; "
                                        f"there is no unit {unit}", id="unit-error")]
    stats = _row(units, unit)
    best = _row(dissection, unit)
    header = [html.H2(f"{run.name} · {layer} · unit {unit}", id="unit-title"),
              html.P([dcc.Link("← units of this layer",
                               href=f"/units?run={quote(run.name)}&layer={quote(layer)}"),
                      " · ",
                      dcc.Link("previous", href=unit_href(run.name, layer, max(unit - 1, 0))),
                      " · ",
                      dcc.Link("next", href=unit_href(run.name, layer, unit + 1)),
                      " · permalink: ", html.Code(unit_href(run.name, layer, unit))])]
    summary = {k: stats[k] for k in ("mean", "std", "max", "fraction_positive") if k in stats}
    if best:
        summary.update({"best concept": best.get("label"), "category": best.get("category"),
                        "IoU": best.get("iou"), "detector": bool(best.get("is_detector"))})
    sections: list[Any] = [*header, html.Div([
        html.Div([html.H3("Statistics"), stats_table(summary) if summary else
                  missing("unit-stats", run.name)], className="col"),
        html.Div([html.H3("Concepts"), concept_section(source, run, layer, unit, best)],
                 className="col")], className="row")]
    sections += [html.H3("Top exemplars"), exemplar_section(source, run, layer, unit)]
    sections += [html.Div([
        html.Div([html.H3("Filter"), filter_section(source, run, layer, unit)], className="col"),
        html.Div([html.H3("Equivariance of this layer"),
                  equivariance_section(source, run, layer)], className="col"),
    ], className="row")]
    sections += panels("unit", run, layer=layer, unit=unit)
    return sections


def exemplar_section(source: RunSource, run: Any, layer: str, unit: int) -> Any:
    """The exemplar gallery, or why there is none."""
    if not run.has_table("unit-stats", "top_images"):
        return missing("unit-stats", run.name, "no exemplar images")
    dataset = source.dataset(run)
    notes = []
    if dataset is None:
        notes.append(notice("The run's data set cannot be loaded here, so only the "
                            "activation values are shown."))
    figures = make_exemplars(exemplar_rows(source, run, layer, unit), dataset)
    return html.Div([*notes, html.Div(figures, className="exemplars", id="unit-exemplars")])


def concept_section(source: RunSource, run: Any, layer: str, unit: int,
                    best: dict[str, Any]) -> Any:
    """The unit's concept ranking from dissection."""
    if not run.has_table("dissection", "units"):
        return missing("dissection", run.name, "no concept labels")
    ranking = None
    for name in ("scores", "ious", "ranking"):
        frame = source.optional(run, "dissection", name, layer=layer)
        if frame is not None and {"unit", "label", "iou"} <= set(frame.columns):
            ranking = frame[frame["unit"] == unit]
            break
    if ranking is None and best:
        ranking = pd.DataFrame([best])
    return html.Div([html.P(f"best: {best.get('label')} ({best.get('category')}), "
                            f"IoU {float(best.get('iou', 0)):.3f}", id="unit-best-label")
                     if best else None,
                     graph(make_concept_ranking_figure(ranking), "unit-concepts")])


def filter_section(source: RunSource, run: Any, layer: str, unit: int) -> Any:
    """The unit's filter and its Gabor fit, where the filters analysis stored them."""
    if "filters" not in source.completed(run):
        return missing("filters", run.name, "no filter fit")
    return notice("The filters analysis of this run stores no per-unit filter for this layer.")


def equivariance_section(source: RunSource, run: Any, layer: str) -> Any:
    """Equivariance errors of the unit's layer."""
    if "equivariance" not in source.completed(run):
        return missing("equivariance", run.name)
    frames = [source.table(run, "equivariance", t, layer=layer)
              for _, t in run.tables("equivariance")
              if "layer" in source.columns(run, "equivariance", t)]
    frame = next((f for f in frames if "error" in f), None)
    if frame is None or frame.empty:
        return notice(f"no equivariance rows for layer {layer}")
    return html.Div([graph(make_equivariance_figure(frame), "unit-equivariance"),
                     table(frame, "unit-equivariance-table", page_size=10)])
