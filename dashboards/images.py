"""Pure image helpers: exemplar images with the unit's activation overlaid, filter maps.

Everything returns PNG bytes or arrays and reads no file, so the report can use
the same pictures.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F


def to_rgb(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` floats in [0, 1] (C = 1 or 3) → ``uint8[H, W, 3]``."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"image must be [C, H, W] with C in (1, 3), got shape {array.shape}")
    array = np.clip(array.astype(np.float32), 0.0, 1.0)
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return (array.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


def upsample(activation: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling (``align_corners=False``, as Network Dissection) of ``[h, w]``."""
    tensor = torch.from_numpy(np.array(activation, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def overlay(image: np.ndarray | torch.Tensor, activation: np.ndarray | None,
            scale: float | None = None, threshold: float | None = None) -> np.ndarray:
    """An exemplar with its activation map drawn on top.

    Args:
        image: ``[C, H, W]`` in [0, 1].
        activation: ``[h, w]`` activation map of the unit on this image, or ``None``.
        scale: Activation that maps to full red (default: the map's maximum).
        threshold: When given, the binary mask ``upsampled > threshold`` is shown
            instead (pixels outside it are dimmed), as in Network Dissection.

    Returns:
        ``uint8[H, W, 3]``.
    """
    rgb = to_rgb(image).astype(np.float32)
    if activation is None:
        return rgb.astype(np.uint8)
    height, width = rgb.shape[:2]
    up = upsample(activation, (height, width))
    if threshold is not None:
        inside = (up > threshold)[..., None]
        out = np.where(inside, rgb, rgb * 0.25)
        return np.clip(out, 0, 255).astype(np.uint8)
    top = float(scale) if scale else float(up.max())
    alpha = np.clip(up / top, 0.0, 1.0)[..., None] * 0.65 if top > 0 else np.zeros_like(up)[
        ..., None]
    red = np.array([255.0, 40.0, 0.0], dtype=np.float32)
    return np.clip(rgb * (1 - alpha) + red * alpha, 0, 255).astype(np.uint8)


def signed_map(values: np.ndarray) -> np.ndarray:
    """A signed 2-D map as ``uint8[H, W, 3]``: blue negative, white zero, red positive."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"map must be 2-D, got shape {array.shape}")
    top = float(np.abs(array).max()) or 1.0
    v = np.clip(array / top, -1.0, 1.0)[..., None]
    white = np.ones(3, dtype=np.float32)
    red, blue = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.2, 0.8])
    rgb = np.where(v >= 0, white * (1 - v) + red * v, white * (1 + v) - blue * v)
    return (rgb * 255 + 0.5).astype(np.uint8)


def filter_rgb(weights: np.ndarray) -> np.ndarray:
    """A convolution filter ``[C_in, k, k]`` as an image: RGB when C_in = 3, else signed map."""
    array = np.asarray(weights, dtype=np.float32)
    if array.ndim == 2:
        return signed_map(array)
    if array.ndim == 3 and array.shape[0] == 3:
        centred = array - array.mean()
        top = float(np.abs(centred).max()) or 1.0
        return ((centred / top * 0.5 + 0.5).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    if array.ndim == 3:
        return signed_map(array.mean(axis=0))
    raise ValueError(f"filter must be [C_in, k, k] or [k, k], got shape {array.shape}")


def gabor(params: dict[str, float], size: int) -> np.ndarray:
    """The Gabor function of REFERENCE §2 sampled on a ``size × size`` grid.

    ``g = c + A·exp(−½(x′²/σx² + y′²/σy²))·cos(2π f x′ + φ)`` with ``x′, y′``
    rotated by θ about ``(x0, y0)``; pixel coordinates run ``0 … size-1``.
    Missing parameters default to a centred, unit-amplitude, zero-offset Gabor.
    """
    p = {"c": 0.0, "amplitude": 1.0, "x0": (size - 1) / 2, "y0": (size - 1) / 2,
         "sigma_x": size / 4, "sigma_y": size / 4, "theta": 0.0, "frequency": 0.25,
         "phase": 0.0, **{k: float(v) for k, v in params.items() if v is not None}}
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    xr = (x - p["x0"]) * np.cos(p["theta"]) + (y - p["y0"]) * np.sin(p["theta"])
    yr = -(x - p["x0"]) * np.sin(p["theta"]) + (y - p["y0"]) * np.cos(p["theta"])
    envelope = np.exp(-0.5 * (xr**2 / p["sigma_x"] ** 2 + yr**2 / p["sigma_y"] ** 2))
    return p["c"] + p["amplitude"] * envelope * np.cos(2 * np.pi * p["frequency"] * xr
                                                       + p["phase"])


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode ``uint8[H, W, 3]`` as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(rgb: np.ndarray) -> str:
    """``uint8[H, W, 3]`` as a ``data:image/png;base64,...`` URI for an ``<img>``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")
