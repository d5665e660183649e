"""The Python API for notebooks: same validation as the command line.

>>> model = probe.load_model("lenet5", checkpoint="lenet5.safetensors")
>>> data = probe.load_dataset("digits", split="test")
>>> run = probe.analyze(model, data, ["unit-stats"], out="runs/lenet5")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from probe.analysis import Analysis
from probe.architecture import DATA_DERIVED_OPTIONS, ArchitectureSpec, resolve_layers
from probe.checkpoint import file_sha256, load_weights, read_metadata
from probe.dataset import ProbeDataset
from probe.device import resolve_device
from probe.errors import CheckpointError, ProbeError
from probe.host import get_host
from probe.runner import RunConfig, execute
from probe.store import Run

AnalysisRequest = str | Analysis | tuple[str, Mapping[str, Any]]


def get_architecture(name: str) -> ArchitectureSpec:
    """The architecture called ``name``; ``torchvision:NAME`` and ``pkg.mod:fn`` are adapted."""
    host = get_host()
    if ":" in name and name not in host.architectures:
        from probe.adapters import adapt_external

        return adapt_external(name)
    return host.architectures.get(name)


def data_derived_options(spec: ArchitectureSpec, dataset: ProbeDataset | None) -> dict[str, Any]:
    """Options an architecture takes from the data set (classes, channels, input size)."""
    if dataset is None:
        return {}
    declared = {opt.name for opt in spec.options}
    values = {"num_classes": dataset.num_classes, "in_channels": dataset.channels,
              "input_size": dataset.image_size}
    return {k: v for k, v in values.items()
            if k in declared and k in DATA_DERIVED_OPTIONS and v}


def model_options(spec: ArchitectureSpec, checkpoint: str | Path | None,
                  options: Mapping[str, Any] | None,
                  dataset: ProbeDataset | None = None) -> dict[str, Any]:
    """Resolve an architecture's options: data set < checkpoint metadata < explicit."""
    merged: dict[str, Any] = data_derived_options(spec, dataset)
    if checkpoint is not None:
        meta = read_metadata(checkpoint)
        if meta.get("arch") and meta["arch"] != spec.name:
            raise CheckpointError(f"checkpoint {checkpoint} was saved for architecture "
                                  f"{meta['arch']!r}, not {spec.name!r}")
        merged.update(meta.get("options", {}))
    merged.update(options or {})
    return spec.resolve(merged)


def load_model(arch: str, checkpoint: str | Path | None = None, *,
               dataset: ProbeDataset | None = None, **options: Any) -> nn.Module:
    """Build architecture ``arch`` (in eval mode), loading ``checkpoint`` if given.

    Options recorded in a probe checkpoint are used unless overridden here.
    """
    spec = get_architecture(arch)
    resolved = model_options(spec, checkpoint, options, dataset)
    try:
        model = spec.build(**resolved)
    except (ValueError, TypeError) as exc:
        raise ProbeError(f"arch {spec.name}: {exc}") from None
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model.eval()


def load_dataset(name: str, **options: Any) -> ProbeDataset:
    """Load data source ``name`` with validated options."""
    spec = get_host().datasets.get(name)
    try:
        return spec.instantiate(options)
    except (ValueError, TypeError) as exc:
        raise ProbeError(f"dataset {name}: {exc}") from None


def make_analyses(requests: Sequence[AnalysisRequest],
                  options: Mapping[str, Mapping[str, Any]] | None = None) -> list[Analysis]:
    """Instantiate analyses from names, ``(name, options)`` pairs or instances."""
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


@dataclass
class RunPlan:
    """A run resolved and validated, before anything runs.

    Attributes:
        model: The model (eval mode; on the meta device when planned without weights).
        spec: Its architecture, or ``None`` for a user's ``nn.Module``.
        data: The data set, or ``None`` for weight-only analyses.
        analyses: The analysis instances.
        layer_map: ``{layer name: module path}`` to analyse.
        config: What defines the run (its identity is what a resume must match).
    """

    model: nn.Module
    spec: ArchitectureSpec | None
    data: ProbeDataset | None
    analyses: list[Analysis]
    layer_map: dict[str, str]
    config: RunConfig


def plan_run(model_or_arch: nn.Module | str, dataset: ProbeDataset | str | None,
             analyses: Sequence[AnalysisRequest], *, checkpoint: str | Path | None = None,
             arch_options: Mapping[str, Any] | None = None,
             dataset_options: Mapping[str, Any] | None = None,
             analysis_options: Mapping[str, Mapping[str, Any]] | None = None,
             layers: Sequence[str] | None = None, batch_size: int = 64, seed: int = 0,
             weights: bool = True) -> RunPlan:
    """Resolve a run: data set, analyses, model, layers and the :class:`RunConfig`.

    With ``weights=False`` a named architecture is built on the meta device and no
    checkpoint is read beyond its hash and recorded options: enough to compare
    the run's identity with a run directory (see :func:`probe.sweep.is_finished`).
    """
    data = load_dataset(dataset, **(dataset_options or {})) if isinstance(dataset, str) else dataset
    instances = make_analyses(analyses, analysis_options)
    spec: ArchitectureSpec | None = None
    if isinstance(model_or_arch, str):
        spec = get_architecture(model_or_arch)
        resolved = model_options(spec, checkpoint, arch_options, data)
        model = load_model(model_or_arch, checkpoint, **resolved) if weights else \
            _build_without_weights(spec, resolved)
        arch_record: dict[str, Any] = {"name": spec.name, "options": resolved,
                                       "task": spec.task, "family": spec.family}
        if checkpoint is not None:
            arch_record["checkpoint"] = str(checkpoint)
            arch_record["checkpoint_sha256"] = file_sha256(checkpoint)
        layer_map = resolve_layers(spec, model, list(layers or []))
    elif isinstance(model_or_arch, nn.Module):
        from probe.architecture import discover_conv_layers

        model = model_or_arch.eval()
        arch_record = {"name": None, "class": type(model).__qualname__}
        available = discover_conv_layers(model)
        modules = dict(model.named_modules())
        layer_map = {n: n for n in layers} if layers else available
        bad = [n for n in layer_map if n not in modules]
        if bad:
            raise ProbeError(f"model has no module {bad[0]!r}; its convolutions are: "
                             f"{', '.join(available)}")
    else:
        raise TypeError(f"model_or_arch must be an nn.Module or an architecture name, "
                        f"got {type(model_or_arch).__name__}")
    dataset_record = None
    if data is not None:
        _check_fit(arch_record, data)
        dataset_record = {"name": data.name, "options": dict(data.options), "size": len(data)}
    config = RunConfig(arch=arch_record, dataset=dataset_record,
                       analyses={a.name: a.settings for a in instances},
                       layers=list(layer_map), seed=seed, batch_size=batch_size)
    return RunPlan(model.eval(), spec, data, instances, layer_map, config)


def _build_without_weights(spec: ArchitectureSpec, options: Mapping[str, Any]) -> nn.Module:
    """The architecture on the meta device (no memory, no initialisation), else on the CPU."""
    import torch

    try:
        with torch.device("meta"):
            return spec.build(**options)
    except (ValueError, TypeError) as exc:
        raise ProbeError(f"arch {spec.name}: {exc}") from None
    except Exception:  # a builder that cannot run on meta (e.g. it computes on tensors)
        return load_model(spec.name, None, **options)


def analyze(model_or_arch: nn.Module | str, dataset: ProbeDataset | str | None,
            analyses: Sequence[AnalysisRequest], out: str | Path, *,
            checkpoint: str | Path | None = None,
            arch_options: Mapping[str, Any] | None = None,
            dataset_options: Mapping[str, Any] | None = None,
            analysis_options: Mapping[str, Mapping[str, Any]] | None = None,
            layers: Sequence[str] | None = None, device: str | None = None,
            batch_size: int = 64, workers: int = 0, seed: int = 0,
            progress: bool = False, overwrite: bool = False) -> Run:
    """Run analyses and return the run (the same object :func:`probe.load_run` gives).

    Args:
        model_or_arch: An ``nn.Module`` or a registered architecture name.
        dataset: A loaded data set, a registered name, or ``None`` for
            weight-only analyses.
        analyses: Names, ``(name, options)`` pairs or :class:`Analysis` instances.
        out: Run directory to write (resumed if it holds the same run).
        checkpoint: Weights for a named architecture.
        layers: Layer names to analyse (default: all analysable layers).
    """
    if batch_size < 1:
        raise ProbeError(f"batch size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ProbeError(f"workers must be >= 0, got {workers}")
    torch_device = resolve_device(device)
    plan = plan_run(model_or_arch, dataset, analyses, checkpoint=checkpoint,
                    arch_options=arch_options, dataset_options=dataset_options,
                    analysis_options=analysis_options, layers=layers, batch_size=batch_size,
                    seed=seed)
    return execute(plan.model.to(torch_device), plan.analyses, plan.data, out, plan.config,
                   arch=plan.spec, layer_map=plan.layer_map, device=torch_device,
                   workers=workers, progress=progress, overwrite=overwrite)


def _check_fit(arch_record: Mapping[str, Any], data: ProbeDataset) -> None:
    """Explain a model/data mismatch in one line instead of a shape error mid-run."""
    options = arch_record.get("options") or {}
    channels = options.get("in_channels")
    if channels is not None and channels != data.channels:
        raise ProbeError(f"arch {arch_record['name']} takes {channels}-channel input, dataset "
                         f"{data.name} gives {data.channels}-channel images")
