"""Checkpoints: safetensors with the architecture and its options in the metadata.

Loading is always safe: safetensors files, or PyTorch files through
``torch.load(weights_only=True)``. A torchvision ``state_dict`` saved with
``torch.save`` loads unchanged into the matching probe architecture.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from probe.errors import CheckpointError


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, for the run manifest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(model: nn.Module, path: str | Path, arch: str,
                    options: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Save ``model``'s weights as safetensors with ``arch`` and ``options`` in the metadata."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"probe.arch": arch, "probe.options": json.dumps(options, default=list)}
    for key, value in (extra or {}).items():
        metadata[f"probe.{key}"] = json.dumps(value, default=str)
    tmp = target.with_name(f".{target.name}.tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(target)
    return target


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The probe metadata of a safetensors checkpoint (``{}`` for other files)."""
    source = Path(path)
    if source.suffix != ".safetensors":
        return _sidecar_metadata(source)
    from safetensors import safe_open

    try:
        with safe_open(str(source), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read checkpoint {source}: {exc}") from None
    out: dict[str, Any] = {}
    if "probe.arch" in raw:
        out["arch"] = raw["probe.arch"]
    if "probe.options" in raw:
        out["options"] = json.loads(raw["probe.options"])
    if "probe.preprocessing" in raw:
        out["preprocessing"] = json.loads(raw["probe.preprocessing"])
    return out


def _sidecar_metadata(source: Path) -> dict[str, Any]:
    """A plain ``state_dict`` file's ``<file>.json`` sidecar: its ``preprocessing`` entry."""
    sidecar = source.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint sidecar {sidecar}: {exc}") from None
    if isinstance(record, dict) and isinstance(record.get("preprocessing"), dict):
        return {"preprocessing": record["preprocessing"]}
    return {}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict safely from safetensors or a ``weights_only`` PyTorch file."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint file not found: {source}")
    try:
        if source.suffix == ".safetensors":
            return load_file(str(source))
        state = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"cannot load checkpoint {source} safely: it holds Python objects "
                              f"other than tensors, which weights_only loading refuses") from None
    except (SafetensorError, RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(f"cannot load checkpoint {source} safely: "
                              f"{str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {source} does not hold a state_dict of tensors")
    return state


def adapt_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Let modules accept other layouts of their weights before a strict load.

    A module may define ``adapt_state_dict(state, prefix)``, which rewrites, in
    place, the entries under ``prefix`` of a state dict written by a related
    module (e.g. a deformable block accepting a plain convolution's ``weight``,
    with zero offsets). Returns a copy; the argument is not changed.
    """
    state = dict(state)
    for name, module in model.named_modules():
        adapt = getattr(module, "adapt_state_dict", None)
        if callable(adapt):
            adapt(state, f"{name}." if name else "")
    return state


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a checkpoint into ``model`` strictly; mismatches give one clear error.

    Modules may first adapt related layouts (:func:`adapt_state_dict`), so e.g. a
    VGG checkpoint initialises the deformable VGG of the same configuration.
    """
    state = adapt_state_dict(model, load_state_dict(path))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        detail = f"missing keys {missing[:3]}" if missing else f"unexpected keys {unexpected[:3]}"
        raise CheckpointError(f"checkpoint {path} does not fit the model: {detail}")
    for key, tensor in own.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"checkpoint {path} does not fit the model: {key} has shape "
                                  f"{tuple(state[key].shape)}, the model expects "
                                  f"{tuple(tensor.shape)} (check the architecture options)")
    model.load_state_dict(state, strict=True)
