"""Pure image helpers shared by the dashboard and the report.

Images with a unit's mask or activation, heat maps in a perceptual colour
map (viridis) with its colour bar, crops to the active region, weights as
signed maps or RGB tiles, bit-packed masks as arrays, PNG encoding. Nothing
here reads a file.
"""

from __future__ import annotations

import base64
import functools
import io

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F


def to_rgb(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` floats in [0, 1] (C = 1 or 3) → ``uint8[H, W, 3]``."""
    array = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) \
        else np.asarray(image)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"image must be [C, H, W] with C in (1, 3), got shape {array.shape}")
    array = np.clip(array.astype(np.float32), 0.0, 1.0)
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return (array.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


def upsample(activation: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of ``[h, w]`` (``align_corners=False``, as NetDissect-Lite)."""
    tensor = torch.from_numpy(np.array(activation, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def unpack_mask(packed: bytes, height: int, width: int) -> np.ndarray:
    """A bit-packed mask (``numpy.packbits`` of the row-major pixels) as ``bool[h, w]``."""
    bits = np.unpackbits(np.frombuffer(bytes(packed), dtype=np.uint8), count=height * width)
    return bits.reshape(height, width).astype(bool)


def stored_map(values: object, height: int, width: int) -> np.ndarray:
    """A stored activation map (a flat float list) as ``float32[height, width]``."""
    return np.asarray(values, dtype=np.float32).reshape(height, width)


def nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 2-D array resized to ``height × width`` by nearest neighbour."""
    rows = np.minimum((np.arange(height) * mask.shape[0]) // height, mask.shape[0] - 1)
    cols = np.minimum((np.arange(width) * mask.shape[1]) // width, mask.shape[1] - 1)
    return mask[rows][:, cols]


def mask_overlay(image: np.ndarray | torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """An exemplar with a binary unit mask: inside tinted and outlined, outside dimmed.

    Args:
        image: ``[C, H, W]`` in [0, 1].
        mask: ``bool[h, w]`` at mask resolution (nearest-neighbour resized to ``H × W``).
    """
    rgb = to_rgb(image).astype(np.float32)
    inside = nearest(np.asarray(mask, dtype=bool), *rgb.shape[:2])
    tint = np.array([255.0, 230.0, 0.0], dtype=np.float32)
    out = np.where(inside[..., None], rgb * 0.8 + tint * 0.2, rgb * 0.3)
    edge = inside & ~_eroded(inside)
    out[edge] = (255.0, 220.0, 0.0)  # a contour stays visible on saturated images
    return np.clip(out, 0, 255).astype(np.uint8)


def _eroded(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, mode="edge")
    return (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
            & padded[1:-1, :-2] & padded[1:-1, 2:])


@functools.cache
def _viridis() -> np.ndarray:
    """Viridis as a ``float32[256, 3]`` lookup table (from plotly's stops)."""
    from plotly.colors import hex_to_rgb, sequential

    stops = np.array([hex_to_rgb(c) for c in sequential.Viridis], dtype=np.float32)
    x = np.linspace(0, 1, len(stops))
    grid = np.linspace(0, 1, 256)
    return np.stack([np.interp(grid, x, stops[:, k]) for k in range(3)], axis=1)


def heat(values: np.ndarray, scale: float | None = None) -> np.ndarray:
    """A map as ``uint8[h, w, 3]`` in viridis, 0 → dark, ``scale`` (default: max) → yellow."""
    array = np.asarray(values, dtype=np.float32)
    top = float(scale) if scale else float(np.nanmax(array)) if array.size else 0.0
    level = np.clip(array / top, 0.0, 1.0) if top > 0 else np.zeros_like(array)
    index = np.nan_to_num(level * 255).round().astype(int)
    return _viridis()[index].round().astype(np.uint8)


def colour_bar(height: int, width: int = 10) -> np.ndarray:
    """A vertical viridis bar (top = the scale's maximum, bottom = 0) as ``uint8[h, w, 3]``."""
    column = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    return heat(column, 1.0)


def heat_beside(image: np.ndarray | torch.Tensor, activation: np.ndarray | None,
                scale: float | None = None) -> np.ndarray:
    """The image, its activation in viridis at the same size, and the colour bar, side by side.

    Readable on saturated images (nothing is drawn over the picture).
    """
    rgb = to_rgb(image)
    height, width = rgb.shape[:2]
    if activation is None:
        return rgb
    up = upsample(activation, (height, width))
    gap = np.full((height, 2, 3), 255, dtype=np.uint8)
    return np.concatenate([rgb, gap, heat(up, scale), gap,
                           colour_bar(height, max(4, width // 12))], axis=1)


def active_box(activation: np.ndarray, size: tuple[int, int], share: float = 0.5,
               margin: float = 0.15) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of the image region where the map is above
    ``share`` of its maximum, grown by ``margin`` of the image side (whole image if flat)."""
    height, width = size
    up = upsample(activation, size)
    top_value = float(up.max()) if up.size else 0.0
    if top_value <= 0:
        return 0, 0, height, width
    rows, cols = np.nonzero(up >= share * top_value)
    pad_h, pad_w = int(margin * height), int(margin * width)
    return (max(0, int(rows.min()) - pad_h), max(0, int(cols.min()) - pad_w),
            min(height, int(rows.max()) + 1 + pad_h), min(width, int(cols.max()) + 1 + pad_w))


def crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``rgb[top:bottom, left:right]``."""
    top, left, bottom, right = box
    return rgb[top:bottom, left:right]


def thumbnail(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb`` scaled so its longer side is ``size`` (nearest for small images: crisp pixels)."""
    height, width = rgb.shape[:2]
    factor = size / max(height, width)
    new = (max(1, round(width * factor)), max(1, round(height * factor)))
    method = Image.NEAREST if factor >= 1 else Image.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize(new, method))


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


def rgb_filter(weights: np.ndarray) -> np.ndarray:
    """A first-layer filter ``[3, kh, kw]`` as an RGB tile: 0 is mid-grey, the largest
    absolute weight of the filter reaches black or white (the AlexNet-paper picture)."""
    array = np.asarray(weights, dtype=np.float32)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"an RGB filter is [3, kh, kw], got shape {array.shape}")
    top = float(np.abs(array).max()) or 1.0
    return ((array / top * 0.5 + 0.5).clip(0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def tile_grid(tiles: list[np.ndarray], columns: int, gap: int = 2) -> np.ndarray:
    """Equal-sized ``uint8[h, w, 3]`` tiles in a grid with white gaps."""
    if not tiles:
        return np.full((1, 1, 3), 255, dtype=np.uint8)
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode ``uint8[H, W, 3]`` (or ``[H, W]``) as PNG (fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_uri(png: bytes | np.ndarray) -> str:
    """PNG bytes (or ``uint8`` pixels) as a ``data:image/png;base64,...`` URI."""
    if isinstance(png, np.ndarray):
        png = png_bytes(png)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
