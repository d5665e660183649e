"""One unit, at a permanent link ``/unit/<run>/<layer>/<unit>``.

Rendered entirely on the server from the URL: top exemplars with the unit's
mask or activation overlaid, concept ranking, statistics, filter with its Gabor
fit, part→object links and the equivariance of its layer, plus plugin panels.
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
from probe.dashboards.data import UNIT_PAGE_TABLES, RunSource, get_source
from probe.dashboards.figures import make_layer_equivariance_figure
from probe.dashboards.layers_data import DISSECTION_COLUMNS
from probe.dashboards.plugin_pages import panels
from probe.dashboards.unit_figures import concept_ranking_json
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
    if not text.isdigit() or len(text) > 9:
        raise ProbeError(f"unit must be a non-negative integer, got {unit!r}")
    return int(text)


def _rows(frame: pd.DataFrame | None, unit: int, column: str = "unit") -> pd.DataFrame:
    if frame is None or frame.empty:
        return pd.DataFrame()
    return frame[frame[column] == unit]


def _unit_rows(source: RunSource, run: Any, analysis: str, table: str, layer: str,
               unit: int) -> pd.DataFrame:
    if not run.has_table(analysis, table):
        return pd.DataFrame()
    return source.unit_rows(run, analysis, table, layer, unit)


def _class_name(dataset: Any, label: int) -> str | None:
    if label < 0:
        return None
    names = getattr(dataset, "class_names", ()) or ()
    return str(names[label]) if label < len(names) else str(label)


def make_exemplars(rows: pd.DataFrame, dataset: Any, prefix: str = "unit-exemplar"
                   ) -> list[html.Figure]:
    """Exemplar figures for the top-image ``rows`` of one unit, best first.

    Rows of ``unit-stats/top_images`` (``image, value, label, map``) are drawn
    with the activation map as a heat overlay scaled to the best exemplar; rows
    of ``dissection/exemplars`` (``image, activation, mask``) with the unit's
    binary mask (outside dimmed).
    """
    if rows.empty:
        return []
    values = rows["value"] if "value" in rows else rows["activation"]
    scale = float(values.max())
    out = []
    for (_, row), value in zip(rows.iterrows(), values, strict=True):
        index = int(row["image"])
        caption = [f"#{int(row['rank']) + 1} · image {index} · act {float(value):.3g}"]
        if dataset is not None and "label" in row and _class_name(dataset, int(row["label"])):
            caption.append(f"class {_class_name(dataset, int(row['label']))}")
        if "active_pixels" in row:
            caption.append(f"{int(row['active_pixels'])} px in mask")
        if dataset is None or not 0 <= index < len(dataset):
            picture: Any = html.Div("image unavailable", className="filter-img")
        else:
            image = dataset[index]["image"]
            if "mask" in row and row["mask"] is not None:
                mask = images.unpack_mask(row["mask"], int(row["mask_height"]),
                                          int(row["mask_width"]))
                rgb = images.mask_overlay(image, mask)
            else:
                act = None
                if row.get("map") is not None and int(row.get("map_height", 0) or 0) > 0:
                    act = np.asarray(row["map"], dtype=np.float32).reshape(
                        int(row["map_height"]), int(row["map_width"]))
                rgb = images.overlay(image, act, scale=scale)
            picture = html.Img(src=images.data_uri(rgb), alt=f"image {index}")
        out.append(html.Figure([picture, html.Figcaption(" · ".join(caption))],
                               className="exemplar", id=f"{prefix}-{int(row['rank'])}"))
    return out


def stats_table(values: dict[str, Any], id: str = "unit-stats") -> html.Table:
    """A two-column key/value table."""
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
    return html.Table([html.Tr([html.Th(k), html.Td(fmt(v))]) for k, v in values.items()],
                      className="stats", id=id)


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
    page = source.page(run_obj, ("unit-page", layer, number),
                       lambda: render_page(source, run_obj, layer, number),
                       keep=lambda result: not result[1])[0]
    # The next unit is likely in the same run: decode its big tables in the background
    # (after this page, so the decoding does not slow it down).
    source.prefetch(run_obj, UNIT_PAGE_TABLES)
    return page


def render_page(source: RunSource, run: Any, layer: str, unit: int) -> tuple[html.Div, list[str]]:
    """The unit page and the problems met (a page with problems is not kept)."""
    problems: list[str] = []
    page = html.Div(unit_sections(source, run, layer, unit, problems), id="unit-page")
    return plain_figures(page), problems


def plain_figures(component: Any) -> Any:
    """Replace every figure object in a layout by its JSON form, in place.

    A kept page is sent many times; a plotly ``Figure`` is converted (copied,
    validated, arrays encoded) on every send, its plain form once.
    """
    if isinstance(component, dcc.Graph) and hasattr(component.figure, "to_plotly_json"):
        component.figure = component.figure.to_plotly_json()
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if hasattr(child, "to_plotly_json"):
            plain_figures(child)
    return component


def _guard(problems: list[str], key: str, build: Any, *args: Any) -> Any:
    """``build(*args)``, or one line saying why it cannot be shown (a damaged table)."""
    try:
        return build(*args)
    except ProbeError as exc:
        problems.append(str(exc))
        return notice(str(exc), id=f"unit-problem-{key}")


def unit_sections(source: RunSource, run: Any, layer: str, unit: int,
                  problems: list[str] | None = None) -> list[Any]:
    """Every section of the unit page; a section whose table is damaged says so in its place."""
    problems = [] if problems is None else problems
    broken: dict[str, Any] = {}

    def read(analysis: str, table: str, columns: Any = None) -> pd.DataFrame | None:
        try:
            return source.optional(run, analysis, table, columns, layer)
        except ProbeError as exc:
            problems.append(str(exc))
            broken[analysis] = notice(str(exc), id=f"unit-problem-{analysis}-{table}")
            return None

    units = read("unit-stats", "units")
    dissection = read("dissection", "units", DISSECTION_COLUMNS)
    known = [f for f in (units, dissection) if f is not None and not f.empty]
    count = max(int(f["unit"].max()) + 1 for f in known) if known else None
    if count is not None and unit >= count:
        return [html.H2("Unit"), notice(f"layer {layer} of run {run.name} has {count} units; "
                                        f"there is no unit {unit}", id="unit-error")]
    stats = _rows(units, unit)
    best = _rows(dissection, unit)
    summary: dict[str, Any] = {}
    if not stats.empty:
        summary.update({k: stats.iloc[0][k] for k in ("mean", "std", "max",
                                                      "fraction_positive") if k in stats})
    if not best.empty:
        b = best.iloc[0]
        summary.update({"best concept": b.get("name") or "none", "category": b.get("category"),
                        "IoU": float(b["iou"]), "detector": bool(b["is_detector"]),
                        "threshold T_k": float(b.get("threshold", np.nan))})
    nav = [dcc.Link("← units of this layer",
                    href=f"/units?run={quote(run.name)}&layer={quote(layer)}"), " · "]
    if unit > 0:
        nav += [dcc.Link("previous", href=unit_href(run.name, layer, unit - 1)), " · "]
    if count is None or unit + 1 < count:
        nav += [dcc.Link("next", href=unit_href(run.name, layer, unit + 1)), " · "]
    nav += ["permalink: ", html.Code(unit_href(run.name, layer, unit))]
    statistics = [stats_table(summary)] if summary else []
    if "unit-stats" in broken:
        statistics.append(broken["unit-stats"])
    elif not summary:
        statistics.append(missing("unit-stats", run.name, key="stats"))
    concepts = broken.get("dissection") or _guard(problems, "concepts", concept_section,
                                                  source, run, layer, unit, best)
    return [
        html.H2(f"{run.name} · {layer} · unit {unit}", id="unit-title"),
        html.P(nav),
        html.Div([
            html.Div([html.H3("Statistics"), *statistics], className="col"),
            html.Div([html.H3("Concepts"), concepts], className="col")], className="row"),
        html.H3("Top exemplars"),
        _guard(problems, "exemplars", exemplar_section, source, run, layer, unit, problems),
        html.Div([
            html.Div([html.H3("Filter"), _guard(problems, "filter", filter_section, source, run,
                                                layer, unit)], className="col"),
            html.Div([html.H3("Part → object links"), _guard(problems, "links", links_section,
                                                              source, run, layer, unit)],
                     className="col"),
        ], className="row"),
        html.H3("Equivariance of this layer"),
        _guard(problems, "equivariance", equivariance_section, source, run, layer, unit),
        *panels("unit", run, layer=layer, unit=unit),
    ]


def exemplar_section(source: RunSource, run: Any, layer: str, unit: int,
                     problems: list[str] | None = None) -> Any:
    """Dissection exemplars with the unit's mask, and unit-stats exemplars with its heat map."""
    problems = [] if problems is None else problems
    dataset = source.dataset(run)
    out: list[Any] = []
    if dataset is None:
        out.append(notice("The run's data set cannot be loaded here, so only the activation "
                          "values are shown."))
        if (run.manifest.get("dataset") or {}).get("name"):
            problems.append("data set not loaded")  # maybe later: do not keep this page
    if run.has_table("dissection", "exemplars"):
        try:
            rows = source.unit_rows(run, "dissection", "exemplars", layer, unit)
            out += [html.P("Unit mask (activation above the unit's threshold T_k, upsampled "
                           "bilinearly); outside dimmed:"),
                    html.Div(make_exemplars(rows.sort_values("rank"), dataset, "unit-mask"),
                             className="exemplars", id="unit-masks")]
        except ProbeError as exc:  # a damaged table: say so, show the other exemplars
            out.append(notice(str(exc), id="unit-problem-masks"))
            problems.append(str(exc))
    if run.has_table("unit-stats", "top_images"):
        try:
            rows = source.unit_rows(run, "unit-stats", "top_images", layer, unit)
            out += [html.P("Activation map (red = strong, scaled to the best exemplar):"),
                    html.Div(make_exemplars(rows.sort_values("rank"), dataset),
                             className="exemplars", id="unit-exemplars")]
        except ProbeError as exc:
            out.append(notice(str(exc), id="unit-problem-heat"))
            problems.append(str(exc))
    if not (run.has_table("dissection", "exemplars") or run.has_table("unit-stats",
                                                                      "top_images")):
        out.append(missing("unit-stats", run.name, "no exemplar images", key="exemplars"))
    return html.Div(out)


def concept_section(source: RunSource, run: Any, layer: str, unit: int,
                    best: pd.DataFrame) -> Any:
    """The unit's concept ranking from dissection's ``labels`` table."""
    if best.empty:
        return missing("dissection", run.name, "no concept labels")
    b = best.iloc[0]
    ranking = _unit_rows(source, run, "dissection", "labels", layer, unit)
    if ranking.empty:
        ranking = best
    threshold = None
    layers = source.optional(run, "dissection", "layers", layer=layer)
    if layers is not None and not layers.empty and "iou_threshold" in layers:
        threshold = float(layers["iou_threshold"].iloc[0])
    label = b.get("name") or "none"
    return html.Div([
        html.P(f"best: {label} ({b.get('category') or '-'}), IoU {float(b['iou']):.3f}"
               f"{' — detector' if bool(b['is_detector']) else ''}", id="unit-best-label"),
        graph(concept_ranking_json(ranking, threshold=threshold), "unit-concepts")])


def filter_section(source: RunSource, run: Any, layer: str, unit: int) -> Any:
    """The unit's filter (spatial map after the colour SVD) and its Gabor fit."""
    if "filters" not in source.completed(run):
        return missing("filters", run.name, "no filter fit")
    rows = _unit_rows(source, run, "filters", "units", layer, unit)
    if rows.empty:
        return notice(f"The filters analysis has no filter for layer {layer} (it looks at "
                      f"convolutions only).")
    row = rows.iloc[0]
    h, w = int(row["kernel_h"]), int(row["kernel_w"])
    pictures = [html.Figure([html.Img(src=images.data_uri(images.signed_map(
        np.asarray(row["map"], dtype=np.float32).reshape(h, w))), className="filter-img"),
        html.Figcaption(f"filter {h}×{w}")], className="exemplar", id="unit-filter")]
    if row.get("gabor_status") == "ok" and row.get("fit") is not None:
        pictures.append(html.Figure([html.Img(src=images.data_uri(images.signed_map(
            np.asarray(row["fit"], dtype=np.float32).reshape(h, w))), className="filter-img"),
            html.Figcaption(f"Gabor fit, R² {float(row['gabor_r2']):.3f}")],
            className="exemplar", id="unit-gabor"))
    values = {k: row[k] for k in ("gabor_status", "gabor_r2", "gabor_frequency", "gabor_theta",
                                  "separability", "bank_cos", "redundancy_cos")
              if k in row and row[k] is not None}
    return html.Div([html.Div(pictures, className="exemplars"),
                     stats_table(values, "unit-filter-stats")])


def links_section(source: RunSource, run: Any, layer: str, unit: int) -> Any:
    """Part detectors feeding this unit and object detectors it feeds (dissection ``edges``)."""
    edges = source.optional(run, "dissection", "edges")
    if edges is None:
        return missing("dissection", run.name, "no part→object links", key="links")
    as_part = edges[(edges["part_layer"] == layer) & (edges["part_unit"] == unit)]
    as_object = edges[(edges["object_layer"] == layer) & (edges["object_unit"] == unit)]
    if as_part.empty and as_object.empty:
        return html.P("This unit is not in any part→object link (it is not a part or object "
                      "detector, or no detector of a related concept exists).", id="unit-links")
    rows = []
    for _, e in as_part.iterrows():
        rows.append({"role": "part of", "unit": f"[{e['object_layer']}/{int(e['object_unit'])}]"
                     f"({unit_href(run.name, e['object_layer'], e['object_unit'])})",
                     "concept": f"{e['part_name']} → {e['object_name']}",
                     "weight_path": e.get("weight_path"), "ablation_drop": e.get("ablation_drop")})
    for _, e in as_object.iterrows():
        rows.append({"role": "made of", "unit": f"[{e['part_layer']}/{int(e['part_unit'])}]"
                     f"({unit_href(run.name, e['part_layer'], e['part_unit'])})",
                     "concept": f"{e['part_name']} → {e['object_name']}",
                     "weight_path": e.get("weight_path"), "ablation_drop": e.get("ablation_drop")})
    return table(pd.DataFrame(rows), "unit-links", page_size=10, markdown=("unit",))


def equivariance_section(source: RunSource, run: Any, layer: str, unit: int) -> Any:
    """Equivariance error of the unit's layer, and the unit's partner under each transform."""
    if "equivariance" not in source.completed(run):
        return missing("equivariance", run.name)
    def figure() -> Any:  # one per layer, shared by all its units, kept in JSON form
        errors = source.optional(run, "equivariance", "errors", layer=layer)
        return make_layer_equivariance_figure(errors, layer).to_plotly_json()

    out: list[Any] = [graph(source.memo(run, ("layer-equivariance", layer), figure),
                            "unit-equivariance")]
    partners = _unit_rows(source, run, "equivariance", "learned_map_units", layer, unit)
    if not partners.empty:
        shown = partners[["transform", "magnitude", "partner", "weight", "share"]].copy()
        shown["partner"] = [f"[unit {int(p)}]({unit_href(run.name, layer, p)})"
                            for p in shown["partner"]]
        out += [html.P("Learned equivariance map: the unit this one becomes under each "
                       "transform (largest mixing weight):"),
                table(shown, "unit-partners", page_size=10, markdown=("partner",))]
    return html.Div(out)
