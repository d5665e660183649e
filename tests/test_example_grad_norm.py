"""The example plugin examples/probe-grad-norm: conformance and numbers.

The package is not installed in CI, so its folder goes on ``sys.path`` here.
The numbers are checked against plain torch autograd on the same normalised
inputs, one image and one unit at a time, through a forward hook of our own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import probe
from probe.testing import check_analysis

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "probe-grad-norm"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import probe_grad_norm  # noqa: E402
from probe_grad_norm import GradNorm  # noqa: E402

LAYERS = ["c1", "c3", "f6"]          # two convolutions and a fully connected layer
MAX_UNITS = 8                        # c1 has 6 units (all kept), c3 16 and f6 84 (capped)
PREPROCESSING = probe.Preprocessing((0.3,), (0.2,))   # not the identity, so it is exercised
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return probe.load_model("lenet5", seed=3)


@pytest.fixture(scope="module")
def data() -> probe.ProbeDataset:
    return probe.load_dataset("digits", size=5)


def test_registers_through_the_hook() -> None:
    registered: list[type] = []
    probe_grad_norm.probe_register_analyses(registered.append)
    assert registered == [GradNorm]


def test_conforms() -> None:
    # small on purpose: 8 images in batches of 2 (each shard sees two), few layers / units
    small = {"arch": "lenet5", "dataset": "digits", "dataset_options": {"size": 8},
             "batch_size": 2}
    check_analysis(GradNorm, layers=["c1", "c3"], **small)          # device: CUDA if present
    check_analysis(GradNorm, options={"layers": ("f6", "c3"), "max_units": 3,
                                      "chunk_elements": 2000}, device="cpu", **small)


def direct_grad_norms(model: torch.nn.Module, data: probe.ProbeDataset, layer: str,
                      max_units: int) -> np.ndarray:
    """Mean over images of ||d sum_hw a_k / d input|| by plain autograd, per unit."""
    path = probe.host.get_host().architectures.get("lenet5").layers(model)[layer]
    module = model.get_submodule(path)
    mean = torch.tensor(PREPROCESSING.mean).view(-1, 1, 1)
    std = torch.tensor(PREPROCESSING.std).view(-1, 1, 1)
    captured: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        per_image = []
        for i in range(len(data)):
            x = ((data[i]["image"] - mean) / std).unsqueeze(0).requires_grad_(True)
            captured.clear()
            model(x)
            act = captured[0][0]                                  # [K, h, w] or [K]
            sums = act.reshape(act.shape[0], -1).sum(1)[:max_units]
            per_image.append([torch.autograd.grad(sums[k], x, retain_graph=True)[0].norm()
                              .item() for k in range(len(sums))])
    finally:
        hook.remove()
    return np.mean(np.array(per_image, dtype=np.float64), axis=0)


def measure(model: torch.nn.Module, data: probe.ProbeDataset, device: str = "cpu",
            **options: object) -> pd.DataFrame:
    result = probe.measure(model, data, [GradNorm(**options)], layers=LAYERS, device=device,
                           batch_size=2, preprocessing=PREPROCESSING)  # 3 batches, last short
    return result["grad-norm"]["units"]


@pytest.mark.parametrize("device", DEVICES)
def test_matches_direct_autograd(model: torch.nn.Module, data: probe.ProbeDataset,
                                 device: str) -> None:
    units = measure(model, data, device, max_units=MAX_UNITS)
    assert list(units["layer"].unique()) == LAYERS
    assert (units["images"] == len(data)).all()
    rtol = 1e-5 if device == "cpu" else 2e-3          # CUDA convolutions may use TF32
    for layer in LAYERS:
        expected = direct_grad_norms(model, data, layer, MAX_UNITS)
        got = units[units["layer"] == layer].sort_values("unit")
        assert list(got["unit"]) == list(range(len(expected)))
        assert (expected > 0).all()
        np.testing.assert_allclose(got["grad_norm"].to_numpy(), expected, rtol=rtol, atol=1e-8)


def test_layer_and_unit_options(model: torch.nn.Module, data: probe.ProbeDataset) -> None:
    wider = measure(model, data, max_units=MAX_UNITS)
    capped = measure(model, data, layers=("f6", "c1"), max_units=4, chunk_elements=5000)
    assert list(capped["layer"].unique()) == ["c1", "f6"]           # input to output
    assert capped.groupby("layer").size().to_dict() == {"c1": 4, "f6": 4}
    expected = wider[wider["unit"] < 4].query("layer in ['c1', 'f6']").reset_index(drop=True)
    probe.testing.assert_tables_equal({"units": expected},
                                      {"units": capped.reset_index(drop=True)}, rtol=1e-6)


def test_unknown_layer_is_an_error(model: torch.nn.Module, data: probe.ProbeDataset) -> None:
    with pytest.raises(probe.api.AnalysisFailed, match=r"grad-norm\.layers: c5"):
        measure(model, data, layers=("c5",))
