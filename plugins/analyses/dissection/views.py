"""Run-level views of ``dissection``: the hierarchy of parts, the layer summary, the
comparison of runs, the report's headlines and sections.

The per-layer and per-unit views are in :mod:`.unit_views`; what is read and the
rules applied (the hierarchy sentence, the too-few-images warning) in
:mod:`.view_data`. ``Dissection``'s view hooks delegate here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from probe.views.blocks import Figure, Headline, Note, Picture, Pictures, Section, Table
from probe.views.columns import positions
from probe.views.format import format_value, layer_depth
from probe.views.plots import axes, category_color, cell, figure, subplots
from probe.views.run_view import RunView

from .figures import (
    detector_counts_figure,
    edges_figure,
    hierarchy_figure,
    iou_distribution_figure,
    ordered_categories,
)
from .view_data import (
    ANALYSIS,
    MIN_IMAGES,
    MIN_IMAGES_PER_CONCEPT,
    category_counts,
    dissected_layers,
    few_images_warning,
    hierarchy_sentence,
    image_count,
    iou_threshold,
    unit_table,
)

#: Line styles and markers telling runs apart in the comparison (colour = category).
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x")
#: Units listed per layer in the report (the dashboard lists all).
REPORT_UNITS = 15
#: Detectors shown as pictures on the report's first page.
HEADLINE_PICTURES = 6


def skipped_note(run: RunView, layers: Sequence[str]) -> Note | None:
    """One sentence naming the run's layers dissection did not analyse, and why."""
    skipped = [x for x in run.layers if x not in layers]
    if not skipped:
        return None
    chosen = run.options(ANALYSIS).get("layers") or ()
    why = ("they are not in the dissection.layers option" if chosen else
           "by default dissection analyses only conv-like layers with spatial (4-D) "
           "activations, not pooling, linear, dropout or flatten layers")
    return Note(f"Dissection skipped {len(skipped)} of the run's {len(run.layers)} layers "
                f"({', '.join(skipped)}): {why}. They have no detector counts (blank, not 0).")


def run_views(run: RunView) -> list[Any]:
    """The hierarchy of parts in words and in one chart, detector counts, IoU, edges."""
    counts = category_counts(run)
    if counts is None:
        return [Note("Dissection wrote no units table, so there is nothing to show.",
                     level="warning")]
    units = unit_table(run)
    layers = dissected_layers(run, units)
    threshold = iou_threshold(run)
    rule = f"IoU > {format_value(threshold)}"
    out: list[Any] = [note for note in (few_images_warning(run),) if note is not None]
    out.append(Note(hierarchy_sentence(counts, threshold)))
    skipped = skipped_note(run, layers)
    if skipped is not None:
        out.append(skipped)
    out.append(Figure(hierarchy_figure(counts), name="dissection-hierarchy", caption=(
        f"The hierarchy of parts. One bar per dissected layer, left = early; a segment is "
        f"the share of the layer's units that detect a concept of that category (best "
        f"{rule}), so a bar's height is the layer's share of detectors. The textbook "
        f"pattern is colour and texture at the bottom of early bars, parts in the middle "
        f"layers and objects in the late ones; compare it with the bars, not with the "
        f"story.")))
    out.append(Figure(detector_counts_figure(counts), name="dissection-detectors", caption=(
        "Left: detector units per layer, stacked by category. Right: distinct concepts "
        "they detect (several units may detect the same concept, so a right bar is never "
        "taller than its left one).")))
    out.append(Figure(iou_distribution_figure(units, threshold, layers), name="dissection-iou",
                      caption=(f"One box per layer: each unit's best IoU over all concepts "
                               f"(box = quartiles, line = median, dots = outliers). Units "
                               f"above the dashed line ({rule}) are detectors.")))
    edges = run.table(ANALYSIS, "edges")
    if edges is not None and not edges.empty:
        images = edges["ablation_images"].iloc[0] if "ablation_images" in edges else None
        sample = f" on {format_value(images)} images" if images is not None else ""
        out.append(Figure(edges_figure(edges), name="dissection-edges", caption=(
            f"One dot per part → object edge: a part detector in an earlier layer and an "
            f"object detector in a later one whose object has that part. x: share of the "
            f"object unit's |W| path mass that starts at the part unit; y: relative drop of "
            f"the object unit's mean activation when the part unit is zeroed{sample}. Dots "
            f"up and to the right are parts the object unit relies on.")))
    return out


def layer_summary(run: RunView) -> Table | None:
    """Per layer of the run: detectors, their share of units and unique concepts.

    Layers dissection did not analyse are blank (``NaN``), never 0.
    """
    units = unit_table(run)
    if units is None:
        return None
    layers = [*run.layers, *(x for x in dissected_layers(run, units) if x not in run.layers)]
    concept = "label" if "label" in units else "name"
    layer = positions(units["layer"], layers)  # every unit's layer is listed
    sizes = np.bincount(layer[layer >= 0], minlength=len(layers)).astype(float)
    detector = units["is_detector"].to_numpy(dtype=bool) & (layer >= 0)
    detectors = np.bincount(layer[detector], minlength=len(layers)).astype(float)
    codes, _ = pd.factorize(units[concept].to_numpy()[detector], use_na_sentinel=True)
    named = codes >= 0
    span = int(codes.max(initial=0)) + 1
    pairs = np.unique(layer[detector][named] * span + codes[named])
    unique = np.bincount(pairs // span, minlength=len(layers)).astype(float)
    dissected = sizes > 0
    frame = pd.DataFrame({"layer": layers})
    frame["detectors"] = np.where(dissected, detectors, np.nan)
    frame["detector_share"] = frame["detectors"] / np.where(dissected, sizes, np.nan)
    frame["unique_concepts"] = np.where(dissected, unique, np.nan)
    return Table(frame, name="dissection-layers", caption=(
        f"dissection per layer: detector units (best IoU > "
        f"{format_value(iou_threshold(run))}), their share of the layer's units and the "
        f"distinct concepts they detect; blank where dissection skipped the layer."),
        labels={"detectors": "detectors", "detector_share": "detector share",
                "unique_concepts": "unique concepts"},
        formats={"detectors": "int", "detector_share": "percent", "unique_concepts": "int"})


def _depth_figure(having: list[tuple[RunView, pd.DataFrame]], categories: list[str]) -> Any:
    cols = len(categories)
    layout = subplots(1, cols, shared_yaxes=True, subplot_titles=tuple(categories))
    traces = []
    top = 0.0
    for r, (run, counts) in enumerate(having):
        layers = list(dict.fromkeys(counts.sort_values("layer_index", kind="stable")["layer"]))
        depth = layer_depth(layers)
        by_category = dict(tuple(counts.groupby("category", sort=False)))
        for c, category in enumerate(categories):
            rows = by_category.get(category, counts.iloc[:0]).set_index("layer").reindex(layers)
            share = rows["share_of_units"].fillna(0).astype(float)
            top = max(top, float(share.max()) if len(share) else 0.0)
            traces.append({
                "type": "scatter", "x": [depth[x] for x in layers], "y": list(share),
                "text": layers, "mode": "lines+markers", "name": f"{run.label} · {category}",
                "legendgroup": run.label,
                "line": {"color": category_color(category, c), "dash": DASHES[r % len(DASHES)]},
                "marker": {"symbol": SYMBOLS[r % len(SYMBOLS)]},
                "hovertemplate": f"{run.label}<br>%{{text}} (depth %{{x:.2f}}): %{{y:.1%}} of "
                                 f"units detect {category}<extra></extra>", **cell(1, c + 1, cols)})
    for axis in axes(layout, "y"):
        layout[axis].update(range=[0, max(top * 1.1, 0.05)], tickformat=".0%")
    layout["yaxis"]["title"] = {"text": "share of the layer's units"}
    for axis in axes(layout, "x"):
        layout[axis].update(range=[-0.05, 1.05], title={"text": "relative depth"})
    layout.update(title={"text": "dissection: detector share per category by relative depth"},
                  height=380)
    return figure(traces, layout)


def _totals_figure(having: list[tuple[RunView, pd.DataFrame]], categories: list[str]) -> Any:
    labels = [run.label for run, _ in having]
    traces = []
    for c, category in enumerate(categories):
        values, shares = [], []
        for _, counts in having:
            rows = counts[counts["category"] == category]
            units = counts.drop_duplicates("layer")["units"].sum()
            values.append(int(rows["detectors"].sum()))
            shares.append(values[-1] / units if units else 0.0)
        traces.append({"type": "bar", "x": labels, "y": values, "name": category,
                       "customdata": shares, "marker": {"color": category_color(category, c)},
                       "hovertemplate": "%{x}: %{y} " + category + " detectors "
                                        "(%{customdata:.1%} of its dissected units)"
                                        "<extra></extra>"})
    return figure(traces, {
        "barmode": "stack", "title": {"text": "dissection: detector units per category, per run"},
        "yaxis": {"title": {"text": "detector units"}}, "legend": {"title": {"text": "category"}},
        "height": 380})


def compare_figures(runs: Sequence[RunView]) -> list[Any]:
    """Detector share per category by relative depth, and detector totals per run."""
    having = [(run, counts) for run in runs if (counts := category_counts(run)) is not None]
    if len(having) < 2:
        return []
    categories = ordered_categories([c for _, counts in having for c in counts["category"]])
    out: list[Any] = []  # differing options are flagged by the compare page for every analysis
    out.append(Figure(_depth_figure(having, categories), name="dissection-compare-depth",
                      caption=(
        "One panel per concept category, one line per run (line style tells runs apart): "
        "the share of a layer's units detecting that category, against the layer's relative "
        "depth among the dissected layers (first 0, last 1), so runs of different depth line "
        "up. All panels share one y-scale.")))
    out.append(Figure(_totals_figure(having, categories), name="dissection-compare-totals",
                      caption=("Detector units of each run over all its dissected layers, "
                               "stacked by category (hover: share of the run's dissected "
                               "units). Wider networks have more units, so compare shares "
                               "as well as counts.")))
    return out


def headlines(run: RunView) -> list[Any]:
    """Detector units, per-category counts, frequent concepts and the best detectors."""
    units = unit_table(run)
    if units is None:
        return []
    threshold = format_value(iou_threshold(run))
    detectors = units[units["is_detector"]]
    layers = dissected_layers(run, units)
    out: list[Any] = [Headline(
        "detector units", len(detectors), format="int",
        detail=f"of {format_value(len(units))} units in {len(layers)} dissected layers, "
               f"IoU > {threshold}")]
    for category in ordered_categories(list(detectors["category"])):
        mine = detectors[detectors["category"] == category]
        unique = mine["name"].nunique()
        out.append(Headline(f"{category} detectors", len(mine), format="int",
                            detail=f"{unique} unique concept{'s' if unique != 1 else ''}"))
    if not detectors.empty:
        frequent = sorted(detectors["name"].value_counts().items(),
                          key=lambda item: (-item[1], item[0]))[:5]  # ties by name
        out.append(Headline("most frequent concepts", ", ".join(
            f"{name} ({count})" for name, count in frequent),
            detail="detector units per concept"))
    if few_images_warning(run) is not None:
        out.append(Headline("images dissected", image_count(run), format="int", detail=(
            f"too few to trust: under {MIN_IMAGES} images or under "
            f"{MIN_IMAGES_PER_CONCEPT} per concept")))
    pictures = best_detector_pictures(run, detectors)
    if pictures is not None:
        out.append(pictures)
    return out


def best_detector_pictures(run: RunView, detectors: pd.DataFrame,
                           count: int = HEADLINE_PICTURES, size: int = 96) -> Pictures | None:
    """The ``count`` detectors of highest IoU as thumbnails (``None`` without images)."""
    from .unit_views import unit_thumbnails

    best = detectors.sort_values("iou", ascending=False, kind="stable").head(count)
    items = []
    for row in best.itertuples(index=False):
        png = unit_thumbnails(run, row.layer, [int(row.unit)], size).get(int(row.unit))
        if png is None:
            continue
        items.append(Picture(png, caption=f"{row.layer} · unit {int(row.unit)} · {row.name} "
                                          f"({row.category}) IoU {format_value(row.iou)}",
                             href=run.unit_link(row.layer, int(row.unit)), badge="detector"))
    if not items:
        return None
    return Pictures(items, name="dissection-best", caption=(
        "The detectors of highest IoU: each one's top exemplar, its mask (activation above "
        "the unit's threshold T_k) outlined and the rest dimmed, cropped to the mask."))


def report_sections(run: RunView) -> list[Section]:
    """The run-level section, then one short section per dissected layer (top units only)."""
    from .unit_views import layer_blocks

    sections = [Section(ANALYSIS, run_views(run), analysis=ANALYSIS)]
    for layer in dissected_layers(run):
        sections.append(Section(f"{ANALYSIS} · {layer}", layer_blocks(run, layer, REPORT_UNITS),
                                analysis=ANALYSIS, layer=layer))
    return sections
