"""What a dataset plugin registers: :class:`DatasetSpec` and :class:`ProbeDataset`.

A sample is a dict. Every data set gives ``image`` (``Tensor[C, H, W]``, float
in [0, 1]), ``label`` (class index, ``-1`` when there is none) and ``index``
(position in the data set). Data sets with concept annotations add:

* ``masks`` — ``Tensor[L, h, w]`` (int64) label maps at mask resolution; layer
  ``l`` belongs to category ``mask_categories[l]``; several layers of one
  category (``part``, ``part``) are OR-ed by the analyses; 0 = unlabelled.
* ``scalars`` — ``Tensor[S]`` (int64) image-level labels (scene, texture, ...),
  slot ``s`` belonging to ``scalar_categories[s]``; 0 = none.

Segmentation data sets add ``target`` (``Tensor[H, W]``, int64 class map).
The fixed layer/slot layout lets PyTorch's default collate batch them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from torch.utils.data import Dataset

from probe.options import Option, resolve_options

CONCEPT_COLUMNS = ("id", "name", "category")


class ProbeDataset(Dataset):
    """Base class of every probe data set; subclasses fill in the attributes.

    Attributes:
        name: Registry name of the source.
        image_size: Side of the (square) images in pixels.
        channels: Image channels (1 or 3).
        mean, std: The data set's per-channel statistics. ``probe train`` normalises
            with them and records them as the trained model's preprocessing; a
            run always applies the *model's* preprocessing, never these.
        num_classes: Number of classification (or segmentation) classes.
        class_names: Name of each class.
        concepts: Concept table (``id``, ``name``, ``category``; id 0 is never
            used) or ``None`` for data sets without annotations.
        mask_categories: Category of each mask layer.
        scalar_categories: Category of each image-level label slot.
        mask_size: Side of the mask maps in pixels.
        part_parents: Table ``part_id, object_id`` (which parts make which
            objects) where known, else ``None``.
        options: The resolved options it was loaded with.
    """

    name: str = "dataset"
    image_size: int = 32
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    concepts: pd.DataFrame | None = None
    mask_categories: tuple[str, ...] = ()
    scalar_categories: tuple[str, ...] = ()
    mask_size: int = 0
    part_parents: pd.DataFrame | None = None
    options: Mapping[str, Any] = {}

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def has_masks(self) -> bool:
        """Whether samples carry concept annotations."""
        return self.concepts is not None and bool(self.mask_categories or self.scalar_categories)

    @property
    def categories(self) -> tuple[str, ...]:
        """Concept categories in order of first appearance in the concept table."""
        if self.concepts is None:
            return ()
        return tuple(dict.fromkeys(self.concepts["category"]))

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary of the loaded data set."""
        return {
            "name": self.name,
            "size": len(self),
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "has_masks": self.has_masks,
            "mask_size": self.mask_size,
            "categories": list(self.categories),
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class DatasetSpec:
    """A data source that probe can load by name.

    Args:
        name: Unique registry name (``digits``, ``parts``).
        load: ``load(**options) -> ProbeDataset``; receives every resolved option.
        options: Declared options; where they apply, sources use the contract
            names ``size``, ``image_size``, ``seed`` and ``split``.
        description: One line for listings.
        has_masks: Whether the source carries concept annotations.
        task: ``classification`` and/or ``segmentation`` labels it provides.
    """

    name: str
    load: Callable[..., ProbeDataset]
    options: tuple[Option, ...] = ()
    description: str = ""
    has_masks: bool = False
    tasks: tuple[str, ...] = ("classification",)

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validated options with defaults filled in."""
        return resolve_options(self.options, given or {}, f"dataset {self.name}")

    def instantiate(self, options: Mapping[str, Any] | None = None) -> ProbeDataset:
        """Load the data set with validated options."""
        resolved = self.resolve(options)
        dataset = self.load(**resolved)
        dataset.options = resolved
        return dataset

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for listings."""
        return {
            "name": self.name,
            "description": self.description,
            "has_masks": self.has_masks,
            "tasks": list(self.tasks),
            "options": [opt.describe() for opt in self.options],
        }
