"""unit-stats against direct computation on the trained LeNet-5."""

import numpy as np
import torch

import probe
from probe.capture import Capture
from probe.plugins.analyses.unit_stats import UnitStats


def all_activations(model, data, layers):
    with torch.no_grad(), Capture(model, layers) as cap:
        model(model.probe_preprocessing.normalize(data.images))  # the model's own
        return cap.take()


def test_statistics_and_exemplars_match_direct_computation(lenet_run, lenet_checkpoint):
    model = probe.load_model("lenet5", checkpoint=lenet_checkpoint)
    data = probe.load_dataset("digits", split="test")
    from probe.plugins.architectures.lenet import LENET_LAYERS

    acts = all_activations(model, data, LENET_LAYERS)
    units = lenet_run.table("unit-stats", "units").set_index(["layer", "unit"])
    top = lenet_run.table("unit-stats", "top_images")
    for layer, act in acts.items():
        flat = act.transpose(0, 1).reshape(act.shape[1], -1).double()
        rows = units.loc[layer]
        np.testing.assert_allclose(rows["mean"], flat.mean(1), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(rows["std"], flat.std(1, unbiased=False), rtol=1e-5,
                                   atol=1e-8)
        np.testing.assert_array_equal(rows["max"], flat.amax(1).float())
        np.testing.assert_array_equal(rows["count"], flat.shape[1])
        peak = act.flatten(2).amax(2) if act.dim() == 4 else act  # [images, units]
        for unit in range(act.shape[1]):
            best = top[(top.layer == layer) & (top.unit == unit)].sort_values("rank")
            # The rank-0 exemplar is a real image whose activation is the unit's maximum.
            image = int(best["image"].iloc[0])
            assert peak[image, unit].item() == rows.loc[unit, "max"]
            expected = sorted(range(len(data)), key=lambda i: (-peak[i, unit].item(), i))[:8]
            assert best["image"].tolist() == expected
            assert best["label"].tolist() == data.labels[expected].tolist()


def test_two_shards_merge_to_one_pass(lenet_checkpoint):
    """Two in-process shards reduced through their declared state equal one pass, and so
    does ``State.merge`` of two accumulators fed each half."""
    from probe.plan import plan_run
    from probe.testing import drive

    model = probe.load_model("lenet5", checkpoint=lenet_checkpoint)
    data = probe.load_dataset("digits", split="test", size=96)
    plan = plan_run(model, data, [UnitStats(top_k=5, map_size=4)], layers=["c1", "c3", "f6"],
                    batch_size=32)
    device = torch.device("cpu")
    _, _, a = drive(plan, device, shards=1)
    _, _, b = drive(plan, device, shards=2)
    np.testing.assert_allclose(a["units"]["mean"], b["units"]["mean"], rtol=1e-9, atol=1e-12)
    assert a["units"]["max"].tolist() == b["units"]["max"].tolist()
    assert a["top_images"]["image"].tolist() == b["top_images"]["image"].tolist()
    assert a["top_images"]["label"].tolist() == b["top_images"]["label"].tolist()
    for left, right in zip(a["top_images"]["map"], b["top_images"]["map"], strict=True):
        np.testing.assert_array_equal(left, right)
    assert a["top_images"]["map_height"].iloc[0] == 4  # 28×28 maps pooled to 4×4
