"""The ``folder`` data set: ImageFolder layout, labels, resizing, subsets and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from probe.errors import DataError
from probe.plugins.datasets.folder import FolderDataset


def _tree(root, sizes=((10, 20), (7, 7))):
    colours = {"cat": (200, 10, 30), "dog": (0, 128, 255)}
    for name, rgb in colours.items():
        (root / name / "nested").mkdir(parents=True)
        for k, (w, h) in enumerate(sizes):
            Image.new("RGB", (w, h), rgb).save(root / name / f"{k}.png")
        Image.new("L", (5, 5), 77).save(root / name / "nested" / "grey.jpg")
        (root / name / "notes.txt").write_text("not an image")
    return root


def test_classes_labels_and_resizing(tmp_path):
    ds = FolderDataset(str(_tree(tmp_path / "imgs")), image_size=16)
    assert ds.class_names == ("cat", "dog") and ds.num_classes == 2
    assert len(ds) == 6  # 3 images per class, the .txt file ignored
    labels = [int(ds[i]["label"]) for i in range(len(ds))]
    assert labels == [0, 0, 0, 1, 1, 1]
    first = ds[0]
    assert first["image"].shape == (3, 16, 16) and first["image"].dtype == torch.float32
    # a flat colour stays that colour through the bilinear resize
    expected = torch.tensor([200, 10, 30]).float() / 255
    assert torch.allclose(first["image"], expected.view(3, 1, 1).expand(3, 16, 16), atol=1e-6)
    grey = next(ds[i] for i in range(len(ds)) if ds.items[i][0].name == "grey.jpg")
    assert torch.allclose(grey["image"], torch.full((3, 16, 16), 77 / 255), atol=2 / 255)
    assert "masks" not in first and not ds.has_masks


def test_seeded_subset(tmp_path):
    root = _tree(tmp_path / "imgs")
    a = FolderDataset(str(root), size=3, seed=1)
    b = FolderDataset(str(root), size=3, seed=1)
    assert len(a) == 3 and a.items == b.items
    assert all(a.items[i][0] <= a.items[i + 1][0] for i in range(2))
    assert len(FolderDataset(str(root), size=50)) == 6


def test_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        FolderDataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        FolderDataset(str(tmp_path / "empty"))
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        FolderDataset(str(tmp_path / "noimg"))
    root = _tree(tmp_path / "broken")
    (root / "cat" / "0.png").write_bytes(b"garbage")
    ds = FolderDataset(str(root))
    with pytest.raises(DataError, match=r"0\.png: cannot read image"):
        ds[0]
    with pytest.raises(DataError, match="needs a directory"):
        FolderDataset("")


def test_rgba_and_palette_images_become_rgb(tmp_path):
    root = tmp_path / "imgs" / "x"
    root.mkdir(parents=True)
    Image.fromarray(np.full((4, 4, 4), 100, dtype=np.uint8), "RGBA").save(root / "a.png")
    ds = FolderDataset(str(tmp_path / "imgs"), image_size=4)
    assert ds[0]["image"].shape == (3, 4, 4)
    assert torch.allclose(ds[0]["image"], torch.full((3, 4, 4), 100 / 255))
