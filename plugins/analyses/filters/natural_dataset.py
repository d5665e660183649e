"""The ``natural`` data set: tiles of the natural images bundled with scikit-image and
scikit-learn (no labels, no masks; nothing downloaded).

Meant for patch statistics (``filters.pca_source=dataset``) and for analyses that
want natural rather than synthetic pictures (equivariance on natural images).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probe import DatasetSpec, Option, ProbeDataset
from probe.errors import ProbeError


class NaturalDataset(ProbeDataset):
    """Non-overlapping ``image_size`` tiles of the bundled natural images.

    With ``size = 0`` every tile is used in a fixed order (image by image, row-major);
    otherwise ``size`` tiles drawn without replacement by ``numpy.random.default_rng(seed)``.
    """

    name = "natural"
    num_classes = 0

    def __init__(self, image_size: int, size: int, seed: int, color: bool,
                 split: str = "all") -> None:
        from probe.plugins.analyses.filters.natural import natural_tiles

        tiles, source = natural_tiles(image_size, color)
        if size:
            if size > len(tiles):
                raise ProbeError(f"dataset natural has {len(tiles)} tiles of {image_size} px, "
                                 f"asked for size={size}")
            chosen = np.sort(np.random.default_rng(seed).choice(len(tiles), size, replace=False))
            tiles, source = tiles[chosen], source[chosen]
        self.images = torch.from_numpy(np.ascontiguousarray(tiles))
        self.source = torch.from_numpy(source.astype(np.int64))
        self.image_size = image_size
        self.channels = 3 if color else 1
        self.mean = (0.45,) * self.channels
        self.std = (0.25,) * self.channels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "label": -1, "index": index}


def _load(image_size: int, size: int, seed: int, color: bool, split: str) -> NaturalDataset:
    return NaturalDataset(image_size, size, seed, color, split)


NATURAL_SPEC = DatasetSpec(
    name="natural",
    load=_load,
    options=(
        Option("image_size", int, 64, "tile side in pixels", minimum=8, maximum=512),
        Option("size", int, 0, "number of tiles (0 = every tile)", minimum=0),
        Option("seed", int, 0, "seed of the tile choice when size > 0"),
        Option("color", bool, True, "RGB tiles (false: luminance, one channel)"),
        Option("split", str, "all", "only 'all': the tiles have no train/test split",
               choices=("all",)),
    ),
    description="tiles of natural photos/textures bundled with scikit-image and "
                "scikit-learn (no labels, no masks)",
    has_masks=False,
    tasks=(),
)
