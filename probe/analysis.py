"""The analysis API for plugin authors: :class:`Analysis` and :class:`Accumulator`.

An analysis is one class: it declares its name, options, the inputs it needs,
how many passes over the data it makes and which tables it writes, and builds
an :class:`Accumulator` for a run. The host owns the data loop: it runs the
model **once per batch per pass**, captures the requested layers, and hands
every active accumulator the same :class:`Batch`. Accumulators keep their
state on the model's device, can ``merge`` with another of their kind (so a
sharded run reduces exactly), and ``finalize`` into tidy DataFrames.

See ``docs/plugins.md`` for a complete example.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import torch
from torch import nn

from probe.errors import PluginError
from probe.options import Option, resolve_options

if TYPE_CHECKING:
    from probe.architecture import ArchitectureSpec
    from probe.dataset import ProbeDataset

#: Inputs an analysis can require from the data set (checked before a run starts).
KNOWN_REQUIREMENTS = frozenset({"labels", "masks", "target"})


class ModelHandle:
    """The model as analyses see it: extra forward passes inside the host's batch step.

    Analyses such as equivariance need the model on transformed inputs; they ask
    this handle instead of running their own loop over the data.
    """

    def __init__(self, model: nn.Module, layers: Mapping[str, str],
                 mean: Sequence[float], std: Sequence[float]) -> None:
        self.model = model
        self.layers = dict(layers)
        self._mean = torch.tensor(list(mean), dtype=torch.float32)
        self._std = torch.tensor(list(std), dtype=torch.float32)

    @property
    def device(self) -> torch.device:
        """The device the model's parameters live on."""
        for tensor in self.model.parameters():
            return tensor.device
        return torch.device("cpu")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``Tensor[B, C, H, W]`` images in [0, 1] to model inputs."""
        mean = self._mean.to(images.device, images.dtype).view(1, -1, 1, 1)
        std = self._std.to(images.device, images.dtype).view(1, -1, 1, 1)
        return (images - mean) / std

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the model on already-normalised inputs."""
        return self.model(inputs)

    def capture(self, inputs: torch.Tensor,
                layers: Iterable[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the model on ``inputs`` and return ``(outputs, {layer: activation})``."""
        from probe.capture import Capture

        names = list(layers)
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise KeyError(f"layer {unknown[0]!r} is not captured in this run; "
                           f"captured layers: {', '.join(self.layers)}")
        with Capture(self.model, {n: self.layers[n] for n in names}) as capture:
            outputs = self.model(inputs)
            return outputs, capture.take()


@dataclass
class Batch:
    """One batch as every accumulator sees it (all tensors on the model's device).

    Attributes:
        images: ``Tensor[B, C, H, W]`` raw images in [0, 1].
        inputs: ``Tensor[B, C, H, W]`` normalised model inputs.
        indices: ``Tensor[B]`` positions of the images in the data set.
        labels: ``Tensor[B]`` class labels (``-1`` where unknown).
        outputs: Model outputs for ``inputs``.
        activations: ``{layer name: Tensor[B, K, h, w]}`` for the captured layers.
        masks: ``Tensor[B, L, h, w]`` concept label maps, when the data set has them.
        scalars: ``Tensor[B, S]`` image-level concept labels, when present.
        target: ``Tensor[B, H, W]`` segmentation target, when present.
        pass_index: Which pass over the data this is (0-based).
    """

    images: torch.Tensor
    inputs: torch.Tensor
    indices: torch.Tensor
    labels: torch.Tensor
    outputs: torch.Tensor
    activations: Mapping[str, torch.Tensor]
    masks: torch.Tensor | None = None
    scalars: torch.Tensor | None = None
    target: torch.Tensor | None = None
    pass_index: int = 0


@dataclass
class RunContext:
    """What an analysis knows about the run it is part of.

    Attributes:
        model: The model, in eval mode, on ``device``.
        handle: Extra forward passes (see :class:`ModelHandle`).
        layers: ``{layer name: module path}`` the analysis may use.
        device: The run's device.
        dataset: The data set (``None`` for weight-only runs).
        arch: The architecture spec, when the model came from the registry.
        seed: The run's seed.
        artifact_dir: Folder for this analysis's small artifacts.
        rank, world_size: Position in a sharded run.
    """

    model: nn.Module
    handle: ModelHandle
    layers: Mapping[str, str]
    device: torch.device
    dataset: ProbeDataset | None = None
    arch: ArchitectureSpec | None = None
    seed: int = 0
    artifact_dir: Path | None = None
    rank: int = 0
    world_size: int = 1
    extras: dict[str, Any] = field(default_factory=dict)

    def module(self, layer: str) -> nn.Module:
        """The module behind a layer name."""
        return self.model.get_submodule(self.layers[layer])


class Accumulator(abc.ABC):
    """Streaming state of one analysis in one run (or one shard of it)."""

    @abc.abstractmethod
    def update(self, batch: Batch) -> None:
        """Fold one batch into the state; called once per batch per pass."""

    def end_pass(self, pass_index: int) -> None:  # noqa: B027 - optional hook, no-op by default
        """Called after each pass (after shards are merged), e.g. to fix thresholds."""

    @abc.abstractmethod
    def merge(self, other: Accumulator) -> None:
        """Fold another accumulator of the same kind (another shard) into this one."""

    @abc.abstractmethod
    def finalize(self) -> dict[str, pd.DataFrame]:
        """Turn the state into ``{table name: DataFrame}``."""

    def artifacts(self) -> dict[str, bytes]:
        """Small files to store beside the tables, ``{relative path: bytes}``."""
        return {}


class Analysis(abc.ABC):
    """Base class of every analysis plugin.

    Subclasses set the class attributes and implement :meth:`accumulator`.

    Attributes:
        name: Unique registry name.
        description: One line for listings.
        options: Declared options (validated in ``__init__``).
        passes: Passes over the data (0 = works on the weights alone).
        requires: Data the analysis needs: ``labels``, ``masks``, ``target``.
        tables: ``{table name: required columns}`` — what ``finalize`` returns.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    passes: ClassVar[int] = 1
    requires: ClassVar[frozenset[str]] = frozenset()
    tables: ClassVar[Mapping[str, Sequence[str]]] = {}

    def __init__(self, **settings: Any) -> None:
        self.settings: dict[str, Any] = resolve_options(
            self.options, settings, f"analysis {self.name}")

    def num_passes(self) -> int:
        """Passes this configured instance needs (defaults to the class's ``passes``)."""
        return self.passes

    def select_layers(self, context: RunContext) -> list[str]:
        """The layers to capture for this analysis; by default every selected layer."""
        return list(context.layers)

    @abc.abstractmethod
    def accumulator(self, context: RunContext) -> Accumulator:
        """A fresh accumulator for one run (or shard)."""

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        """Plotly figures built from the tables, shared by dashboard and report."""
        return []

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """A JSON-ready description for listings."""
        return {
            "name": cls.name,
            "description": cls.description,
            "passes": cls.passes,
            "requires": sorted(cls.requires),
            "options": [opt.describe() for opt in cls.options],
            "tables": {name: list(cols) for name, cols in cls.tables.items()},
        }


def validate_analysis_class(item: object) -> None:
    """Check that a registered object is a usable :class:`Analysis` subclass."""
    if not (isinstance(item, type) and issubclass(item, Analysis)):
        raise PluginError(f"analyses must be subclasses of probe.Analysis, got {item!r}")
    if not item.name:
        raise PluginError(f"analysis class {item.__qualname__} has no name")
    unknown = set(item.requires) - KNOWN_REQUIREMENTS
    if unknown:
        raise PluginError(f"analysis {item.name} requires unknown inputs {sorted(unknown)}; "
                          f"known: {sorted(KNOWN_REQUIREMENTS)}")


def check_tables(analysis: Analysis, tables: Mapping[str, pd.DataFrame]) -> None:
    """Check finalize's result against the declared tables (names and columns)."""
    for table, columns in analysis.tables.items():
        if table not in tables:
            raise PluginError(f"analysis {analysis.name} did not return its declared table "
                              f"{table!r}")
        missing = [c for c in columns if c not in tables[table].columns]
        if missing:
            raise PluginError(f"analysis {analysis.name} table {table!r} lacks declared "
                              f"columns {missing}")
    for table, frame in tables.items():
        if not isinstance(frame, pd.DataFrame):
            raise PluginError(f"analysis {analysis.name} table {table!r} is not a DataFrame")
