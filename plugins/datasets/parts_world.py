"""The parts world as data: colours, textures, scenes, object recipes and the concept table.

Everything the ``parts`` data set draws is declared here as plain tables; the
drawing code (:mod:`parts_render`) only interprets them. Object coordinates are
the object's own frame: ``x`` to the right, ``y`` downwards, the object filling
about ``[-1, 1]²``; it is scaled, rotated, mirrored and placed per image.

A recipe lists primitives in drawing order (later ones cover earlier ones).
Layer-1 primitives are the parts (the first, ``body``/``wall``/``head``/…, is
the object's hull); layer-2 primitives are sub-parts drawn inside the layer-1
part drawn just before them (``pupil`` in ``eye``, ``hub`` in ``wheel``,
``knob`` in ``door``/``drawer``), so one pixel may carry two part labels.

Colour slots: each image draws a random permutation of the 11 colours; slots
0–3 paint the background (two regions × two texture colours), slot 4 the
object's hull and slots 5–10 its other parts. A slot number is therefore a
*role*, never a fixed colour, and colour alone says nothing about the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

#: Broden's 11 colour names with the RGB prototype drawn for each (in [0, 1]).
COLORS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("black", (0.08, 0.08, 0.08)),
    ("blue", (0.15, 0.3, 0.85)),
    ("brown", (0.5, 0.3, 0.12)),
    ("grey", (0.5, 0.5, 0.5)),
    ("green", (0.15, 0.65, 0.2)),
    ("orange", (0.98, 0.55, 0.1)),
    ("pink", (0.98, 0.6, 0.75)),
    ("purple", (0.55, 0.2, 0.65)),
    ("red", (0.85, 0.1, 0.1)),
    ("white", (0.95, 0.95, 0.95)),
    ("yellow", (0.95, 0.9, 0.15)),
)

#: Background textures (DTD-like names; stripes carry their orientation).
TEXTURES: tuple[str, ...] = (
    "plain", "striped_horizontal", "striped_vertical", "striped_diagonal",
    "striped_antidiagonal", "chequered", "grid", "dotted", "speckled",
)

#: Scenes = background layouts, an image-level label independent of the object.
SCENES: tuple[str, ...] = ("open", "horizon", "split")

#: Shapes a primitive can take (index = shape code).
SHAPES: tuple[str, ...] = ("ellipse", "rect", "triangle")


@dataclass(frozen=True)
class Primitive:
    """One filled shape of a recipe, in the object's frame.

    Args:
        part: Part name labelled where the shape is drawn.
        shape: ``ellipse``, ``rect`` or ``triangle`` (apex towards −y).
        cx, cy: Centre in object units.
        a, b: Half-width and half-height before rotation.
        angle: Rotation in degrees (clockwise on screen, since y points down).
        slot: Colour slot (see module docstring).
        layer: 1 for a part, 2 for a sub-part of the layer-1 part drawn before.
    """

    part: str
    shape: str
    cx: float
    cy: float
    a: float
    b: float
    slot: int
    angle: float = 0.0
    layer: int = 1


def _pair(part: str, shape: str, dx: float, cy: float, a: float, b: float, slot: int,
          sub: tuple[str, float, int] | None = None, angle: float = 0.0) -> list[Primitive]:
    """A left/right pair at ``x = ±dx`` (with an optional centred sub-part)."""
    out: list[Primitive] = []
    for sign in (-1.0, 1.0):
        out.append(Primitive(part, shape, sign * dx, cy, a, b, slot, sign * angle))
        if sub is not None:
            name, radius, sub_slot = sub
            out.append(Primitive(name, "ellipse", sign * dx, cy, radius, radius, sub_slot,
                                 layer=2))
    return out


P = Primitive

#: Object class name → primitives in drawing order.
RECIPES: dict[str, tuple[Primitive, ...]] = {
    "car": (
        P("body", "rect", 0.0, 0.1, 0.95, 0.25, 4),
        P("roof", "rect", -0.05, -0.32, 0.52, 0.2, 5),
        P("window", "rect", -0.3, -0.32, 0.18, 0.13, 6),
        P("window", "rect", 0.2, -0.32, 0.18, 0.13, 6),
        *_pair("wheel", "ellipse", 0.55, 0.38, 0.25, 0.25, 7, ("hub", 0.11, 8)),
    ),
    "bus": (
        P("body", "rect", 0.0, -0.05, 0.98, 0.47, 4),
        P("window", "rect", -0.65, -0.22, 0.16, 0.15, 6),
        P("window", "rect", -0.25, -0.22, 0.16, 0.15, 6),
        P("window", "rect", 0.15, -0.22, 0.16, 0.15, 6),
        P("door", "rect", 0.66, 0.0, 0.17, 0.36, 5),
        P("knob", "ellipse", 0.57, 0.02, 0.055, 0.055, 8, layer=2),
        P("wheel", "ellipse", -0.55, 0.45, 0.23, 0.23, 7),
        P("hub", "ellipse", -0.55, 0.45, 0.1, 0.1, 8, layer=2),
        P("wheel", "ellipse", 0.3, 0.45, 0.23, 0.23, 7),
        P("hub", "ellipse", 0.3, 0.45, 0.1, 0.1, 8, layer=2),
    ),
    "house": (
        P("wall", "rect", 0.0, 0.3, 0.65, 0.55, 4),
        P("roof", "triangle", 0.0, -0.5, 0.88, 0.36, 5),
        P("window", "rect", -0.34, 0.12, 0.17, 0.15, 6),
        P("window", "rect", 0.34, 0.12, 0.17, 0.15, 6),
        P("door", "rect", 0.0, 0.57, 0.16, 0.28, 7),
        P("knob", "ellipse", 0.08, 0.6, 0.05, 0.05, 8, layer=2),
    ),
    "face": (
        *_pair("ear", "ellipse", 0.76, 0.0, 0.2, 0.3, 5),
        P("head", "ellipse", 0.0, 0.0, 0.74, 0.88, 4),
        *_pair("eye", "ellipse", 0.3, -0.22, 0.19, 0.14, 6, ("pupil", 0.08, 7)),
        P("mouth", "ellipse", 0.0, 0.45, 0.36, 0.11, 8),
    ),
    "dog": (
        P("leg", "rect", -0.6, 0.45, 0.09, 0.32, 7),
        P("leg", "rect", -0.32, 0.45, 0.09, 0.32, 7),
        P("leg", "rect", 0.22, 0.45, 0.09, 0.32, 7),
        P("leg", "rect", 0.5, 0.45, 0.09, 0.32, 7),
        P("tail", "rect", -0.85, -0.3, 0.08, 0.28, 6, angle=-35.0),
        P("torso", "ellipse", -0.05, 0.05, 0.72, 0.33, 4),
        P("head", "ellipse", 0.66, -0.38, 0.33, 0.3, 5),
        P("ear", "triangle", 0.52, -0.72, 0.13, 0.16, 8),
        P("eye", "ellipse", 0.76, -0.42, 0.13, 0.11, 6),
        P("pupil", "ellipse", 0.78, -0.42, 0.06, 0.06, 9, layer=2),
    ),
    "bird": (
        P("leg", "rect", -0.12, 0.6, 0.055, 0.3, 7),
        P("leg", "rect", 0.14, 0.6, 0.055, 0.3, 7),
        P("tail", "triangle", -0.78, -0.02, 0.22, 0.32, 5, angle=-90.0),
        P("body", "ellipse", 0.0, 0.05, 0.6, 0.38, 4),
        P("wing", "ellipse", -0.1, 0.0, 0.4, 0.18, 5, angle=20.0),
        P("head", "ellipse", 0.58, -0.42, 0.3, 0.3, 8),
        P("eye", "ellipse", 0.66, -0.47, 0.12, 0.12, 6),
        P("pupil", "ellipse", 0.67, -0.47, 0.06, 0.06, 9, layer=2),
        P("beak", "triangle", 0.98, -0.38, 0.13, 0.18, 10, angle=90.0),
    ),
    "table": (
        *_pair("leg", "rect", 0.72, 0.35, 0.1, 0.52, 5),
        P("top", "rect", 0.0, -0.3, 0.98, 0.15, 4),
        P("drawer", "rect", 0.0, -0.03, 0.38, 0.14, 6),
        P("knob", "ellipse", 0.0, -0.03, 0.06, 0.06, 8, layer=2),
    ),
    "robot": (
        *_pair("wheel", "ellipse", 0.38, 0.72, 0.22, 0.22, 7, ("hub", 0.1, 8)),
        *_pair("arm", "rect", 0.72, 0.15, 0.13, 0.36, 6),
        P("torso", "rect", 0.0, 0.2, 0.55, 0.46, 4),
        P("head", "rect", 0.0, -0.56, 0.4, 0.3, 5),
        *_pair("eye", "ellipse", 0.18, -0.58, 0.11, 0.11, 9, ("pupil", 0.05, 10)),
    ),
}

#: Parts that also appear alone as distractors: name → primitives in a unit frame.
DISTRACTORS: dict[str, tuple[Primitive, ...]] = {
    "wheel": (P("wheel", "ellipse", 0, 0, 1.0, 1.0, 0), P("hub", "ellipse", 0, 0, 0.45, 0.45, 1,
                                                             layer=2)),
    "eye": (P("eye", "ellipse", 0, 0, 1.0, 0.72, 0), P("pupil", "ellipse", 0, 0, 0.42, 0.42, 1,
                                                           layer=2)),
    "window": (P("window", "rect", 0, 0, 0.9, 0.75, 0),),
    "door": (P("door", "rect", 0, 0, 0.5, 1.0, 0), P("knob", "ellipse", -0.25, 0.05, 0.15, 0.15,
                                                       1, layer=2)),
    "leg": (P("leg", "rect", 0, 0, 0.22, 1.0, 0),),
    "ear": (P("ear", "triangle", 0, 0, 0.8, 1.0, 0),),
}

CLASS_NAMES: tuple[str, ...] = ("background", *RECIPES)


def part_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Layer-1 part names and layer-2 sub-part names, in order of first appearance."""
    first: dict[str, None] = {}
    second: dict[str, None] = {}
    for prims in RECIPES.values():
        for prim in prims:
            (first if prim.layer == 1 else second)[prim.part] = None
    return tuple(first), tuple(second)


def concept_table() -> pd.DataFrame:
    """The concept table: ``id`` (1…), ``name``, ``category``; ids unique over categories."""
    parts1, parts2 = part_names()
    rows: list[tuple[str, str]] = [(name, "object") for name in RECIPES]
    rows += [(name, "part") for name in (*parts1, *parts2)]
    rows += [(name, "color") for name, _ in COLORS]
    rows += [(name, "texture") for name in TEXTURES]
    rows += [(name, "scene") for name in SCENES]
    return pd.DataFrame({"id": range(1, len(rows) + 1), "name": [r[0] for r in rows],
                         "category": [r[1] for r in rows]})


def concept_ids(table: pd.DataFrame, category: str) -> dict[str, int]:
    """Name → id for one category of :func:`concept_table`."""
    rows = table[table["category"] == category]
    return dict(zip(rows["name"], rows["id"].astype(int), strict=True))


def part_parents(table: pd.DataFrame) -> pd.DataFrame:
    """Which parts (and sub-parts) make which objects: ``part_id, object_id`` rows."""
    objects = concept_ids(table, "object")
    parts = concept_ids(table, "part")
    pairs = sorted({(parts[p.part], objects[obj]) for obj, prims in RECIPES.items()
                    for p in prims})
    return pd.DataFrame(pairs, columns=["part_id", "object_id"])
