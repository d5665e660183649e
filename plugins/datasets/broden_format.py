"""The Broden directory format, shared by the ``broden`` loader and the exporter.

A Broden directory (Bau et al. 2017, REFERENCE.md §1) holds:

* ``index.csv`` — one row per image, columns ``image,split,ih,iw,sh,sw`` then
  one column per category (``color,object,part,material,scene,texture``);
  a category cell holds ``;``-separated entries, an integer being an
  image-level label and a file name a PNG label map (several part layers as
  ``*_part_1.png``, ``*_part_2.png``); paths are relative to ``images/``;
* PNG label maps at the segmentation size ``sh × sw`` whose pixel label id is
  ``R + 256·G`` (0 = unlabelled);
* ``label.csv`` (``number,name,category,frequency,coverage,syns``; the
  ``category`` cell lists ``name(count)`` pairs), ``category.csv``
  (``name,first,last,count,frequency``) and ``c_<category>.csv``
  (``code,number,name,frequency,coverage``).
"""

from __future__ import annotations

import re

import numpy as np

INDEX_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
CATEGORIES = ("color", "object", "part", "material", "scene", "texture")
LABEL_COLUMNS = ("number", "name", "category")
_CATEGORY_ENTRY = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\((\d+)\))?\s*$")


def encode_ids(ids: np.ndarray) -> np.ndarray:
    """Label ids ``int[h, w]`` (0…65535) → RGB ``uint8[h, w, 3]`` with id = R + 256·G."""
    if ids.min(initial=0) < 0 or ids.max(initial=0) > 65535:
        raise ValueError(f"label ids must lie in 0..65535, got {ids.min()}..{ids.max()}")
    ids = ids.astype(np.int64)
    rgb = np.zeros((*ids.shape, 3), dtype=np.uint8)
    rgb[..., 0] = ids % 256
    rgb[..., 1] = ids // 256
    return rgb


def decode_ids(rgb: np.ndarray) -> np.ndarray:
    """RGB ``uint8[h, w, 3+]`` → label ids ``int64[h, w]`` (R + 256·G)."""
    return rgb[..., 0].astype(np.int64) + 256 * rgb[..., 1].astype(np.int64)


def parse_category_cell(text: str) -> list[tuple[str, int]]:
    """``"object(12);part(3)"`` → ``[("object", 12), ("part", 3)]`` (count 0 if absent).

    Raises:
        ValueError: for an entry that is not ``name`` or ``name(count)``.
    """
    out = []
    for entry in str(text).split(";"):
        if not entry.strip():
            continue
        match = _CATEGORY_ENTRY.match(entry)
        if match is None:
            raise ValueError(f"category entry must be NAME or NAME(COUNT), got {entry!r}")
        out.append((match.group(1), int(match.group(2) or 0)))
    return out


def primary_category(entries: list[tuple[str, int]], order: tuple[str, ...]) -> str:
    """The category with the largest count; ties go to the earliest in ``order``."""
    rank = {name: i for i, name in enumerate(order)}
    return min(entries, key=lambda e: (-e[1], rank.get(e[0], len(rank)), e[0]))[0]


def split_cell(value: object) -> list[str]:
    """Entries of an index cell (empty / NaN → no entries)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [v.strip() for v in str(value).split(";") if v.strip()]
