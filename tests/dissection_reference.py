"""A straightforward reference-style tally: numpy, a Python loop over images and units, CPU.

This is how the original tools count (NetDissect / NetDissect-Lite): for each
image, for each unit, upsample the map (PIL bilinear by default), threshold it
and count labels. It serves as the baseline of ``benchmarks/bench_dissection.py``
and as an independent cross-check of ``probe.plugins.analyses.dissection.tally``
in the tests; it follows the same conventions (label 0 ignored, layers OR-ed per
pixel, scalar labels as whole-image masks, the three activation rules, categories
present at a pixel or in an image decided by the labels' primary categories).

A test helper, not shipped with the plugin: the tests import it as
``dissection_reference`` (``tests/`` is on their path), the benchmark puts
``tests/`` on ``sys.path`` first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from probe.plugins.analyses.dissection.labels import LabelSpace

Upsample = Callable[[np.ndarray, tuple[int, int]], np.ndarray]


def pil_upsample(feature_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 ``[h, w]`` map to ``size = (H, W)`` with PIL (mode ``F``)."""
    image = Image.fromarray(np.ascontiguousarray(feature_map, dtype=np.float32), mode="F")
    return np.asarray(image.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32)


@dataclass
class ReferenceTally:
    """Counts of one layer, as numpy arrays (same meaning as ``LayerTally``)."""

    intersection: np.ndarray  # [K, num_labels]
    active: np.ndarray  # [K]
    active_paper: np.ndarray  # [K, C]
    active_lite: np.ndarray  # [K, C]
    truth: np.ndarray  # [num_labels]

    @classmethod
    def zeros(cls, units: int, space: LabelSpace) -> ReferenceTally:
        """Empty counts."""
        n, c = space.num_labels, len(space.categories)
        return cls(np.zeros((units, n), np.int64), np.zeros(units, np.int64),
                   np.zeros((units, c), np.int64), np.zeros((units, c), np.int64),
                   np.zeros(n, np.int64))

    def add(self, acts: np.ndarray, thresholds: np.ndarray, masks: np.ndarray | None,
            scalars: np.ndarray | None, space: LabelSpace,
            upsample: Upsample = pil_upsample, size: tuple[int, int] | None = None,
            primary: np.ndarray | None = None) -> None:
        """Add a batch: ``acts [B, K, h, w]``, ``masks [B, L, H, W]``, ``scalars [B, S]``.

        ``primary[label]`` is each label's primary category (default: its
        concept-table category); a category is present where a label of it is.
        """
        batch, units = acts.shape[:2]
        if masks is None:
            masks = np.zeros((batch, 0, *size), np.int64)
        if scalars is None:
            scalars = np.zeros((batch, 0), np.int64)
        height, width = masks.shape[-2:]
        if primary is None:
            primary = np.array(space.default_category, dtype=np.int64)
        for b in range(batch):
            image_scalars = {int(s) for s in scalars[b] if s != 0}
            present = {}  # label -> [H, W] bool, OR over layers, minus scalar labels
            for label in np.unique(masks[b]):
                if label != 0 and int(label) not in image_scalars:
                    present[int(label)] = (masks[b] == label).any(0)
            for label, where in present.items():
                self.truth[label] += int(where.sum())
            for label in image_scalars:
                self.truth[label] += height * width
            annotated = {int(primary[label]) for label in np.unique(masks[b]) if label != 0}
            scalar_cats = {int(primary[label]) for label in image_scalars}
            annotated |= scalar_cats
            for k in range(units):
                feature = acts[b, k]
                if feature.max() <= thresholds[k]:
                    continue
                on = upsample(feature, (height, width)) > thresholds[k]
                count = int(on.sum())
                self.active[k] += count
                for c in annotated:
                    self.active_paper[k, c] += count
                touched = set(scalar_cats) if count else set()
                for label in np.unique(masks[b][:, on]):
                    if label != 0:
                        touched.add(int(primary[label]))
                for c in touched:
                    self.active_lite[k, c] += count
                for label, where in present.items():
                    self.intersection[k, label] += int((where & on).sum())
                for label in image_scalars:
                    self.intersection[k, label] += count
