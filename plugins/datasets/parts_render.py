"""Draw batches of parts-world scenes, vectorised over images.

:func:`sample_scenes` draws every random choice of a batch from one
``torch.Generator`` (a :class:`Scenes` of ``Tensor[B, ...]``);
:func:`render_maps` samples the scene geometry on an ``n × n`` grid and
returns label maps; :func:`paint` turns the colour-slot map into uint8 RGB.
Python loops run over object classes, recipe primitives, textures and
clutter/distractor slots — never over images or pixels.

Drawing order: background texture(s) → clutter shapes → distractor parts →
the one main object (which may cover clutter and distractors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch

from probe.plugins.datasets.parts_geometry import (
    inside_primitive,
    inside_shapes,
    pixel_grid,
    to_frame,
)
from probe.plugins.datasets.parts_textures import SPECKLE_CELLS, texture_pattern
from probe.plugins.datasets.parts_world import (
    COLORS,
    DISTRACTORS,
    RECIPES,
    SCENES,
    SHAPES,
    TEXTURES,
    Primitive,
    concept_ids,
)

#: Colour slots 0–3 paint the background, 4–10 objects, clutter and distractors.
FIRST_OBJECT_SLOT = 4
N_COLORS = len(COLORS)
#: Per-channel jitter of a colour around its prototype (uniform ±).
COLOR_JITTER = 0.05
#: Object half-extent range (image units), rotation range (degrees).
SCALE_RANGE = (0.27, 0.4)
ANGLE_RANGE = 20.0


@dataclass
class Scenes:
    """Every random choice of a batch of ``B`` scenes (all ``Tensor[B, ...]``)."""

    cls: torch.Tensor            # [B] object class 1..K
    scene: torch.Tensor          # [B] scene index (into SCENES)
    boundary: torch.Tensor       # [B] horizon / split position
    texture: torch.Tensor        # [B, 2] texture index per background region
    period: torch.Tensor         # [B, 2]
    phase: torch.Tensor          # [B, 2, 2]
    speckle: torch.Tensor        # [B, 2, C, C] bool
    perm: torch.Tensor           # [B, 11] colour index of each slot
    jitter: torch.Tensor         # [B, 11, 3]
    pose: torch.Tensor           # [B, 5] cx, cy, scale, angle (rad), flip (±1)
    clutter_n: torch.Tensor      # [B]
    clutter: torch.Tensor        # [B, M, 6] shape, cx, cy, a, b, angle
    clutter_slot: torch.Tensor   # [B, M]
    distract_n: torch.Tensor     # [B]
    distract_kind: torch.Tensor  # [B, D]
    distract: torch.Tensor       # [B, D, 4] cx, cy, scale, angle
    distract_slot: torch.Tensor  # [B, D, 2] slot of the part and of its sub-part

    def __len__(self) -> int:
        return len(self.cls)


def _uniform(g: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=g)


def sample_scenes(batch: int, g: torch.Generator, clutter: int, distractors: int) -> Scenes:
    """Draw ``batch`` random scenes from generator ``g`` (CPU).

    Args:
        batch: Number of scenes.
        g: Seeded generator; the same state gives the same scenes.
        clutter: Largest number of clutter shapes per image (0…clutter drawn).
        distractors: Largest number of lone distractor parts per image.
    """
    b = batch
    n_classes = len(RECIPES)
    cls = torch.randint(1, n_classes + 1, (b,), generator=g)
    scene = torch.randint(0, len(SCENES), (b,), generator=g)
    boundary = _uniform(g, (b,), 0.35, 0.65)
    texture = torch.randint(0, len(TEXTURES), (b, 2), generator=g)
    period = _uniform(g, (b, 2), 0.07, 0.16)
    phase = torch.rand((b, 2, 2), generator=g)
    speckle = torch.rand((b, 2, SPECKLE_CELLS, SPECKLE_CELLS), generator=g) < 0.5
    perm = torch.argsort(torch.rand((b, N_COLORS), generator=g), dim=1)
    jitter = _uniform(g, (b, N_COLORS, 3), -COLOR_JITTER, COLOR_JITTER)
    scale = _uniform(g, (b,), *SCALE_RANGE)
    margin = 0.5 - 0.85 * scale
    cx = 0.5 + margin * _uniform(g, (b,), -1.0, 1.0)
    cy = 0.5 + margin * _uniform(g, (b,), -1.0, 1.0)
    angle = torch.deg2rad(_uniform(g, (b,), -ANGLE_RANGE, ANGLE_RANGE))
    flip = torch.where(torch.rand((b,), generator=g) < 0.5, -1.0, 1.0)
    pose = torch.stack([cx, cy, scale, angle, flip], dim=1)

    m = clutter
    clutter_n = torch.randint(0, m + 1, (b,), generator=g)
    clutter_geo = torch.stack([
        torch.randint(0, len(SHAPES), (b, m), generator=g).float(),
        torch.rand((b, m), generator=g), torch.rand((b, m), generator=g),
        _uniform(g, (b, m), 0.025, 0.08), _uniform(g, (b, m), 0.025, 0.08),
        _uniform(g, (b, m), 0.0, math.pi),
    ], dim=2)
    clutter_slot = torch.randint(FIRST_OBJECT_SLOT, N_COLORS, (b, m), generator=g)

    d = distractors
    distract_n = torch.randint(0, d + 1, (b,), generator=g)
    distract_kind = torch.randint(0, len(DISTRACTORS), (b, d), generator=g)
    distract = torch.stack([
        _uniform(g, (b, d), 0.08, 0.92), _uniform(g, (b, d), 0.08, 0.92),
        _uniform(g, (b, d), 0.05, 0.1), _uniform(g, (b, d), -math.pi, math.pi),
    ], dim=2)
    main = torch.randint(FIRST_OBJECT_SLOT, N_COLORS, (b, d), generator=g)
    span = N_COLORS - FIRST_OBJECT_SLOT
    sub = FIRST_OBJECT_SLOT + (main - FIRST_OBJECT_SLOT
                               + torch.randint(1, span, (b, d), generator=g)) % span
    return Scenes(cls, scene, boundary, texture, period, phase, speckle, perm, jitter, pose,
                  clutter_n, clutter_geo, clutter_slot, distract_n, distract_kind, distract,
                  torch.stack([main, sub], dim=2))


@dataclass
class Maps:
    """Label maps of a batch, each ``Tensor[B, n, n]`` uint8 (concept ids; 0 = none).

    ``slot`` holds colour slots (0–10), not concept ids.
    """

    slot: torch.Tensor
    object: torch.Tensor
    part1: torch.Tensor
    part2: torch.Tensor
    texture: torch.Tensor


def _draw(maps: list[torch.Tensor], prims: tuple[Primitive, ...], u: torch.Tensor,
          v: torch.Tensor, parts: dict[str, int], slots: list[torch.Tensor | int],
          object_id: torch.Tensor | int) -> None:
    """Paint primitives into ``maps = [slot, object, part1, part2, texture]`` in place."""
    slot, obj, part1, part2, tex = maps
    last = None
    for prim, colour in zip(prims, slots, strict=True):
        inside = inside_primitive(prim, u, v)
        if prim.layer == 1:
            last = inside
            part1.masked_fill_(inside, parts[prim.part])
            part2.masked_fill_(inside, 0)
            tex.masked_fill_(inside, 0)
            if not isinstance(object_id, int) or object_id:
                obj.copy_(torch.where(inside, object_id, obj))
        else:
            inside &= last
            part2.masked_fill_(inside, parts[prim.part])
        slot.copy_(torch.where(inside, colour, slot))


def render_maps(s: Scenes, n: int, table: pd.DataFrame) -> Maps:
    """Sample the scenes' geometry on an ``n × n`` grid.

    Args:
        s: Scenes from :func:`sample_scenes`.
        n: Grid side (image or mask resolution).
        table: Concept table (ids written into the maps).
    """
    b = len(s)
    x, y = pixel_grid(n)
    parts = concept_ids(table, "part")
    tex_ids = concept_ids(table, "texture")
    obj_ids = concept_ids(table, "object")
    horizon = (s.scene == SCENES.index("horizon")).view(-1, 1, 1)
    split = (s.scene == SCENES.index("split")).view(-1, 1, 1)
    edge = s.boundary.view(-1, 1, 1)
    region = (horizon & (y > edge)) | (split & (x > edge))
    bit = torch.zeros((b, n, n), dtype=torch.bool)
    tex = torch.zeros((b, n, n), dtype=torch.uint8)
    for r in (0, 1):
        for k, name in enumerate(TEXTURES):
            sel = s.texture[:, r] == k
            if r == 1:
                sel &= s.scene != SCENES.index("open")
            idx = sel.nonzero().squeeze(1)
            if not len(idx):
                continue
            pattern = texture_pattern(name, x, y, s.period[idx, r], s.phase[idx, r],
                                      s.speckle[idx, r])
            here = region[idx] == bool(r)
            bit[idx] = torch.where(here, pattern, bit[idx])
            tex[idx] = torch.where(here, tex_ids[name], tex[idx])
    slot = (region.to(torch.uint8) * 2 + bit.to(torch.uint8))
    obj = torch.zeros_like(tex)
    part1 = torch.zeros_like(tex)
    part2 = torch.zeros_like(tex)

    for k in range(s.clutter.shape[1]):
        idx = (s.clutter_n > k).nonzero().squeeze(1)
        if not len(idx):
            continue
        geo = s.clutter[idx, k]
        u, v = to_frame(x, y, geo[:, 1], geo[:, 2], torch.ones(len(idx)), geo[:, 5])
        inside = inside_shapes(geo[:, 0].long(), u / geo[:, 3].view(-1, 1, 1),
                               v / geo[:, 4].view(-1, 1, 1))
        colour = s.clutter_slot[idx, k].to(torch.uint8).view(-1, 1, 1)
        slot[idx] = torch.where(inside, colour, slot[idx])
        tex[idx] = tex[idx].masked_fill(inside, 0)

    for k in range(s.distract.shape[1]):
        for d, (name, prims) in enumerate(DISTRACTORS.items()):
            del name
            idx = ((s.distract_n > k) & (s.distract_kind[:, k] == d)).nonzero().squeeze(1)
            if not len(idx):
                continue
            geo = s.distract[idx, k]
            u, v = to_frame(x, y, geo[:, 0], geo[:, 1], geo[:, 2], geo[:, 3])
            sub = [m[idx] for m in (slot, obj, part1, part2, tex)]
            colours = [s.distract_slot[idx, k, p.slot].to(torch.uint8).view(-1, 1, 1)
                       for p in prims]
            _draw(sub, prims, u, v, parts, colours, 0)
            for full, part in zip((slot, obj, part1, part2, tex), sub, strict=True):
                full[idx] = part

    for name, prims in RECIPES.items():
        cls = obj_ids[name]
        idx = (s.cls == cls).nonzero().squeeze(1)
        if not len(idx):
            continue
        pose = s.pose[idx]
        u, v = to_frame(x, y, pose[:, 0], pose[:, 1], pose[:, 2], pose[:, 3], pose[:, 4])
        sub = [m[idx] for m in (slot, obj, part1, part2, tex)]
        _draw(sub, prims, u, v, parts, [torch.tensor(p.slot, dtype=torch.uint8) for p in prims],
              torch.tensor(cls, dtype=torch.uint8))
        for full, part in zip((slot, obj, part1, part2, tex), sub, strict=True):
            full[idx] = part
    return Maps(slot, obj, part1, part2, tex)


def slot_colors(s: Scenes) -> torch.Tensor:
    """Quantised RGB of each colour slot: ``Tensor[B, 11, 3]`` uint8."""
    base = torch.tensor([rgb for _, rgb in COLORS], dtype=torch.float32)
    rgb = (base[s.perm] + s.jitter).clamp(0.0, 1.0)
    return torch.round(rgb * 255.0).to(torch.uint8)


def paint(s: Scenes, slot: torch.Tensor) -> torch.Tensor:
    """RGB images from a colour-slot map: ``Tensor[B, 3, n, n]`` uint8."""
    b, n, _ = slot.shape
    colours = slot_colors(s)
    flat = slot.reshape(b, n * n, 1).long().expand(-1, -1, 3)
    return torch.gather(colours, 1, flat).view(b, n, n, 3).permute(0, 3, 1, 2).contiguous()


def color_map(s: Scenes, slot: torch.Tensor, table: pd.DataFrame) -> torch.Tensor:
    """Colour concept ids from a colour-slot map: ``Tensor[B, n, n]`` uint8."""
    ids = concept_ids(table, "color")
    lookup = torch.tensor([ids[name] for name, _ in COLORS], dtype=torch.uint8)
    b = len(s)
    colour_index = torch.gather(s.perm, 1, slot.reshape(b, -1).long())
    return lookup[colour_index].view(slot.shape)
