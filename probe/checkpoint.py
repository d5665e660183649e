"""Checkpoints: safetensors with the architecture and its options in the metadata.

Loading is always safe: safetensors files, or PyTorch files through
``torch.load(weights_only=True)``. A torchvision ``state_dict`` saved with
``torch.save`` loads unchanged into the matching probe architecture.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from probe.errors import CheckpointError, ProbeError


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, for the run manifest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: Magic bytes of the files ``torch.save`` writes: a zip archive (PyTorch >= 1.6) or a
#: pickle (the legacy format, protocol 2 or later).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")

_UMASK = os.umask(0)
os.umask(_UMASK)


def check_writable(path: str | Path, what: str = "checkpoint",
                   error: type[ProbeError] = CheckpointError) -> None:
    """Check, before any work, that a file can be written at ``path``; one clear error if not.

    The path must not be a directory, the nearest existing folder above it must
    be a folder (not a file) and writable (tested by creating and removing a
    temporary file there). Nothing is left behind.

    Raises:
        CheckpointError: (or ``error``) naming the path and the problem.
    """
    target = Path(path)
    if target.is_dir():
        raise error(f"cannot write {what} {target}: it is a directory; name a file")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        if folder.is_symlink():  # a dangling link cannot become a folder
            break
        folder = folder.parent
    if not folder.is_dir():
        raise error(f"cannot write {what} {target}: {folder} is not a folder")
    try:
        fd, probe_file = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".check",
                                          dir=folder)
    except OSError as exc:
        raise error(f"cannot write {what} {target}: folder {folder} is not writable "
                    f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe_file)


def write_atomically(path: str | Path, write: Callable[[Path], None],
                     what: str = "checkpoint") -> Path:
    """Write a file through ``write(temporary path)`` and an atomic rename onto ``path``.

    The temporary file lies in the same folder (so the rename is atomic) and is
    removed if anything fails; an existing file at ``path`` is replaced only by
    a complete one. The file's mode follows the umask.

    Raises:
        CheckpointError: the folder cannot be created or written, or ``path``
            is a directory.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise CheckpointError(f"cannot write {what} {target}: "
                              f"{exc.strerror or exc}") from None
    tmp = Path(name)
    try:
        os.close(fd)
        write(tmp)  # may replace the file, so its mode is set afterwards
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; follow the umask instead
        os.replace(tmp, target)
    except (OSError, SafetensorError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or _first_line(exc)
        raise CheckpointError(f"cannot write {what} {target}: {reason}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def save_checkpoint(model: nn.Module, path: str | Path, arch: str,
                    options: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Save ``model``'s weights as safetensors with ``arch`` and ``options`` in the metadata.

    The file is written atomically (:func:`write_atomically`).
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"probe.arch": arch, "probe.options": json.dumps(options, default=list)}
    for key, value in (extra or {}).items():
        metadata[f"probe.{key}"] = json.dumps(value, default=str)
    return write_atomically(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


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
    for key in ("options", "preprocessing"):
        if f"probe.{key}" not in raw:
            continue
        try:
            value = json.loads(raw[f"probe.{key}"])
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise CheckpointError(f"checkpoint {source}: metadata entry probe.{key} is not "
                                  f"a JSON object")
        out[key] = value
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


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (just the type for an empty message)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _refused_global(exc: pickle.UnpicklingError) -> bool:
    """Whether ``weights_only`` loading refused a Python object (rather than bad bytes)."""
    text = str(exc)
    return "Unsupported global" in text or "not an allowed global" in text


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict safely from safetensors or a ``weights_only`` PyTorch file.

    Raises:
        CheckpointError: one line naming the file: missing, empty, not a
            checkpoint, damaged, holding Python objects other than tensors, not
            a state dict, or holding NaN or inf values (the first such tensor).
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint file not found: {source}")
    try:
        with open(source, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {source}: "
                              f"{exc.strerror or exc}") from None
    if not head:
        raise CheckpointError(f"checkpoint {source} is empty (0 bytes)")
    if source.suffix == ".safetensors":
        try:
            state = load_file(str(source))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load checkpoint {source}: not a readable safetensors "
                                  f"file ({_first_line(exc)})") from None
    else:
        state = _load_torch_file(source, head)
    return check_finite(state, source)


def _load_torch_file(source: Path, head: bytes) -> dict[str, torch.Tensor]:
    """A ``torch.save`` file through ``weights_only`` loading, checked to be a state dict."""
    if not head.startswith(_TORCH_MAGIC):
        raise CheckpointError(f"cannot load checkpoint {source}: not a PyTorch file (neither a "
                              f"torch.save archive nor a pickle; expected a .safetensors file "
                              f"or a state_dict saved with torch.save)")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _refused_global(exc):
            raise CheckpointError(f"cannot load checkpoint {source} safely: it holds Python "
                                  f"objects other than tensors, which weights_only loading "
                                  f"refuses") from None
        raise CheckpointError(f"cannot load checkpoint {source}: the file is damaged or not a "
                              f"PyTorch checkpoint (unreadable pickle)") from None
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # torch.load reports damaged files as any kind of error
        raise CheckpointError(f"cannot load checkpoint {source}: the file is damaged or not a "
                              f"PyTorch checkpoint ({_first_line(exc)})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {source} does not hold a state_dict of tensors "
                              f"(it holds a {type(state).__name__})")
    other = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if other:
        raise CheckpointError(f"checkpoint {source} does not hold a state_dict of tensors "
                              f"(entry {other[0]!r} is not a tensor)")
    return state


def check_finite(state: dict[str, torch.Tensor], source: str | Path) -> dict[str, torch.Tensor]:
    """``state`` unchanged if every floating-point tensor is finite.

    Raises:
        CheckpointError: naming the first tensor holding NaN or inf and how many.
    """
    for key, tensor in state.items():
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise CheckpointError(f"checkpoint {source}: tensor {key} has {bad} non-finite "
                                  f"value{'s' if bad != 1 else ''} (NaN or inf)")
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
