"""An architecture's own training procedure (``prepare``) through ``probe train``,
as a third-party plugin meets it: progress, metrics in the sidecar, the seed, the
checkpoint format, and ``epochs = 0`` replacing backprop."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import probe
from probe import ArchitectureSpec, Option, TrainingStep, TrainRecipe, hookimpl
from probe.cli import main
from probe.commands.train import summary_line
from probe.host import get_host
from probe.preprocessing import Preprocessing
from probe.training import train

SIZE = 96  # training digits (the data set's own split of them)


class Template(nn.Module):
    """One full-image template (a 32×32 convolution) and a 1 → classes readout."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.template = nn.Conv2d(in_channels, 1, 32, bias=False)
        self.template.weight.requires_grad_(False)
        self.readout = nn.Linear(1, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.template(x).flatten(1))


def mean_template(model: Template, batches: Iterable[torch.Tensor],
                  generator: torch.Generator) -> Iterator[TrainingStep]:
    """Stage ``mean``: the mean training input, one step per batch (the total grows);
    stage ``norm``: scale it to unit norm. Order-independent, so a test can recompute it."""
    total, count, done = torch.zeros_like(model.template.weight[0]), 0, 0
    for batch in batches:
        total += batch.sum(0)
        count += len(batch)
        done += 1
        yield TrainingStep("mean", done, done + 1, {"images": count})
    mean = total / count
    model.template.weight.copy_((mean / mean.norm())[None])
    yield TrainingStep("norm", done + 1, done + 1, {"norm_before": float(mean.norm())})


def wrong_steps(model: nn.Module, batches: Iterable[torch.Tensor],
                generator: torch.Generator) -> Iterator[object]:
    yield {"stage": "x"}


def _guide_procedure():
    """docs/plugins.md's ``learn_template``, executed as written."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    start = guide.index("from probe import TrainingStep")
    block = textwrap.dedent(guide[guide.rindex("\n", 0, start) + 1:guide.index("```", start)])
    namespace: dict = {}
    exec(compile(block, "docs/plugins.md", "exec"), namespace)
    return namespace["learn_template"]


class _ProcedurePlugin:
    @hookimpl
    def probe_register_architectures(self, register):
        options = (Option("num_classes", int, 10), Option("in_channels", int, 1))
        recipe = TrainRecipe(dataset="digits", dataset_options={"size": SIZE}, epochs=0,
                             batch_size=32)
        register(ArchitectureSpec(
            name="test-template", build=Template, task="classification", family="test",
            input_size=32, in_channels=1, options=options, train=recipe,
            prepare=mean_template))
        register(ArchitectureSpec(
            name="test-guide-template", build=Template, task="classification",
            family="test", input_size=32, in_channels=1, options=options, train=recipe,
            prepare=_guide_procedure()))
        register(ArchitectureSpec(
            name="test-wrong-steps", build=Template, task="classification", family="test",
            input_size=32, in_channels=1, options=options, train=recipe,
            prepare=wrong_steps))


@pytest.fixture(scope="module")
def plugin() -> Iterator[None]:
    host = get_host()
    host.add_plugin(_ProcedurePlugin(), "test-procedure")
    yield
    host.remove_plugin("test-procedure")


def test_the_procedure_alone_trains_with_progress_metrics_and_the_checkpoint_format(
        plugin, tmp_path, capfd):
    out = tmp_path / "template.safetensors"
    record = train("test-template", out, device="cpu", progress=True)
    bar = capfd.readouterr().err
    assert "prepare test-template: mean" in bar and "prepare test-template: norm" in bar
    batches = -(-SIZE // 32)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar == json.loads(json.dumps(record, default=str))
    # every reported step, in order, and each stage's last metrics
    assert [(h["stage"], h["step"]) for h in sidecar["prepare"]["history"]] == \
        [("mean", k) for k in range(1, batches + 1)] + [("norm", batches + 1)]
    assert sidecar["prepare"]["stages"]["mean"] == {"images": float(SIZE)}
    assert sidecar["history"] == [] and sidecar["recipe"]["epochs"] == 0  # no backprop
    assert sidecar["prepare_seconds"] == sidecar["prepare"]["seconds"] > 0
    # the weights are the procedure's: the mean normalised training digit, unit norm
    images = probe.load_dataset("digits", size=SIZE, split="train")
    stack = torch.stack([images[i]["image"] for i in range(len(images))]).float()
    normalized = Preprocessing.of_statistics(images.mean, images.std).normalize(stack)
    mean = normalized.mean(0)
    model = probe.load_model("test-template", checkpoint=out)
    torch.testing.assert_close(model.template.weight[0], mean / mean.norm(), rtol=0,
                               atol=1e-6)
    assert sidecar["prepare"]["stages"]["norm"]["norm_before"] == pytest.approx(
        float(mean.norm()), rel=1e-5)
    # evaluated like any model: a readout never trained is near chance, and says so
    assert 0 <= sidecar["metrics"]["accuracy"] <= 0.35
    line = summary_line(sidecar, out, out.with_suffix(".json"))
    assert line.startswith("trained test-template on digits: own procedure (mean, norm) ")
    assert ", no backprop, test accuracy " in line


def test_the_seed_orders_the_batches_but_an_order_free_procedure_is_unchanged(plugin,
                                                                              tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train("test-template", a, device="cpu", progress=False, seed=0)
    train("test-template", b, device="cpu", progress=False, seed=5)
    first, second = (probe.load_model("test-template", checkpoint=p) for p in (a, b))
    torch.testing.assert_close(first.template.weight, second.template.weight,
                               rtol=0, atol=1e-6)
    assert json.loads(b.with_suffix(".json").read_text())["seed"] == 5


def test_a_procedure_yielding_something_else_is_one_line(plugin, tmp_path, capsys):
    code = main(["train", "test-wrong-steps", "--out", str(tmp_path / "w.safetensors"),
                 "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0
    assert "prepare yielded dict; it must yield probe.TrainingStep" in err


def test_no_epochs_needs_a_procedure_of_its_own(tmp_path, capsys):
    code = main(["train", "lenet5", "--out", str(tmp_path / "l.safetensors"), "--epochs", "0",
                 "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0
    assert "--epochs must be >= 1 for lenet5, which has no training procedure of its own" \
        in err


def test_summary_line_with_an_own_procedure_and_backprop():
    record = {"arch": "neocognitron", "dataset": {"name": "digits"}, "recipe": {"epochs": 5},
              "metrics": {"accuracy": 0.931}, "train_seconds": 20.0,
              "prepare": {"seconds": 12.5, "stages": {"s1": {}, "s2": {}, "s3": {}}}}
    assert summary_line(record, Path("n.safetensors"), Path("n.json")) == (
        "trained neocognitron on digits: own procedure (s1, s2, s3) 12 s, 5 epochs, "
        "test accuracy 93.1 %, 32 s → n.safetensors (+ n.json sidecar)")


def test_the_guides_procedure_runs_as_written(plugin, tmp_path):
    out = tmp_path / "guide.safetensors"
    train("test-guide-template", out, device="cpu", progress=False)
    images = probe.load_dataset("digits", size=SIZE, split="train")
    stack = torch.stack([images[i]["image"] for i in range(len(images))]).float()
    mean = Preprocessing.of_statistics(images.mean, images.std).normalize(stack).mean(0)
    model = probe.load_model("test-guide-template", checkpoint=out)
    torch.testing.assert_close(model.template.weight[0], mean, rtol=0, atol=1e-6)
    stages = json.loads(out.with_suffix(".json").read_text())["prepare"]["stages"]
    assert stages == {"mean": {"images": float(SIZE)}, "store": {}}
