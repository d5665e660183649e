"""OpenCV's PNG path in the Broden loader gives PIL's pixels, and hands every file it is not
sure of back to PIL."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from probe.plugins.datasets import broden as broden_module
from probe.plugins.datasets.broden import BrodenDataset
from probe.plugins.datasets.broden_export import export_broden
from probe.plugins.datasets.parts import PartsDataset
from probe.plugins.datasets.png_pixels import decode_rgb, header


def _encoded(pixels: np.ndarray, mode: str | None = None, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels).convert(mode)
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize(("height", "width", "channels"),
                         [(64, 64, 3), (7, 13, 3), (1, 1, 3), (5, 9, 4), (112, 112, 4)])
def test_rgb_and_rgba_pngs_decode_to_pils_rgb_pixels(height, width, channels):
    rng = np.random.default_rng(height * width + channels)
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    data = _encoded(pixels)
    assert header(data) == (width, height, 8, 2 if channels == 3 else 6, 0)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    got = decode_rgb(data)
    assert got is not None and got.dtype == np.uint8 and got.shape == (height, width, 3)
    assert np.array_equal(got, expected)
    assert np.array_equal(got, pixels[..., :3])  # and PNG is lossless


def test_files_it_is_not_sure_of_go_back_to_pil():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    palette, grey = _encoded(rgb, "P"), _encoded(rgb, "L")
    assert header(palette)[3] == 3 and header(grey)[3] == 0
    sixteen = io.BytesIO()
    Image.fromarray(rng.integers(0, 65536, (6, 6), dtype=np.uint16)).save(sixteen, "PNG")
    assert header(sixteen.getvalue())[2] == 16
    good = _encoded(rgb)
    damaged = good[:-30]  # IDAT cut short: a header that reads fine, data that does not
    flipped = bytearray(good)
    flipped[40] ^= 0xFF  # a flipped byte inside IDAT: its CRC no longer holds
    for data in (palette, grey, sixteen.getvalue(), damaged, bytes(flipped),
                 _encoded(rgb, fmt="JPEG"), b"not a png", b""):
        assert decode_rgb(data) is None


def _samples(dataset) -> list[dict]:
    return [dataset[i] for i in range(len(dataset))]


def test_the_loader_gives_the_same_samples_with_and_without_opencv(tmp_path, monkeypatch):
    parts = PartsDataset(split="val", image_size=32, mask_size=16, size=6, seed=4)
    root = export_broden(parts, tmp_path / "exported")
    # a label map and an image stored as RGBA, the rest RGB: both channel layouts
    images = root / "images"
    maps = sorted(p for p in images.rglob("*_part*.png"))
    plain = sorted(p for p in images.rglob("*.png") if "_" not in p.stem)
    Image.open(maps[0]).convert("RGBA").save(maps[0])
    Image.open(plain[0]).convert("RGBA").save(plain[0])
    fast = _samples(BrodenDataset(str(root)))
    monkeypatch.setattr(broden_module, "read_rgb", lambda path: None)
    slow = _samples(BrodenDataset(str(root)))
    assert len(fast) == len(slow) == 6
    for mine, theirs in zip(fast, slow, strict=True):
        assert torch.equal(mine["image"], theirs["image"])
        assert torch.equal(mine["masks"], theirs["masks"])
    assert torch.equal(fast[0]["image"], parts[0]["image"])  # RGBA: alpha dropped, as PIL does


def test_a_palette_label_map_still_gets_the_loaders_error(tmp_path):
    parts = PartsDataset(split="val", image_size=16, mask_size=16, size=2, seed=1)
    root = export_broden(parts, tmp_path / "exported")
    target = sorted(Path(root, "images").rglob("*_object.png"))[0]
    Image.open(target).convert("P").save(target)
    dataset = BrodenDataset(str(root))
    with pytest.raises(Exception, match=r"label maps must be RGB PNGs .* got mode P"):
        _samples(dataset)
