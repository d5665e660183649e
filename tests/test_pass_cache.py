"""Batches kept between passes: a two-pass run reads its data set once, with the same results."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from test_dissection import Planted, planted_model
from torch import nn

import probe
from probe import Accumulator, Analysis
from probe.errors import ProbeError
from probe.pass_cache import ENV, PassCache, budget_bytes


class Counted(Planted):
    """The planted data set, counting how often each image is read."""

    def __init__(self, count: int = 24) -> None:
        super().__init__(count)
        self.reads = 0

    def __getitem__(self, index: int) -> dict:
        self.reads += 1
        return super().__getitem__(index)


class PixelSums(Accumulator):
    """Sum of the images in each pass; pass 1 scribbles on its batches."""

    def __init__(self) -> None:
        self.add_state("sums", torch.zeros(2, dtype=torch.float64), "sum")

    def update(self, batch) -> None:
        self.sums[batch.pass_index] += batch.images.double().sum()
        if batch.pass_index == 0:
            batch.images.mul_(0)  # a careless analysis: must not reach the next pass

    def finalize(self, context):
        return {"sums": pd.DataFrame({"pass": [0, 1], "sum": self.sums.tolist()})}


class TwoPasses(Analysis):
    name = "test-two-passes"
    tables = {"sums": ("pass", "sum")}

    @classmethod
    def num_passes(cls) -> int:
        return 2

    def accumulator(self, context):
        return PixelSums()


def test_a_two_pass_run_reads_each_image_once(monkeypatch: pytest.MonkeyPatch) -> None:
    data = Counted(24)
    tables = probe.measure(nn.Identity(), data, [TwoPasses()], device="cpu",
                           batch_size=5)["test-two-passes"]["sums"]
    truth = float(sum((data.masks[i] > 0).sum() for i in range(24)))
    assert tables["sum"].tolist() == [truth, truth]  # and saw the images as read

    monkeypatch.setenv(ENV, "0")  # off: read twice, same numbers
    again = Counted(24)
    off = probe.measure(nn.Identity(), again, [TwoPasses()], device="cpu",
                        batch_size=5)["test-two-passes"]["sums"]
    assert again.reads - data.reads == 24  # with the cache, the second pass read nothing
    pd.testing.assert_frame_equal(off, tables)


def test_past_the_budget_the_data_is_read_again(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path) -> None:
    per_image = 3 * 16 * 16 * 4 + 3 * 16 * 16 * 8 + 8 + 8 + 8  # image, masks, label, ...
    monkeypatch.setenv(ENV, str(10 * per_image / 2**20))  # room for 10 of 24 images
    data = Counted(24)
    run = probe.analyze(nn.Identity(), data, [TwoPasses()], out=tmp_path / "r",
                        device="cpu", batch_size=5)
    monkeypatch.setenv(ENV, "0")
    off = Counted(24)
    probe.measure(nn.Identity(), off, [TwoPasses()], device="cpu", batch_size=5)
    assert data.reads == off.reads  # read twice, like with the cache off
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["timings"]["pass_cache"]["used"] is False
    assert run.table("test-two-passes", "sums")["sum"].nunique() == 1


def test_dissection_tables_are_the_same_with_and_without_the_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    request = [("dissection", {"quantile": 0.3, "iou_threshold": 0.5})]
    data, again = Counted(24), Counted(24)
    kept = probe.measure(planted_model(), data, request, device="cpu", batch_size=8)
    monkeypatch.setenv(ENV, "0")
    read = probe.measure(planted_model(), again, request, device="cpu", batch_size=8)
    assert again.reads - data.reads == 24
    assert set(kept["dissection"]) == set(read["dissection"])
    for name, frame in kept["dissection"].items():
        pd.testing.assert_frame_equal(frame, read["dissection"][name], obj=name)


def test_the_cache_keeps_copies_and_forgets_past_its_budget() -> None:
    cache = PassCache(budget=100)
    batch = {"image": torch.ones(5), "labels": [torch.zeros(2, dtype=torch.int64)]}
    cache.keep(batch)  # 20 + 16 bytes
    batch["image"].zero_()
    cache.close()
    assert cache.complete and cache.record()["used"] is True
    first = next(iter(cache))
    assert first["image"].tolist() == [1.0] * 5  # a copy was kept ...
    first["image"].zero_()
    assert next(iter(cache))["image"].tolist() == [1.0] * 5  # ... and one is handed out
    full = PassCache(budget=50)
    full.keep(batch)
    full.keep(batch)  # 72 bytes > 50: forgets everything
    full.close()
    assert not full.complete and len(full) == 0 and full.bytes == 0


def test_the_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert budget_bytes() == 2048 * 2**20
    monkeypatch.setenv(ENV, "1.5")
    assert budget_bytes() == int(1.5 * 2**20)
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ProbeError, match=f"{ENV} must be a number of MiB"):
            budget_bytes()


def test_a_bad_budget_is_one_line_from_the_command_line(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "probe", "run", "--arch", "lenet5",
                          "--dataset", "digits", "--set", "dataset.size=16",
                          "--analysis", "unit-stats", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, env={**__import__("os").environ,
                                                              ENV: "lots"})
    assert out.returncode != 0
    lines = [x for x in out.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and ENV in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists()  # nothing was started


# -- the first pass's forward pass, kept on the CPU ------------------------------------------

class CountedModel(nn.Module):
    """A 1×1 convolution with a ReLU that counts its forward passes (a deterministic net)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.act = nn.ReLU()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.act(self.conv(x))


class ActivationSums(Accumulator):
    """Per pass: the sum of layer ``act``'s maps and of the outputs; pass 1 scribbles on
    its activations (must not reach pass 2)."""

    def __init__(self) -> None:
        self.add_state("sums", torch.zeros((2, 2), dtype=torch.float64), "sum")

    def update(self, batch) -> None:
        self.sums[batch.pass_index, 0] += batch.activations["act"].double().sum()
        self.sums[batch.pass_index, 1] += batch.outputs.double().sum()
        if batch.pass_index == 0:
            batch.activations["act"].mul_(0)

    def finalize(self, context):
        rows = self.sums.tolist()
        return {"sums": pd.DataFrame({"pass": [0, 1], "act": [r[0] for r in rows],
                                      "outputs": [r[1] for r in rows]})}


class TwoPassActivations(Analysis):
    name = "test-two-pass-activations"
    tables = {"sums": ("pass", "act", "outputs")}

    def select_layers(self, context):
        return ["act"]

    @classmethod
    def num_passes(cls) -> int:
        return 2

    def accumulator(self, context):
        return ActivationSums()


class TwoPassGradients(TwoPassActivations):
    name = "test-two-pass-gradients"
    gradients = True


def _measure(analysis, tmp_path=None, data=None):
    torch.manual_seed(0)
    model, data = CountedModel(), data or Counted(24)
    if tmp_path is None:
        tables = probe.measure(model, data, [analysis], device="cpu", batch_size=5,
                               layers=["act"])
        return model, data, tables[analysis.name]["sums"], None
    run = probe.analyze(model, data, [analysis], out=tmp_path, device="cpu", batch_size=5,
                        layers=["act"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    return model, data, run.table(analysis.name, "sums"), manifest["timings"]["pass_cache"]


def test_the_second_pass_reuses_the_first_pass_forward_on_the_cpu(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    model, _, kept, record = _measure(TwoPassActivations(), tmp_path / "kept")
    batches = 5  # 24 images in batches of 5
    # pass 1 runs the model once per batch (plus the run's one dry forward); pass 2 never
    assert model.calls == batches + 1
    assert record["used"] is True and record["forward"] is True
    # pass 2 saw the activations and outputs as computed, not pass 1's scribbles
    assert kept["act"].iloc[0] == kept["act"].iloc[1] > 0
    assert kept["outputs"].iloc[0] == kept["outputs"].iloc[1]
    monkeypatch.setenv(ENV, "0")  # off: the model runs in both passes, same numbers
    again, _, off, _ = _measure(TwoPassActivations())
    assert again.calls == 2 * batches + 1
    pd.testing.assert_frame_equal(off, kept)


def test_a_later_pass_with_gradients_runs_the_model_again(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    model, data, tables, record = _measure(TwoPassGradients(), tmp_path / "g")
    monkeypatch.setenv(ENV, "0")
    _, off, _, _ = _measure(TwoPassGradients(), tmp_path / "off")
    assert model.calls == 2 * 5 + 1 and off.reads - data.reads == 24  # batches alone kept
    assert record == {**record, "used": True, "forward": False}
    assert tables["act"].iloc[0] == tables["act"].iloc[1] > 0


def test_past_the_budget_for_the_forward_pass_the_batches_alone_are_kept(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    per_image = 3 * 16 * 16 * 4 + 3 * 16 * 16 * 8 + 8 + 8 + 8  # image, masks, label, ...
    forward = 2 * 4 * 16 * 16 * 4  # outputs and "act": 4 channels of 16×16 float32
    monkeypatch.setenv(ENV, str(24 * (per_image + forward / 2) / 2**20))
    model, _, tables, record = _measure(TwoPassActivations(), tmp_path / "b")
    assert record["used"] is True and record["forward"] is False
    assert model.calls == 2 * 5 + 1
    assert record["mib"] == round(24 * per_image / 2**20, 2)  # the forwards were let go
    assert tables["act"].iloc[0] == tables["act"].iloc[1] > 0


def test_the_forward_cache_keeps_copies_and_drops_first_past_its_budget() -> None:
    sample = {"image": torch.ones(4)}  # 16 bytes
    cache = PassCache(budget=60, forward_layers={"a"})
    act = {"a": torch.ones(2), "b": torch.ones(100)}  # "b" is not kept
    cache.keep(sample, torch.ones(1), act)  # 16 + 4 + 8 bytes
    act["a"].zero_()
    cache.close()
    assert cache.has_forward and cache.bytes == 28
    kept = next(cache.forwards())
    assert set(kept["activations"]) == {"a"} and kept["activations"]["a"].tolist() == [1, 1]
    kept["activations"]["a"].zero_()
    assert next(cache.forwards())["activations"]["a"].tolist() == [1, 1]
    tight = PassCache(budget=40, forward_layers={"a"})
    tight.keep(sample, torch.ones(1), act)  # 28 bytes
    tight.keep(sample, torch.ones(1), act)  # 56 > 40: the forwards go, 32 bytes of batches stay
    tight.close()
    assert tight.complete and not tight.has_forward and tight.bytes == 32 and len(tight) == 2


def test_the_last_pass_gets_the_kept_tensors_once() -> None:
    """A pass that is not the last gets copies; the last gets the kept tensors themselves
    (no copy: nothing reads them afterwards), each forgotten as it is handed out, and
    only once."""
    cache = PassCache(budget=10_000, forward_layers={"a"})
    for value in (1.0, 2.0):
        cache.keep({"image": torch.full((3,), value)}, torch.full((2,), value),
                   {"a": torch.full((4,), value)})
    cache.close()
    copies = cache.batches()
    assert len(copies) == 2
    again = [b["image"] for b in copies]
    assert all(t is not k["image"] for t, k in zip(again, cache._batches, strict=True))
    kept = [b["image"] for b in cache._batches]
    handed = cache.batches(last=True)
    forwards = cache.forwards(last=True)
    assert len(handed) == 2
    for index, batch in enumerate(handed):
        assert batch["image"] is kept[index]  # the kept tensor, not a copy
        assert cache._batches[index] is None  # forgotten as soon as it is handed out
        assert next(forwards)["activations"]["a"].tolist() == [index + 1.0] * 4
    assert cache._batches == []
    with pytest.raises(RuntimeError, match="already handed to the last pass"):
        cache.batches(last=True)
