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


def unpack_mask(packed: bytes, height: int, width: int) -> np.ndarray:
    """A bit-packed mask (``numpy.packbits`` of the row-major pixels) as ``bool[h, w]``."""
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=height * width)
    return bits.reshape(height, width).astype(bool)


def mask_overlay(image: np.ndarray | torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """An exemplar with a binary unit mask: pixels outside it dimmed, as in Network Dissection.

    Args:
        image: ``[C, H, W]`` in [0, 1].
        mask: ``bool[h, w]`` at mask resolution (nearest-neighbour resized to ``H × W``).

    Returns:
        ``uint8[H, W, 3]``.
    """
    rgb = to_rgb(image).astype(np.float32)
    height, width = rgb.shape[:2]
    m = np.asarray(mask, dtype=bool)
    rows = np.minimum((np.arange(height) * m.shape[0]) // height, m.shape[0] - 1)
    cols = np.minimum((np.arange(width) * m.shape[1]) // width, m.shape[1] - 1)
    inside = m[rows][:, cols][..., None]
    tint = np.array([255.0, 230.0, 0.0], dtype=np.float32)
    out = np.where(inside, rgb * 0.75 + tint * 0.25, rgb * 0.25)
    return np.clip(out, 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode ``uint8[H, W, 3]`` as PNG."""
    buffer = io.BytesIO()
    # small pictures, many per page: fast compression (same pixels, slightly larger file)
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_uri(rgb: np.ndarray) -> str:
    """``uint8[H, W, 3]`` as a ``data:image/png;base64,...`` URI for an ``<img>``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")
