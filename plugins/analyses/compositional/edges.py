"""Parts → objects as logic (``parts_objects``) beside dissection's wiring (its ``edges``).

Dissection's ``edges`` link a part-detector unit in an earlier layer to an
object-detector unit in a later layer **only when the part is a part of that
object** (its ``candidate_edges``), so every edge "comes from its object's own
parts" by construction. What can disagree is *which* parts: for an object unit
``(layer, unit)`` of ``parts_objects`` whose object dissection names too
(``object_name == object``), its incoming edges are the part detectors its
object's parts are wired from, and an edge is **named** when its part concept
(``part_label``) is a term of the unit's parts formula (``terms``).

Per layer (:func:`agreement_by_layer`): ``own_parts``, the share of object
units whose parts formula is its object's own parts (OR / AND only), beside
``edges_named``, the share of the edges into the linked object units (those with
at least one edge) that come from a part the formula names, and the same share
of the edges' weight-path mass (``weight_named``) and of their positive ablation
drops (``drop_named``). Pure functions of the two tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

UNIT_COLUMNS = ("layer", "unit", "object", "formula", "own_parts", "edges", "named",
                "weight", "named_weight", "drop", "named_drop")
LAYER_COLUMNS = ("layer", "object_units", "own_parts", "linked_units", "linked_own_parts",
                 "edges", "edges_named", "weight_named", "drop_named")


def _terms(value: object) -> set[int]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return set()
    return {int(t) for t in value}  # a list (in memory) or an array (read from parquet)


def agreement_by_unit(parts_objects: pd.DataFrame, edges: pd.DataFrame) -> pd.DataFrame:
    """Per object unit: its dissection edges and how many come from parts its formula names.

    ``weight`` / ``named_weight`` sum the edges' ``weight_path`` (NaN when none has
    one), ``drop`` / ``named_drop`` their ablation drops clipped at 0.
    """
    records = []
    edges = edges.assign(object_layer=edges["object_layer"].astype(str))
    into = {key: rows for key, rows in edges.groupby(["object_layer", "object_unit"])}
    for row in parts_objects.to_dict("records"):
        mine = into.get((str(row["layer"]), int(row["unit"])))
        if mine is not None:
            mine = mine[mine["object_name"].astype(str) == str(row["object"])]
        terms = _terms(row.get("terms"))
        named = mine["part_label"].astype(int).isin(terms).to_numpy() if mine is not None \
            else np.zeros(0, dtype=bool)
        weight = mine["weight_path"].astype(float).to_numpy() if mine is not None else \
            np.zeros(0)
        drop = mine["ablation_drop"].astype(float).clip(lower=0).to_numpy() \
            if mine is not None else np.zeros(0)
        records.append({
            "layer": str(row["layer"]), "unit": int(row["unit"]), "object": row["object"],
            "formula": row["formula"], "own_parts": bool(row["own_parts"]),
            "edges": len(named), "named": int(named.sum()),
            "weight": _sum(weight), "named_weight": _sum(weight, named),
            "drop": _sum(drop), "named_drop": _sum(drop, named)})
    return pd.DataFrame(records, columns=list(UNIT_COLUMNS))


def _sum(values: np.ndarray, where: np.ndarray | None = None) -> float:
    """Sum of the finite values (of those ``where`` is true); NaN when none is finite."""
    finite = np.isfinite(values)
    if not finite.any():
        return float("nan")
    chosen = finite if where is None else finite & where
    return float(values[chosen].sum())


def _share(part: pd.Series, whole: pd.Series) -> float:
    top = _sum(whole.to_numpy(dtype=float))
    return _sum(part.to_numpy(dtype=float)) / top if top and np.isfinite(top) else float("nan")


def agreement_by_layer(per_unit: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Per layer of :func:`agreement_by_unit`'s rows (in ``order`` where given)."""
    rows = []
    names = list(dict.fromkeys(per_unit["layer"]))
    rank = {name: i for i, name in enumerate(order or [])}
    names.sort(key=lambda x: rank.get(x, len(rank)))
    for layer in names:
        mine = per_unit[per_unit["layer"] == layer]
        linked = mine[mine["edges"] > 0]
        total = int(linked["edges"].sum())
        rows.append({
            "layer": layer, "object_units": len(mine),
            "own_parts": float(mine["own_parts"].mean()), "linked_units": len(linked),
            "linked_own_parts": float(linked["own_parts"].mean()) if len(linked) else np.nan,
            "edges": total,
            "edges_named": int(linked["named"].sum()) / total if total else np.nan,
            "weight_named": _share(linked["named_weight"], linked["weight"]),
            "drop_named": _share(linked["named_drop"], linked["drop"])})
    return pd.DataFrame(rows, columns=list(LAYER_COLUMNS))
