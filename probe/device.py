"""Device choice: CUDA when available, else CPU; ``--device`` forces one."""

from __future__ import annotations

import torch

from probe.errors import ProbeError


def resolve_device(requested: str | None = None) -> torch.device:
    """``"cuda"`` when available unless ``requested`` names a device; checked to exist."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ProbeError(f"--device must be cpu, cuda or cuda:N, got {requested!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ProbeError(f"device {requested!r} requested but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ProbeError(f"device {requested!r} does not exist; "
                             f"{torch.cuda.device_count()} CUDA device(s) present")
    return device
