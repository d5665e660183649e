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
from dataclasses import dataclass, fields
from functools import lru_cache

import pandas as pd
import torch

from probe.plugins.datasets.parts_geometry import (
    compose,
    frame_affine,
    inside,
    pixel_grid,
    primitive_affine,
    scale_affine,
)
from probe.plugins.datasets.parts_textures import SPECKLE_CELLS, texture_pattern
from probe.plugins.datasets.parts_world import (
    CLASS_NAMES,
    COLORS,
    DISTRACTORS,
    RECIPES,
    SCENES,
    SHAPES,
    TEXTURES,
    concept_ids,
    concept_table,
)

#: Colour slots 0–3 paint the background, 4–10 objects, clutter and distractors.
FIRST_OBJECT_SLOT = 4
N_COLORS = len(COLORS)
#: Per-channel jitter of a colour around its prototype (uniform ±).
COLOR_JITTER = 0.05
#: Object half-extent range (image units), rotation range (degrees).
SCALE_RANGE = (0.3, 0.44)
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

    def slice(self, start: int, stop: int) -> Scenes:
        """Scenes ``start:stop`` of the batch."""
        return Scenes(**{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})


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


@lru_cache(maxsize=1)
def _tables() -> tuple[pd.DataFrame, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concept table plus per-class / per-distractor attribute tables (uint8).

    Returns:
        ``(table, objects [K + 1, P, 4], distractors [D, 2, 2], textures [T],
        colours [11])``: per recipe entry ``(slot, object, part1, part2)``; per
        distractor entry ``(part1, part2)``; texture and colour concept ids.
    """
    table = concept_table()
    parts = concept_ids(table, "part")
    objects = concept_ids(table, "object")
    longest = max(len(prims) for prims in RECIPES.values())
    obj = torch.zeros((len(RECIPES) + 1, longest, 4), dtype=torch.uint8)
    for name, prims in RECIPES.items():
        parent = 0
        for j, prim in enumerate(prims):
            if prim.layer == 1:
                parent = parts[prim.part]
                obj[objects[name], j] = torch.tensor([prim.slot, objects[name], parent, 0])
            else:
                obj[objects[name], j] = torch.tensor([prim.slot, objects[name], parent,
                                                      parts[prim.part]])
    dis = torch.zeros((len(DISTRACTORS), 2, 2), dtype=torch.uint8)
    for d, prims in enumerate(DISTRACTORS.values()):
        dis[d, :, 0] = parts[prims[0].part]
        if len(prims) > 1:
            dis[d, 1, 1] = parts[prims[1].part]
    tex_ids = concept_ids(table, "texture")
    textures = torch.tensor([tex_ids[name] for name in TEXTURES], dtype=torch.uint8)
    colour_ids = concept_ids(table, "color")
    colours = torch.tensor([colour_ids[name] for name, _ in COLORS], dtype=torch.uint8)
    return table, obj, dis, textures, colours


def _background(s: Scenes, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Background region (``[B, n, n]`` bool) and texture bit (``[B, n, n]`` bool)."""
    b, n = len(s), x.shape[-1]
    horizon = (s.scene == SCENES.index("horizon")).view(-1, 1, 1)
    split = (s.scene == SCENES.index("split")).view(-1, 1, 1)
    edge = s.boundary.view(-1, 1, 1)
    region = (horizon & (y > edge)) | (split & (x > edge))
    patterns = []
    for r in (0, 1):
        pattern = torch.zeros((b, n, n), dtype=torch.bool)
        for k, name in enumerate(TEXTURES):
            sel = s.texture[:, r] == k
            if r == 1:
                sel &= s.scene != SCENES.index("open")
            idx = sel.nonzero().squeeze(1)
            if name != "plain" and len(idx):
                pattern[idx] = texture_pattern(name, x, y, s.period[idx, r], s.phase[idx, r],
                                               s.speckle[idx, r])
        patterns.append(pattern)
    return region, torch.where(region, patterns[1], patterns[0])


def render_maps(s: Scenes, n: int) -> Maps:
    """Sample the scenes' geometry on an ``n × n`` grid.

    Every drawn primitive is an *entry* of a per-image table; the painter's
    algorithm keeps only the index of the topmost entry per pixel, and the
    label maps are looked up from the entries' attributes at the end.

    Args:
        s: Scenes from :func:`sample_scenes`.
        n: Grid side (image or mask resolution).
    """
    _, obj_table, dis_table, tex_table, _ = _tables()
    b, m, d = len(s), s.clutter.shape[1], s.distract.shape[1]
    x, y = pixel_grid(n)
    first_clutter, first_distract = 4, 4 + m
    first_object = first_distract + 2 * d
    n_entries = first_object + obj_table.shape[1]

    # attributes per entry: slot, object, part1, part2, texture
    attrs = torch.zeros((b, n_entries, 5), dtype=torch.uint8)
    attrs[:, :4, 0] = torch.arange(4, dtype=torch.uint8)
    attrs[:, :4, 4] = tex_table[s.texture].repeat_interleave(2, dim=1)
    attrs[:, first_clutter:first_distract, 0] = s.clutter_slot.to(torch.uint8)
    distract = attrs[:, first_distract:first_object]
    distract[:, :, 0] = s.distract_slot.reshape(b, 2 * d).to(torch.uint8)
    distract[:, :, 2:4] = dis_table[s.distract_kind].reshape(b, 2 * d, 2)
    attrs[:, first_object:, :4] = obj_table[s.cls]

    region, bit = _background(s, x, y)
    top = region.to(torch.uint8) * 2 + bit.to(torch.uint8)

    ones = torch.ones(b)
    for k in range(m):
        geo = s.clutter[:, k]
        for code, shape in enumerate(SHAPES):
            idx = ((s.clutter_n > k) & (geo[:, 0] == code)).nonzero().squeeze(1)
            if not len(idx):
                continue
            g = geo[idx]
            affine = scale_affine(frame_affine(g[:, 1], g[:, 2], ones[idx], g[:, 5]),
                                  g[:, 3], g[:, 4])
            top[idx] = top[idx].masked_fill_(inside(shape, affine, x, y), first_clutter + k)

    for k in range(d):
        for kind, prims in enumerate(DISTRACTORS.values()):
            idx = ((s.distract_n > k) & (s.distract_kind[:, k] == kind)).nonzero().squeeze(1)
            if not len(idx):
                continue
            g = s.distract[idx, k]
            frame = frame_affine(g[:, 0], g[:, 1], g[:, 2], g[:, 3])
            sub = top[idx]
            for j, prim in enumerate(prims):
                mask = inside(prim.shape, compose(primitive_affine(prim), frame), x, y)
                sub.masked_fill_(mask, first_distract + 2 * k + j)
            top[idx] = sub

    for name, prims in RECIPES.items():
        idx = (s.cls == CLASS_NAMES.index(name)).nonzero().squeeze(1)
        if not len(idx):
            continue
        pose = s.pose[idx]
        frame = frame_affine(pose[:, 0], pose[:, 1], pose[:, 2], pose[:, 3], pose[:, 4])
        sub = top[idx]
        for j, prim in enumerate(prims):
            sub.masked_fill_(inside(prim.shape, compose(primitive_affine(prim), frame), x, y),
                             first_object + j)
        top[idx] = sub

    flat = top.view(b, n * n).long()
    maps = [torch.gather(attrs[:, :, a], 1, flat).view(b, n, n) for a in range(5)]
    return Maps(*maps)


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


def color_map(s: Scenes, slot: torch.Tensor) -> torch.Tensor:
    """Colour concept ids from a colour-slot map: ``Tensor[B, n, n]`` uint8."""
    slot_ids = _tables()[4][s.perm]  # [B, 11] colour concept id of each slot
    return torch.gather(slot_ids, 1, slot.reshape(len(s), -1).long()).view(slot.shape)
