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
