"""Mergeable ridge regression for the learned equivariance maps (Lenc & Vedaldi 2015).

The map ``M_g`` is the known spatial action followed by a 1×1 channel mixing
``W`` (with a bias) fitted by ridge regression: ``φ(g·x) ≈ Wᵀ [g′·φ(x); 1]``.
Everything needed is a sum over positions, so the state is a few Gram
matrices (float64) per (layer, transformation, magnitude), split by image:
even data-set indices fit the map, odd ones are held out to score it. Every
sum is a declared ``"sum"`` state, so shards reduce exactly with no merge code.
"""

from __future__ import annotations

import torch

from probe.state import State


class GramState(State):
    """Sums over valid positions of one half (fit or held out), declared as sum states.

    Attributes:
        xx: ``Tensor[K+1, K+1]`` Σ x̃ x̃ᵀ with x̃ = [g′·φ(x); 1].
        xy: ``Tensor[K+1, K]`` Σ x̃ yᵀ with y = φ(g·x).
        yy: ``Tensor[K]`` Σ y² per channel.
        y_sum: ``Tensor[K]`` Σ y.
        spatial_sse: Σ ‖y − g′·φ(x)‖² (spatial-only baseline).
        identity_sse: Σ ‖y − φ(x)‖² (identity = invariance baseline).
    """

    def __init__(self, units: int, device: torch.device) -> None:
        z = {"dtype": torch.float64, "device": device}
        self.add_state("xx", torch.zeros(units + 1, units + 1, **z), "sum")
        self.add_state("xy", torch.zeros(units + 1, units, **z), "sum")
        self.add_state("yy", torch.zeros(units, **z), "sum")
        self.add_state("y_sum", torch.zeros(units, **z), "sum")
        self.add_state("spatial_sse", torch.zeros((), **z), "sum")
        self.add_state("identity_sse", torch.zeros((), **z), "sum")

    def update(self, acted: torch.Tensor, target: torch.Tensor, plain: torch.Tensor) -> None:
        """Fold ``Tensor[N, K]`` rows: acted = g′·φ(x), target = φ(g·x), plain = φ(x)."""
        acted, target, plain = acted.double(), target.double(), plain.double()
        ones = torch.ones(acted.shape[0], 1, dtype=torch.float64, device=acted.device)
        x = torch.cat([acted, ones], dim=1)
        self.xx += x.T @ x
        self.xy += x.T @ target
        self.yy += (target ** 2).sum(0)
        self.y_sum += target.sum(0)
        self.spatial_sse += ((target - acted) ** 2).sum()
        self.identity_sse += ((target - plain) ** 2).sum()

    @property
    def count(self) -> float:
        return float(self.xx[-1, -1])


def fit_map(fit: GramState, ridge: float) -> torch.Tensor:
    """Ridge solution ``Tensor[K+1, K]`` (last row = bias); λ = ridge · mean diagonal of Σxxᵀ.

    The bias is not penalised.
    """
    units = fit.xx.shape[0] - 1
    scale = fit.xx.diagonal()[:units].mean().clamp(min=1e-300)
    penalty = torch.zeros_like(fit.xx)
    penalty.diagonal()[:units] = ridge * scale
    return torch.linalg.solve(fit.xx + penalty, fit.xy)


def score_map(weights: torch.Tensor, held: GramState) -> dict[str, float]:
    """``1 − R²`` on the held-out sums for the learned map and the two baselines."""
    n = held.count
    if n <= 0:
        nan = float("nan")
        return {"learned": nan, "spatial": nan, "identity": nan, "positions": 0.0}
    sse = (held.yy.sum() - 2 * (weights * held.xy).sum()
           + (weights * (held.xx @ weights)).sum())
    sst = (held.yy - held.y_sum ** 2 / n).sum()
    sst_value = float(sst)
    if sst_value <= 0:
        sst_value = float("nan")
    return {"learned": max(float(sse), 0.0) / sst_value,
            "spatial": float(held.spatial_sse) / sst_value,
            "identity": float(held.identity_sse) / sst_value, "positions": n}
