"""LeNet-5 on the digits: the foundation's acceptance figure (>= 97 % test accuracy)."""

import json

from probe.checkpoint import read_metadata
from probe.training import sidecar_path


def test_lenet5_reaches_97_percent_on_digits(lenet_checkpoint):
    record = json.loads(sidecar_path(lenet_checkpoint).read_text())
    assert record["metrics"]["accuracy"] >= 0.97
    assert record["dataset"] == {"name": "digits", "options": {"split": "train"},
                                 "train_size": 1347, "test_size": 450}
    assert len(record["history"]) == record["recipe"]["epochs"]
    assert read_metadata(lenet_checkpoint)["arch"] == "lenet5"


def test_reported_accuracy_is_reproduced_from_the_checkpoint(lenet_checkpoint):
    import probe
    from probe.training import evaluate

    model = probe.load_model("lenet5", checkpoint=lenet_checkpoint)
    data = probe.load_dataset("digits", split="test")
    record = json.loads(sidecar_path(lenet_checkpoint).read_text())
    metrics = evaluate(model, data, "classification", next(model.parameters()).device)
    assert metrics["accuracy"] == record["metrics"]["accuracy"]


def test_flip_augmentation_mirrors_images_and_targets_together():
    import torch

    from probe.training import _flip_half

    torch.manual_seed(0)
    images = torch.arange(64 * 2 * 3 * 4, dtype=torch.float32).view(64, 2, 3, 4)
    target = torch.arange(64 * 3 * 4).view(64, 3, 4)
    flipped, sample = _flip_half(images, {"target": target, "label": torch.zeros(64)})
    mirrored = (flipped == images.flip(-1)).flatten(1).all(1)
    kept = (flipped == images).flatten(1).all(1)
    assert bool((mirrored ^ kept).all())  # every image either mirrored or untouched
    assert 20 < int(mirrored.sum()) < 44  # about half
    assert torch.equal(sample["target"][mirrored], target[mirrored].flip(-1))
    assert torch.equal(sample["target"][kept], target[kept])
