"""unit-stats, dissection (on ``parts``) and equivariance on the engineered and
self-organised models of issue 18 (HMAX, the Neocognitron, LeNet 1989, the ICA layer),
checked against direct forward passes, the models' bounds and their strides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import probe
from probe.cli import main
from probe.models import get_architecture, load_dataset

#: Cheap equivariance: circular shifts only, no Lie derivatives, fits or consistency.
EQUIVARIANCE = {"transforms": ("shift-x",), "magnitudes": ("shift-x=0;1;2;4px",),
                "lie": False, "learned_maps": "none", "consistency": False}
PARTS = {"size": 16, "image_size": 32}


def _cli(*args: str) -> None:
    assert main([*args, "--quiet", "--device", "cpu"]) == 0


def _direct_max(run: probe.Run, checkpoint: Path | None = None) -> dict[str, torch.Tensor]:
    """Per layer, each unit's largest activation over the run's images, by a forward pass
    of the model the manifest describes, with hooks on the layers' modules."""
    arch = run.manifest["arch"]
    data = load_dataset("parts", split="test", **PARTS)
    model = probe.load_model(arch["name"], checkpoint=checkpoint, dataset=data,
                             **arch["options"]).eval()
    modules = get_architecture(arch["name"]).layer_map(model)
    found: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(path).register_forward_hook(
        lambda _m, _i, out, name=name: found.__setitem__(name, out.amax(
            dim=(0, *range(2, out.dim()))))) for name, path in modules.items()]
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    with torch.no_grad():
        model(model.probe_preprocessing.normalize(images))
    for hook in hooks:
        hook.remove()
    return found


def _check_unit_stats(run: probe.Run, direct: dict[str, torch.Tensor],
                      layers: list[str]) -> None:
    units = run.table("unit-stats", "units")
    for layer in layers:
        rows = units[units["layer"] == layer].sort_values("unit")
        np.testing.assert_allclose(rows["max"].to_numpy(), direct[layer].numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=layer)


def _errors(run: probe.Run) -> dict[tuple[str, float], float]:
    errors = run.table("equivariance", "errors")
    errors = errors[errors["transform"] == "shift-x"]
    return {(str(r.layer), float(r.pixels)): float(r.relative_error)
            for r in errors.itertuples()}


def test_hmax_through_probe_run(tmp_path):
    """A circular HMAX on 32-px parts scenes: S1 commutes with every integer circular
    shift, C1, S2 and C2 with multiples of C1's 4-px step; S1 responses are normalised dot
    products with unit-norm filters (≤ 1), S2/C2 radial-basis values in (0, 1]."""
    out = tmp_path / "hmax"
    _cli("run", "--arch", "hmax", "--dataset", "parts", "--set", "dataset.size=16",
         "--set", "dataset.image_size=32", "--set", "arch.input_size=32", "--set",
         "arch.bands=1", "--set", "arch.patch_sizes=4", "--set", "arch.prototypes=4", "--set",
         "arch.circular=true", "--analysis", "unit-stats", "--analysis", "dissection",
         "--set", "dissection.quantile=0.05", "--analysis", "equivariance",
         "--set", "equivariance.transforms=shift-x", "--set",
         "equivariance.magnitudes=shift-x=0;1;2;4px", "--set", "equivariance.lie=false",
         "--set", "equivariance.learned_maps=none", "--set", "equivariance.consistency=false",
         "--out", str(out))
    run = probe.load_run(out)
    assert {a: run.analysis_status(a) for a in run.analyses} == dict.fromkeys(
        ("unit-stats", "dissection", "equivariance"), "complete")
    assert run.manifest["layers"] == ["s1_7", "s1_9", "c1_1", "s2_1", "c2", "output"]
    direct = _direct_max(run)
    _check_unit_stats(run, direct, ["s1_7", "s1_9", "c1_1", "s2_1", "c2"])
    units = run.table("unit-stats", "units")
    assert units[units["layer"].isin(["s1_7", "s1_9", "c1_1"])]["max"].max() <= 1 + 1e-6
    c2 = units[units["layer"] == "c2"]["max"]
    assert len(c2) == 4 and (c2 > 0).all() and (c2 <= 1 + 1e-6).all()
    errors = _errors(run)
    for shift in (1.0, 2.0, 4.0):
        assert errors[("s1_7", shift)] < 1e-6 and errors[("s1_9", shift)] < 1e-6
    for layer in ("c1_1", "s2_1", "c2"):
        assert errors[(layer, 4.0)] < 1e-6, layer
        assert errors[(layer, 1.0)] > 1e-3, layer  # between C1 steps the grid interpolates
    dissected = run.table("dissection", "units")
    assert dissected.groupby("layer")["unit"].nunique().to_dict() == {
        "s1_7": 4, "s1_9": 4, "c1_1": 4, "s2_1": 4}
    assert dissected["iou"].between(0, 1).all()


@pytest.fixture(scope="module")
def neocognitron(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Neocognitron (4 planes per S-layer) that learned on parts scenes."""
    path = tmp_path_factory.mktemp("neocognitron") / "neo.safetensors"
    _cli("train", "neocognitron", "--dataset", "parts", "--out", str(path), "--epochs", "1",
         "--set", "dataset.size=64", "--set", "dataset.image_size=32",
         "--set", "arch.planes=4,4,4")
    return path


def test_neocognitron(neocognitron, tmp_path):
    """Trained S-planes respond; C-cells are ψ(x) = x/(1+x) < 1; each stage's shift-x
    action is exact where the shift is a multiple of its stride (1, 1, 2, 2, 4, 4, 8)."""
    run = probe.analyze("neocognitron", "parts", ["unit-stats", ("dissection",
                        {"quantile": 0.05}), ("equivariance", EQUIVARIANCE)],
                        out=tmp_path / "neo", checkpoint=neocognitron, dataset_options=PARTS,
                        batch_size=16)
    assert all(run.analysis_status(a) == "complete" for a in run.analyses)
    layers = ["ug", "s1", "c1", "s2", "c2", "s3", "c3"]
    _check_unit_stats(run, _direct_max(run, neocognitron), layers)
    top = run.table("unit-stats", "units").groupby("layer")["max"].max()
    assert all(0 < top[c] < 1 for c in ("c1", "c2", "c3"))
    assert all(top[s] > 0 for s in ("s1", "s2", "s3"))  # learned planes, not empty
    errors = run.table("equivariance", "errors")
    strides = errors.groupby("layer")["stride"].first()
    assert strides[layers].tolist() == [1, 1, 2, 2, 4, 4, 8]
    staged = errors[errors["layer"].isin(layers) & (errors["transform"] == "shift-x")]
    assert (staged["exact_action"] == (staged["pixels"] % staged["stride"] == 0)).all()
    dissected = run.table("dissection", "units")
    assert dissected.groupby("layer")["unit"].nunique().to_dict() == {
        "ug": 2, "s1": 4, "c1": 4, "s2": 4, "c2": 4, "s3": 4, "c3": 4}


def test_grey_checkpoint_on_colour_scenes_is_one_line(capsys, tmp_path):
    """A Neocognitron built for 1 channel cannot read RGB scenes: one line, no traceback."""
    code = main(["run", "--arch", "neocognitron", "--set", "arch.in_channels=1",
                 "--set", "arch.planes=4,4,4", "--dataset", "parts", "--set",
                 "dataset.size=4", "--analysis", "unit-stats", "--out", str(tmp_path / "x"),
                 "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "Traceback" not in err and len(err.splitlines()) == 1
    assert "1-channel input" in err and "3-channel" in err


@pytest.mark.parametrize(("arch", "options", "widths"), [
    ("lenet1989", {}, {"h1": 12, "h2": 12, "h3": 30}),
    ("natural_v1", {"filters": 8, "patches": 1000, "iterations": 5}, {"v1": 8, "c1": 8}),
])
def test_lenet1989_and_natural_v1(arch, options, widths, tmp_path):
    run = probe.analyze(arch, "parts", ["unit-stats", ("dissection", {"quantile": 0.05}),
                                        ("equivariance", EQUIVARIANCE)],
                        out=tmp_path / arch, arch_options=options, dataset_options=PARTS,
                        batch_size=16)
    assert all(run.analysis_status(a) == "complete" for a in run.analyses)
    direct = _direct_max(run)
    _check_unit_stats(run, direct, list(widths))
    counts = run.table("unit-stats", "units").groupby("layer").size()
    assert {layer: int(counts[layer]) for layer in widths} == widths
    errors = _errors(run)
    first = next(iter(widths))
    assert errors[(first, 0.0)] == 0.0 and errors[(first, 1.0)] > 0
