"""The ``digits`` data set: scikit-learn's 1,797 real handwritten digits (8×8), offline.

Each 8×8 digit is resized bilinearly to 7/8 of ``image_size`` and centred with a
blank border, as the MNIST digits sit inside LeNet-5's 32×32 field. The
train/test split is fixed: a seeded permutation (seed 0) puts 1,347 digits in
``train`` and 450 in ``test``, whatever the run's ``seed``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from probe import DatasetSpec, Option, ProbeDataset, Register, hookimpl
from probe.errors import ProbeError

TRAIN_SIZE = 1347
_SPLIT_SEED = 0


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits, ``(images [1797, 8, 8] float64 in 0..16, target [1797] int)``.

    Read from the CSV that scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``)
    the way its ``load_digits`` reads it, without importing scikit-learn (which
    takes seconds: the first dashboard page that shows digits waited for it).

    Raises:
        ProbeError: when scikit-learn (the file's package) is not installed.
    """
    import gzip
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ProbeError("dataset digits needs scikit-learn installed (its digits file)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" \
        / "digits.csv.gz"
    with gzip.open(path, "rt") as handle:
        data = np.loadtxt(handle, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


class DigitsDataset(ProbeDataset):
    """Handwritten digits as ``Tensor[1, S, S]`` images in [0, 1] with labels 0–9."""

    name = "digits"
    channels = 1
    mean = (0.13,)
    std = (0.29,)
    num_classes = 10
    class_names = tuple(str(d) for d in range(10))

    def __init__(self, split: str, image_size: int, size: int, seed: int) -> None:
        images, target = load_digits()
        order = np.random.default_rng(_SPLIT_SEED).permutation(len(target))
        chosen = {"train": order[:TRAIN_SIZE], "test": order[TRAIN_SIZE:], "all": order}[split]
        if size:
            if size > len(chosen):
                raise ProbeError(f"dataset digits split {split!r} has {len(chosen)} images, "
                                 f"asked for size={size}")
            chosen = chosen[:size]
        pixels = torch.from_numpy(images[chosen].astype(np.float32) / 16.0).unsqueeze(1)
        inner = round(image_size * 7 / 8)
        pad = image_size - inner
        digits = F.interpolate(pixels, size=(inner, inner), mode="bilinear", align_corners=False)
        self.images = F.pad(digits, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        self.images = self.images.clamp(0.0, 1.0).contiguous()
        self.labels = torch.from_numpy(target[chosen].astype(np.int64))
        self.source_index = torch.from_numpy(chosen.astype(np.int64))
        self.image_size = image_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "label": self.labels[index], "index": index}


@hookimpl
def probe_register_datasets(register: Register) -> None:
    register(DatasetSpec(
        name="digits",
        load=DigitsDataset,
        options=(
            Option("split", str, "test", "which fixed split", choices=("train", "test", "all")),
            Option("image_size", int, 32, "image side in pixels", minimum=8, maximum=224),
            Option("size", int, 0, "number of images (0 = the whole split)", minimum=0),
            Option("seed", int, 0, "unused: the split is fixed (kept for the common options)"),
        ),
        description="scikit-learn's 1,797 handwritten digits (8×8, upsampled), fixed split",
        tasks=("classification",),
    ))
