"""Models by name: build with a local seed, load checkpoints, find their preprocessing.

``load_model`` leaves on the module it returns what built it
(:class:`ModelOrigin`: architecture, resolved options, checkpoint hash) and
its preprocessing, so every entry point that receives the module analyses the
same layers with the same normalisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probe.architecture import DATA_DERIVED_OPTIONS, ArchitectureSpec
from probe.checkpoint import file_sha256, load_weights, read_metadata
from probe.dataset import ProbeDataset
from probe.errors import CheckpointError, ProbeError
from probe.preprocessing import IDENTITY, Preprocessing, attach_preprocessing

#: Where ``load_model`` records which architecture (and options) built a module.
ORIGIN_ATTRIBUTE = "probe_origin"


@dataclass(frozen=True)
class ModelOrigin:
    """What built a model: its architecture, resolved options and checkpoint.

    ``recorded_options`` are the options the checkpoint itself recorded (what a
    run's identity compares given options against).
    """

    arch: str
    options: Mapping[str, Any]
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    recorded_options: Mapping[str, Any] = field(default_factory=dict)

    def record(self, spec: ArchitectureSpec) -> dict[str, Any]:
        """The manifest's ``arch`` entry."""
        out: dict[str, Any] = {"name": spec.name, "options": dict(self.options),
                               "task": spec.task, "family": spec.family}
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
            out["checkpoint_sha256"] = self.checkpoint_sha256
        return out


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
                         None if checkpoint is None else file_sha256(checkpoint),
                         dict(meta.get("options", {})))
    object.__setattr__(model, ORIGIN_ATTRIBUTE, origin)
    attach_preprocessing(model, model_preprocessing(spec, meta, resolved))
    return model.eval()


