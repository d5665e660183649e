"""Overlays, heat maps, masks, crops and filter tiles (pure image helpers of the views)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from probe.views import images


def test_to_rgb_grey_and_colour() -> None:
    grey = torch.tensor([[[0.0, 0.5], [1.0, 2.0]]])  # [1, 2, 2], 2.0 clipped
    rgb = images.to_rgb(grey)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[:, :, 0].tolist() == [[0, 128], [255, 255]]
    assert (rgb[..., 0] == rgb[..., 2]).all()
    with pytest.raises(ValueError, match=r"\[C, H, W\] with C in \(1, 3\)"):
        images.to_rgb(np.zeros((2, 4, 4)))


def test_upsample_is_bilinear_without_aligned_corners() -> None:
    up = images.upsample(np.array([[0.0, 1.0]]), (1, 4))
    # align_corners=False: sample points at x = -0.25, 0.25, 0.75, 1.25 (clamped)
    assert up[0].tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])


def test_heat_is_viridis_scaled_to_the_given_maximum() -> None:
    from plotly.colors import hex_to_rgb, sequential

    low, high = hex_to_rgb(sequential.Viridis[0]), hex_to_rgb(sequential.Viridis[-1])
    out = images.heat(np.array([[0.0, 2.0, 4.0, 8.0]]), scale=4.0)
    assert out[0, 0].tolist() == list(low) and out[0, 2].tolist() == list(high)
    assert out[0, 3].tolist() == list(high)  # above the scale: clipped
    middle = out[0, 1].astype(int)  # half way: between the ends, not a red tint
    assert middle.tolist() != list(low) and middle.tolist() != list(high)
    bar = images.colour_bar(10, 3)
    assert bar.shape == (10, 3, 3) and bar[0, 0].tolist() == list(high)
    assert bar[-1, 0].tolist() == list(low)


def test_heat_beside_keeps_the_image_untouched() -> None:
    image = torch.rand(3, 8, 8)
    act = np.zeros((2, 2), dtype=np.float32)
    act[1, 1] = 1.0
    out = images.heat_beside(image, act)
    assert out.shape[0] == 8 and out.shape[1] == 8 + 2 + 8 + 2 + 4
    assert (out[:, :8] == images.to_rgb(image)).all()  # nothing drawn over the picture


def test_active_box_and_crop() -> None:
    act = np.zeros((4, 4), dtype=np.float32)
    act[3, 3] = 1.0  # bottom-right cell of a 4×4 map over a 16×16 image
    top, left, bottom, right = images.active_box(act, (16, 16), share=0.5, margin=0.0)
    assert bottom == 16 and right == 16 and top >= 10 and left >= 10
    assert images.active_box(np.zeros((4, 4)), (16, 16)) == (0, 0, 16, 16)  # flat: whole
    rgb = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    assert images.crop(rgb, (2, 3, 5, 9)).shape == (3, 6, 3)


def test_mask_overlay_outlines_and_dims() -> None:
    mask = np.array([[True, False], [False, False]])
    packed = np.packbits(mask.ravel()).tobytes()
    assert images.unpack_mask(packed, 2, 2).tolist() == mask.tolist()
    out = images.mask_overlay(torch.ones(3, 4, 4), mask)  # 2×2 mask on a 4×4 image
    assert out[3, 3].tolist() == [76, 76, 76]  # outside: dimmed to 30 %
    assert out[0, 0].tolist() == [255, 250, 204]  # inside: 80 % image, 20 % yellow tint
    assert out[1, 1].tolist() == [255, 220, 0]  # the mask's edge: an opaque contour


def test_rgb_filter_tiles_and_grid() -> None:
    weights = np.zeros((3, 2, 2), dtype=np.float32)
    weights[0, 0, 0], weights[2, 1, 1] = 1.0, -1.0
    tile = images.rgb_filter(weights)
    assert tile[0, 1].tolist() == [128, 128, 128]  # zero weight: mid grey
    assert tile[0, 0].tolist() == [255, 128, 128] and tile[1, 1].tolist() == [128, 128, 0]
    grid = images.tile_grid([tile] * 5, columns=3, gap=1)
    assert grid.shape == (2 * 2 + 1, 3 * 2 + 2, 3)


def test_signed_map_and_png_round_trip() -> None:
    rgb = images.signed_map(np.array([[-2.0, 0.0, 2.0]]))
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 2, 0] > rgb[0, 2, 2] and rgb[0, 0, 2] > rgb[0, 0, 0]
    uri = images.data_uri(rgb)
    assert uri.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert decoded.tolist() == rgb.tolist()
