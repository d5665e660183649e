"""The Neocognitron: the S-cell's shunting formula by hand, the competitive
(winner-take-all, add-if-silent) learning rule, unsupervised training through
``probe train`` and its S1 planes through the filters analysis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import probe
from probe.cli import main
from probe.plugins.architectures.neocognitron import SLayer, learn_stage


def _cli(*args: str) -> None:
    assert main([*args, "--quiet", "--device", "cpu"]) == 0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("neocognitron") / "neo.safetensors"
    _cli("train", "neocognitron", "--out", str(path), "--epochs", "5")
    return path


def test_s_cell_is_the_shunting_formula():
    layer = SLayer(1, 2, 5, theta=0.6)
    pattern = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    pattern[0, 0, :, 2] = 1.0  # a vertical bar
    c = layer.window.double()
    with torch.no_grad():
        layer.conv.weight[0] = (c * pattern)[0].float()  # plane 0 learned the bar
    theta = 0.6
    energy = float((c * pattern ** 2).sum())  # Σ c·u² = e = b·v for the learned pattern
    expected = theta / (1 - theta) * ((1 + energy) / (1 + theta * energy) - 1)
    out = layer.double().response(pattern, theta)
    assert float(out[0, 0, 2, 2]) == pytest.approx(expected, rel=1e-6)
    assert float(out[0, 1].abs().max()) == 0  # an unused plane never responds
    across = pattern.transpose(-1, -2)  # a horizontal bar: cosine ≈ 0.3 < θ, silent
    assert float(layer.response(across, theta)[0, 0, 2, 2]) == 0


def test_competitive_learning_seeds_a_silent_plane_then_reinforces_the_winner():
    layer = SLayer(1, 3, 5, theta=0.6)
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 1:6, 4] = 1.0
    learn_stage(layer, image, 0.8, area=8, rate=0.5, seeds_per_batch=1, blank=0.01)
    weight = layer.conv.weight
    used = weight.flatten(1).abs().sum(1) > 0
    assert used.tolist() == [True, False, False]  # add-if-silent: one new plane
    seeded = weight[0].clone()
    # the seed is c times the input window at the strongest V-cell of the area
    window = torch.nn.functional.unfold(image, 5, padding=2)[0]
    v = layer.inhibition(image).flatten()
    expected = window[:, int(v.argmax())] * layer.window.flatten()
    torch.testing.assert_close(seeded.flatten(), expected)
    learn_stage(layer, image, 0.8, area=8, rate=0.5, seeds_per_batch=1, blank=0.01)
    # the same image: plane 0 wins (it responds, so nothing is seeded) and grows by
    # rate·c·u at its winning position
    assert (weight.flatten(1).abs().sum(1) > 0).tolist() == [True, False, False]
    resp_at = layer.response(image, 0.8)[0, 0].flatten().argmax()
    grown = weight[0].flatten() - seeded.flatten()
    torch.testing.assert_close(grown, 0.5 * window[:, int(resp_at)] * layer.window.flatten(),
                               rtol=1e-5, atol=1e-6)


def test_learns_without_labels_and_the_readout_reaches_accuracy(checkpoint):
    sidecar = json.loads(checkpoint.with_suffix(".json").read_text())
    assert sidecar["prepare_seconds"] > 0
    assert sidecar["metrics"]["accuracy"] >= 0.85
    model = probe.load_model("neocognitron", checkpoint=checkpoint)
    used = [int((s.conv.weight.flatten(1).abs().sum(1) > 0).sum()) for s in model.s_layers]
    assert all(n >= 8 for n in used), used
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["readout.weight", "readout.bias"]  # labels reach the readout only
    # the procedure reported each stage: the planes it filled, as the checkpoint holds them
    stages = sidecar["prepare"]["stages"]
    assert list(stages) == ["s1", "s2", "s3"]
    assert [int(stages[f"s{k}"]["planes_used"]) for k in (1, 2, 3)] == used
    history = sidecar["prepare"]["history"]
    assert len(history) == 3 * 50 and [h["step"] for h in history] == list(range(1, 151))
    assert all(0 <= h["won"] <= 1 and h["weight_change"] >= 0 for h in history)
    assert sum(h["seeded"] for h in history if h["stage"] == "s1") == used[0]


def test_the_learning_alone_without_backprop_gives_the_same_s_layers(checkpoint, tmp_path):
    out = tmp_path / "unsupervised.safetensors"
    _cli("train", "neocognitron", "--out", str(out), "--epochs", "0")
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["history"] == [] and sidecar["recipe"]["epochs"] == 0
    alone = probe.load_model("neocognitron", checkpoint=out)
    full = probe.load_model("neocognitron", checkpoint=checkpoint)
    for a, b in zip(alone.s_layers, full.s_layers, strict=True):  # backprop never touches them
        torch.testing.assert_close(a.conv.weight, b.conv.weight, rtol=0, atol=0)
    assert sidecar["metrics"]["accuracy"] < 0.5  # the readout was never fitted


def test_s1_planes_through_the_filters_analysis(checkpoint, tmp_path):
    out = tmp_path / "filters"
    _cli("run", "--arch", "neocognitron", "--checkpoint", str(checkpoint), "--analysis",
         "filters", "--set", "filters.patches=1000", "--set", "filters.random_filters=64",
         "--layers", "s1", "--out", str(out))
    layer = probe.load_run(out).table("filters", "layers").iloc[0]
    assert layer["units"] == 16 and layer["kernel_h"] == 7 and layer["channels"] == 2
    assert layer["gabor_r2_median"] >= 0.9 > layer["gabor_r2_random_median"] + 0.3
