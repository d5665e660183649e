"""Natural-image patches from images bundled with scikit-image and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from probe.plugins.analyses.filters.natural import (
    NATURAL_IMAGES,
    natural_images,
    sample_patches,
)


def test_images_ship_with_the_packages():
    images = natural_images(color=True)
    assert [name for name, _ in images] == list(NATURAL_IMAGES)
    for name, image in images:
        assert image.shape[0] == 3 and min(image.shape[1:]) >= 256, name
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert image.std() > 0.05, name  # real content, not a blank placeholder
    gray = dict(natural_images())
    camera = gray["camera"]
    assert camera.shape == (1, 512, 512)


def test_patches_are_deterministic_and_cut_from_the_images():
    a = sample_patches(7, 240, seed=5)
    b = sample_patches(7, 240, seed=5)
    c = sample_patches(7, 240, seed=6)
    assert a.shape == (240, 1, 7, 7) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # 240 patches over 12 images: 20 each, the first 20 from the first image.
    first = dict(natural_images())[NATURAL_IMAGES[0]][0]
    patch = a[0, 0]
    hits = np.argwhere(np.all(np.abs(np.lib.stride_tricks.sliding_window_view(
        first, (7, 7)) - patch) < 1e-15, axis=(2, 3)))
    assert len(hits) >= 1


def test_colour_and_grey_patches_share_positions():
    colour = sample_patches((5, 9), 60, seed=1, color=True)
    grey = sample_patches((5, 9), 60, seed=1)
    assert colour.shape == (60, 3, 5, 9)
    weights = np.array([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose((colour * weights).sum(axis=1, keepdims=True), grey, atol=1e-12)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="patch size"):
        sample_patches(0, 10)
    with pytest.raises(ValueError, match="count"):
        sample_patches(5, 0)


def test_natural_dataset_tiles_the_images():
    from probe.plugins.analyses.filters.natural import natural_tiles
    from probe.plugins.analyses.filters.natural_dataset import NATURAL_SPEC

    tiles, source = natural_tiles(64)
    images = natural_images(color=True)
    astronaut = images[0][1]
    # Astronaut is 512×512: 8×8 tiles, the second tile is columns 64..127 of the first rows.
    assert (source == 0).sum() == 64
    np.testing.assert_allclose(tiles[1], astronaut[:, :64, 64:128], atol=1e-7)
    whole = NATURAL_SPEC.instantiate({})
    assert len(whole) == len(tiles) and whole.channels == 3
    sample = whole[5]
    assert sample["label"] == -1 and sample["image"].shape == (3, 64, 64)
    part = NATURAL_SPEC.instantiate({"size": 7, "seed": 1, "color": False, "image_size": 32})
    again = NATURAL_SPEC.instantiate({"size": 7, "seed": 1, "color": False, "image_size": 32})
    assert len(part) == 7 and part[0]["image"].shape == (1, 32, 32)
    assert all(np.array_equal(part[i]["image"], again[i]["image"]) for i in range(7))
    with pytest.raises(Exception, match="asked for size"):
        NATURAL_SPEC.instantiate({"size": 10**6})
