"""Per-layer and per-unit views of ``dissection``: the units of a layer, one unit's
concepts, exemplars with its mask and part → object links, Units-page columns and
thumbnails. What is read comes from :mod:`.view_data`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from probe.views.blocks import Facts, Figure, Note, Picture, Pictures, Table, UnitColumns
from probe.views.format import format_value
from probe.views.images import active_box, crop, mask_overlay, png_bytes, thumbnail, unpack_mask
from probe.views.plots import category_color, figure, vline
from probe.views.run_view import RunView

from .figures import ordered_categories
from .view_data import (
    ANALYSIS,
    category_counts,
    iou_threshold,
    runner_up,
    skip_reason,
    unit_table,
)

#: Longer side of an exemplar on the unit page, in pixels.
EXEMPLAR_SIZE = 160
#: An exemplar whose mask covers less than this share of the image is cropped to it.
SMALL_MASK = 0.25
#: Labels shown in a unit's concept ranking.
RANKING = 10

UNIT_LABELS = {"unit": "unit", "name": "best concept", "category": "category", "iou": "IoU",
               "runner_up": "runner-up", "gap": "gap to runner-up",
               "threshold": "T_k (activation threshold)", "is_detector": "detector"}
UNIT_FORMATS = {"iou": "fixed3", "gap": "fixed3", "unit": "int"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "layer"


def _not_dissected(run: RunView, layer: str) -> list[Any]:
    """A note that ``layer`` was skipped (nothing when dissection has no units at all)."""
    return [] if unit_table(run) is None else [Note(skip_reason(run, layer))]


def _with_runner_up(run: RunView, layer: str, units: pd.DataFrame) -> pd.DataFrame:
    """``units`` (rows of ``layer``'s ``units`` table) with each unit's runner-up label,
    computed for the whole layer once per run (the Units page, the layer's table and
    every unit page of the layer read it)."""
    every = run.memo((ANALYSIS, "runner-up", layer),
                     lambda: runner_up(run, layer, unit_table(run, layer)))
    return units.merge(every, on="unit", how="left")


def category_table(run: RunView, layer: str, units: pd.DataFrame) -> Table:
    """Detectors of ``layer`` per category, with the concepts they detect."""
    counts = category_counts(run)
    mine = counts[counts["layer"] == layer] if counts is not None else pd.DataFrame()
    detectors = units[units["is_detector"]]
    concepts = {c: ", ".join(f"{name} ×{n}" for name, n in rows["name"].value_counts().items())
                for c, rows in detectors.groupby("category")}
    frame = pd.DataFrame({"category": mine["category"].to_numpy(),
                          "detectors": mine["detectors"].to_numpy(),
                          "share_of_units": mine["share_of_units"].to_numpy(),
                          "unique_concepts": mine["unique_concepts"].to_numpy()})
    frame["concepts"] = [concepts.get(c, "") for c in frame["category"]]
    order = {c: i for i, c in enumerate(ordered_categories(list(frame["category"])))}
    frame = frame.sort_values("category", key=lambda s: s.map(order)).reset_index(drop=True)
    return Table(frame, name=f"dissection-categories-{_slug(layer)}", caption=(
        f"Detector units of {layer} per concept category (best IoU > "
        f"{format_value(iou_threshold(run))}), their share of the layer's {len(units)} units "
        f"and the concepts they detect (×: units per concept)."),
        labels={"share_of_units": "share of units", "unique_concepts": "unique concepts"},
        formats={"detectors": "int", "share_of_units": "percent", "unique_concepts": "int"})


def units_table(run: RunView, layer: str, units: pd.DataFrame,
                limit: int | None = None) -> Table:
    """Every unit of ``layer`` (or the ``limit`` of highest IoU), non-detectors muted."""
    threshold = format_value(iou_threshold(run))
    frame = _with_runner_up(run, layer, units)
    shown = pd.DataFrame({
        "unit": frame["unit"].astype(int),
        "href": [run.unit_link(layer, int(u)) for u in frame["unit"]],
        "name": frame["name"].where(frame["name"] != "", "(none)"),
        "category": frame["category"], "iou": frame["iou"],
        "runner_up": frame["runner_up"].fillna(""), "gap": frame["gap"],
        "threshold": frame.get("threshold", np.nan),
        "is_detector": frame["is_detector"], "not_detector": ~frame["is_detector"]})
    shown = shown.sort_values(["iou", "unit"], ascending=[False, True], kind="stable")
    shown = shown.reset_index(drop=True)
    if limit is not None:
        shown = shown.head(limit)
    which = f"the {len(shown)} units of highest IoU" if len(shown) < len(frame) else \
        f"the {len(frame)} units"
    return Table(shown, name=f"dissection-units-{_slug(layer)}", caption=(
        f"{which.capitalize()} of {layer}, by best IoU: best concept over all categories, "
        f"the runner-up label and the IoU gap to it (a small gap: the unit is not specific to "
        f"its concept), and T_k, the activation above which a pixel is in the unit's mask. "
        f"Greyed rows are not detectors (IoU ≤ {threshold})."),
        labels=UNIT_LABELS, formats=UNIT_FORMATS, links={"unit": "href"},
        muted="not_detector", muted_label=f"not a detector (IoU ≤ {threshold})",
        sort=("iou", True), hidden=("href", "not_detector"))


def layer_blocks(run: RunView, layer: str, limit: int | None = None) -> list[Any]:
    """The blocks about ``layer``: its detectors per category and its units (top ``limit``)."""
    units = unit_table(run, layer)
    if units is None:
        return _not_dissected(run, layer)
    out: list[Any] = [category_table(run, layer, units), units_table(run, layer, units, limit)]
    if limit is not None and len(units) > limit:
        out.append(Note(f"{len(units) - limit} more units of {layer} are not listed here "
                        f"(the dashboard's Units page lists all {len(units)})."))
    return out


def layer_views(run: RunView, layer: str) -> list[Any]:
    """Layers page: the layer's detectors per category and a table of all its units."""
    return layer_blocks(run, layer)


def ranking_figure(ranking: pd.DataFrame, threshold: float, title: str) -> Any:
    """Horizontal bars of a unit's best labels across categories, with the threshold line."""
    rows = ranking[ranking["iou"].astype(float) >= 0]
    rows = rows.sort_values("iou", ascending=False, kind="stable").head(RANKING)
    names = [f"{n} ({c})" for n, c in zip(rows["name"], rows["category"], strict=True)]
    traces = []
    for i, category in enumerate(ordered_categories(list(rows["category"]))):
        mine = rows["category"].astype(str) == category
        traces.append({"type": "bar", "x": rows.loc[mine, "iou"].to_numpy(dtype=float),
                       "y": [n for n, m in zip(names, mine, strict=True) if m],
                       "orientation": "h", "name": category,
                       "marker": {"color": category_color(category, i)},
                       "hovertemplate": "%{y}: IoU %{x:.4f}<extra></extra>"})
    shape, note = vline(threshold, f"detector: IoU > {format_value(threshold)}", "dot",
                        "#d62728", bottom=True)
    return figure(traces, {
        "shapes": [shape], "annotations": [note], "title": {"text": title},
        "xaxis": {"title": {"text": "IoU"}}, "height": max(240, 26 * len(rows) + 110),
        "margin": {"l": 170}, "legend": {"title": {"text": "category"}},
        "yaxis": {"categoryorder": "array", "categoryarray": names[::-1]}})


def exemplar_rgb(run: RunView, row: Mapping[str, Any], size: int,
                 crop_below: float) -> tuple[np.ndarray | None, bool]:
    """An exemplar with the unit's mask overlaid, cropped to the mask when it covers less
    than ``crop_below`` of the image; ``(None, False)`` when the image is unavailable."""
    image = run.image(int(row["image"]))
    if image is None:
        return None, False
    mask = unpack_mask(row["mask"], int(row["mask_height"]), int(row["mask_width"]))
    rgb = mask_overlay(image, mask)
    cropped = False
    if 0 < mask.mean() < crop_below:
        box = active_box(mask.astype(np.float32), rgb.shape[:2])
        if box != (0, 0, *rgb.shape[:2]):
            rgb, cropped = crop(rgb, box), True
    return thumbnail(rgb, size), cropped


def exemplar_blocks(run: RunView, layer: str, unit: int, threshold_k: float) -> list[Any]:
    """The unit's exemplars with its mask, or their numbers when images cannot be loaded."""
    rows = run.unit_rows(ANALYSIS, "exemplars", layer, unit)
    if rows is None or rows.empty:
        return []
    records = rows.sort_values("rank").to_dict("records")
    problem = run.why_no_images()
    items, missing = [], []
    for record in ([] if problem else records):
        rgb, cropped = exemplar_rgb(run, record, EXEMPLAR_SIZE, SMALL_MASK)
        if rgb is None:
            missing.append(int(record["image"]))
            continue
        items.append(Picture(png_bytes(rgb), caption=(
            f"#{int(record['rank']) + 1} · image {int(record['image'])} · activation "
            f"{format_value(float(record['activation']))} · "
            f"{format_value(int(record['active_pixels']))} mask px"
            f"{' · cropped to the mask' if cropped else ''}")))
    if items:
        out: list[Any] = [Pictures(items, name="dissection-exemplars", caption=(
            f"Top exemplars (highest raw activation maximum). Inside the yellow outline the "
            f"unit's upsampled activation exceeds T_k = {format_value(threshold_k)}; outside "
            f"is dimmed. Images where the mask covers under {SMALL_MASK:.0%} are cropped to "
            f"it."))]
        if missing:
            out.append(Note(f"Images {', '.join(map(str, missing))} are not in the data set "
                            f"as reloaded here.", level="warning"))
        return out
    frame = pd.DataFrame({
        "rank": [int(r["rank"]) + 1 for r in records],
        "image": [int(r["image"]) for r in records],
        "activation": [float(r["activation"]) for r in records],
        "active_pixels": [int(r["active_pixels"]) for r in records],
        "mask_share": [int(r["active_pixels"]) / (int(r["mask_height"]) * int(r["mask_width"]))
                       for r in records]})
    return [Note(f"The exemplar images cannot be shown: {problem or 'they are not in the data set'}"
                 f"; their numbers follow.", level="warning"),
            Table(frame, name="dissection-exemplars", caption=(
                "Top exemplars (highest raw activation maximum): data-set index, activation "
                "maximum and the pixels of the unit's mask (activation above T_k)."),
                labels={"active_pixels": "mask pixels", "mask_share": "share of the image"},
                formats={"mask_share": "percent", "active_pixels": "int"})]


def link_blocks(run: RunView, layer: str, unit: int, best: Mapping[str, Any]) -> list[Any]:
    """The part → object edges this unit is in, as a table linking the other units."""
    edges = run.table(ANALYSIS, "edges")
    if edges is None:
        return []
    rows = []
    for role, mine, other in (("part of", "part", "object"), ("made of", "object", "part")):
        hits = edges[(edges[f"{mine}_layer"].astype(str) == layer)
                     & (edges[f"{mine}_unit"] == unit)]
        for edge in hits.to_dict("records"):
            target, number = str(edge[f"{other}_layer"]), int(edge[f"{other}_unit"])
            rows.append({"role": role, "other": f"{target} · unit {number}",
                         "href": run.unit_link(target, number),
                         "concept": f"{edge['part_name']} → {edge['object_name']}",
                         "weight_path": edge.get("weight_path"),
                         "ablation_drop": edge.get("ablation_drop")})
    if not rows:
        if best.get("is_detector") and best.get("category") in ("part", "object"):
            return [Note(f"This {best['category']} detector is in no part → object link (no "
                         f"detector of a related concept in an "
                         f"{'later' if best['category'] == 'part' else 'earlier'} layer).")]
        return []
    return [Table(pd.DataFrame(rows), name="dissection-links", caption=(
        "Part → object links: 'part of' an object detector in a later layer, or 'made of' a "
        "part detector in an earlier one. Weight path: share of the object unit's |W| path "
        "mass from the part unit; ablation drop: relative drop of the object unit's mean "
        "activation when the part unit is zeroed."),
        labels={"other": "unit", "weight_path": "weight path", "ablation_drop": "ablation drop"},
        formats={"weight_path": "percent", "ablation_drop": "percent"},
        links={"other": "href"}, hidden=("href",))]


def unit_views(run: RunView, layer: str, unit: int) -> list[Any]:
    """The unit's facts, concept ranking, exemplars with its mask and part → object links."""
    units = unit_table(run, layer)
    if units is None:
        return _not_dissected(run, layer)
    row = units[units["unit"] == unit]
    if row.empty:
        return [Note(f"Layer {layer} has {len(units)} dissected units; there is no unit {unit}.",
                     level="warning")]
    best = _with_runner_up(run, layer, row).iloc[0].to_dict()
    threshold = iou_threshold(run)
    iou, detector = float(best["iou"]), bool(best["is_detector"])
    out: list[Any] = []
    if not detector:
        out.append(Note(f"Unit {unit} is not a detector: its best IoU {format_value(iou)} ≤ "
                        f"threshold {format_value(threshold)}, so its best concept is a guess, "
                        f"not a finding."))
    runner = f"{best['runner_up']} ({best['runner_up_category']})" if best["runner_up"] else ""
    method = str(best.get("threshold_method") or "")
    bound = best.get("threshold_error_bound")
    if method == "sketch" and bound is not None and np.isfinite(bound):
        method += f" (± {format_value(float(bound))})"
    out.append(Facts([("best concept", best["name"] or "none"),
                      ("category", best["category"] or "none"), ("IoU", iou),
                      ("detector", detector),
                      ("detector threshold", f"IoU > {format_value(threshold)}"),
                      ("runner-up", runner), ("gap to runner-up", best["gap"]),
                      ("T_k (activation threshold)", best.get("threshold")),
                      ("threshold method", method)],
                     name="dissection-unit",
                     formats={"IoU": "fixed3", "gap to runner-up": "fixed3"}))
    ranking = run.unit_rows(ANALYSIS, "labels", layer, unit)
    if ranking is not None and not ranking.empty:
        out.append(Figure(ranking_figure(ranking, threshold, f"concepts of {layer} · unit "
                                                             f"{unit} by IoU"),
                          name="dissection-ranking", caption=(
            f"The unit's {RANKING} best labels over all categories (the top labels kept per "
            f"category), coloured by category; right of the dotted line (IoU > "
            f"{format_value(threshold)}) a label would make the unit a detector.")))
    out += exemplar_blocks(run, layer, unit, float(best.get("threshold", np.nan)))
    out += link_blocks(run, layer, unit, best)
    return out


def unit_columns(run: RunView, layer: str) -> UnitColumns | None:
    """Units page: best concept (the card's title), category, IoU, runner-up gap, detector."""
    units = unit_table(run, layer)
    if units is None:
        return None
    frame = _with_runner_up(run, layer, units)
    columns = pd.DataFrame({"unit": frame["unit"].astype(int), "name": frame["name"],
                            "category": frame["category"], "iou": frame["iou"],
                            "runner_up": frame["runner_up"].fillna(""), "gap": frame["gap"],
                            "is_detector": frame["is_detector"]})
    return UnitColumns(columns, labels=UNIT_LABELS, formats=UNIT_FORMATS, title="name",
                       score="iou", flag="is_detector", flag_label="detector", search="name")


def unit_thumbnails(run: RunView, layer: str, units: Sequence[int],
                    size: int = 96) -> dict[int, bytes]:
    """``{unit: png}``: each unit's top exemplar, its mask overlaid, cropped to the mask."""
    if run.why_no_images() is not None:
        return {}
    rows = run.units_rows(ANALYSIS, "exemplars", layer, units)
    if rows is None or rows.empty:
        return {}
    wanted = {int(u) for u in units}
    top = rows[rows["unit"].isin(wanted)].sort_values(["unit", "rank"]).drop_duplicates("unit")
    out = {}
    for record in top.to_dict("records"):
        rgb, _ = exemplar_rgb(run, record, size, 1.0)
        if rgb is not None:
            out[int(record["unit"])] = png_bytes(rgb)
    return out
