"""A picture of parts-world samples next to their label maps, drawn with probe's own code.

``python -m probe.plugins.datasets.parts_preview OUT.png [--count 6] [--size 64]``
writes the picture shown in ``docs/datasets.md``: one row per sample with the
image, then its object, part (both layers), colour and texture maps, each map
coloured by concept id with a fixed palette.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from probe.plugins.datasets.parts import PartsDataset

COLUMNS = ("image", "object", "part 1", "part 2", "color", "texture")


def label_palette(n: int = 256, seed: int = 3) -> np.ndarray:
    """A fixed random RGB colour per label id (id 0 = black): ``uint8[n, 3]``."""
    colours = np.random.default_rng(seed).integers(40, 256, size=(n, 3), dtype=np.uint8)
    colours[0] = 0
    return colours


def preview(dataset: PartsDataset, count: int = 6, zoom: int = 3) -> Image.Image:
    """One row per sample: the image, then each mask layer coloured by label."""
    palette = label_palette()
    size = dataset.image_size * zoom
    header = 14
    sheet = Image.new("RGB", (size * len(COLUMNS), header + size * count), "white")
    draw = ImageDraw.Draw(sheet)
    for col, title in enumerate(COLUMNS):
        draw.text((col * size + 3, 1), title, fill="black")
    for row in range(count):
        sample = dataset[row]
        tiles = [(sample["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)]
        masks = sample["masks"].numpy()
        tiles += [palette[masks[layer]] for layer in range(masks.shape[0])]
        for col, tile in enumerate(tiles):
            img = Image.fromarray(tile).resize((size, size), Image.NEAREST)
            sheet.paste(img, (col * size, header + row * size))
        name = dataset.class_names[int(sample["label"])]
        draw.text((3, header + row * size + 2), name, fill="white", stroke_width=1,
                  stroke_fill="black")
    return sheet


def main(argv: list[str] | None = None) -> None:
    """Write the preview picture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    dataset = PartsDataset(split="test", image_size=args.size, size=args.count, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    preview(dataset, args.count).save(args.out)


if __name__ == "__main__":
    main()
