"""natural_v1: a first layer learned by ICA on natural patches comes out Gabor-like
(measured with the filters analysis through ``probe run``), random filters do not."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import probe
from probe.cli import main
from probe.models import get_architecture
from probe.plugins.architectures.natural_v1 import fast_ica, learn_ica_filters, whiten

#: The small recipe the tests train (the default recipe: 64 filters, 50,000 patches,
#: 200 iterations; docs/filters.md has both results).
SMALL = {"filters": 32, "patches": 20000, "iterations": 100}
FILTERS = ["--set", "filters.patches=2000", "--set", "filters.random_filters=64",
           "--set", "filters.phases=4"]


def _cli(*args: str) -> None:
    assert main([*args, "--quiet", "--device", "cpu"]) == 0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("natural_v1") / "v1.safetensors"
    sets = [a for k, v in SMALL.items() for a in ("--set", f"arch.{k}={v}")]
    _cli("train", "natural_v1", "--out", str(path), "--epochs", "2", *sets)
    return path


def test_whitening_and_fast_ica_recover_known_sources():
    generator = torch.Generator().manual_seed(0)
    n, d = 20000, 4
    uniform = torch.rand(n, d, generator=generator, dtype=torch.float64) - 0.5
    sources = -torch.sign(uniform) * torch.log1p(-2 * uniform.abs())  # Laplacian
    mixing = torch.randn(d, d, generator=generator, dtype=torch.float64)
    x = sources @ mixing.T
    x = x - x.mean(0)
    z, to_white, from_white = whiten(x, d)
    torch.testing.assert_close(z.T @ z / n, torch.eye(d, dtype=torch.float64), atol=1e-10,
                               rtol=0)
    torch.testing.assert_close(to_white.T @ from_white, torch.eye(d, dtype=torch.float64),
                               atol=1e-10, rtol=0)
    unmixing = fast_ica(z, 200, torch.Generator().manual_seed(1))
    # the unmixing of the whitened data times the whitened mixing is a signed permutation
    product = (unmixing @ to_white.T @ mixing).abs()
    product = product / product.amax(1, keepdim=True)
    assert sorted(product.argmax(1).tolist()) == list(range(d))
    off = product.sum(1) - 1
    assert float(off.max()) < 0.05


def test_learned_v1_is_gabor_like_and_covers_all_orientations(checkpoint, tmp_path):
    out = tmp_path / "learned"
    _cli("run", "--arch", "natural_v1", "--checkpoint", str(checkpoint), "--analysis",
         "filters", *FILTERS, "--layers", "v1", "--out", str(out))
    run = probe.load_run(out)
    layer = run.table("filters", "layers").iloc[0]
    units = run.table("filters", "units")
    assert layer["units"] == 32 and layer["kernel_h"] == 12
    assert layer["gabor_r2_median"] >= 0.8
    assert layer["gabor_fraction_above"] >= 0.5 and layer["r2_threshold"] == 0.7
    assert layer["gabor_r2_random_median"] <= 0.2
    good = units[units["gabor_r2"] > 0.7]
    counts, _ = np.histogram(np.degrees(good["gabor_theta"]), bins=6, range=(0, 180))
    assert counts.min() >= 1, counts  # every 30° bin of 0–180° holds a Gabor-like filter
    # band-pass: the fitted Gabors have a carrier (at least one cycle across the envelope)
    assert float((good["gabor_frequency"] * good["gabor_sigma_x"]).median()) > 1 / (2 * math.pi)


def test_random_first_layer_of_the_same_shape_is_not(tmp_path):
    out = tmp_path / "random"
    sets = [a for k, v in SMALL.items() for a in ("--set", f"arch.{k}={v}")]
    _cli("run", "--arch", "natural_v1", *sets, "--analysis", "filters", *FILTERS,
         "--layers", "v1", "--out", str(out))
    layer = probe.load_run(out).table("filters", "layers").iloc[0]
    assert layer["gabor_r2_median"] <= 0.2 and layer["gabor_fraction_above"] == 0


def test_v1_is_the_seeded_ica_and_stays_fixed_while_the_readout_trains(checkpoint):
    sidecar = json.loads(checkpoint.with_suffix(".json").read_text())
    assert sidecar["options"]["filters"] == 32 and sidecar["metrics"]["accuracy"] > 0.5
    assert sidecar["prepare_seconds"] > 0  # the ICA ran as the prepare step
    history = sidecar["prepare"]["history"]  # one step per FastICA iteration, at most 100
    assert [h["step"] for h in history] == list(range(1, len(history) + 1))
    assert len(history) == 100 or history[-1]["change"] < 1e-6
    assert history[-1]["change"] < 0.1 * history[0]["change"]  # it converges
    model = probe.load_model("natural_v1", checkpoint=checkpoint)
    expected = learn_ica_filters(12, 32, 20000, 100, torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.conv1.weight[:, 0], expected.float(), rtol=0, atol=1e-6)
    norms = model.conv1.weight.flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(32), rtol=0, atol=1e-5)


def test_too_many_filters_is_one_line_error():
    with pytest.raises(probe.ProbeError, match="kernel_size"):
        get_architecture("natural_v1").instantiate({"kernel_size": 5, "filters": 26})
