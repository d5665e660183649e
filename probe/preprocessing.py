"""A model's own preprocessing: normalisation and input geometry.

A data set yields images in [0, 1]; what a model expects from there belongs to
the model. Where it comes from, in order (first found wins):

1. given explicitly (``probe.measure(..., preprocessing=...)``);
2. the checkpoint: ``probe train`` records it in the safetensors metadata and
   the JSON sidecar (the statistics of the training set it normalised with);
   a plain ``state_dict`` file may have a sidecar ``<file>.json`` with a
   ``preprocessing`` entry;
3. the architecture's default (torchvision-compatible families carry
   ImageNet's statistics, which their torchvision weights expect);
4. none: identity (mean 0, std 1), recorded as such.

The run applies it whatever the data set and records it in the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from probe.errors import ProbeError

#: ImageNet statistics, as torchvision's weights expect them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Where ``probe.load_model`` leaves a model's preprocessing (and architecture record).
MODEL_ATTRIBUTE = "probe_preprocessing"


@dataclass(frozen=True)
class Preprocessing:
    """How images in [0, 1] become model inputs.

    Attributes:
        mean, std: Per-channel normalisation, ``(x - mean) / std``.
        input_size: Side of the square input the model was built for, or
            ``None`` when any size works.
        channels: Input channels, or ``None`` when not fixed.
        source: Where it came from (``checkpoint``, ``architecture``,
            ``torchvision``, ``given``, ``none``) — recorded in the manifest.
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    input_size: int | None = None
    channels: int | None = None
    source: str = field(default="none", compare=False)

    def __post_init__(self) -> None:
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if not mean or len(mean) != len(std):
            raise ProbeError(f"preprocessing mean and std need one value per channel, got "
                             f"mean {list(mean)} and std {list(std)}")
        if any(s <= 0 for s in std):
            raise ProbeError(f"preprocessing std must be > 0, got {list(std)}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, C, H, W]`` in [0, 1] → model inputs (one mean/std broadcast to C)."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype)
        return (images - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    def record(self) -> dict[str, Any]:
        """JSON-ready form (manifest, checkpoint metadata)."""
        return {"mean": list(self.mean), "std": list(self.std), "input_size": self.input_size,
                "channels": self.channels, "source": self.source}

    @classmethod
    def from_record(cls, record: Mapping[str, Any], source: str | None = None) -> Preprocessing:
        """Read :meth:`record`'s form back (``source`` overrides the recorded one)."""
        try:
            return cls(mean=tuple(record["mean"]), std=tuple(record["std"]),
                       input_size=record.get("input_size"), channels=record.get("channels"),
                       source=source or str(record.get("source", "checkpoint")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProbeError(f"preprocessing record {dict(record)!r} is not valid: "
                             f"{exc}") from None

    @classmethod
    def of_statistics(cls, mean: Sequence[float], std: Sequence[float], *,
                      input_size: int | None = None, channels: int | None = None,
                      source: str = "given") -> Preprocessing:
        """From per-channel statistics."""
        return cls(tuple(mean), tuple(std), input_size, channels, source)


IDENTITY = Preprocessing()


def imagenet(source: str = "architecture") -> Preprocessing:
    """ImageNet's statistics (what torchvision's weights expect), 3 channels."""
    return Preprocessing(IMAGENET_MEAN, IMAGENET_STD, channels=3, source=source)


def attached_preprocessing(model: nn.Module) -> Preprocessing | None:
    """The preprocessing ``probe.load_model`` attached to ``model``, if any."""
    value = getattr(model, MODEL_ATTRIBUTE, None)
    return value if isinstance(value, Preprocessing) else None


def attach_preprocessing(model: nn.Module, preprocessing: Preprocessing) -> nn.Module:
    """Remember ``preprocessing`` on ``model`` (so any entry point uses the same one)."""
    object.__setattr__(model, MODEL_ATTRIBUTE, preprocessing)
    return model
