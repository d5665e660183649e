"""The ``folder`` data set: a user's own pictures in torchvision's ImageFolder layout.

``ROOT/<class>/<image>`` — one sub-folder per class (sorted names give the
class indices, as in ``torchvision.datasets.ImageFolder``); images with the
usual extensions (png, jpg, jpeg, bmp, gif, tif, tiff, webp, ppm) in any depth
below a class folder. Images are converted to RGB and resized bilinearly
(with antialiasing) to ``image_size × image_size``; no concept masks. Images
load lazily, so large folders cost nothing until read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from probe import DatasetSpec, Option, ProbeDataset, hookimpl
from probe.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def scan(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and ``(file, class index)`` pairs, both in sorted order.

    Raises:
        DataError: ``root`` is not a directory, has no class folders, or no images.
    """
    if not root.is_dir():
        raise DataError(f"{root}: not a directory (the folder data set needs ROOT/<class>/<image>)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected ROOT/<class>/<image>)")
    items = []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*")
                       if p.is_file() and p.suffix.lower() in EXTENSIONS)
        items += [(p, index) for p in files]
    if not items:
        raise DataError(f"{root}: no images with extensions {', '.join(EXTENSIONS)} "
                        f"in the class folders {classes}")
    return classes, items


class FolderDataset(ProbeDataset):
    """Images from ``ROOT/<class>/<image>`` as ``Tensor[3, S, S]`` in [0, 1] with class labels."""

    name = "folder"
    channels = 3
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(self, path: str = "", image_size: int = 64, size: int = 0, seed: int = 0,
                 split: str = "all") -> None:
        if not path:
            raise DataError("dataset folder needs a directory: --set dataset.path=DIR")
        self.root = Path(path).expanduser()
        classes, items = scan(self.root)
        if size and size < len(items):
            # a seeded subset, kept in sorted order so labels stay grouped
            keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:size])
            items = [items[i] for i in keep]
        self.items = items
        self.class_names = tuple(classes)
        self.num_classes = len(classes)
        self.image_size = image_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path, label = self.items[index]
        try:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB")).copy()
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read image: {exc}") from None
        pixels = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
        if pixels.shape[1:] != (self.image_size, self.image_size):
            pixels = F.interpolate(pixels[None], size=(self.image_size, self.image_size),
                                   mode="bilinear", align_corners=False, antialias=True)[0]
        return {"image": pixels.clamp(0.0, 1.0), "label": torch.tensor(label), "index": index}


@hookimpl
def probe_register_datasets(register):
    register(DatasetSpec(
        name="folder",
        load=FolderDataset,
        options=(
            Option("path", str, "", "root directory: ROOT/<class>/<image> (ImageFolder layout)"),
            Option("image_size", int, 64, "resize images to this side", minimum=8, maximum=1024),
            Option("size", int, 0, "number of images, a seeded subset (0 = all)", minimum=0),
            Option("seed", int, 0, "seed of the subset when size is set"),
            Option("split", str, "all", "unused: a folder is one split (common option)",
                   choices=("all", "train", "val", "test")),
        ),
        description="your own images in torchvision's ImageFolder layout (class sub-folders)",
        tasks=("classification",),
    ))
