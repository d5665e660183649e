"""Parts → objects read off as logic, checked against the data set's part → object table.

For every unit whose best single concept is an object that has parts (the
data set's ``part_parents``), the beam search is run again over the **part**
concepts only. The unit's parts formula "is its object's own parts" when every
concept in it is a part of that object and its operators are only ``OR`` and
``AND`` (``own_parts``); ``terms`` lists its concept ids, in formula order
(the ids of dissection's ``part_label``, so the two can be joined).
``parts_layers`` gives, per layer, the share of such object units and the mean
IoUs of the parts formula and of the object label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .search import beam_search
from .tables import formulas_of


def parts_frames(layer: str, units_frame: pd.DataFrame, units: torch.Tensor,
                 concepts: torch.Tensor, present: torch.Tensor, part_parents: pd.DataFrame,
                 names: list[str], beam: int, length: int) -> dict[str, pd.DataFrame]:
    """``parts_objects`` and ``parts_layers`` rows of one layer.

    Args:
        units_frame: The layer's ``units`` rows (``label`` = best single concept).
        units: ``Tensor[K, N]`` packed unit masks; ``concepts``: ``Tensor[C, N]``.
        present: ``Tensor[C]`` bool, concepts with pixels in the sample.
    """
    owned: dict[str, set[int]] = {}
    for part, obj in zip(part_parents["part_id"], part_parents["object_id"], strict=True):
        owned.setdefault(names[int(obj)], set()).add(int(part))
    chosen = [u for u, name in enumerate(units_frame["label"]) if name in owned]
    empty = pd.DataFrame(columns=["layer", "unit", "object", "object_iou", "formula",
                                  "length", "iou", "own_parts", "terms"])
    summary = {"layer": layer, "object_units": len(chosen), "own_parts": float("nan"),
               "mean_iou": float("nan"), "mean_object_iou": float("nan")}
    if not chosen:
        return {"parts_objects": empty, "parts_layers": pd.DataFrame([summary])}
    parts = torch.zeros(concepts.shape[0], dtype=torch.bool, device=concepts.device)
    parts[sorted({int(p) for p in part_parents["part_id"]})] = True
    rows = torch.tensor(chosen, device=units.device)
    result = beam_search(units[rows], concepts, present & parts, beam, length)
    iou = result.iou.cpu().numpy()
    filled = np.where(np.isnan(iou), -1.0, iou)
    lengths = np.where(filled.max(1) > 0, filled.argmax(1) + 1, 0)
    texts = formulas_of(result, names)
    labels, ops = result.labels.cpu().numpy(), result.operators.cpu().numpy()
    records = []
    for i, unit in enumerate(chosen):
        obj = units_frame["label"].iloc[unit]
        n = int(lengths[i])
        terms = labels[i, n - 1, :n].tolist() if n else []
        operators = ops[i, n - 1, :max(0, n - 1)].tolist() if n else []
        own = bool(n) and set(terms) <= owned[obj] and all(o in (0, 1) for o in operators)
        records.append({"layer": layer, "unit": unit, "object": obj,
                        "object_iou": float(units_frame["label_iou"].iloc[unit]),
                        "formula": texts[i][n - 1] if n else "", "length": n,
                        "iou": float(iou[i, n - 1]) if n else 0.0, "own_parts": own,
                        "terms": [int(t) for t in terms]})
    frame = pd.DataFrame(records)
    summary.update(own_parts=float(frame["own_parts"].mean()),
                   mean_iou=float(frame["iou"].mean()),
                   mean_object_iou=float(frame["object_iou"].mean()))
    return {"parts_objects": frame, "parts_layers": pd.DataFrame([summary])}
