"""Hierarchy-of-parts edges: candidate pairs, |W| path shares, ablation drops."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from probe import ModelHandle
from probe.plugins.analyses.dissection.hierarchy import (
    add_ablation_drops,
    candidate_edges,
    weight_path_matrix,
)
from probe.preprocessing import Preprocessing


def chain_model() -> nn.Sequential:
    """conv(1→2) relu pool conv(2→2) relu conv(2→1) relu, weights set by hand."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(2, 1, 1), nn.ReLU())
    with torch.no_grad():
        for conv in (model[0], model[3], model[5]):
            conv.bias.zero_()
        model[0].weight.copy_(torch.tensor([1.0, 1.0]).view(2, 1, 1, 1))
        model[3].weight.zero_()
        model[3].weight[0, 0, 1, 1] = 2.0   # |W| sums: [[2, 1], [0, 3]]
        model[3].weight[0, 1, 0, 0] = -1.0
        model[3].weight[1, 1, 2, 2] = 3.0
        model[5].weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
    return model


def test_weight_path_shares_by_hand():
    model = chain_model()
    one = weight_path_matrix(model, "1", "4")
    assert torch.allclose(one, torch.tensor([[2 / 3, 1 / 3], [0.0, 1.0]], dtype=torch.float64))
    two = weight_path_matrix(model, "1", "6")  # [1, 1] @ [[2, 1], [0, 3]] = [2, 4]
    assert torch.allclose(two, torch.tensor([[2 / 6, 4 / 6]], dtype=torch.float64))
    assert weight_path_matrix(model, "4", "1") is None


def test_candidate_edges_follow_part_parents_and_layer_order():
    units = pd.DataFrame({
        "layer": ["a", "a", "b", "b", "c"], "unit": [0, 1, 0, 1, 0],
        "label": [10, 11, 1, 10, 2], "name": ["wheel", "eye", "car", "wheel", "face"],
        "iou": [0.3, 0.2, 0.5, 0.1, 0.4], "is_detector": [True, True, True, True, False]})
    parents = pd.DataFrame({"part_id": [10, 11], "object_id": [1, 2]})
    edges = candidate_edges(units, parents, ["a", "b", "c"])
    assert edges[["part_layer", "part_unit", "object_layer", "object_unit"]].values.tolist() \
        == [["a", 0, "b", 0]]  # eye → face is not a detector; b's wheel has no later car


def test_ablation_drop_of_a_copied_unit_is_one():
    model = chain_model()
    handle = ModelHandle(model, {"1": "1", "4": "4"}, Preprocessing())
    edges = pd.DataFrame({"part_layer": ["1"], "part_unit": [1], "part_iou": [0.5],
                          "object_layer": ["4"], "object_unit": [1]})
    inputs = torch.rand((4, 1, 6, 6)) + 0.1
    out = add_ablation_drops(edges, handle, inputs, {"1": "1", "4": "4"}, max_units=8)
    # unit 1 of layer "4" reads only unit 1 of layer "1": zeroing it removes everything
    assert out["ablation_drop"].iloc[0] == pytest.approx(1.0)
    assert out["ablation_images"].iloc[0] == 4
    assert not model[1]._forward_hooks  # hook removed


def test_weight_path_includes_following_batch_norm_scale():
    model = chain_model()
    bn = nn.BatchNorm2d(2).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -3.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0]) - bn.eps)
    model = nn.Sequential(*model[:4], bn, *model[4:])
    # rows of [[2, 1], [0, 3]] scaled by |γ|/sqrt(var) = [0.5, 3]: [[1, .5], [0, 9]]
    matrix = weight_path_matrix(model, "1", "5")
    assert torch.allclose(matrix, torch.tensor([[2 / 3, 1 / 3], [0.0, 1.0]], dtype=torch.float64))
    two = weight_path_matrix(model, "1", "7")  # [1, 1] @ [[1, .5], [0, 9]] = [1, 9.5]
    assert torch.allclose(two, torch.tensor([[1 / 10.5, 9.5 / 10.5]], dtype=torch.float64))


def test_ablation_sample_keeps_the_lowest_indices_whatever_the_sharding():
    from probe.plugins.analyses.dissection.hierarchy import AblationSample
    from probe.state import combine

    inputs = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 2, 2)
    whole = AblationSample(4, (1, 2, 2), torch.device("cpu"))
    shards = [AblationSample(4, (1, 2, 2), torch.device("cpu")) for _ in range(2)]
    for start in range(0, 10, 3):  # batches of 3, shards take turns, out of order
        rows = torch.arange(start, min(start + 3, 10)).flip(0)
        whole.update(inputs[rows], rows)
        shards[(start // 3) % 2].update(inputs[rows], rows)
    merged = combine(shards, "merge")
    assert merged.indices.tolist() == whole.indices.tolist() == [0, 1, 2, 3]
    assert torch.equal(merged.inputs, inputs[:4]) and torch.equal(whole.inputs, inputs[:4])
    none = AblationSample(0, (1, 2, 2), torch.device("cpu"))
    none.update(inputs, torch.arange(10))
    assert len(none.inputs) == 0
