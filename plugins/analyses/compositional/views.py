"""The views of ``compositional``: formula gain per layer, parts → objects, unit formulas.

``Compositional``'s view hooks are these plain functions (``views_from``); they
read the run through :class:`probe.views.RunView` only. Where the same run has
dissection's ``edges`` table, the parts → objects views read it through the
same ``RunView`` (the views API reads any analysis's tables of the run) and set
the parts formulas beside dissection's wiring (:mod:`.edges`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from probe.views.blocks import Facts, Figure, Headline, Note, Table, UnitColumns
from probe.views.plots import layer_color
from probe.views.run_view import RunView

from .edges import agreement_by_layer, agreement_by_unit
from .mask_views import mask_blocks

ANALYSIS = "compositional"
#: The analysis whose part → object ``edges`` the parts formulas are set beside.
DISSECTION = "dissection"
LABELS = {"label": "best concept", "label_iou": "concept IoU", "formula": "best formula",
          "length": "length", "iou": "formula IoU", "gain": "gain", "object": "object",
          "object_iou": "object IoU", "own_parts": "own parts", "object_units": "object units",
          "mean_iou": "mean IoU", "mean_object_iou": "mean object IoU",
          "mean_label_iou": "mean concept IoU", "mean_gain": "mean gain",
          "improved": "improved", "threshold": "threshold"}
FORMATS = {"label_iou": "fixed3", "iou": "fixed3", "gain": "fixed3", "object_iou": "fixed3",
           "own_parts": "percent", "improved": "percent", "mean_iou": "fixed3",
           "mean_object_iou": "fixed3", "mean_label_iou": "fixed3", "mean_gain": "fixed3",
           "length": "int", "object_units": "int", "formula": "text", "label": "text"}


def _ordered(layers: list[str], frame: pd.DataFrame) -> list[str]:
    seen = [str(x) for x in dict.fromkeys(frame["layer"].astype(str))]
    return [x for x in layers if x in seen] + [x for x in seen if x not in layers]


def gain_figure(layers: pd.DataFrame, formulas: pd.DataFrame,
                order: list[str] | None = None) -> Any:
    """Mean IoU of the best formula of each length, per layer (a line per length)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if formulas is None or formulas.empty:
        fig.update_layout(title="compositional: no formulas")
        return fig
    frame = formulas.assign(layer=formulas["layer"].astype(str),
                            iou=formulas["iou"].astype(float).fillna(0.0))
    names = _ordered(order or [], frame)
    means = frame.groupby(["length", "layer"])["iou"].mean()
    for i, length in enumerate(sorted(frame["length"].unique())):
        fig.add_trace(go.Scatter(x=names, y=[means.get((length, x)) for x in names],
                                 mode="lines+markers", name=f"length {int(length)}",
                                 line={"color": layer_color(i)}))
    fig.update_layout(title="compositional: mean IoU of the best formula by length",
                      xaxis_title="layer", yaxis_title="mean IoU", height=340)
    return fig


def agreement_figure(parts_layers: pd.DataFrame, order: list[str] | None = None) -> Any:
    """Share of object units whose parts formula uses only the object's own parts."""
    import plotly.graph_objects as go

    frame = parts_layers.assign(layer=parts_layers["layer"].astype(str))
    names = _ordered(order or [], frame)
    rows = frame.set_index("layer")
    fig = go.Figure(go.Bar(x=names, y=[rows.loc[x, "own_parts"] for x in names],
                           text=[f"{int(rows.loc[x, 'object_units'])} units" for x in names]))
    fig.update_layout(title="parts → objects: object units explained by their own parts",
                      xaxis_title="layer", yaxis_title="share of object units",
                      yaxis={"range": [0, 1]}, height=320)
    return fig


#: The bars of :func:`edges_figure`: column, legend name, what the text says.
EDGE_BARS = (("own_parts", "parts formula is own parts (compositional)", "object_units",
              "units"),
             ("edges_named", "edges from a part the formula names (dissection)", "edges",
              "edges"),
             ("weight_named", "weight-path mass from those parts", "edges", "edges"))


def edges_figure(by_layer: pd.DataFrame) -> Any:
    """Per layer: own-parts share of the object units beside the share of dissection's
    edges into them (count and weight-path mass) from parts their formula names."""
    import plotly.graph_objects as go

    names = [str(x) for x in by_layer["layer"]]
    fig = go.Figure()
    for i, (column, label, counted, unit) in enumerate(EDGE_BARS):
        fig.add_trace(go.Bar(x=names, y=by_layer[column].astype(float), name=label,
                             marker_color=layer_color(i),
                             text=[f"{int(n)} {unit}" for n in by_layer[counted]]))
    fig.update_layout(title="parts → objects: logic (compositional) beside wiring "
                            "(dissection's edges)", barmode="group", xaxis_title="layer",
                      yaxis_title="share", yaxis={"range": [0, 1]}, height=340)
    return fig


def edge_agreement(run: RunView) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """``(per unit, per layer)`` agreement of parts formulas with dissection's edges, or
    ``None`` when the run lacks either table (kept per run: several pages read it)."""
    def compute() -> tuple[pd.DataFrame, pd.DataFrame] | None:
        parts = run.table(ANALYSIS, "parts_objects")
        edges = run.table(DISSECTION, "edges")
        if parts is None or edges is None or parts.empty:
            return None
        per_unit = agreement_by_unit(parts, edges)
        return per_unit, agreement_by_layer(per_unit, list(run.layers))

    return run.memo((ANALYSIS, "edge-agreement"), compute)


def edge_blocks(run: RunView) -> list[Any]:
    """The figure and table setting the parts formulas beside dissection's edges."""
    agreement = edge_agreement(run)
    if agreement is None:
        return []
    _, by_layer = agreement
    if int(by_layer["edges"].sum()) == 0:
        return [Note("dissection found no part → object edge into an object unit that both "
                     "analyses give the same object, so the parts formulas cannot be set "
                     "beside its wiring.")]
    return [Figure(edges_figure(by_layer), name="compositional-parts-edges", caption=(
                "Per layer: the share of object units whose parts formula is an OR / AND "
                "of their object's own parts, beside the share of dissection's part → object "
                "edges into those units (from part detectors of earlier layers) whose part is "
                "a term of the unit's parts formula, by count and by weight-path mass. Every "
                "edge comes from one of its object's parts; the question is whether logic "
                "and wiring name the same ones.")),
            Table(by_layer, name="compositional-parts-edges-layers", labels=EDGE_LABELS,
                  formats=EDGE_FORMATS, caption=(
                      "Object units (best concept an object with parts) per layer; linked: "
                      "those with at least one dissection edge whose object is the same; "
                      "shares of those edges (count, weight-path mass, positive ablation "
                      "drop) from parts the unit's formula names."))]


EDGE_LABELS = {**LABELS, "linked_units": "linked units", "linked_own_parts":
               "own parts (linked)", "edges": "edges", "edges_named": "edges named",
               "weight_named": "weight named", "drop_named": "ablation named",
               "named": "named edges"}
EDGE_FORMATS = {**FORMATS, "linked_units": "int", "linked_own_parts": "percent",
                "edges": "int", "edges_named": "percent", "weight_named": "percent",
                "drop_named": "percent", "named": "int"}


def run_views(run: RunView) -> list[Any]:
    """The gain chart, the per-layer table and (on a parts world) the agreement chart."""
    layers = run.table(ANALYSIS, "layers")
    formulas = run.table(ANALYSIS, "formulas")
    if layers is None or formulas is None or layers.empty:
        return [Note("compositional found no layer with spatial maps to explain.")]
    out: list[Any] = [
        Figure(gain_figure(layers, formulas, list(run.layers)), name="compositional-gain",
               caption="For each layer, the mean IoU (over units) of the best formula of "
                       "length 1 (a single concept), 2 and 3: how much logic adds."),
        Table(layers.drop(columns=["units"]), name="compositional-layers",
              caption="Per layer: mean IoU of the best single concept and of the best "
                      "formula, mean gain, share of units a formula improves.",
              labels={**LABELS, "formulas_scored": "formulas scored"}, formats=FORMATS)]
    parts = run.table(ANALYSIS, "parts_layers")
    if parts is not None and not parts.empty and parts["object_units"].sum() > 0:
        out.append(Figure(agreement_figure(parts, list(run.layers)),
                          name="compositional-parts",
                          caption="Of the units whose best concept is an object, the share "
                                  "whose best formula over parts is an OR / AND of that "
                                  "object's own parts (the data set's part → object table)."))
    out += edge_blocks(run)
    return out


def layer_views(run: RunView, layer: str) -> list[Any]:
    """The layer's units with their formulas, most improved first; its object units."""
    units = run.table(ANALYSIS, "units", layer=layer)
    if units is None or units.empty:
        return []
    rows = units.assign(href=[run.unit_link(layer, int(u)) for u in units["unit"]])
    out: list[Any] = [Table(rows[["unit", "label", "label_iou", "formula", "iou", "gain",
                                  "href"]],
                            name="compositional-units", labels=LABELS, formats=FORMATS,
                            links={"unit": "href"}, sort=("gain", True),
                            caption="Each unit's best single concept and best formula "
                                    "(IoU over the image sample).")]
    parts = run.table(ANALYSIS, "parts_objects", layer=layer)
    if parts is not None and not parts.empty:
        parts = parts.drop(columns=["layer", "terms"], errors="ignore")
        agreement = edge_agreement(run)
        if agreement is not None:
            mine = agreement[0][agreement[0]["layer"] == layer]
            parts = parts.merge(mine[["unit", "edges", "named"]], on="unit", how="left")
        out.append(Table(parts, name="compositional-parts-objects",
                         labels=EDGE_LABELS, formats={**EDGE_FORMATS, "own_parts": "text"},
                         caption="Units whose best concept is an object: their best formula "
                                 "over part concepts, and whether it is made of the object's "
                                 "own parts with OR / AND only"
                                 + ("; edges: dissection's part → object edges into the "
                                    "unit, named: those from a part of the formula."
                                    if agreement is not None else ".")))
    return out


def unit_views(run: RunView, layer: str, unit: int) -> list[Any]:
    """The unit's best formula of each length, with IoU and gain; its exemplars with the
    masks of the unit, of each term and of the formula."""
    rows = run.unit_rows(ANALYSIS, "formulas", layer, unit)
    if rows is None or rows.empty:
        return []
    best = run.unit_rows(ANALYSIS, "units", layer, unit)
    out: list[Any] = []
    if best is not None and not best.empty:
        row = best.iloc[0]
        out.append(Facts([("best formula", str(row["formula"]) or "-"),
                          ("formula IoU", float(row["iou"])),
                          ("gain over one concept", float(row["gain"]))],
                         formats={"formula IoU": "fixed3", "gain over one concept": "fixed3"}))
    out.append(Table(rows[["length", "formula", "iou", "gain"]], name="compositional-formulas",
                     labels=LABELS, formats=FORMATS,
                     caption="The best formula of each length found by the beam search."))
    out += mask_blocks(run, layer, unit)
    out += unit_parts_blocks(run, layer, unit)
    return out


def unit_parts_blocks(run: RunView, layer: str, unit: int) -> list[Any]:
    """An object unit's parts formula and, with dissection's edges, how many name its parts."""
    parts = run.unit_rows(ANALYSIS, "parts_objects", layer, unit)
    if parts is None or parts.empty:
        return []
    row = parts.iloc[0]
    items: list[tuple[str, Any]] = [("object", str(row["object"])),
                                    ("parts formula", str(row["formula"]) or "-"),
                                    ("parts formula IoU", float(row["iou"])),
                                    ("own parts", bool(row["own_parts"]))]
    agreement = edge_agreement(run)
    if agreement is not None:
        mine = agreement[0][(agreement[0]["layer"] == layer) & (agreement[0]["unit"] == unit)]
        if not mine.empty:
            items += [("dissection edges into the unit", int(mine["edges"].iloc[0])),
                      ("from a part the formula names", int(mine["named"].iloc[0]))]
    return [Facts(items, name="compositional-parts", formats={"parts formula IoU": "fixed3"})]


def layer_summary(run: RunView) -> Table | None:
    """Per layer: mean concept IoU, mean formula IoU, gain, improved share, own-parts share."""
    layers = run.table(ANALYSIS, "layers")
    if layers is None or layers.empty:
        return None
    frame = layers[["layer", "mean_label_iou", "mean_iou", "mean_gain", "improved"]].copy()
    parts = run.table(ANALYSIS, "parts_layers")
    if parts is not None and not parts.empty:
        frame = frame.merge(parts[["layer", "own_parts"]], on="layer", how="left")
    return Table(frame, name="compositional-summary", labels=LABELS, formats=FORMATS,
                 caption="compositional per layer (IoU over the image sample).")


def unit_columns(run: RunView, layer: str) -> UnitColumns | None:
    """Units page: the best formula (title and search), its IoU (sort) and gain."""
    units = run.table(ANALYSIS, "units", layer=layer)
    if units is None or units.empty:
        return None
    frame = units[["unit", "formula", "iou", "gain"]].assign(
        unit=units["unit"].astype(int), improved=units["gain"] > 0)
    return UnitColumns(frame, labels=LABELS, formats=FORMATS, title="formula", score="iou",
                       flag="improved", flag_label="a formula beats one concept",
                       search="formula")


def headlines(run: RunView) -> list[Headline]:
    """Mean gain of formulas over single concepts, over all units."""
    units = run.table(ANALYSIS, "units")
    if units is None or units.empty:
        return []
    return [Headline("formula gain", float(units["gain"].mean()),
                     f"mean IoU gain of the best formula over one concept "
                     f"({len(units)} units)", format="fixed3")]
