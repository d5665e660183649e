"""A layer's unit inputs over the kept sample, as Net2Vec feeds them to the vectors.

``binary`` (the paper's and the authors' code's): the threshold indicators
``I(a_k > T_k)`` at the layer's own resolution, with dissection's thresholds ``T_k``,
kept packed (one bit per value, :mod:`compositional.bits`). ``standardized`` (an
option): the raw activations as ``(a_k − μ_k) / s_k`` with each unit's mean and
standard deviation over the training images, kept as float32.

Either way :meth:`InputSource.raw_weights` turns fitted weights into weights on the
raw activations, so that ``Σ_k weight_k · a_k`` is the vector as a direction in the
layer's raw channel space (exact for ``standardized``; for ``binary`` the indicator
``I(a_k > T_k)`` is read as ``a_k / T_k``, equal at the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from probe.plugins.analyses.compositional.bits import pack_bits, unpack_bits

#: How the units enter the vectors.
INPUTS = ("binary", "standardized")


def binary_bits(act: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``Tensor[K, B, words]`` packed ``act [B, K, h, w] > thresholds [K]`` (strict)."""
    above = act > thresholds.to(act.device).view(1, -1, 1, 1)
    return pack_bits(above.transpose(0, 1).reshape(act.shape[1], act.shape[0], -1))


@dataclass
class InputSource:
    """The unit inputs of one layer over the sample.

    Attributes:
        mode: ``"binary"`` or ``"standardized"``.
        data: packed bits ``Tensor[K, S, words]`` (binary) or raw activations
            ``Tensor[S, K, h, w]`` float32 (standardized).
        map_size: ``(h, w)`` of the layer's maps.
        thresholds: ``Tensor[K]`` dissection's thresholds.
        mean, std: ``Tensor[K]`` the standardisation (0 and 1 until :meth:`standardize`;
            always so for binary).
    """

    mode: str
    data: torch.Tensor
    map_size: tuple[int, int]
    thresholds: torch.Tensor
    mean: torch.Tensor = field(init=False)
    std: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in INPUTS:
            raise ValueError(f"inputs must be one of {list(INPUTS)}, got {self.mode!r}")
        self.mean = torch.zeros(self.units, device=self.data.device)
        self.std = torch.ones(self.units, device=self.data.device)

    @property
    def units(self) -> int:
        """``K``."""
        return int(self.thresholds.shape[0])

    def standardize(self, train: torch.Tensor) -> None:
        """Fix ``mean`` and ``std`` per unit from the training images (standardized only)."""
        if self.mode != "standardized":
            return
        values = self.data[train.to(self.data.device)].transpose(0, 1).reshape(
            self.units, -1).double()
        std = values.std(1, correction=0)
        self.mean = values.mean(1).float()
        self.std = torch.where(std > 0, std, torch.ones_like(std)).float()

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, K, h, w]`` float32 inputs of the sample images ``idx``."""
        h, w = self.map_size
        if self.mode == "binary":
            bits = unpack_bits(self.data[:, idx], h * w)                  # [K, B, h·w]
            return bits.transpose(0, 1).reshape(len(idx), self.units, h, w).float()
        raw = self.data[idx]
        return (raw - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

    def scale(self) -> torch.Tensor:
        """``Tensor[K]``: raw activation per unit of fitted input (``T_k`` where it is
        positive, else 1, for binary; ``s_k`` for standardized)."""
        if self.mode == "binary":
            t = self.thresholds.float()
            return torch.where(t > 0, t, torch.ones_like(t))
        return self.std

    def raw_weights(self, weights: torch.Tensor,
                    bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Tensor[C, K], Tensor[C])``: the vectors on raw activations.

        ``Σ_k w_k (a_k − μ_k)/s_k + b = Σ_k (w_k/s_k) a_k + (b − Σ_k w_k μ_k/s_k)``.
        """
        scale = self.scale().to(weights.device)
        raw = weights / scale.view(1, -1)
        return raw, bias - raw @ self.mean.to(weights.device)
