"""One run, resolved once: the model's preprocessing, seeds, the layer map, errors, identity."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import probe
import probe.api
import probe.capture
from probe.cli import main
from probe.plan import plan_run
from probe.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


# -- a model knows its own preprocessing ---------------------------------------------------
def test_training_records_the_training_sets_statistics(lenet_checkpoint):
    digits = probe.load_dataset("digits")
    model = probe.load_model("lenet5", checkpoint=lenet_checkpoint)
    assert model.probe_preprocessing == Preprocessing(digits.mean, digits.std, 32, 1)
    assert model.probe_preprocessing.source == "checkpoint"
    sidecar = json.loads(lenet_checkpoint.with_suffix(".json").read_text())
    assert sidecar["preprocessing"]["mean"] == list(digits.mean)


def test_a_run_uses_the_models_normalisation_whatever_the_data_set(lenet_checkpoint):
    """The same images under other data-set statistics give the same activations, and
    those are the activations of the model's own normalisation, computed by hand."""
    data = probe.load_dataset("digits", size=16)
    other = probe.load_dataset("digits", size=16)
    other.mean, other.std = (0.9,), (0.05,)  # a data set's own statistics no longer matter
    model = probe.load_model("lenet5", checkpoint=lenet_checkpoint)
    a = probe.measure(model, data, ["unit-stats"], layers=["c1"])["unit-stats"]["units"]
    b = probe.measure(model, other, ["unit-stats"], layers=["c1"])["unit-stats"]["units"]
    assert a["mean"].tolist() == b["mean"].tolist()
    images = torch.stack([data[i]["image"] for i in range(16)])
    mean, std = model.probe_preprocessing.mean[0], model.probe_preprocessing.std[0]
    path = probe.api.get_architecture("lenet5").layer_map(model)["c1"]
    with torch.no_grad(), probe.capture.Capture(model, {"c1": path}) as capture:
        model((images - mean) / std)
        act = capture.take()["c1"]
    np.testing.assert_allclose(a["mean"], act.transpose(0, 1).flatten(1).double().mean(1),
                               rtol=1e-6)


def test_the_manifest_records_the_preprocessing(tmp_path, lenet_checkpoint):
    run = probe.analyze("lenet5", "digits", ["unit-stats"], out=tmp_path / "r",
                        checkpoint=lenet_checkpoint, dataset_options={"size": 8})
    recorded = run.manifest["preprocessing"]
    assert recorded["mean"] == list(probe.load_dataset("digits").mean)
    assert recorded["source"] == "checkpoint"


def test_architecture_defaults_and_explicit_overrides():
    vgg = probe.load_model("vgg11", width=0.125, input_size=32, fc_width=16)
    assert (vgg.probe_preprocessing.mean, vgg.probe_preprocessing.std) == \
        (IMAGENET_MEAN, IMAGENET_STD)  # what torchvision's VGG weights expect
    resnet = probe.load_model("torchvision:resnet18", num_classes=3)
    assert resnet.probe_preprocessing.source == "torchvision"
    assert probe.load_model("lenet5").probe_preprocessing.source == "none"
    given = Preprocessing((0.5,), (0.5,), source="given")
    plan = plan_run(probe.load_model("lenet5"), "digits", ["unit-stats"],
                    dataset_options={"size": 4}, preprocessing=given)
    assert plan.preprocessing == given


def test_a_plain_state_dict_can_carry_preprocessing_in_a_sidecar(tmp_path):
    model = probe.load_model("lenet5")
    path = tmp_path / "lenet.pt"
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(
        {"preprocessing": {"mean": [0.2], "std": [0.4]}}))
    loaded = probe.load_model("lenet5", checkpoint=path)
    assert loaded.probe_preprocessing.mean == (0.2,)
    assert loaded.probe_preprocessing.source == "checkpoint"


def test_bad_preprocessing_is_refused():
    with pytest.raises(probe.ProbeError, match="one value per channel"):
        Preprocessing((0.5, 0.5), (0.2,))
    with pytest.raises(probe.ProbeError, match="std must be > 0"):
        Preprocessing((0.5,), (0.0,))


# -- reproducible by seed -----------------------------------------------------------------
def test_the_same_seed_gives_the_same_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = probe.load_model("vgg11_bn", seed=5, width=0.125, input_size=32, fc_width=16)
    b = probe.load_model("vgg11_bn", seed=5, width=0.125, input_size=32, fc_width=16)
    c = probe.load_model("vgg11_bn", seed=6, width=0.125, input_size=32, fc_width=16)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is untouched
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert any(not torch.equal(x, z) for x, z in zip(a.state_dict().values(),
                                                       c.state_dict().values(), strict=True))


def test_measure_leaves_global_rng_alone():
    torch.manual_seed(7)
    before = torch.get_rng_state()
    probe.measure("lenet5", "digits", ["unit-stats"], dataset_options={"size": 8})
    assert torch.equal(torch.get_rng_state(), before)


def test_two_processes_with_one_seed_give_the_same_tables(tmp_path):
    """Untrained weights come from the recorded seed alone (not from process state)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("a", "b"):
        done = subprocess.run(
            [sys.executable, "-m", "probe", "run", "--arch", "vgg11_bn", "--dataset", "parts",
             "--set", "arch.width=0.125", "--set", "arch.fc_width=16", "--set",
             "dataset.size=8", "--set", "dataset.image_size=32", "--analysis", "unit-stats",
             "--seed", "3", "--quiet", "--device", "cpu", "--out", str(tmp_path / name)],
            env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    a = probe.load_run(tmp_path / "a").table("unit-stats", "units")
    b = probe.load_run(tmp_path / "b").table("unit-stats", "units")
    assert a["mean"].tolist() == b["mean"].tolist() and a["max"].tolist() == b["max"].tolist()


# -- the layer map never depends on the entry point ---------------------------------------
def test_a_loaded_model_gets_the_architectures_layers(tmp_path):
    from_cli = probe.analyze("lenet5", "digits", ["unit-stats"], out=tmp_path / "cli",
                             dataset_options={"size": 8})
    from_model = probe.analyze(probe.load_model("lenet5"), "digits", ["unit-stats"],
                               out=tmp_path / "api", dataset_options={"size": 8})
    assert from_model.manifest["layers"] == from_cli.manifest["layers"]
    assert from_model.manifest["layers"][0] == "c1"  # post-activation names, not raw convs
    a = from_cli.table("unit-stats", "units")
    b = from_model.table("unit-stats", "units")
    assert a["mean"].tolist() == b["mean"].tolist()


def test_a_plain_module_gets_its_convolutions():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3))
    plan = plan_run(model, "digits", ["unit-stats"], dataset_options={"size": 4})
    assert plan.layer_map == {"0": "0", "2": "2"}
    assert plan.preprocessing.source == "none"


# -- errors outside an analysis are one line ----------------------------------------------
def test_model_data_mismatch_is_one_line_and_a_failed_run(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["run", "--arch", "torchvision:resnet18", "--dataset", "digits", "--set",
                 "dataset.size=4", "--analysis", "unit-stats", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("probe: error: ") and err.count("\n") == 1, err
    assert "3-channel input" in err and "1-channel images" in err
    manifest = probe.load_run(out).manifest
    assert manifest["status"] == "failed" and "3-channel" in manifest["error"]
    assert manifest["analyses"]["unit-stats"]["status"] == "failed"


def test_a_shape_mismatch_is_caught_by_the_dry_forward(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["run", "--arch", "lenet5", "--dataset", "digits", "--set", "dataset.size=4",
                 "--set", "dataset.image_size=20", "--set", "arch.input_size=32",
                 "--analysis", "unit-stats", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "takes 32×32 inputs" in err and "1×20×20" in err and "image_size=32" in err
    assert probe.load_run(out).status == "failed"


class _OutOfMemory(nn.Module):
    def __init__(self, **_):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        if len(x) > 1:  # the one-image dry forward fits; a batch does not
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.conv(x)


def test_out_of_memory_is_one_line_with_a_hint(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(probe.ProbeError, match=r"out of GPU memory at batch size 4 .*"
                                               r"smaller --batch-size"):
        probe.analyze(_OutOfMemory(), "digits", ["unit-stats"], out=out, batch_size=4,
                      dataset_options={"size": 8})
    assert probe.load_run(out).status == "failed"


# -- identity: the skip check needs no planning ---------------------------------------------
def test_request_identity_equals_the_plans(tmp_path, lenet_checkpoint):
    from probe.runfile import RunRequest

    request = RunRequest(arch="lenet5", analyses=["unit-stats"], out=tmp_path / "r",
                         dataset="digits", checkpoint=lenet_checkpoint,
                         settings={"dataset": {"size": 8}, "arch": {"activation": "tanh"}})
    assert request.identity() == request.plan().identity
    spelled = RunRequest(arch="lenet5", analyses=["unit-stats"], out=tmp_path / "r",
                         dataset="digits", checkpoint=lenet_checkpoint,
                         settings={"dataset": {"size": 8}})
    assert spelled.identity() == request.identity()  # a default given explicitly is no change
