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
from probe.checkpoint import file_sha256
from probe.dataset import ProbeDataset
from probe.errors import ProbeError
from probe.models import (
    ORIGIN_ATTRIBUTE,
    ModelOrigin,
    checkpoint_metadata,
    get_architecture,
    load_dataset,
    load_model,
    model_preprocessing,
)
from probe.preprocessing import Preprocessing, attached_preprocessing
from probe.store import as_json

AnalysisRequest = str | Analysis | tuple[str, Mapping[str, Any]]

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
    return as_json({"arch": dict(arch), "dataset": None if dataset is None else dict(dataset),
                    "layers": list(layers), "seed": seed})


def _arch_identity(name: str, spec: ArchitectureSpec, given: Mapping[str, Any] | None,
                   recorded: Mapping[str, Any], sha256: str | None) -> dict[str, Any]:
    """Name, the given options that differ from what the checkpoint records (or the
    default), and the checkpoint hash: an option given at its default changes nothing."""
    try:
        base = spec.resolve(recorded)
        asked = spec.resolve({**recorded, **(given or {})})
    except (ValueError, TypeError) as exc:
        raise ProbeError(f"arch {spec.name}: {exc}") from None
    options = {k: asked[k] for k in (given or {})
               if k in DATA_DERIVED_OPTIONS or asked[k] != base[k]}
    out: dict[str, Any] = {"name": name, "options": options}
    if sha256 is not None:
        out["checkpoint_sha256"] = sha256
    return out


def _layers_identity(layers: Sequence[str], every: Sequence[str] | None) -> list[str]:
    """The requested layers, or ``[]`` when they are ``every`` layer of the architecture."""
    return [] if not layers or (every is not None and list(layers) == list(every)) \
        else list(layers)


def _default_layers(spec: ArchitectureSpec, options: Mapping[str, Any]) -> list[str] | None:
    """The layer names of ``spec`` built with ``options`` on the meta device (no weights);
    ``None`` for a builder that cannot run there."""
    try:
        with torch.device("meta"):
            return list(spec.layer_map(spec.build(**spec.resolve(options))))
    except Exception:  # a builder that computes on tensors: compare names as given
        return None


def _dataset_identity(name: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    from probe.host import get_host

    spec = get_host().datasets.get(name)
    try:
        return {"name": name, "options": absolute_paths(spec.resolve(given))}
    except (ValueError, TypeError) as exc:
        raise ProbeError(f"dataset {name}: {exc}") from None


def identity_of_request(arch: str, dataset: str | None, *, checkpoint: str | Path | None,
                        arch_options: Mapping[str, Any] | None,
                        dataset_options: Mapping[str, Any] | None,
                        layers: Sequence[str] | None, seed: int) -> dict[str, Any]:
    """:func:`request_identity` of a named run (what ``probe run`` flags describe): reads
    the checkpoint's header and hash, builds nothing but a meta-device model when layers
    are named, loads no data."""
    spec = get_architecture(arch)
    recorded = checkpoint_metadata(spec, checkpoint).get("options", {})
    sha256 = file_sha256(checkpoint) if checkpoint is not None else None
    every = _default_layers(spec, {**recorded, **(arch_options or {})}) if layers else None
    return request_identity(_arch_identity(arch, spec, arch_options, recorded, sha256),
                            None if dataset is None else _dataset_identity(dataset,
                                                                           dataset_options),
                            _layers_identity(layers or [], every), seed)


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
        model = load_model(model_or_arch, checkpoint, dataset=data, seed=seed,
                           **(arch_options or {}))
        built: ModelOrigin = getattr(model, ORIGIN_ATTRIBUTE)
        spec = get_architecture(built.arch)
        # the identity from what load_model already read (checkpoint header and hash)
        arch_identity = _arch_identity(model_or_arch, spec, arch_options,
                                       built.recorded_options, built.checkpoint_sha256)
        layers_identity = _layers_identity(layers or [], list(spec.layer_map(model)))
    elif isinstance(model_or_arch, nn.Module):
        model = model_or_arch.eval()
        origin = getattr(model, ORIGIN_ATTRIBUTE, None)
        spec = get_architecture(origin.arch) if isinstance(origin, ModelOrigin) else None
        arch_identity = {"name": origin.arch, "options": dict(origin.options),
                         "checkpoint_sha256": origin.checkpoint_sha256} if spec else \
            {"name": None, "class": type(model).__qualname__}
        layers_identity = list(layers or [])
    else:
        raise TypeError(f"model_or_arch must be an nn.Module or an architecture name, "
                        f"got {type(model_or_arch).__name__}")
    origin = getattr(model, ORIGIN_ATTRIBUTE, None)
    arch_record = origin.record(spec) if spec is not None and isinstance(origin, ModelOrigin) \
        else {"name": None, "class": type(model).__qualname__}
    layer_map = model_layers(model, layers)
    chosen = preprocessing or attached_preprocessing(model) or \
        model_preprocessing(None, {}, {})
    dataset_record = None
    dataset_identity = None
    if data is not None:
        dataset_identity = {"name": data.name, "options": absolute_paths(data.options)}
        dataset_record = {**dataset_identity, "size": len(data),
                          "fingerprint": data_fingerprint(data)}
    check_requirements(instances, data)
    identity = request_identity(arch_identity, dataset_identity, layers_identity, seed)
    return RunPlan(model=model, spec=spec, data=data, analyses=instances, layer_map=layer_map,
                   preprocessing=chosen, identity=identity, arch_record=arch_record,
                   dataset_record=dataset_record, seed=seed, batch_size=batch_size,
                   analysis_options={a.name: a.settings for a in instances})


def absolute_paths(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options with every relative path that exists made absolute (a report made from
    another folder can reload the data set)."""
    out = dict(options)
    for key, value in options.items():
        if isinstance(value, str) and value and key in ("path", "root", "index") and \
                Path(value).exists():
            out[key] = str(Path(value).resolve())
    return out


def data_fingerprint(data: ProbeDataset, samples: int = 8) -> str:
    """SHA-256 over the size and ``samples`` evenly spaced images (and their labels and
    masks): what the data set delivered, recorded beside its options."""
    import hashlib

    import torch

    digest = hashlib.sha256(str(len(data)).encode())
    for index in sorted({round(i * (len(data) - 1) / max(samples - 1, 1))
                         for i in range(samples)} if len(data) else set()):
        sample = data[index]
        for key in ("image", "label", "masks", "scalars", "target"):
            value = sample.get(key)
            if isinstance(value, torch.Tensor):
                digest.update(value.contiguous().cpu().numpy().tobytes())
            elif value is not None:
                digest.update(str(value).encode())
    return digest.hexdigest()


def model_layers(model: nn.Module, layers: Sequence[str] | None = None) -> dict[str, str]:
    """``{layer name: module path}`` a run of ``model`` analyses, input to output.

    A model from :func:`probe.load_model` gets its architecture's layer names
    (the same as ``probe run --arch``); any other ``nn.Module`` its
    convolutions, named by module path. ``layers`` picks some of them (for an
    architecture, a name may also be any module path).

    Raises:
        ProbeError: A requested layer does not exist (the message lists them).
    """
    origin = getattr(model, ORIGIN_ATTRIBUTE, None)
    if isinstance(origin, ModelOrigin):
        return resolve_layers(get_architecture(origin.arch), model, list(layers or []))
    return _module_layers(model, layers)


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


def check_requirements(analyses: Sequence[Analysis], dataset: ProbeDataset | None) -> None:
    """Check that the data set gives what each analysis requires (before anything runs)."""
    for analysis in analyses:
        if analysis.num_passes() > 0 and dataset is not None and len(dataset) == 0:
            raise ProbeError(f"dataset {dataset.name} is empty (0 images with these options: "
                             f"{dict(dataset.options)}); analysis {analysis.name} needs images")
        if analysis.num_passes() > 0 and dataset is None:
            raise ProbeError(f"analysis {analysis.name} needs a data set (--dataset)")
        if dataset is None:
            continue
        if "masks" in analysis.requires and not dataset.has_masks:
            raise ProbeError(f"analysis {analysis.name} needs concept masks, but dataset "
                             f"{dataset.name} has none (try --dataset parts or broden)")
        if "labels" in analysis.requires and dataset.num_classes <= 0:
            raise ProbeError(f"analysis {analysis.name} needs class labels, but dataset "
                             f"{dataset.name} has none")
        if "target" in analysis.requires and len(dataset) and "target" not in dataset[0]:
            raise ProbeError(f"analysis {analysis.name} needs segmentation targets, but "
                             f"dataset {dataset.name} has none")
