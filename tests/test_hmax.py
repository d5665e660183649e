"""HMAX (Serre et al. 2007): the S1 bank is the paper's Gabor table (checked through the
filters analysis), prototypes are imprinted C1 patches, C2 is invariant to circular
shifts by multiples of C1's step (checked through the equivariance analysis)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import probe
from probe.cli import main
from probe.models import get_architecture, load_dataset
from probe.plugins.architectures.hmax import GAMMA, ORIENTATIONS, S1_TABLE, gabor_filter

#: A tiny circular HMAX: band 1 (S1 sizes 7 and 9, C1 grid 8 moved by 4), 4×4 patches.
TINY = ["--set", "arch.input_size=32", "--set", "arch.bands=1", "--set", "arch.patch_sizes=4",
        "--set", "arch.prototypes=16", "--set", "arch.beta=1", "--set", "arch.circular=true"]


def _cli(*args: str) -> None:
    assert main([*args, "--quiet", "--device", "cpu"]) == 0


@pytest.fixture(scope="module")
def circular_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny circular HMAX, prototypes imprinted and readout fitted by ``probe train``."""
    path = tmp_path_factory.mktemp("hmax") / "hmax.safetensors"
    _cli("train", "hmax", "--out", str(path), "--epochs", "1", "--set", "dataset.size=200", *TINY)
    return path


def test_gabor_filter_is_the_papers_formula():
    g = gabor_filter(9, 3.6, 4.6, math.radians(45), aperture=False)
    c = torch.arange(9, dtype=torch.float64) - 4
    y, x = torch.meshgrid(c, c, indexing="ij")
    big_x, big_y = (x + y) / math.sqrt(2), (y - x) / math.sqrt(2)
    raw = torch.exp(-(big_x ** 2 + 0.09 * big_y ** 2) / (2 * 3.6 ** 2)) * \
        torch.cos(2 * math.pi * big_x / 4.6)
    raw = raw - raw.mean()
    torch.testing.assert_close(g, raw / raw.norm(), rtol=0, atol=1e-12)
    disc = gabor_filter(9, 3.6, 4.6, 0.0, aperture=True)
    # outside the inscribed disc every pixel holds the same value (0 before the mean removal)
    outside = (x ** 2 + y ** 2) > 4.5 ** 2
    assert int(outside.sum()) == 12 and float(disc[outside].std()) < 1e-12
    assert float(disc.sum()) == pytest.approx(0, abs=1e-12)
    assert float(disc.norm()) == pytest.approx(1, abs=1e-12)


def test_s1_filters_fit_the_constructed_gabors(tmp_path):
    out = tmp_path / "filters"
    _cli("run", "--arch", "hmax", "--set", "arch.input_size=32", "--set", "arch.bands=2",
         "--set", "arch.patch_sizes=4", "--set", "arch.prototypes=4", "--analysis", "filters",
         "--set", "filters.patches=500", "--set", "filters.random_filters=16",
         "--layers", "s1_7,s1_9,s1_11,s1_13", "--out", str(out))
    units = probe.load_run(out).table("filters", "units")
    assert len(units) == 16 and (units["gabor_status"] == "ok").all()
    assert units["gabor_r2"].min() >= 0.999
    for (size, sigma, wavelength), (_, rows) in zip(S1_TABLE[:4], units.groupby(
            "kernel_h", sort=True), strict=True):
        assert rows["kernel_h"].iloc[0] == size
        theta = np.degrees(rows.sort_values("unit")["gabor_theta"].to_numpy())
        # orientation is defined modulo 180°
        assert np.abs((theta - np.array(ORIENTATIONS) + 90) % 180 - 90).max() < 0.01
        np.testing.assert_allclose(1 / rows["gabor_frequency"], wavelength, rtol=1e-4)
        np.testing.assert_allclose(rows["gabor_sigma_x"], sigma, rtol=1e-4)
        np.testing.assert_allclose(rows["gabor_sigma_x"] / rows["gabor_sigma_y"], GAMMA,
                                   rtol=1e-4)


def _inputs(model: torch.nn.Module, size: int, split: str) -> torch.Tensor:
    data = load_dataset("digits", split=split, image_size=32, size=size)
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    return model.probe_preprocessing.normalize(images)


def test_train_imprints_prototypes_and_fits_only_the_readout(circular_checkpoint):
    model = probe.load_model("hmax", checkpoint=circular_checkpoint).eval()
    sidecar = circular_checkpoint.with_suffix(".json").read_text()
    assert '"circular": true' in sidecar
    # S1 is still the table's bank (no gradient reached it)
    for key, (size, sigma, wavelength) in zip(model.s1, S1_TABLE[:2], strict=True):
        bank = torch.stack([gabor_filter(size, sigma, wavelength, math.radians(t))
                            for t in ORIENTATIONS])[:, None].float()
        torch.testing.assert_close(model.s1[key].conv.weight, bank, rtol=0, atol=0)
    # every prototype is a C1 patch of a training image: its best S2 response is exp(0) = 1
    with torch.no_grad():
        c1 = model.c1_maps(_inputs(model, 200, "train"))[0]
        best = model.s2(c1).amax((0, 2, 3))
    assert best.shape == (16,)
    torch.testing.assert_close(best, torch.ones(16), rtol=0, atol=1e-5)
    protos = model.s2.prototypes(4)
    assert protos.shape == (16, 4, 4, 4) and protos.std() > 0


def _invariance(model: torch.nn.Module, images: torch.Tensor, shift: int) -> dict[str, float]:
    """``‖f(roll x) − f(x)‖ / ‖f(x)‖`` for S1 (7 px), C1, S2 and C2 (measured directly)."""
    def stages(x: torch.Tensor) -> list[torch.Tensor]:
        c1 = model.c1_maps(x)[0]
        s2 = model.s2(c1)
        return [model.s1["k7"](x), c1, s2, s2.amax((-2, -1))]

    with torch.no_grad():
        base, moved = stages(images), stages(torch.roll(images, shift, -1))
    return {name: float((b - a).norm() / a.norm())
            for name, a, b in zip(("s1", "c1", "s2", "c2"), base, moved, strict=True)}


def test_c2_is_invariant_to_circular_shifts_by_the_c1_step(circular_checkpoint, tmp_path):
    out = tmp_path / "equivariance"
    _cli("run", "--arch", "hmax", "--checkpoint", str(circular_checkpoint), "--dataset",
         "digits", "--set", "dataset.image_size=32", "--set", "dataset.size=64",
         "--analysis", "equivariance", "--set", "equivariance.transforms=shift-x",
         "--set", "equivariance.magnitudes=shift-x=0:8:1px", "--set",
         "equivariance.consistency=false", "--set", "equivariance.learned_maps=none",
         "--set", "equivariance.lie=false", "--layers", "s1_7,c1_1,s2_1,c2", "--out", str(out))
    errors = probe.load_run(out).table("equivariance", "errors")
    c2 = errors[errors["layer"] == "c2"].set_index("pixels")["relative_error"]
    s1 = errors[errors["layer"] == "s1_7"].set_index("pixels")["relative_error"]
    c1 = errors[errors["layer"] == "c1_1"]
    assert errors[errors["layer"] == "c1_1"]["stride"].iloc[0] == 4
    for shift in (4.0, 8.0):  # multiples of C1's step: exact
        assert c2[shift] < 1e-6
        assert float(c1[c1["pixels"] == shift]["relative_error"].iloc[0]) < 1e-6
    assert s1.max() < 1e-6  # S1 (stride 1, circular) commutes with every integer shift
    model = probe.load_model("hmax", checkpoint=circular_checkpoint).eval()
    images = _inputs(model, 64, "test")  # the run's images
    for shift in (1, 2, 3, 5, 6, 7):
        direct = _invariance(model, images, shift)
        assert direct["c2"] == pytest.approx(c2[float(shift)], rel=1e-3, abs=1e-6)
        assert 0 < direct["c2"] < 0.2 * direct["c1"] and direct["c1"] < 0.5 * direct["s1"]
    assert _invariance(model, images, 4)["c2"] < 1e-6


def test_options_that_cannot_work_are_one_line_errors():
    spec = get_architecture("hmax")
    with pytest.raises(probe.ProbeError, match="no S2 patch size"):
        spec.instantiate({"input_size": 16, "bands": 8})
    with pytest.raises(probe.ProbeError, match="circular padding"):
        spec.instantiate({"input_size": 32, "bands": 2, "patch_sizes": (16,), "circular": True})


def test_layers_by_stage_and_batched_shapes():
    spec = get_architecture("hmax")
    model = spec.instantiate({"input_size": 64, "bands": 3, "patch_sizes": (4, 8),
                              "prototypes": 5, "num_classes": 3})
    assert list(spec.layer_map(model)) == ["s1_7", "s1_9", "s1_11", "s1_13", "s1_15", "s1_17",
                                           "c1_1", "c1_2", "c1_3", "s2_1", "s2_2", "s2_3",
                                           "c2", "output"]
    c1 = model.c1_maps(torch.rand(2, 3, 64, 64))
    # valid pooling: (64 − N) // step + 1 cells for N, step = (8, 4), (10, 5), (12, 6)
    assert [tuple(m.shape) for m in c1] == [(2, 4, 15, 15), (2, 4, 11, 11), (2, 4, 9, 9)]
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == \
        ["readout.weight", "readout.bias"]


def test_imprinting_reports_each_prototype_size(circular_checkpoint):
    sidecar = json.loads(circular_checkpoint.with_suffix(".json").read_text())
    # one size (4) of 16 prototypes, drawn from the one C1 band
    assert sidecar["prepare"]["history"] == [{"stage": "s2_4", "step": 1, "imprinted": 16.0,
                                              "bands": 1.0}]


def test_prepare_is_skipped_when_training_from_init(circular_checkpoint, tmp_path):
    out = tmp_path / "again.safetensors"
    _cli("train", "hmax", "--out", str(out), "--epochs", "1", "--set", "dataset.size=100",
         "--seed", "3", "--init", str(circular_checkpoint), *TINY)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["prepare_seconds"] is None and sidecar["init"] is not None
    first = probe.load_model("hmax", checkpoint=circular_checkpoint)
    again = probe.load_model("hmax", checkpoint=out)
    # the prototypes come from the init checkpoint, not from a new imprinting (seed 3)
    torch.testing.assert_close(again.s2.prototypes(4), first.s2.prototypes(4), rtol=0, atol=0)
