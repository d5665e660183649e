"""What ``visualize`` maximises: a unit (``channel``, ``neuron``) or a concept direction.

``direction`` is Lucid's ``objectives.direction``: the dot product of the layer's
activation vector at each position with a direction ``v`` in channel space, averaged
over positions (Lucid also averages over channels, a constant factor ``1/K`` left out
here). ``direction_cossim`` is Lucid's ``direction_cossim``: the cosine of the angle
between the activation vector and ``v``, averaged over positions (a position with a
zero activation vector counts 0), which rewards the direction and not the magnitude.
"""

from __future__ import annotations

import torch

from probe.stats import as_maps

UNIT_OBJECTIVES = ("channel", "neuron")
DIRECTION_OBJECTIVES = ("direction", "direction_cossim")
EPS = 1e-12


def objective(act: torch.Tensor, kind: str, vectors: torch.Tensor | None = None) -> torch.Tensor:
    """Every target's objective for every sample of ``act`` ``[N, K, h, w]`` (or ``[N, K]``).

    Returns ``[N, K]`` for a unit objective, ``[N, M]`` for the ``M`` directions
    ``vectors`` ``[M, K]`` of a direction objective.
    """
    maps = as_maps(act)
    if kind == "neuron":
        h, w = maps.shape[-2:]
        return maps[:, :, h // 2, w // 2]
    if kind == "channel":
        return maps.mean(dim=(2, 3))
    if vectors is None:
        raise ValueError(f"objective {kind!r} needs direction vectors")
    vectors = vectors.to(maps.dtype)
    if kind == "direction":
        return maps.mean(dim=(2, 3)) @ vectors.T
    dot = torch.einsum("nkhw,mk->nmhw", maps, vectors)
    scale = maps.norm(dim=1)[:, None] * vectors.norm(dim=1)[None, :, None, None]
    return (dot / scale.clamp(min=EPS)).mean(dim=(2, 3))


def sample_objective(act: torch.Tensor, kind: str, targets: torch.Tensor) -> torch.Tensor:
    """``[N]``: sample ``i``'s own objective; ``targets`` is ``Tensor[N]`` units (unit
    objectives) or ``Tensor[N, K]`` one direction per sample (direction objectives)."""
    if kind in UNIT_OBJECTIVES:
        return objective(act, kind).gather(1, targets[:, None])[:, 0]
    maps = as_maps(act)
    vectors = targets.to(maps.dtype)
    if kind == "direction":
        return (maps.mean(dim=(2, 3)) * vectors).sum(1)
    dot = (maps * vectors[:, :, None, None]).sum(1)
    scale = maps.norm(dim=1) * vectors.norm(dim=1)[:, None, None]
    return (dot / scale.clamp(min=EPS)).mean(dim=(1, 2))


__all__ = ["DIRECTION_OBJECTIVES", "UNIT_OBJECTIVES", "objective", "sample_objective"]
