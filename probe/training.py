"""``probe train``: train a registered architecture on a registered data set.

Classification models are scored by test accuracy, segmentation models by mean
IoU over the classes present in the test split. The checkpoint is written as
safetensors (architecture and options in its metadata) with a JSON sidecar
``<checkpoint>.json`` holding the recipe, the metrics and the per-epoch history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from probe.architecture import TrainingStep, TrainRecipe
from probe.checkpoint import (
    check_writable,
    file_sha256,
    load_weights,
    save_checkpoint,
    write_atomically,
)
from probe.dataset import ProbeDataset
from probe.device import resolve_device
from probe.errors import ProbeError
from probe.models import data_derived_options, get_architecture, load_dataset
from probe.options import Option, resolve_options
from probe.preprocessing import Preprocessing, attached_preprocessing
from probe.progress import progress_bar, step_progress

#: Options settable with ``--set train.NAME=VALUE``.
TRAIN_OPTIONS = (
    Option("lr", float, None, "learning rate", minimum=0.0),
    Option("batch_size", int, None, "batch size", minimum=1),
    Option("optimizer", str, None, "optimiser", choices=("adam", "sgd")),
    Option("weight_decay", float, None, "weight decay", minimum=0.0),
    Option("momentum", float, None, "SGD momentum", minimum=0.0, maximum=1.0),
    Option("augment", bool, None, "random horizontal flips of the training images"),
)


def sidecar_path(checkpoint: str | Path) -> Path:
    """The JSON sidecar of a checkpoint: ``model.safetensors`` → ``model.json``."""
    return Path(checkpoint).with_suffix(".json")


def check_destination(out: str | Path) -> None:
    """Check that the checkpoint ``out`` (``.safetensors``) and its sidecar can be written.

    Raises:
        ProbeError: a wrong suffix, a directory in the way, a folder that cannot
            be created or is not writable (one line naming the path).
    """
    target = Path(out)
    if target.suffix != ".safetensors":
        raise ProbeError(f"--out must end in .safetensors, got {target}")
    check_writable(target, "checkpoint")
    check_writable(sidecar_path(target), "checkpoint sidecar")


def evaluate(model: nn.Module, dataset: ProbeDataset, task: str, device: torch.device,
             batch_size: int = 256,
             preprocessing: Preprocessing | None = None) -> dict[str, float]:
    """Accuracy (classification) or mean IoU and pixel accuracy (segmentation).

    Inputs are normalised with ``preprocessing``, else the model's own (a model from
    ``probe.load_model``), else the data set's statistics (a model being trained).
    """
    preprocessing = preprocessing or attached_preprocessing(model) or \
        Preprocessing.of_statistics(dataset.mean, dataset.std)
    normalize = preprocessing.normalize
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    correct = total = 0
    classes = max(dataset.num_classes, 1)
    intersection = torch.zeros(classes, dtype=torch.int64)
    union = torch.zeros(classes, dtype=torch.int64)
    with torch.no_grad():
        for sample in loader:
            outputs = model(normalize(sample["image"].to(device).float()))
            if task == "classification":
                labels = sample["label"].to(device)
                correct += int((outputs.argmax(1) == labels).sum())
                total += len(labels)
            else:
                target = sample["target"].to(device)
                pred = outputs.argmax(1)
                correct += int((pred == target).sum())
                total += target.numel()
                for c in range(classes):
                    p, t = pred == c, target == c
                    intersection[c] += int((p & t).sum())
                    union[c] += int((p | t).sum())
    metrics = {"accuracy": correct / max(total, 1)}
    if task == "segmentation":
        present = union > 0
        metrics["mean_iou"] = float((intersection[present].double() /
                                     union[present].double()).mean())
        metrics["pixel_accuracy"] = metrics.pop("accuracy")
    return metrics


def _check_fit(model: nn.Module, arch: str, dataset: ProbeDataset, data_name: str,
               device: torch.device, preprocessing: Preprocessing) -> None:
    """Run one training image through ``model`` before the first step; one line if it misfits.

    Raises:
        ProbeError: the model does not take the data set's images (size, channels).
    """
    if len(dataset) == 0:
        raise ProbeError(f"dataset {data_name} has no training images with these options")
    image = dataset[0]["image"][None].to(device).float()
    try:
        with torch.no_grad():
            model.eval()
            model(preprocessing.normalize(image))
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        shape = "×".join(str(v) for v in image.shape[1:])
        raise ProbeError(f"arch {arch} does not fit dataset {data_name} (one {shape} training "
                         f"image: {reason}); check --dataset and the arch./dataset. options "
                         f"such as input_size and image_size") from None
    finally:
        model.train()


def _loss(outputs: torch.Tensor, sample: Mapping[str, torch.Tensor], task: str,
          device: torch.device) -> torch.Tensor:
    if task == "classification":
        return F.cross_entropy(outputs, sample["label"].to(device))
    return F.cross_entropy(outputs, sample["target"].to(device))


def _flip_half(inputs: torch.Tensor, sample: Mapping[str, torch.Tensor]
               ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Mirror a random half of ``Tensor[B, C, H, W]`` inputs (and their ``target`` maps)."""
    flip = torch.rand(inputs.shape[0]) < 0.5
    inputs = torch.where(flip.to(inputs.device).view(-1, 1, 1, 1), inputs.flip(-1), inputs)
    out = dict(sample)
    if "target" in out:
        target = out["target"]
        out["target"] = torch.where(flip.view(-1, 1, 1), target.flip(-1), target)
    return inputs, out


def _prepare(spec: Any, model: nn.Module, train_set: Any, recipe: TrainRecipe,
             preprocessing: Preprocessing, device: torch.device, seed: int,
             progress: bool) -> dict[str, Any]:
    """Run the architecture's own procedure ``prepare(model, batches, generator)`` (no grad).

    Returns the sidecar's ``prepare`` entry: ``seconds``, every reported step
    (``history``) and the last metrics of each stage (``stages``).

    Raises:
        ProbeError: the procedure yielded something other than a
            :class:`probe.TrainingStep`.
    """
    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    batches = (preprocessing.normalize(sample["image"].to(device).float()) for sample in loader)
    history: list[dict[str, Any]] = []
    stages: dict[str, dict[str, float]] = {}
    began = time.perf_counter()
    model.eval()
    with torch.no_grad():
        result = spec.prepare(model, batches, torch.Generator().manual_seed(seed))
        if result is not None:
            for step in step_progress(_checked_steps(result, spec.name),
                                      f"prepare {spec.name}", enabled=progress):
                entry = step.record()
                history.append(entry)
                stages[step.stage] = {k: v for k, v in entry.items()
                                      if k not in ("stage", "step")}
    model.train()
    return {"seconds": round(time.perf_counter() - began, 6), "history": history,
            "stages": stages}


def _checked_steps(steps: Any, arch: str) -> Iterator[TrainingStep]:
    """The steps a ``prepare`` generator yields, each checked to be a :class:`TrainingStep`."""
    if not isinstance(steps, Iterable):
        raise ProbeError(f"arch {arch}: prepare returned {type(steps).__name__}; it must "
                         f"return None or yield probe.TrainingStep")
    for step in steps:
        if not isinstance(step, TrainingStep):
            raise ProbeError(f"arch {arch}: prepare yielded {type(step).__name__}; it must "
                             f"yield probe.TrainingStep")
        yield step


def train(arch: str, out: str | Path, *, dataset: str | None = None,
          dataset_options: Mapping[str, Any] | None = None,
          arch_options: Mapping[str, Any] | None = None,
          train_options: Mapping[str, Any] | None = None, epochs: int | None = None,
          device: str | None = None, seed: int = 0, progress: bool = True,
          init: str | Path | None = None) -> dict[str, Any]:
    """Train ``arch`` following its recipe (overridable) and write checkpoint + sidecar.

    ``init`` names a checkpoint whose weights the model starts from (fine-tuning;
    related layouts are adapted, e.g. a VGG's weights initialise a deformable VGG).

    The destination is checked first (before any data is loaded or any step is
    taken): ``out`` and its sidecar must be writable files, ``init`` must exist.
    Both files are written atomically.

    Returns:
        The sidecar's content (recipe, metrics, history, seconds).
    """
    check_destination(out)
    if init is not None and not Path(init).is_file():
        raise ProbeError(f"--init checkpoint file not found: {init}")
    spec = get_architecture(arch)
    recipe = spec.train or (TrainRecipe(dataset=dataset) if dataset else None)
    if recipe is None:
        raise ProbeError(f"architecture {spec.name} has no training recipe; pass --dataset")
    overrides = {k: v for k, v in resolve_options(TRAIN_OPTIONS, train_options or {},
                                                  "train").items() if v is not None}
    recipe = replace(recipe, **overrides)
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    least = 0 if spec.prepare is not None else 1
    if recipe.epochs < least:
        what = ("an architecture with its own training procedure (prepare)"
                if least == 0 else f"{spec.name}, which has no training procedure of its own")
        raise ProbeError(f"--epochs must be >= {least} for {what}, got {recipe.epochs}")
    data_name = dataset or recipe.dataset
    data_opts = {**(recipe.dataset_options if data_name == recipe.dataset else {}),
                 **(dataset_options or {})}
    train_set = load_dataset(data_name, **{**data_opts, "split": "train"})
    test_set = load_dataset(data_name, **{**data_opts, "split": "test"})
    options = spec.resolve({**data_derived_options(spec, train_set), **recipe.arch_options,
                            **(arch_options or {})})
    torch_device = resolve_device(device)
    cuda = [torch_device.index or 0] if torch_device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the caller's RNG state is left as it was
        torch.manual_seed(seed)
        return _train(spec, recipe, options, train_set, test_set, data_name, data_opts,
                      torch_device, seed, out, init, progress)


def _train(spec: Any, recipe: TrainRecipe, options: dict[str, Any], train_set: Any,
           test_set: Any, data_name: str, data_opts: dict[str, Any],
           torch_device: torch.device, seed: int, out: str | Path,
           init: str | Path | None, progress: bool) -> dict[str, Any]:
    """The training loop under :func:`train`'s seeded RNG fork."""
    generator = torch.Generator().manual_seed(seed)
    model = spec.build(**options)
    if init is not None:
        load_weights(model, init)
    model = model.to(torch_device)
    # the model's own preprocessing: what it is trained with, whatever data set runs it later
    preprocessing = Preprocessing.of_statistics(
        train_set.mean, train_set.std, input_size=train_set.image_size,
        channels=train_set.channels, source="checkpoint")
    _check_fit(model, spec.name, train_set, data_name, torch_device, preprocessing)
    prepared = None
    if spec.prepare is not None and init is None:
        prepared = _prepare(spec, model, train_set, recipe, preprocessing, torch_device, seed,
                            progress)
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    loader = DataLoader(train_set, batch_size=recipe.batch_size, shuffle=True,
                        generator=generator, drop_last=len(train_set) > recipe.batch_size)
    steps = recipe.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr,
                                                    total_steps=max(steps, 1))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in progress_bar(range(recipe.epochs), f"train {spec.name}", enabled=progress,
                              unit="epoch"):
        model.train()
        running, batches = 0.0, 0
        for sample in loader:
            inputs = preprocessing.normalize(sample["image"].to(torch_device).float())
            if recipe.augment:
                inputs, sample = _flip_half(inputs, sample)
            loss = _loss(model(inputs), sample, spec.task, torch_device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
            batches += 1
        history.append({"epoch": epoch + 1, "loss": running / max(batches, 1)})
    seconds = time.perf_counter() - start
    metrics = evaluate(model, test_set, spec.task, torch_device, preprocessing=preprocessing)
    if history:
        history[-1].update(metrics)
    record = {
        "arch": spec.name, "options": options, "task": spec.task,
        "dataset": {"name": data_name, "options": data_opts, "train_size": len(train_set),
                    "test_size": len(test_set)},
        "recipe": {k: v for k, v in asdict(recipe).items() if k not in ("dataset_options",)},
        "metrics": metrics, "history": history, "train_seconds": round(seconds, 2),
        "prepare_seconds": None if prepared is None else prepared["seconds"],
        "prepare": prepared,
        "device": str(torch_device), "seed": seed,
        "init": None if init is None else {"checkpoint": str(init),
                                           "sha256": file_sha256(init)},
    }
    record["preprocessing"] = preprocessing.record()
    path = save_checkpoint(model.cpu(), out, spec.name, options,
                           extra={"metrics": metrics, "preprocessing": record["preprocessing"]})
    text = json.dumps(record, indent=2, default=str)
    write_atomically(sidecar_path(path), lambda tmp: tmp.write_text(text),
                     what="checkpoint sidecar")
    return record
