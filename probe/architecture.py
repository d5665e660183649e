"""What an architecture plugin registers: :class:`ArchitectureSpec`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from probe.errors import ProbeError
from probe.options import Option, resolve_options
from probe.preprocessing import Preprocessing

Task = Literal["classification", "segmentation"]

#: Options that the host fills in from the data set when the user leaves them out.
DATA_DERIVED_OPTIONS = ("num_classes", "in_channels", "input_size")


@dataclass(frozen=True)
class TrainRecipe:
    """How ``probe train`` trains an architecture on the embedded data by default.

    Every field can be overridden on the command line (``--epochs``,
    ``--set train.lr=...``). ``epochs = 0`` is allowed for an architecture with a
    ``prepare`` step: its own procedure is then the whole training (no backprop).
    """

    dataset: str
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    arch_options: Mapping[str, Any] = field(default_factory=dict)
    augment: bool = False  # random horizontal flips of training images (and target maps)


@dataclass(frozen=True)
class TrainingStep:
    """One step of an architecture's own training procedure, as ``prepare`` reports it.

    A ``prepare`` written as a generator yields one of these after each step;
    ``probe train`` shows them as a progress bar (``prepare ARCH: STAGE``, ``done`` of
    ``total``, the metrics beside it) and records every step in the checkpoint's
    sidecar (``prepare.history``; the last metrics of each stage in
    ``prepare.stages``).

    Args:
        stage: What the step trains, e.g. ``"s1"`` or ``"ica"``.
        done: Steps finished so far over the whole procedure (1 after the first).
        total: Steps in the whole procedure (may grow if the procedure finds more).
        metrics: Numbers describing the step (``{"planes_used": 12.0}``).
    """

    stage: str
    done: int
    total: int
    metrics: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.stage, str) or not self.stage:
            raise ValueError(f"TrainingStep.stage must be a non-empty string, got "
                             f"{self.stage!r}")
        if not 0 <= self.done <= self.total:
            raise ValueError(f"TrainingStep needs 0 <= done <= total, got done={self.done}, "
                             f"total={self.total}")

    def record(self) -> dict[str, Any]:
        """The JSON-ready sidecar entry: ``{"stage", "step", **metrics}``."""
        return {"stage": self.stage, "step": self.done,
                **{k: float(v) for k, v in self.metrics.items()}}


def discover_conv_layers(model: nn.Module) -> dict[str, str]:
    """Name every convolution of ``model`` by its module path (the default layer list)."""
    conv_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)
    names: dict[str, str] = {}
    for path, module in model.named_modules():
        if isinstance(module, conv_types) or type(module).__name__ == "DeformConv2d":
            names[path] = path
    return names


@dataclass(frozen=True)
class ArchitectureSpec:
    """An architecture that probe can build, train, load and analyse.

    Args:
        name: Unique registry name (``vgg16``, ``lenet5``).
        build: ``build(**options) -> nn.Module``; receives every resolved option.
        task: ``"classification"`` or ``"segmentation"``.
        family: Family name for grouping (``vgg``, ``lenet``).
        input_size: Default square input size in pixels.
        in_channels: Default number of input channels.
        options: Declared options. ``num_classes``, ``in_channels`` and
            ``input_size``, where declared, are filled in from the data set
            when the user does not set them.
        layers: ``layers(model) -> {layer name: module path}``, ordered from
            input to output; the names are stable and are what users pass to
            ``--layers``. Defaults to every convolution, named by module path.
        description: One line for listings.
        train: Default training recipe on the embedded data, if any.
        preprocessing: The normalisation a model of this architecture expects
            when its checkpoint records none (e.g. ImageNet statistics for
            families whose torchvision weights load unchanged); ``None``: none.
        prepare: The architecture's own training procedure,
            ``prepare(model, batches, generator)``, run once by ``probe train``
            after the fit check and before the first optimisation step (not with
            ``--init``): sets parameters or buffers from data (HMAX imprints its
            prototypes, the Neocognitron learns by competition). ``batches`` yields
            normalised training inputs ``Tensor[B, C, H, W]`` on the model's device,
            shuffled in an order seeded by the run's seed; ``generator`` (a CPU
            ``torch.Generator``) is seeded by it too. A plain function returns
            ``None``; a generator yields a :class:`TrainingStep` after each step
            (progress bar and sidecar metrics). With ``epochs = 0`` it replaces
            backprop entirely.
    """

    name: str
    build: Callable[..., nn.Module]
    task: Task
    family: str
    input_size: int
    in_channels: int = 3
    options: tuple[Option, ...] = ()
    layers: Callable[[nn.Module], Mapping[str, str]] = discover_conv_layers
    description: str = ""
    train: TrainRecipe | None = None
    preprocessing: Preprocessing | None = None
    prepare: Callable[[nn.Module, Iterable[Any], Any], None] | None = None

    def __post_init__(self) -> None:
        if self.task not in ("classification", "segmentation"):
            raise ValueError(f"task must be 'classification' or 'segmentation', got {self.task!r}")
        if not callable(self.build):
            raise TypeError(f"build must be callable, got {self.build!r}")

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validated options with defaults filled in."""
        return resolve_options(self.options, given or {}, f"arch {self.name}")

    def instantiate(self, options: Mapping[str, Any] | None = None) -> nn.Module:
        """Build the model with validated options."""
        return self.build(**self.resolve(options))

    def layer_map(self, model: nn.Module) -> dict[str, str]:
        """The ordered ``{layer name: module path}`` of ``model``."""
        return dict(self.layers(model))

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description, with the layer names of the default build."""
        try:
            import torch

            with torch.device("meta"):
                layers = list(self.layer_map(self.instantiate()))
        except Exception as exc:  # a listing must not die on one odd builder
            layers = [f"<could not build with defaults: {exc}>"]
        return {
            "name": self.name,
            "family": self.family,
            "task": self.task,
            "input_size": self.input_size,
            "in_channels": self.in_channels,
            "description": self.description,
            "options": [opt.describe() for opt in self.options],
            "layers": layers,
            "trainable": self.train is not None,
            "preprocessing": None if self.preprocessing is None else self.preprocessing.record(),
        }


def resolve_layers(spec: ArchitectureSpec, model: nn.Module,
                   requested: list[str] | None) -> dict[str, str]:
    """Map requested layer names to module paths; all layers when ``requested`` is empty.

    A name may be a layer name of the architecture or any module path of the model.
    """
    available = spec.layer_map(model)
    if not requested:
        return available
    modules = dict(model.named_modules())
    chosen: dict[str, str] = {}
    for name in requested:
        if name in available:
            chosen[name] = available[name]
        elif name in modules and name:
            chosen[name] = name
        else:
            raise ProbeError(f"architecture {spec.name} has no layer {name!r}; its layers are: "
                             f"{', '.join(available)} (see `probe architectures --json`)")
    return chosen


def conv_for_layer(model: nn.Module, layer_path: str) -> nn.Module | None:
    """The convolution whose weights produce a layer's output.

    A layer name usually points at a post-activation module (``features.1``, a
    ReLU); its filters are those of the last convolution at or before it in
    module order (``features.0``). Returns ``None`` when no convolution precedes it.
    """
    last = None
    for path, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) or \
                type(module).__name__ == "DeformConv2d":
            last = module
        if path == layer_path:
            return last
    raise KeyError(f"model has no module {layer_path!r}")
