"""The ``equivariance`` analysis in whole runs: ``probe.analyze``, the command line, the kit.

The float64 ground truths of REFERENCE §4 are in ``tests/test_equivariance.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import probe
from probe import ProbeDataset
from probe.plugins.analyses.equivariance import Equivariance


def test_conformance_kit_passes_on_lenet5_digits():
    """probe.testing.check_analysis: declared state on the device, no model kept, shards."""
    from probe.testing import check_analysis

    options = {"transforms": ("shift-x", "hflip", "rotate"), "consistency_steps": 2,
               "magnitudes": ("shift-x=0;1;2px", "rotate=0;10")}
    results = check_analysis(Equivariance, options=options, device="cpu",
                             raise_on_failure=False)
    assert all(r.passed for r in results), "\n".join(str(r) for r in results)


class _Bordered(ProbeDataset):
    """Noise in the top-left part of black images, so zero-fill shifts equal circular ones."""

    name = "bordered-noise"
    channels = 3
    num_classes = 10
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, n: int = 6, size: int = 20) -> None:
        self.images = torch.zeros(n, 3, size, size)
        self.images[:, :, 3:10, 3:10] = torch.rand(
            n, 3, 7, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
        self.image_size = size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return {"image": self.images[index], "label": index % 3, "index": index}


def test_consistency_and_accuracy_through_probe_analyze(tmp_path):
    """An exactly shift-invariant model is perfectly consistent; accuracy is reported beside it."""
    data = _Bordered()
    options = {"transforms": ("translate-x",), "magnitudes": ("translate-x=0;2px",),
               "consistency_shift": 0.1, "consistency_steps": 3, "lie": False}
    run = probe.analyze("ref-circular", data, [("equivariance", options)],
                        out=tmp_path / "run", arch_options={"width": 0.5}, batch_size=4,
                        preprocessing=probe.Preprocessing(data.mean, data.std))
    assert run.manifest["analyses"]["equivariance"]["status"] == "complete"
    summary = run.table("equivariance", "consistency").iloc[0]
    assert summary["task"] == "classification" and summary["pairs"] == 6
    assert summary["consistency"] == 1.0 and summary["top1_change"] == 0.0
    assert summary["mean_abs_change"] < 1e-5
    model = probe.load_model("ref-circular", width=0.5, num_classes=10)
    with torch.no_grad():
        predicted = model((data.images - 0.5) / 0.25).argmax(1)
    expected = (predicted == torch.arange(6) % 3).double().mean().item()
    assert summary["accuracy"] == pytest.approx(expected)
    curve = run.table("equivariance", "shift_curve")
    assert curve["to_pixels"].tolist() == [1, 2, 3] and (curve["top1_change"] == 0).all()
    for name, columns in Equivariance.tables.items():
        assert set(columns) <= set(run.table("equivariance", name).columns), name
    figures = Equivariance.figures({n: run.table("equivariance", n) for n in Equivariance.tables})
    assert len(figures) == 3  # translate error curve, learned maps, consistency


def test_lenet_layers_get_their_grids_and_all_tables(tmp_path):
    options = {"transforms": ("shift-x", "hflip", "rot90", "rotate"), "consistency_steps": 2,
               "magnitudes": ("shift-x=0;1;2;4px", "rotate=0;30")}
    run = probe.analyze("lenet5", "digits", [("equivariance", options)],
                        out=tmp_path / "lenet", dataset_options={"size": 8}, batch_size=8)
    errors = run.table("equivariance", "errors")
    strides = errors.groupby("layer")["stride"].first()
    assert strides[["c1", "s2", "c3", "s4"]].tolist() == [1, 2, 2, 4]
    assert np.isnan(strides["c5"])  # a single cell: compared as an invariant
    shifted = errors[(errors["transform"] == "shift-x") & (errors["layer"] == "s4")]
    assert (shifted["exact_action"] == (shifted["pixels"] % 4 == 0)).all()
    assert len(Equivariance.figures({n: run.table("equivariance", n)
                                     for n in Equivariance.tables})) == 6
    parts = run.table("equivariance", "lie_attribution")
    assert parts["closure"].max() < 1e-4  # float32 run


def test_command_line_sweeps_and_one_line_mistakes(capsys, tmp_path):
    from probe.cli import main

    base = ["run", "--arch", "ref-strided", "--dataset", "digits", "--analysis", "equivariance",
            "--set", "dataset.size=4", "--set", "arch.width=0.25", "--quiet",
            "--set", "equivariance.transforms=shift-x,hflip", "--set", "equivariance.lie=false",
            "--set", "equivariance.consistency=false"]
    assert main([*base, "--set", "equivariance.magnitudes=shift-x=0:8:4px",
                 "--out", str(tmp_path / "ok")]) == 0
    errors = probe.load_run(tmp_path / "ok").table("equivariance", "errors")
    shifted = errors[errors["transform"] == "shift-x"]
    assert sorted(set(shifted["pixels"])) == [0.0, 4.0, 8.0]
    assert shifted["relative_error"].max() < 1e-5  # multiples of the total stride 4
    capsys.readouterr()
    for setting, message in (
            ("equivariance.transforms=shear", "unknown transform 'shear'; known transforms: "),
            ("equivariance.magnitudes=rotate=0;5", "names transform 'rotate', which is not in"),
            ("equivariance.magnitudes=shift-x", "entries look like NAME=a;b;c")):
        assert main([*base, "--set", setting, "--out", str(tmp_path / "bad")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert not (tmp_path / "bad").exists()
