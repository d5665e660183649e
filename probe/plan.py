"""One run, resolved and validated once: request → :class:`RunPlan` → execute.

:func:`plan_run` is the only place where a run's pieces are resolved: the data
set is loaded, options are validated (each once), the model is built with a
local seed or loaded, its layers and preprocessing are found, and the run's
*identity* is fixed. The runner (:mod:`probe.runner`) only executes a plan;
the sweep's skip check compares :func:`request_identity` with a manifest
without planning anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probe.analysis import Analysis
from probe.architecture import DATA_DERIVED_OPTIONS, ArchitectureSpec, resolve_layers
from probe.checkpoint import file_sha256, load_weights, read_metadata
from probe.dataset import ProbeDataset
from probe.errors import CheckpointError, ProbeError
from probe.preprocessing import (
    IDENTITY,
    Preprocessing,
    attach_preprocessing,
    attached_preprocessing,
)

AnalysisRequest = str | Analysis | tuple[str, Mapping[str, Any]]

#: Where ``load_model`` records which architecture (and options) built a module.
ORIGIN_ATTRIBUTE = "probe_origin"


@dataclass(frozen=True)
class ModelOrigin:
    """What built a model: its architecture, resolved options and checkpoint."""

    arch: str
    options: Mapping[str, Any]
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None

    def record(self, spec: ArchitectureSpec) -> dict[str, Any]:
        """The manifest's ``arch`` entry."""
        out: dict[str, Any] = {"name": spec.name, "options": dict(self.options),
                               "task": spec.task, "family": spec.family}
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
            out["checkpoint_sha256"] = self.checkpoint_sha256
        return out


@dataclass
class RunPlan:
    """A run resolved and validated, before anything runs.

    Attributes:
        model: The model (eval mode).
        spec: Its architecture, or ``None`` for a user's ``nn.Module``.
        data: The data set, or ``None`` for weight-only analyses.
        analyses: The analysis instances, options resolved.
        layer_map: ``{layer name: module path}`` to analyse, input to output.
        preprocessing: The model's preprocessing (applied whatever the data set).
        identity: What a resumed run must match (:func:`request_identity`).
        arch_record, dataset_record: What the manifest says about them.
        seed, batch_size: The run's seed and batch size.
    """

    model: nn.Module
    spec: ArchitectureSpec | None
    data: ProbeDataset | None
    analyses: list[Analysis]
    layer_map: dict[str, str]
    preprocessing: Preprocessing
    identity: dict[str, Any]
    arch_record: dict[str, Any]
    dataset_record: dict[str, Any] | None
    seed: int = 0
    batch_size: int = 64
    analysis_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def get_architecture(name: str) -> ArchitectureSpec:
    """The architecture called ``name``; ``torchvision:NAME`` and ``pkg.mod:fn`` are adapted."""
    from probe.host import get_host

    host = get_host()
    if ":" in name and name not in host.architectures:
        from probe.adapters import adapt_external

        return adapt_external(name)
    return host.architectures.get(name)


def load_dataset(name: str, **options: Any) -> ProbeDataset:
    """Load data source ``name`` with validated options."""
    from probe.host import get_host

    spec = get_host().datasets.get(name)
    try:
        return spec.instantiate(options)
    except (ValueError, TypeError) as exc:
        raise ProbeError(f"dataset {name}: {exc}") from None


def data_derived_options(spec: ArchitectureSpec, dataset: ProbeDataset | None) -> dict[str, Any]:
    """Options an architecture takes from the data set (classes, channels, input size)."""
    if dataset is None:
        return {}
    declared = {opt.name for opt in spec.options}
    values = {"num_classes": dataset.num_classes, "in_channels": dataset.channels,
              "input_size": dataset.image_size}
    return {k: v for k, v in values.items()
            if k in declared and k in DATA_DERIVED_OPTIONS and v}


def checkpoint_metadata(spec: ArchitectureSpec, checkpoint: str | Path | None) -> dict[str, Any]:
    """A checkpoint's probe metadata, checked against the architecture (``{}`` if none)."""
    if checkpoint is None:
        return {}
    if not Path(checkpoint).is_file():
        raise ProbeError(f"checkpoint file not found: {checkpoint}")
    meta = read_metadata(checkpoint)
    if meta.get("arch") and meta["arch"] != spec.name:
        raise CheckpointError(f"checkpoint {checkpoint} was saved for architecture "
                              f"{meta['arch']!r}, not {spec.name!r}")
    return meta


def model_preprocessing(spec: ArchitectureSpec | None, meta: Mapping[str, Any],
                        options: Mapping[str, Any]) -> Preprocessing:
    """The model's preprocessing: checkpoint, else the architecture's default, else none."""
    if meta.get("preprocessing"):
        return Preprocessing.from_record(meta["preprocessing"], source="checkpoint")
    size = options.get("input_size", spec.input_size if spec else None)
    channels = options.get("in_channels", spec.in_channels if spec else None)
    default = spec.preprocessing if spec is not None else None
    if default is not None:
        return Preprocessing(default.mean, default.std, size, channels, default.source)
    return Preprocessing(IDENTITY.mean, IDENTITY.std, size, channels, "none")


def build_model(spec: ArchitectureSpec, options: Mapping[str, Any], seed: int = 0) -> nn.Module:
    """Build ``spec`` with ``options``, its initial weights drawn from ``seed`` alone.

    The build runs under a forked RNG seeded with ``seed``: the same seed gives
    the same weights in every process, and the caller's global RNG state is
    left exactly as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return spec.build(**options)
        except (ValueError, TypeError) as exc:
            raise ProbeError(f"arch {spec.name}: {exc}") from None


def load_model(arch: str, checkpoint: str | Path | None = None, *,
               dataset: ProbeDataset | None = None, seed: int = 0,
               **options: Any) -> nn.Module:
    """Build architecture ``arch`` (in eval mode), loading ``checkpoint`` if given.

    Options recorded in a probe checkpoint are used unless overridden here. The
    model remembers its architecture, options and preprocessing, so every entry
    point (``probe.analyze(load_model(...))`` or ``probe run``) analyses the
    same layers with the same normalisation.

    Args:
        arch: A registered architecture, ``torchvision:NAME`` or ``pkg.mod:fn``.
        checkpoint: safetensors or a ``state_dict`` file (``weights_only``).
        dataset: Fill in data-derived options (classes, channels, input size).
        seed: Seed of the initial weights (used when there is no checkpoint).
    """
    spec = get_architecture(arch)
    meta = checkpoint_metadata(spec, checkpoint)
    merged = {**data_derived_options(spec, dataset), **meta.get("options", {}), **options}
    resolved = spec.resolve(merged)
    model = build_model(spec, resolved, seed)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    origin = ModelOrigin(spec.name, resolved, None if checkpoint is None else str(checkpoint),
                         None if checkpoint is None else file_sha256(checkpoint))
    object.__setattr__(model, ORIGIN_ATTRIBUTE, origin)
    attach_preprocessing(model, model_preprocessing(spec, meta, resolved))
    return model.eval()


def make_analyses(requests: Sequence[AnalysisRequest],
                  options: Mapping[str, Mapping[str, Any]] | None = None) -> list[Analysis]:
    """Instantiate analyses from names, ``(name, options)`` pairs or instances."""
    from probe.host import get_host

    host = get_host()
    options = options or {}
    out: list[Analysis] = []
    for request in requests:
        if isinstance(request, Analysis):
            out.append(request)
            continue
        name, given = (request, {}) if isinstance(request, str) else request
        cls = host.analyses.get(name)
        try:
            out.append(cls(**{**options.get(name, {}), **given}))
        except ProbeError:
            raise
        except (ValueError, TypeError) as exc:
            raise ProbeError(f"analysis {name}: {exc}") from None
    names = [a.name for a in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ProbeError(f"analysis {duplicates[0]!r} is requested twice")
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ProbeError(f"options given for analysis {unknown[0]!r}, which is not in the run "
                         f"(analyses: {', '.join(names)})")
    if not out:
        raise ProbeError("no analysis requested; see `probe analyses`")
    return out


def request_identity(arch: Mapping[str, Any], dataset: Mapping[str, Any] | None,
                     layers: Sequence[str], seed: int) -> dict[str, Any]:
    """The identity a run directory must match to be resumed or skipped.

    Built from what was *asked for* (architecture name, given options,
    checkpoint hash; data set name and resolved options; requested layers;
    seed), so it can be computed without loading data or weights.
    """
    from probe.runner import as_json

    return as_json({"arch": dict(arch), "dataset": None if dataset is None else dict(dataset),
                    "layers": list(layers), "seed": seed})


def _arch_identity(name: str, given: Mapping[str, Any] | None,
                   checkpoint: str | Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "options": dict(given or {})}
    if checkpoint is not None:
        out["checkpoint_sha256"] = file_sha256(checkpoint) if Path(checkpoint).is_file() \
            else None
    return out


def _dataset_identity(name: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    from probe.host import get_host

    spec = get_host().datasets.get(name)
    try:
        return {"name": name, "options": spec.resolve(given)}
    except (ValueError, TypeError) as exc:
        raise ProbeError(f"dataset {name}: {exc}") from None


def identity_of_request(arch: str, dataset: str | None, *, checkpoint: str | Path | None,
                        arch_options: Mapping[str, Any] | None,
                        dataset_options: Mapping[str, Any] | None,
                        layers: Sequence[str] | None, seed: int) -> dict[str, Any]:
    """:func:`request_identity` of a named run (what ``probe run`` flags describe)."""
    return request_identity(_arch_identity(arch, arch_options, checkpoint),
                            None if dataset is None else _dataset_identity(dataset,
                                                                           dataset_options),
                            list(layers or []), seed)


def plan_run(model_or_arch: nn.Module | str, dataset: ProbeDataset | str | None,
             analyses: Sequence[AnalysisRequest], *, checkpoint: str | Path | None = None,
             arch_options: Mapping[str, Any] | None = None,
             dataset_options: Mapping[str, Any] | None = None,
             analysis_options: Mapping[str, Mapping[str, Any]] | None = None,
             layers: Sequence[str] | None = None, batch_size: int = 64, seed: int = 0,
             preprocessing: Preprocessing | None = None) -> RunPlan:
    """Resolve a run once: data set, analyses, model, layers, preprocessing and identity.

    Args:
        model_or_arch: An architecture name, or an ``nn.Module`` (one from
            :func:`load_model` keeps its architecture's layers and preprocessing).
        dataset: A name, a loaded data set, or ``None`` (weight-only analyses).
        analyses: Names, ``(name, options)`` pairs or instances.
        preprocessing: Override the model's own preprocessing.
    """
    if batch_size < 1:
        raise ProbeError(f"batch size must be >= 1, got {batch_size}")
    data = load_dataset(dataset, **(dataset_options or {})) if isinstance(dataset, str) \
        else dataset
    instances = make_analyses(analyses, analysis_options)
    if isinstance(model_or_arch, str):
        spec = get_architecture(model_or_arch)
        model = load_model(model_or_arch, checkpoint, dataset=data, seed=seed,
                           **(arch_options or {}))
        arch_identity = _arch_identity(model_or_arch, arch_options, checkpoint)
    elif isinstance(model_or_arch, nn.Module):
        model = model_or_arch.eval()
        origin = getattr(model, ORIGIN_ATTRIBUTE, None)
        spec = get_architecture(origin.arch) if isinstance(origin, ModelOrigin) else None
        arch_identity = {"name": origin.arch, "options": dict(origin.options),
                         "checkpoint_sha256": origin.checkpoint_sha256} if spec else \
            {"name": None, "class": type(model).__qualname__}
    else:
        raise TypeError(f"model_or_arch must be an nn.Module or an architecture name, "
                        f"got {type(model_or_arch).__name__}")
    origin = getattr(model, ORIGIN_ATTRIBUTE, None)
    if spec is not None and isinstance(origin, ModelOrigin):
        arch_record = origin.record(spec)
        layer_map = resolve_layers(spec, model, list(layers or []))
    else:
        arch_record = {"name": None, "class": type(model).__qualname__}
        layer_map = _module_layers(model, layers)
    chosen = preprocessing or attached_preprocessing(model) or \
        model_preprocessing(None, {}, {})
    dataset_record = None
    dataset_identity = None
    if data is not None:
        _check_fit(arch_record, chosen, data)
        dataset_record = {"name": data.name, "options": dict(data.options), "size": len(data)}
        dataset_identity = {"name": data.name, "options": dict(data.options)}
    identity = request_identity(arch_identity, dataset_identity, list(layers or []), seed)
    return RunPlan(model=model, spec=spec, data=data, analyses=instances, layer_map=layer_map,
                   preprocessing=chosen, identity=identity, arch_record=arch_record,
                   dataset_record=dataset_record, seed=seed, batch_size=batch_size,
                   analysis_options={a.name: a.settings for a in instances})


def _module_layers(model: nn.Module, layers: Sequence[str] | None) -> dict[str, str]:
    from probe.architecture import discover_conv_layers

    available = discover_conv_layers(model)
    modules = dict(model.named_modules())
    layer_map = {n: n for n in layers} if layers else available
    bad = [n for n in layer_map if n not in modules]
    if bad:
        raise ProbeError(f"model has no module {bad[0]!r}; its convolutions are: "
                         f"{', '.join(available)}")
    return layer_map


def _check_fit(arch_record: Mapping[str, Any], preprocessing: Preprocessing,
               data: ProbeDataset) -> None:
    """Explain an obvious model/data mismatch in one line (the dry forward checks the rest)."""
    options = arch_record.get("options") or {}
    channels = options.get("in_channels", preprocessing.channels)
    name = arch_record.get("name") or arch_record.get("class")
    if channels is not None and channels != data.channels:
        raise ProbeError(f"arch {name} takes {channels}-channel input, dataset "
                         f"{data.name} gives {data.channels}-channel images")
    if len(preprocessing.mean) not in (1, data.channels):
        raise ProbeError(f"the model's preprocessing has {len(preprocessing.mean)} channel "
                         f"statistics, dataset {data.name} gives {data.channels}-channel images")
