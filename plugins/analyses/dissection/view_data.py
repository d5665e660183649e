"""What dissection's views read and the rules they apply (no blocks are built here).

* :func:`unit_table`, :func:`dissected_layers`, :func:`category_counts`,
  :func:`runner_up` — the run's tables, in network order, as the views need them;
* :func:`hierarchy_sentence` — the hierarchy of parts in words, generated from the
  detector counts (never a fixed sentence);
* :func:`few_images_warning` — the too-few-images rule (:data:`MIN_IMAGES`,
  :data:`MIN_IMAGES_PER_CONCEPT`);
* :func:`skip_reason` — why a layer of the run was not dissected.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from probe.views.blocks import Note
from probe.views.columns import distinct, positions
from probe.views.format import format_value
from probe.views.run_view import RunView

from .figures import ordered_categories

ANALYSIS = "dissection"
#: Columns of ``units`` the views read (never the whole table's other columns).
UNIT_COLUMNS = ("layer", "unit", "label", "name", "category", "iou", "is_detector",
                "threshold", "threshold_method", "threshold_error_bound")
#: Default of the ``iou_threshold`` option (used when a run records none).
DEFAULT_IOU_THRESHOLD = 0.04
#: Fewer images than this in the whole data set: the warning is shown.
MIN_IMAGES = 100
#: Fewer images per concept present in the data set (on average): the warning is shown.
MIN_IMAGES_PER_CONCEPT = 10
#: Categories the textbook story puts first (colour, texture, material: low level).
LOW_LEVEL = ("color", "texture", "material")
TEXTBOOK = "colour and texture early, parts in the middle, objects late"


def unit_table(run: RunView, layer: str | None = None) -> pd.DataFrame | None:
    """The ``units`` rows (``layer`` as text; only ``layer``'s rows when given), or ``None``.

    Kept in the run's memo (most views of a page read it); treat it as read-only.
    """
    return run.memo((ANALYSIS, "unit-table", layer), lambda: _unit_table(run, layer))


def _unit_table(run: RunView, layer: str | None) -> pd.DataFrame | None:
    frame = run.table(ANALYSIS, "units", columns=UNIT_COLUMNS, layer=layer)
    if frame is None or frame.empty:
        return None
    out = frame.assign(layer=frame["layer"].astype(str),
                       is_detector=frame["is_detector"].fillna(False).astype(bool),
                       iou=frame["iou"].astype(float))
    if "name" in out:
        out["name"] = out["name"].fillna("").astype(str)
    if "category" in out:
        out["category"] = out["category"].fillna("").astype(str)
    return out


def dissected_layers(run: RunView, units: pd.DataFrame | None = None) -> list[str]:
    """The layers dissection analysed, in network order."""
    units = unit_table(run) if units is None else units
    if units is None:
        return []
    present = distinct(units["layer"])
    return [x for x in run.layers if x in present] + [x for x in present
                                                      if x not in run.layers]


def iou_threshold(run: RunView) -> float:
    """The run's detector threshold (``IoU > this``)."""
    value = run.options(ANALYSIS).get("iou_threshold")
    if value is None:
        layers = run.table(ANALYSIS, "layers", columns=("layer", "iou_threshold"))
        if layers is not None and not layers.empty and "iou_threshold" in layers:
            value = layers["iou_threshold"].iloc[0]
    return float(value) if value is not None else DEFAULT_IOU_THRESHOLD


def skip_reason(run: RunView, layer: str) -> str:
    """One sentence: dissection did not analyse ``layer``, and why as far as the run tells."""
    chosen = [str(x) for x in run.options(ANALYSIS).get("layers") or ()]
    if chosen:
        return (f"Dissection skipped layer {layer}: it is not among the layers selected by "
                f"the dissection.layers option ({', '.join(chosen)}).")
    return (f"Dissection skipped layer {layer}: by default it dissects only conv-like layers "
            f"with spatial (4-D) activations and leaves out pooling, linear, dropout and "
            f"flatten layers. Name the layer in dissection.layers to dissect it.")


def _categories(run: RunView, units: pd.DataFrame) -> list[str]:
    """Every concept category of the run (the label space's, where the tables say it)."""
    summary = run.table(ANALYSIS, "summary", columns=("category",))
    found: list[Any] = [] if summary is None else distinct(summary["category"])
    if not found:
        labels = run.table(ANALYSIS, "labels", columns=("category",))
        found = [] if labels is None else distinct(labels["category"])
    return ordered_categories(found + distinct(units["category"]))


def category_counts(run: RunView) -> pd.DataFrame | None:
    """Detectors per dissected layer and category, as the ``summary`` table holds them.

    Columns ``layer, layer_index, category, units, detectors, unique_concepts,
    share_of_units`` (detectors of the category / units of the layer), every
    category of the run in every dissected layer; ``None`` without ``units``.
    Kept in the run's memo (several views of a page read it).
    """
    return run.memo((ANALYSIS, "category_counts"), lambda: _category_counts(run))


def _category_counts(run: RunView) -> pd.DataFrame | None:
    units = unit_table(run)
    if units is None:
        return None
    return count_categories(units, dissected_layers(run, units), _categories(run, units))


def count_categories(units: pd.DataFrame, layers: list[str],
                     categories: list[str]) -> pd.DataFrame:
    """:func:`category_counts` of a ``units`` table over ``layers`` × ``categories``.

    Counted with integer codes and ``np.bincount`` (a group-by over text keys costs
    about ten times as much on a 5,000-unit run); a unit whose layer or category is
    not listed is not counted, a concept that is missing (``NaN``) is not a concept.
    """
    concept = "label" if "label" in units else "name"
    n_layers, n_categories = len(layers), len(categories)
    layer = positions(units["layer"], layers)
    category = positions(units["category"], categories)
    counted = layer >= 0
    sizes = np.bincount(layer[counted], minlength=n_layers)
    chosen = counted & (category >= 0) & units["is_detector"].to_numpy(dtype=bool)
    cell = layer[chosen] * n_categories + category[chosen]
    detectors = np.bincount(cell, minlength=n_layers * n_categories)
    codes, _ = pd.factorize(units[concept].to_numpy()[chosen], use_na_sentinel=True)
    named = codes >= 0
    pairs = np.unique(cell[named] * (int(codes.max(initial=0)) + 1) + codes[named])
    unique = np.bincount(pairs // (int(codes.max(initial=0)) + 1),
                         minlength=n_layers * n_categories)
    per_layer = np.repeat(sizes, n_categories)
    return pd.DataFrame({
        "layer": np.repeat(np.array(layers, dtype=object), n_categories),
        "layer_index": np.repeat(np.arange(n_layers), n_categories),
        "category": np.tile(np.array(categories, dtype=object), n_layers),
        "units": per_layer.astype(int),
        "detectors": detectors.astype(int),
        "unique_concepts": unique.astype(int),
        "share_of_units": np.where(per_layer > 0, detectors / np.maximum(per_layer, 1), 0.0),
    })


def runner_up(run: RunView, layer: str, units: pd.DataFrame) -> pd.DataFrame:
    """Per unit of ``layer``: its runner-up label among the kept ones and the IoU gap to it.

    Columns ``unit, runner_up, runner_up_category, runner_up_iou, gap`` (one row per
    unit of ``units``; ``NaN``/empty where the unit has no best label or no other
    label is kept). The runner-up is the best label other than the unit's best
    across every category of the ``labels`` table (its top ``top_labels`` per
    category).
    """
    out = pd.DataFrame({"unit": units["unit"].to_numpy()})
    out["runner_up"], out["runner_up_category"] = "", ""
    out["runner_up_iou"], out["gap"] = np.nan, np.nan
    labels = run.table(ANALYSIS, "labels", columns=("layer", "unit", "category", "label",
                                                     "name", "iou"), layer=layer)
    if labels is None or labels.empty:
        return out
    key = "label" if "label" in labels and "label" in units else "name"
    # each label row's unit as a row of ``units`` (-1: not there), then that unit's best
    where = pd.Index(units["unit"].to_numpy()).get_indexer(labels["unit"].to_numpy())
    iou = labels["iou"].to_numpy(dtype=float)
    label = labels[key].to_numpy(dtype=object)
    kept = (where >= 0) & (iou >= 0)
    kept[kept] = label[kept] != units[key].to_numpy(dtype=object)[where[kept]]
    rows = np.flatnonzero(kept)
    if not len(rows):
        return out
    # per unit the kept label of highest IoU, the first in table order on ties (as idxmax)
    order = rows[np.lexsort((rows, -iou[rows], where[rows]))]
    _, first = np.unique(where[order], return_index=True)
    top = order[first]
    named = units["label" if "label" in units else "name"].to_numpy(dtype=object)
    has = (named != -1) & (named != "")  # no best label: no runner-up
    position = where[top]
    for column, source in (("runner_up", "name"), ("runner_up_category", "category")):
        values = np.full(len(units), "", dtype=object)
        values[position] = labels[source].iloc[top].astype(str).fillna("").to_numpy(object)
        out[column] = np.where(has, values, "")
    runner = np.full(len(units), np.nan)
    runner[position] = iou[top]
    out["runner_up_iou"] = np.where(has, runner, np.nan)
    out["gap"] = units["iou"].to_numpy(dtype=float) - out["runner_up_iou"].to_numpy()
    return out


def image_count(run: RunView) -> int | None:
    """Images dissection ran on: the manifest's data set size, else from the tables."""
    size = (run.manifest.get("dataset") or {}).get("size")
    if size:
        return int(size)
    layers = run.table(ANALYSIS, "layers", columns=("layer", "height", "width"))
    units = run.table(ANALYSIS, "units", columns=("layer", "activations"))
    if layers is None or units is None or layers.empty or "activations" not in units \
            or not {"height", "width"} <= set(layers.columns):
        return None
    row = layers.iloc[0]
    count = units[units["layer"].astype(str) == str(row["layer"])]["activations"]
    positions = int(row["height"]) * int(row["width"])
    return int(count.iloc[0]) // positions if len(count) and positions else None


def concept_count(run: RunView) -> int:
    """Concepts present in the data set: labels with truth pixels in the ``labels`` table."""
    labels = run.table(ANALYSIS, "labels", columns=("label", "name", "truth"))
    if labels is not None and not labels.empty:
        if "truth" in labels:
            labels = labels[labels["truth"].astype(float) > 0]
        return int(labels["label" if "label" in labels else "name"].nunique())
    units = unit_table(run)
    return 0 if units is None else int(units.loc[units["name"] != "", "name"].nunique())


def few_images_warning(run: RunView) -> Note | None:
    """A warning when dissection ran on too few images to trust (``None`` otherwise).

    The rule: fewer than :data:`MIN_IMAGES` images, or fewer than
    :data:`MIN_IMAGES_PER_CONCEPT` images per concept present in the data set on
    average (images / concepts with truth pixels).
    """
    images = image_count(run)
    if images is None:
        return None
    concepts = concept_count(run)
    per = images / concepts if concepts else math.inf
    if images >= MIN_IMAGES and per >= MIN_IMAGES_PER_CONCEPT:
        return None
    where = (f" for {concepts} concepts present in them ({format_value(per)} images per "
             f"concept on average)") if concepts else ""
    return Note(f"Dissection ran on {format_value(images)} images{where}. With fewer than "
                f"{MIN_IMAGES} images, or fewer than {MIN_IMAGES_PER_CONCEPT} images per "
                f"concept on average, thresholds, IoU scores and detector counts are too noisy "
                f"to trust: rerun on a larger data set before reading the hierarchy.",
                level="warning")


def _peaks(counts: pd.DataFrame, layers: list[str]) -> dict[str, tuple[int, int, float]]:
    """``{category: (detectors, peak layer index, peak share)}`` for categories with any."""
    out = {}
    for category in ordered_categories(list(counts["category"])):
        rows = counts[counts["category"] == category].set_index("layer").reindex(layers)
        share = rows["share_of_units"].fillna(0).to_numpy(dtype=float)
        total = int(rows["detectors"].fillna(0).sum())
        if total:
            peak = int(np.argmax(share))  # the first layer of the highest share
            out[category] = (total, peak, float(share[peak]))
    return out


def _order(peaks: dict[str, tuple[int, int, float]], layers: list[str]
           ) -> tuple[list[str], int, int]:
    """Sentences comparing peaks, and how many comparisons agree / contradict the story."""
    said, agree, contradict = [], 0, 0
    if "part" in peaks and "object" in peaks:
        p, o = peaks["part"][1], peaks["object"][1]
        if o > p:
            said.append(f"Objects peak later than parts ({layers[o]} after {layers[p]}).")
            agree += 1
        elif o == p:
            said.append(f"Objects and parts peak in the same layer ({layers[o]}).")
        else:
            said.append(f"Objects peak earlier than parts ({layers[o]} before {layers[p]}).")
            contradict += 1
    else:
        lacking = " or ".join(c for c in ("part", "object") if c not in peaks)
        said.append(f"With no {lacking} detectors, whether objects peak later than parts "
                    f"cannot be checked.")
    late = [(c, peaks[c][1]) for c in ("part", "object") if c in peaks]
    for low in (c for c in LOW_LEVEL if c in peaks):
        after = [f"{c}s ({layers[i]})" for c, i in late if peaks[low][1] > i]
        before = [c for c, i in late if peaks[low][1] < i]
        if after:
            said.append(f"{low.capitalize()} peaks ({layers[peaks[low][1]]}) after "
                        f"{' and '.join(after)}.")
            contradict += 1
        elif before:
            agree += 1
    return said, agree, contradict


def hierarchy_sentence(counts: pd.DataFrame, threshold: float) -> str:
    """The hierarchy of parts in words, from the detector counts of :func:`category_counts`.

    Names each category with detectors, its detector count and the layer where
    its share of units peaks (the first such layer on ties), the categories
    without detectors, whether objects peak later than parts and whether the
    peaks agree with or contradict the textbook order (colour and texture early,
    parts in the middle, objects late).
    """
    ordered = counts.sort_values("layer_index", kind="stable")
    layers = list(dict.fromkeys(ordered["layer"].astype(str)))
    categories = ordered_categories(list(counts["category"]))
    rule = f"best IoU > {format_value(threshold)}"
    peaks = _peaks(counts.assign(layer=counts["layer"].astype(str)), layers)
    where = f"{len(layers)} dissected layer{'s' if len(layers) != 1 else ''}"
    if not peaks:
        return (f"No unit of the {where} is a detector ({rule}) of any category, so the counts "
                f"show no hierarchy of parts.")
    found = "; ".join(f"{c}: {format_value(n)} (peak in {layers[i]}, "
                      f"{format_value(s, 'percent')} of its units)"
                      for c, (n, i, s) in peaks.items())
    text = [f"Detectors ({rule}) across the {where}: {found}."]
    absent = [c for c in categories if c not in peaks]
    if absent:
        text.append(f"No detectors of {', '.join(absent)}.")
    if len(layers) < 2:
        text.append("With one dissected layer, no order across depth can be read.")
        return " ".join(text)
    said, agree, contradict = _order(peaks, layers)
    text += said
    if contradict:
        text.append(f"These counts contradict the textbook story ({TEXTBOOK}).")
    elif agree:
        text.append(f"These counts agree with the textbook story ({TEXTBOOK}).")
    else:
        text.append(f"These counts neither confirm nor contradict the textbook story "
                    f"({TEXTBOOK}).")
    return " ".join(text)
