"""The ``parts`` data set: probe's embedded default, a synthetic world of objects made of parts.

Each image holds ONE main object (its class is the image's ``label``) drawn
large over a textured background, plus optional smaller clutter shapes and
lone distractor parts (a wheel, an eye, …) that belong to no object. Eight
object classes are built from 21 parts, many of them shared between classes
(see :mod:`parts_world`), with exact per-pixel annotations in Broden's
categories:

* ``masks`` — ``Tensor[5, h, w]`` int64 layers ``object, part, part, color,
  texture``; the second part layer holds sub-parts (pupil, hub, knob) that lie
  inside a first-layer part, so one pixel can carry two part labels;
* ``scalars`` — ``Tensor[1]`` the scene (background layout: open, horizon, split);
* ``target`` — ``Tensor[H, W]`` class map at image resolution (0 = background);
* ``label`` — the main object's class, 1…8. Class 0 is ``background`` so that one
  model's class indices mean the same for classification and segmentation.

Images are uint8-exact (every value is k/255), so the Broden export round trip
is bit for bit. Generation is deterministic from ``seed`` and ``split``: images
come in chunks of 256, each drawn from its own generator seeded by (seed,
split, chunk), so the first N images are the same whatever ``size`` is, and
the splits are disjoint random streams.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from probe import DatasetSpec, Option, ProbeDataset, hookimpl
from probe.plugins.datasets.parts_render import color_map, paint, render_maps, sample_scenes
from probe.plugins.datasets.parts_world import CLASS_NAMES, concept_ids, concept_table, part_parents

#: Bump when the drawing changes, so old caches are not reused.
GENERATOR_VERSION = 2
CHUNK = 256
RENDER_BATCH = 128
SPLITS = ("train", "val", "test")
DEFAULT_SIZES = {"train": 5000, "val": 1000, "test": 1000}
MASK_CATEGORIES = ("object", "part", "part", "color", "texture")
SCALAR_CATEGORIES = ("scene",)


def chunk_seed(seed: int, split: str, chunk: int) -> int:
    """The generator seed of one chunk: a hash of (seed, split, chunk index)."""
    digest = hashlib.sha256(f"parts:{seed}:{split}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generate(size: int, image_size: int, mask_size: int, seed: int, split: str,
             clutter: int, distractors: int, start_chunk: int = 0) -> dict[str, torch.Tensor]:
    """Draw ``size`` scenes; every tensor is uint8 except ``label`` (int64).

    Returns:
        ``image [N, 3, S, S]``, ``masks [N, 5, m, m]``, ``scalars [N, 1]``,
        ``target [N, S, S]``, ``label [N]``.
    """
    table = concept_table()
    scene_ids = torch.tensor(list(concept_ids(table, "scene").values()), dtype=torch.uint8)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in
                                          ("image", "masks", "scalars", "target", "label")}
    for chunk in range(start_chunk, start_chunk + (size + CHUNK - 1) // CHUNK):
        g = torch.Generator().manual_seed(chunk_seed(seed, split, chunk))
        count = min(CHUNK, size - (chunk - start_chunk) * CHUNK)
        # always draw a full chunk and keep a prefix: the images do not depend on `size`
        chunk_scenes = sample_scenes(CHUNK, g, clutter, distractors)
        for lo in range(0, count, RENDER_BATCH):  # small batches stay in the CPU cache
            scenes = chunk_scenes.slice(lo, min(lo + RENDER_BATCH, count))
            big = render_maps(scenes, image_size)
            small = big if mask_size == image_size else render_maps(scenes, mask_size)
            out["image"].append(paint(scenes, big.slot))
            out["masks"].append(torch.stack([small.object, small.part1, small.part2,
                                             color_map(scenes, small.slot),
                                             small.texture], 1))
            out["scalars"].append(scene_ids[scenes.scene].view(-1, 1))
            out["target"].append(big.object)  # object ids 1..K are the class indices
            out["label"].append(scenes.cls.clone())
    return {k: torch.cat(v) for k, v in out.items()}


def cache_dir() -> Path:
    """``$PROBE_CACHE_DIR`` or ``~/.cache/probe``."""
    root = os.environ.get("PROBE_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "probe"


def cache_path(key: dict[str, Any]) -> Path:
    """Cache file of one set of generation options (all of them in the key)."""
    text = json.dumps({**key, "version": GENERATOR_VERSION}, sort_keys=True)
    return cache_dir() / "parts" / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.pt"


def _load_or_generate(key: dict[str, Any], use_cache: bool) -> dict[str, torch.Tensor]:
    path = cache_path(key)
    if use_cache and path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a damaged cache file is regenerated, never trusted
            path.unlink(missing_ok=True)
    data = generate(**key)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # at full-size masks the target is the object layer: not stored twice
        same = key["mask_size"] == key["image_size"]
        torch.save({k: v for k, v in data.items() if not (same and k == "target")}, tmp)
        os.replace(tmp, path)
    return data


class PartsDataset(ProbeDataset):
    """The parts world (see the module docstring for the sample layout)."""

    name = "parts"
    channels = 3
    mean = (0.6, 0.47, 0.4)
    std = (0.34, 0.29, 0.33)
    class_names = CLASS_NAMES
    num_classes = len(CLASS_NAMES)
    mask_categories = MASK_CATEGORIES
    scalar_categories = SCALAR_CATEGORIES

    def __init__(self, split: str = "test", image_size: int = 64, size: int = 0, seed: int = 0,
                 mask_size: int = 0, clutter: int = 3, distractors: int = 2,
                 cache: bool = False) -> None:
        size = size or DEFAULT_SIZES[split]
        self.image_size = image_size
        self.mask_size = mask_size or image_size
        self.concepts = concept_table()
        self.part_parents = part_parents(self.concepts)
        key = {"size": size, "image_size": image_size, "mask_size": self.mask_size,
               "seed": seed, "split": split, "clutter": clutter, "distractors": distractors}
        data = _load_or_generate(key, cache)
        self.images = data["image"]
        self.masks = data["masks"]
        self.scalars = data["scalars"]
        # full-size masks: the target is a view of the object layer (no second copy)
        self.targets = self.masks[:, 0] if self.mask_size == image_size else data["target"]
        self.labels = data["label"]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "image": self.images[index].float() / 255.0,
            "label": self.labels[index],
            "index": index,
            "masks": self.masks[index].long(),
            "scalars": self.scalars[index].long(),
            "target": self.targets[index].long(),
        }


OPTIONS = (
    Option("split", str, "test", "which split (disjoint random streams)", choices=SPLITS),
    Option("image_size", int, 64, "image side in pixels", minimum=32, maximum=224),
    Option("size", int, 0, "number of images (0 = 5000 train, 1000 val/test)", minimum=0),
    Option("seed", int, 0, "world seed: same seed, same images"),
    Option("mask_size", int, 0, "label-map side (0 = image_size; e.g. half like Broden)",
           minimum=0, maximum=224),
    Option("clutter", int, 3, "at most this many clutter shapes per image", minimum=0,
           maximum=16),
    Option("distractors", int, 2, "at most this many lone distractor parts per image",
           minimum=0, maximum=8),
    Option("cache", bool, False, "keep generated images in $PROBE_CACHE_DIR (~/.cache/probe)"),
)


@hookimpl
def probe_register_datasets(register):
    register(DatasetSpec(
        name="parts",
        load=PartsDataset,
        options=OPTIONS,
        description="embedded synthetic world: 8 objects made of 21 (shared) parts, "
                    "exact object/part/colour/texture masks and scene labels",
        has_masks=True,
        tasks=("classification", "segmentation"),
    ))
