"""The views of ``concept-vectors``: vector vs best-unit IoU, concepts, a unit's concepts.

``ConceptVectors``'s view hooks are these plain functions (``views_from``); they
read the run through :class:`probe.views.RunView` only, and only small tables (a
unit page reads the weights rows of one unit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from probe.views.blocks import Facts, Figure, Headline, Note, Table, UnitColumns
from probe.views.plots import layer_color
from probe.views.run_view import RunView

ANALYSIS = "concept-vectors"
LABELS = {"concept": "concept", "category": "category", "iou": "vector IoU",
          "best_unit": "best unit", "best_unit_iou": "best unit IoU", "gain": "gain",
          "units_50": "units for 50 %", "units_90": "units for 90 %",
          "train_pixels": "training pixels", "heldout_pixels": "held-out pixels",
          "mean_iou": "mean vector IoU", "mean_best_unit_iou": "mean best-unit IoU",
          "mean_gain": "mean gain", "wins": "vector wins", "mean_units_50": "mean units 50 %",
          "mean_units_90": "mean units 90 %", "weight": "weight", "share": "share of Σ|w|",
          "rank": "rank in vector", "train_iou": "training IoU"}
FORMATS = {"iou": "fixed3", "best_unit_iou": "fixed3", "gain": "fixed3", "best_unit": "int",
           "units_50": "int", "units_90": "int", "train_pixels": "int",
           "heldout_pixels": "int", "mean_iou": "fixed3", "mean_best_unit_iou": "fixed3",
           "mean_gain": "fixed3", "wins": "percent", "mean_units_50": "fixed2",
           "mean_units_90": "fixed2", "share": "percent", "rank": "int", "weight": "sci",
           "concept": "text", "category": "text", "train_iou": "fixed3"}


def _ordered(layers: list[str], frame: pd.DataFrame) -> list[str]:
    seen = [str(x) for x in dict.fromkeys(frame["layer"].astype(str))]
    return [x for x in layers if x in seen] + [x for x in seen if x not in layers]


def iou_figure(layers: pd.DataFrame, order: list[str] | None = None) -> Any:
    """Per layer, the mean held-out IoU of the vectors and of the best single units."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if layers is None or layers.empty:
        fig.update_layout(title="concept vectors: no layer fitted")
        return fig
    frame = layers.assign(layer=layers["layer"].astype(str)).set_index("layer")
    names = _ordered(order or [], frame.reset_index())
    for i, (column, label) in enumerate((("mean_iou", "concept vector"),
                                         ("mean_best_unit_iou", "best single unit"))):
        fig.add_trace(go.Bar(x=names, y=[frame.loc[x, column] for x in names], name=label,
                             marker={"color": layer_color(i)}))
    fig.update_layout(title="concept vectors: mean held-out set IoU per layer",
                      xaxis_title="layer", yaxis_title="mean IoU over concepts",
                      barmode="group", height=340)
    return fig


def scatter_figure(concepts: pd.DataFrame, layer: str) -> Any:
    """One point per concept: best single unit IoU (x) against the vector's IoU (y)."""
    import plotly.graph_objects as go

    top = float(np.nanmax(concepts[["iou", "best_unit_iou"]].to_numpy(float), initial=0.0))
    top = max(top, 0.05)
    fig = go.Figure([
        go.Scatter(x=[0, top], y=[0, top], mode="lines", name="equal",
                   line={"dash": "dot", "color": "grey"}, hoverinfo="skip"),
        go.Scatter(x=concepts["best_unit_iou"], y=concepts["iou"], mode="markers",
                   name="concepts", text=concepts["concept"],
                   marker={"color": layer_color(0)},
                   hovertemplate="%{text}: unit %{x:.3f}, vector %{y:.3f}<extra></extra>")])
    fig.update_layout(title=f"concept vectors of {layer}: vector vs best single unit",
                      xaxis_title="best single unit IoU (held out)",
                      yaxis_title="vector IoU (held out)", height=340, showlegend=False)
    return fig


def run_views(run: RunView) -> list[Any]:
    """The per-layer IoU chart and the per-layer table."""
    layers = run.table(ANALYSIS, "layers")
    if layers is None or layers.empty:
        return [Note("concept-vectors fitted no layer (no spatial maps, or too few images).")]
    shown = layers[["layer", "concepts", "mean_iou", "mean_best_unit_iou", "mean_gain",
                    "wins", "mean_units_50", "mean_units_90"]]
    return [
        Figure(iou_figure(layers, list(run.layers)), name="concept-vectors-iou",
               caption="For each layer, the mean over concepts of the held-out set IoU of "
                       "the learned concept vector and of the best single unit "
                       "(dissection's unit mask, chosen on the training images)."),
        Table(shown, name="concept-vectors-layers", labels=LABELS, formats=FORMATS,
              caption="Per layer: concepts fitted, mean IoUs, the share of concepts whose "
                      "vector beats the best unit, and how many units hold 50 % / 90 % of "
                      "a vector's Σ|w|.")]


def layer_views(run: RunView, layer: str) -> list[Any]:
    """The layer's concepts: a vector-vs-unit scatter and the table, best gain first."""
    concepts = run.table(ANALYSIS, "concepts", layer=layer)
    if concepts is None or concepts.empty:
        return []
    rows = concepts.assign(href=[run.unit_link(layer, int(u)) for u in concepts["best_unit"]])
    columns = ["concept", "category", "iou", "best_unit", "best_unit_iou", "gain", "units_50",
               "units_90", "train_pixels", "heldout_pixels", "href"]
    return [Figure(scatter_figure(concepts, layer), name="concept-vectors-scatter",
                   caption="Each concept: above the diagonal, its vector beats its best "
                           "single unit on the held-out images."),
            Table(rows[columns], name="concept-vectors-concepts", labels=LABELS,
                  formats=FORMATS, links={"best_unit": "href"}, sort=("gain", True),
                  caption="Each concept's vector (held-out set IoU) beside its best single "
                          "unit, and the fewest units holding 50 % / 90 % of Σ|w|.")]


def unit_views(run: RunView, layer: str, unit: int, top: int = 8) -> list[Any]:
    """The concepts whose vectors weigh this unit most (by share of Σ|w|)."""
    rows = run.unit_rows(ANALYSIS, "weights", layer, unit)
    if rows is None or rows.empty:
        return []
    rows = rows.sort_values(["share", "label"], ascending=[False, True]).head(top)
    best = run.table(ANALYSIS, "concepts", columns=["layer", "concept", "iou", "best_unit"],
                     layer=layer)
    shown = rows[["concept", "weight", "share", "rank"]]
    if best is not None and not best.empty:
        shown = shown.merge(best[["concept", "iou"]], on="concept", how="left")
    out: list[Any] = []
    if best is not None and not best.empty:
        own = best[best["best_unit"] == unit]["concept"].tolist()
        out.append(Facts([("best single unit of", ", ".join(own) or "-"),
                          ("largest share", float(rows["share"].iloc[0]))],
                         formats={"largest share": "percent"}))
    out.append(Table(shown, name="concept-vectors-unit", labels=LABELS, formats=FORMATS,
                     caption="The concepts whose vectors give this unit the largest share of "
                             "their Σ|w| (weight on raw activations; rank 1 = the vector's "
                             "largest)."))
    return out


def layer_summary(run: RunView) -> Table | None:
    """Per layer: mean vector IoU, mean best-unit IoU, mean gain, share of wins."""
    layers = run.table(ANALYSIS, "layers")
    if layers is None or layers.empty:
        return None
    frame = layers[["layer", "mean_iou", "mean_best_unit_iou", "mean_gain", "wins",
                    "mean_units_90"]]
    return Table(frame, name="concept-vectors-summary", labels=LABELS, formats=FORMATS,
                 caption="concept-vectors per layer (held-out set IoU).")


def unit_columns(run: RunView, layer: str) -> UnitColumns | None:
    """Units page: the concept whose vector weighs the unit most (title, search), its share."""
    rows = run.table(ANALYSIS, "weights", columns=["layer", "concept", "unit", "share", "rank"],
                     layer=layer)
    if rows is None or rows.empty:
        return None
    top = rows.sort_values(["unit", "share"], ascending=[True, False]).drop_duplicates("unit")
    frame = pd.DataFrame({"unit": top["unit"].astype(int).to_numpy(),
                          "concept": top["concept"].astype(str).to_numpy(),
                          "share": top["share"].to_numpy(float),
                          "leads": (rows.groupby("unit")["rank"].min() == 1).reindex(
                              top["unit"]).fillna(False).to_numpy(bool)})
    return UnitColumns(frame, labels={"concept": "top vector concept", "share": "share of Σ|w|",
                                      "leads": "leads a vector"},
                       formats={"share": "percent", "concept": "text"}, title="concept",
                       score="share", flag="leads",
                       flag_label="the largest weight of some concept's vector",
                       search="concept")


def headlines(run: RunView) -> list[Headline]:
    """Share of concepts whose vector beats the best single unit, over all layers."""
    concepts = run.table(ANALYSIS, "concepts", columns=["layer", "wins"])
    if concepts is None or concepts.empty:
        return []
    return [Headline("concept vectors win", float(concepts["wins"].mean()),
                     f"share of {len(concepts)} (layer, concept) pairs whose vector beats the "
                     f"best single unit (held-out IoU)", format="percent")]
