"""The analysis API for plugin authors: :class:`Analysis` and :class:`Accumulator`.

An analysis is one class: it declares its name, options, the inputs it needs,
how many passes over the data it makes and which tables it writes, and builds
an :class:`Accumulator` for a run. The host owns the data loop: it runs the
model **once per batch per pass**, captures the requested layers, and hands
every active accumulator the same :class:`Batch`. Accumulators keep their
state as declared tensors on the model's device (:mod:`probe.state`: each
with a reduction, so a sharded run reduces exactly with tensor collectives),
and ``finalize`` into tidy DataFrames. Every step after ``update`` receives
the :class:`RunContext`.

See ``docs/plugins.md`` for a complete example.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import torch
from torch import nn

from probe.errors import OptionError, PluginError
from probe.options import Option, resolve_options
from probe.preprocessing import Preprocessing
from probe.state import State
from probe.views.hooks import AnalysisViews

if TYPE_CHECKING:
    from probe.architecture import ArchitectureSpec
    from probe.dataset import ProbeDataset

#: Inputs an analysis can require from the data set (checked before a run starts).
KNOWN_REQUIREMENTS = frozenset({"labels", "masks", "target"})


class ModelHandle:
    """The model as analyses see it: extra forward passes inside the host's batch step.

    Analyses such as equivariance need the model on transformed inputs; they ask
    this handle instead of running their own loop over the data. Inputs are
    normalised with the *model's* preprocessing (:class:`~probe.preprocessing.Preprocessing`).
    """

    def __init__(self, model: nn.Module, layers: Mapping[str, str],
                 preprocessing: Preprocessing) -> None:
        self.model = model
        self.layers = dict(layers)
        self.preprocessing = preprocessing

    @property
    def device(self) -> torch.device:
        """The device the model's parameters live on."""
        for tensor in self.model.parameters():
            return tensor.device
        return torch.device("cpu")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``Tensor[B, C, H, W]`` images in [0, 1] to model inputs."""
        return self.preprocessing.normalize(images)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the model on already-normalised inputs."""
        return self.model(inputs)

    def capture(self, inputs: torch.Tensor, layers: Iterable[str], *,
                grad: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run the model on ``inputs`` and return ``(outputs, {layer: activation})``.

        Args:
            inputs: ``Tensor[B, C, H, W]`` normalised model inputs. With
                ``grad=True``, make them ``requires_grad_()`` first to take
                gradients with respect to the input.
            layers: Layer names of this run.
            grad: Keep the autograd graph (the runner's batch step runs under
                ``torch.no_grad``; this turns it back on for this call), so
                ``torch.autograd.grad(activation[:, unit].sum(), inputs)`` works.

        Raises:
            KeyError: A layer is not captured in this run (the message lists them).
        """
        from probe.capture import Capture

        names = list(layers)
        unknown = [n for n in names if n not in self.layers]
        if unknown:
            raise KeyError(f"layer {unknown[0]!r} is not captured in this run; "
                           f"captured layers: {', '.join(self.layers)}")
        with torch.set_grad_enabled(grad or torch.is_grad_enabled()), \
                Capture(self.model, {n: self.layers[n] for n in names},
                        detach=not grad) as capture:
            outputs = self.model(inputs)
            return outputs, capture.take()


@dataclass
class Batch:
    """One batch as every accumulator sees it (all tensors on the model's device).

    Attributes:
        images: ``Tensor[B, C, H, W]`` raw images in [0, 1].
        inputs: ``Tensor[B, C, H, W]`` model inputs (the model's preprocessing
            applied). For an analysis that declares ``gradients = True`` it
            ``requires_grad``, and ``outputs`` / ``activations`` keep their graph.
        indices: ``Tensor[B]`` positions of the images in the data set.
        labels: ``Tensor[B]`` class labels (``-1`` where unknown).
        outputs: Model outputs for ``inputs``.
        activations: ``{layer name: Tensor[B, K, h, w]}`` for the captured layers.
        masks: ``Tensor[B, L, h, w]`` per-pixel concept label maps (one map per
            mask layer of the data set), when the data set has them.
        image_concepts: ``Tensor[B, S]`` image-level concept labels (one slot per
            image-level category, e.g. scene or texture; 0 = none), when present.
        target: ``Tensor[B, H, W]`` segmentation target, when present.
        pass_index: Which pass over the data this is (0-based).
        handle: The model for extra forward passes inside this batch step
            (transformed inputs, gradients); see :class:`ModelHandle`.
    """

    images: torch.Tensor
    inputs: torch.Tensor
    indices: torch.Tensor
    labels: torch.Tensor
    outputs: torch.Tensor
    activations: Mapping[str, torch.Tensor]
    masks: torch.Tensor | None = None
    image_concepts: torch.Tensor | None = None
    target: torch.Tensor | None = None
    pass_index: int = 0
    handle: ModelHandle | None = None

    def detached(self) -> Batch:
        """The same batch without autograd graphs (what analyses without gradients see).

        Every other field, ``handle`` included, is carried over unchanged.
        """
        return replace(self, inputs=self.inputs.detach(), outputs=self.outputs.detach(),
                       activations={k: v.detach() for k, v in self.activations.items()})


@dataclass
class RunContext:
    """What an analysis knows about the run it is part of; passed to every step.

    Attributes:
        model: The model, in eval mode, on ``device``. Use it in
            :meth:`Analysis.accumulator`, :meth:`Accumulator.after_passes` and
            :meth:`Accumulator.finalize`; never keep it in accumulator state.
        handle: Extra forward passes (see :class:`ModelHandle`).
        layers: ``{layer name: module path}`` of the run, input to output.
        device: The run's device; declared state lives here.
        preprocessing: The model's normalisation and input geometry.
        dataset: The data set (``None`` for weight-only runs).
        arch: The architecture spec, when the model came from the registry.
        seed: The run's seed.
        input_shape: ``(C, H, W)`` of one model input (from the dry forward).
        layer_shapes: ``{layer: shape of one image's activation}``, e.g.
            ``(K, h, w)``, from a one-image dry forward before the data loop, so
            state can be allocated in ``accumulator`` (every rank the same).
        output_shape: Shape of one image's model output.
        rank, world_size: Position in a sharded run.
    """

    model: nn.Module
    handle: ModelHandle
    layers: Mapping[str, str]
    device: torch.device
    preprocessing: Preprocessing
    dataset: ProbeDataset | None = None
    arch: ArchitectureSpec | None = None
    seed: int = 0
    input_shape: tuple[int, ...] = ()
    layer_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    output_shape: tuple[int, ...] = ()
    rank: int = 0
    world_size: int = 1

    def module(self, layer: str) -> nn.Module:
        """The module behind a layer name."""
        return self.model.get_submodule(self.layers[layer])


class Accumulator(State):
    """Streaming state of one analysis in one run (or one shard of it).

    Declare every piece of state with :meth:`add_state` (tensors on
    ``context.device``, with a reduction); the runner reduces it across shards
    after each pass with tensor collectives, and :meth:`merge` (two shards in
    one process) follows the same declarations, so a sum-only accumulator writes
    no merge code. Keep no model, module or data set in the state: every step
    that needs them receives the :class:`RunContext`.

    Steps, in the order the runner calls them:

    1. ``update(batch)`` once per batch per pass (on every rank);
    2. the declared state is reduced across ranks, then ``end_pass(p, context)``;
    3. ``after_passes(context)`` once, after the last pass, on the rank that
       writes the tables: work that needs the model after the data loop;
    4. ``finalize(context)`` and ``artifacts(context)`` on that rank.
    """

    @abc.abstractmethod
    def update(self, batch: Batch) -> None:
        """Fold one batch into the state; called once per batch per pass."""

    def end_pass(self, pass_index: int, context: RunContext) -> None:
        """After pass ``pass_index``, its state reduced over shards (e.g. fix thresholds)."""

    def after_passes(self, context: RunContext) -> None:
        """Model work after the data loop (ablations, probes on a kept sample)."""

    @abc.abstractmethod
    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        """Turn the (reduced) state into ``{table name: DataFrame}``."""

    def artifacts(self, context: RunContext) -> dict[str, bytes]:
        """Small files to store beside the tables, ``{relative path: bytes}``."""
        return {}


class Analysis(AnalysisViews, abc.ABC):
    """Base class of every analysis plugin.

    Subclasses set the class attributes and implement :meth:`accumulator`. What
    the analysis shows (dashboard pages, report sections) comes from the view
    hooks it inherits from :class:`probe.views.AnalysisViews` and may override.

    Attributes:
        name: Unique registry name.
        description: One line for listings.
        options: Declared options (validated in ``__init__``).
        passes: Passes over the data (0 = works on the weights alone).
        requires: Data the analysis needs: ``labels``, ``masks``, ``target``.
        gradients: Whether ``update`` takes gradients through ``batch.inputs``,
            ``batch.outputs`` or ``batch.activations`` (the runner then keeps
            their graph for this analysis alone).
        tables: ``{table name: required columns}`` — what ``finalize`` returns.
        merge_tolerance: How far the float cells of a run whose images were split
            over processes may differ from one process's, as a fraction of their
            column's largest magnitude (the conformance kit's
            ``shards_equal_one_pass``, on top of its elementwise ``rtol``). 0 by
            default: only last-bit differences of sums. An analysis that fits a
            model to float32 activations (a regression, a solve) amplifies the
            forward's last-bit differences over other batch compositions by the
            fit's conditioning, near-zero coefficients included, and declares
            how much.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[tuple[Option, ...]] = ()
    passes: ClassVar[int] = 1
    requires: ClassVar[frozenset[str]] = frozenset()
    gradients: ClassVar[bool] = False
    tables: ClassVar[Mapping[str, Sequence[str]]] = {}
    merge_tolerance: ClassVar[float] = 0.0

    def __init__(self, **settings: Any) -> None:
        self.settings: dict[str, Any] = resolve_options(
            self.options, settings, f"analysis {self.name}")

    def num_passes(self) -> int:
        """Passes this configured instance needs (defaults to the class's ``passes``)."""
        return self.passes

    def select_layers(self, context: RunContext) -> list[str]:
        """The layers to capture for this analysis; by default every selected layer."""
        return list(context.layers)

    def chosen_layers(self, context: RunContext, chosen: Sequence[str],
                      default: Sequence[str] | None = None) -> list[str]:
        """An analysis's own ``layers`` option checked against the run: ``chosen`` when it
        names layers (all of them in the run), else ``default`` (every layer of the run).

        Raises:
            OptionError: ``NAME.layers: layer 'x' is not in the run; layers: ...``.
        """
        unknown = [str(n) for n in chosen if n not in context.layers]
        if unknown:
            raise OptionError(f"{self.name}.layers: layer {unknown[0]!r} is not in the run; "
                              f"layers: {', '.join(context.layers)}")
        if chosen:
            return [str(n) for n in chosen]
        return list(context.layers) if default is None else list(default)

    @abc.abstractmethod
    def accumulator(self, context: RunContext) -> Accumulator:
        """A fresh accumulator for one run (or shard)."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """A JSON-ready description for listings."""
        return {
            "name": cls.name,
            "description": cls.description,
            "passes": cls.passes,
            "requires": sorted(cls.requires),
            "gradients": cls.gradients,
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
    tolerance = item.merge_tolerance
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) \
            or not 0 <= tolerance < 1:
        raise PluginError(f"analysis {item.name}: merge_tolerance must be a number in "
                          f"[0, 1), got {tolerance!r}")


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
