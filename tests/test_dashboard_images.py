"""Exemplar overlays, masks and filter maps (pure image helpers of the dashboard)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from probe.dashboards import images


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


def test_heat_overlay_scales_to_the_best_exemplar() -> None:
    image = torch.zeros(1, 2, 2)
    act = np.array([[0.0, 1.0], [2.0, 4.0]], dtype=np.float32)
    out = images.overlay(image, np.kron(act, np.ones((1, 1))), scale=4.0)
    # red channel = 255 · 0.65 · act / scale on a black image (same size: no resampling)
    assert out[..., 0].tolist() == [[0, 41], [82, 165]]
    masked = images.overlay(torch.ones(1, 2, 2), act, threshold=1.5)
    assert masked[..., 0].tolist() == [[63, 63], [255, 255]]  # outside dimmed to 25 %


def test_mask_overlay_and_packed_masks() -> None:
    mask = np.array([[True, False], [False, True]])
    packed = np.packbits(mask.ravel()).tobytes()
    assert images.unpack_mask(packed, 2, 2).tolist() == mask.tolist()
    out = images.mask_overlay(torch.ones(3, 4, 4), mask)  # 2×2 mask on a 4×4 image
    inside, outside = out[0, 0], out[0, 3]
    assert inside.tolist() == [255, 248, 191] and outside.tolist() == [63, 63, 63]
    assert (out[:2, :2] == inside).all() and (out[2:, 2:] == inside).all()


def test_signed_map_and_png_round_trip() -> None:
    rgb = images.signed_map(np.array([[-2.0, 0.0, 2.0]]))
    assert rgb[0, 1].tolist() == [255, 255, 255]
    assert rgb[0, 2, 0] > rgb[0, 2, 2] and rgb[0, 0, 2] > rgb[0, 0, 0]
    uri = images.data_uri(rgb)
    assert uri.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert decoded.tolist() == rgb.tolist()
