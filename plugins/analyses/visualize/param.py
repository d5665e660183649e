"""Lucid's image parametrisation and transformation robustness (Olah et al., Distill 2017).

:class:`FourierImage` holds a batch of images as scaled Fourier coefficients: the
spectrum is multiplied by ``1 / frequency^decay`` (so every frequency starts with
comparable energy after the scaling, which decorrelates the pixels), transformed
back with an inverse real FFT, mapped through the ImageNet colour-correlation
square root (Lucid's ``color_correlation_svd_sqrt``, normalised by its largest
column norm) for 3-channel images, and squashed to [0, 1] by a sigmoid.
:func:`robust` applies Lucid's random jitter, scale and rotation per image and
step, from a seeded generator.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

#: Lucid's ``color_correlation_svd_sqrt`` (square root of ImageNet's colour covariance).
COLOUR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]],
                           dtype=torch.float64)


class FourierImage(torch.nn.Module):
    """``N`` images ``[C, H, W]`` in [0, 1] as decorrelated Fourier coefficients.

    Args:
        count, channels, height, width: Batch and image shape.
        generator: Seeds the initial coefficients (Lucid: normal, std 0.01).
        decay: Spectrum decay power (Lucid: 1).
    """

    def __init__(self, count: int, channels: int, height: int, width: int,
                 generator: torch.Generator, device: torch.device, decay: float = 1.0) -> None:
        super().__init__()
        self.size = (height, width)
        fy = torch.fft.fftfreq(height)[:, None]
        fx = torch.fft.rfftfreq(width)[None, :]
        frequency = torch.sqrt(fx * fx + fy * fy)
        scale = 1.0 / torch.clamp(frequency, min=1.0 / max(height, width)) ** decay
        self.register_buffer("scale", (scale * math.sqrt(height * width)).to(device))
        init = 0.01 * torch.randn((count, channels, height, width // 2 + 1, 2),
                                  generator=generator)
        self.spectrum = torch.nn.Parameter(init.to(device))
        colour = COLOUR_SQRT / COLOUR_SQRT.norm(dim=0).max()
        self.register_buffer("colour", colour.float().to(device))

    def forward(self) -> torch.Tensor:
        """``Tensor[N, C, H, W]`` in [0, 1]."""
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(spectrum, s=self.size) / 4.0  # as Lucid: 1/(H·W) inverse
        if image.shape[1] == 3:
            image = torch.einsum("ij,njhw->nihw", self.colour, image)
        return torch.sigmoid(image)


def robust(images: torch.Tensor, generator: torch.Generator, jitter: int, scale: float,
           rotate: float) -> torch.Tensor:
    """Random jitter (±``jitter`` px), scale (×[1 − scale, 1 + scale]) and rotation (±``rotate``°).

    One draw per image; reflection padding so no black border enters.
    """
    n, _, height, width = images.shape
    u = torch.rand((n, 4), generator=generator).to(images.device, images.dtype) * 2 - 1
    factor = 1 + scale * u[:, 0]
    angle = math.radians(rotate) * u[:, 1]
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, 2 * jitter * u[:, 2] / width], 1),
                         torch.stack([sin, cos, 2 * jitter * u[:, 3] / height], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)


__all__ = ["COLOUR_SQRT", "FourierImage", "robust"]
