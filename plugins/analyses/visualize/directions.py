"""Concept directions for the ``direction`` objectives: Net2Vec vectors from a run or a file.

The ``concept-vectors`` analysis (Fong & Vedaldi, Net2Vec, CVPR 2018) writes table
``weights`` with one row per (layer, concept, unit): ``layer``, ``concept``, ``label``,
``unit``, ``weight``; ``Σ_k weight_k · a_k`` is the concept's direction in the layer's
raw channel space. :func:`read_directions` reads that table from a run directory, or
the same columns from a ``.parquet`` / ``.csv`` file; :func:`layer_directions` checks
one layer's vectors against the layer's width. Every problem is one
:class:`~probe.errors.OptionError` line naming ``visualize.directions``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from probe.errors import OptionError, ProbeError

COLUMNS = ("layer", "concept", "label", "unit", "weight")
ANALYSIS, TABLE = "concept-vectors", "weights"


@dataclass(frozen=True)
class Directions:
    """One layer's concept directions.

    Attributes:
        concepts: ``M`` concept names, in the table's order.
        labels: Their concept labels.
        weights: ``float64[M, K]``, row ``m`` the direction of concept ``m``.
    """

    concepts: tuple[str, ...]
    labels: tuple[int, ...]
    weights: np.ndarray


def read_directions(source: str) -> pd.DataFrame:
    """The vectors table from a run directory (``concept-vectors``/``weights``) or a file.

    Raises:
        OptionError: Missing or unreadable source, no such table, missing columns.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise OptionError(f"visualize.directions: no such run directory or file: {source!r}")
    if path.is_dir():
        from probe import load_run

        try:
            frame = load_run(path).table(ANALYSIS, TABLE)
        except ProbeError as exc:
            raise OptionError(f"visualize.directions: {str(exc).splitlines()[0]}") from None
    elif path.suffix.lower() in (".parquet", ".csv"):
        try:
            frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
        except Exception as exc:  # pandas and pyarrow raise many types for a bad file
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise OptionError(f"visualize.directions: cannot read {source!r}: {first}") from None
    else:
        raise OptionError(f"visualize.directions must be a run directory or a .parquet/.csv "
                          f"file, got {source!r}")
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise OptionError(f"visualize.directions: {source!r} lacks column(s) "
                          f"{', '.join(missing)}; it needs {', '.join(COLUMNS)}")
    return frame


def layer_directions(frame: pd.DataFrame, layer: str, units: int, source: str) -> Directions:
    """``layer``'s directions: every concept must weight each of the ``units`` units once.

    Raises:
        OptionError: The layer has no vectors, or a concept's units are not ``0 … units − 1``.
    """
    rows = frame[frame["layer"].astype(str) == layer]
    if rows.empty:
        present = ", ".join(pd.unique(frame["layer"].astype(str))) or "none"
        raise OptionError(f"visualize.directions: layer {layer!r} has no concept vectors in "
                          f"{source!r}; layers with vectors: {present}")
    concepts = pd.unique(rows["concept"].astype(str)).tolist()
    weights = np.zeros((len(concepts), units))
    labels = []
    for m, concept in enumerate(concepts):
        part = rows[rows["concept"].astype(str) == concept]
        got = np.sort(part["unit"].to_numpy(dtype=np.int64))
        if len(got) != units or not np.array_equal(got, np.arange(units)):
            span = f"units {got.min()}-{got.max()}" if len(got) else "no units"
            raise OptionError(f"visualize.directions: concept {concept!r} of layer {layer!r} "
                              f"has {len(got)} weights ({span}); the layer has {units} units "
                              f"(0-{units - 1}), one weight each")
        values = part["weight"].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise OptionError(f"visualize.directions: concept {concept!r} of layer {layer!r} "
                              f"has non-finite weights")
        weights[m, part["unit"].to_numpy(dtype=np.int64)] = values
        labels.append(int(part["label"].iloc[0]))
    return Directions(tuple(concepts), tuple(labels), weights)


def layers_with_directions(frame: pd.DataFrame) -> set[str]:
    """Names of the layers that have at least one vector."""
    return set(frame["layer"].astype(str))


__all__ = ["COLUMNS", "Directions", "layer_directions", "layers_with_directions",
           "read_directions"]
