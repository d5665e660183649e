"""Lie derivatives and their layer-wise chain-rule attribution (Gruver et al. 2022).

For a one-parameter transformation ``g_t`` (identity at ``t₀``) and a model
``F = f_{m+1} ∘ … ∘ f_1`` cut at the captured layers ``z_i``, the Lie derivative
is ``L F(x) = d/dt [ρ_out(g_t)⁻¹ F(ρ_0(g_t) x)]`` at ``t₀``. With
``D_i = d/dt ρ_i(g_t)`` the generator on layer ``i``'s grid (``D = 0`` for
outputs without a grid, which are meant to be invariant),

    L F(x) = J_F D_0 x − D_out F(x) = Σ_i J_{>i} (J_i D_{i−1} z_{i−1} − D_i z_i),

and the ``i``-th term is layer (segment) ``i``'s own Lie derivative pushed to the
output. Each term is computed independently, with forward hooks: the segment's
input is replaced by ``ρ_{i−1}(g_t) z_{i−1}`` and its output by
``z_i − (ρ_i(g_t) z_i − z_i)`` (whose derivative at ``t₀`` is ``ż_i − D_i z_i``;
``ρ(g_t)⁻¹`` has derivative ``−D`` at the identity). The terms sum *as vectors*
to the end-to-end value when the captured layers form a chain; the
``closure`` column reports how far they do.

Derivatives with respect to the scalar ``t`` use the double-backward trick
(``u ↦ Jᵀu`` then differentiate in ``u``), which goes through any op with a
differentiable backward, including resampling. Bilinear resampling is not
differentiable at grid points: the derivative is the one-sided one from the
side of ``t₀ + lie_step`` (see :meth:`probe.transforms.Transform.act`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from probe.analysis import ModelHandle
from probe.capture import Capture
from probe.grid import Grid
from probe.state import State
from probe.transforms import Transform

OUTPUT = "<output>"


def d_dt(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``dy/dt`` for a scalar ``t`` by double backward (zeros when ``y`` does not depend on t)."""
    if not y.requires_grad:
        return torch.zeros_like(y)
    u = torch.zeros_like(y, requires_grad=True)
    (g,) = torch.autograd.grad(y, t, grad_outputs=u, create_graph=True, allow_unused=True)
    if g is None or not g.requires_grad:
        return torch.zeros_like(y)
    (d,) = torch.autograd.grad(g, u, retain_graph=True, allow_unused=True)
    return torch.zeros_like(y) if d is None else d


@contextmanager
def _hooks(model: nn.Module, actions: Mapping[str, Callable[[torch.Tensor], torch.Tensor | None]]):
    modules = dict(model.named_modules())
    handles = []

    def wrap(fn: Callable[[torch.Tensor], torch.Tensor | None]):
        def hook(module: nn.Module, inputs: tuple, output: object):
            if isinstance(output, torch.Tensor):
                return fn(output)
            return None
        return hook

    try:
        for path, fn in actions.items():
            handles.append(modules[path].register_forward_hook(wrap(fn)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class LieResult:
    """Per-image squared norms from one batch (all ``Tensor[B]``, float64).

    Attributes:
        total: ‖L F(x)‖² end to end.
        parts: ``{segment end layer (or OUTPUT): ‖c_i‖²}``.
        dots: ``{segment end: ⟨c_i, L F(x)⟩}``.
        closure: ‖Σ_i c_i − L F(x)‖².
        layers: ``{layer: ‖L φ_i(x)‖²}`` for the representation map x ↦ z_i.
        norms: ``{layer: ‖φ_i(x)‖²}``.
    """

    total: torch.Tensor
    parts: dict[str, torch.Tensor]
    dots: dict[str, torch.Tensor]
    closure: torch.Tensor
    layers: dict[str, torch.Tensor]
    norms: dict[str, torch.Tensor]


class LieSums(State):
    """Sums over images of one transform's :class:`LieResult` (declared sum states, float64).

    Attributes:
        order: Captured layers in execution order; ``ends`` = ``[*order, OUTPUT]``
            (configuration, the same on every rank).
        images, total, closure: Scalars: images seen, Σ‖L F‖², Σ closure².
        parts, dots: ``Tensor[len(ends)]``: Σ‖c_i‖² and Σ⟨c_i, L F⟩ per segment end.
        layers, norms: ``Tensor[len(order)]``: Σ‖L φ_i‖² and Σ‖φ_i‖² per layer.
    """

    def __init__(self, order: Sequence[str], device: torch.device) -> None:
        self.order = list(order)
        self.ends = [*self.order, OUTPUT]
        z = {"dtype": torch.float64, "device": device}
        for name in ("images", "total", "closure"):
            self.add_state(name, torch.zeros((), **z), "sum")
        self.add_state("parts", torch.zeros(len(self.ends), **z), "sum")
        self.add_state("dots", torch.zeros(len(self.ends), **z), "sum")
        self.add_state("layers", torch.zeros(len(self.order), **z), "sum")
        self.add_state("norms", torch.zeros(len(self.order), **z), "sum")

    def update(self, result: LieResult) -> None:
        """Fold one batch's per-image values."""
        self.images += torch.ones_like(result.total).sum().double()
        self.total += result.total.sum().double()
        self.closure += result.closure.sum().double()
        self.parts += torch.stack([result.parts[e].sum().double() for e in self.ends])
        self.dots += torch.stack([result.dots[e].sum().double() for e in self.ends])
        if self.order:
            self.layers += torch.stack([result.layers[n].sum().double() for n in self.order])
            self.norms += torch.stack([result.norms[n].sum().double() for n in self.order])


def _sq(v: torch.Tensor) -> torch.Tensor:
    return v.double().flatten(1).pow(2).sum(1)


def lie_derivatives(handle: ModelHandle, images: torch.Tensor, transform: Transform,
                    order: Sequence[str], grids: Mapping[str, Grid | None],
                    output_grid: Grid | None) -> tuple[LieResult, dict[str, torch.Tensor]]:
    """Lie derivative of the model and of every captured layer, and the chain-rule parts.

    Args:
        handle: The model handle (normalisation and layer paths).
        images: ``Tensor[B, C, H, W]`` raw images in [0, 1].
        transform: A continuous transform.
        order: Captured layers in execution order (a chain, input to output).
        grids: Grid of each layer (``None``: no grid, invariant).
        output_grid: Grid of the model output (``None`` for logits).

    Returns:
        ``(squared norms, {"total": L F(x), segment end: c_i})`` — the vectors are
        returned for tests.
    """
    model = handle.model
    paths = {name: handle.layers[name] for name in order}
    t = torch.tensor(float(transform.identity), dtype=torch.float64, device=images.device,
                     requires_grad=True)

    def act(name: str | None, z: torch.Tensor) -> torch.Tensor:
        grid = output_grid if name == OUTPUT else grids.get(name) if name else None
        if z.dim() != 4 or (name is not None and grid is None):
            return z
        return transform.act(z, t, grid)[0]

    def corrected(name: str, z: torch.Tensor) -> torch.Tensor:
        base = z.detach()
        return z - (act(name, base) - base)

    vectors: dict[str, torch.Tensor] = {}
    with torch.enable_grad(), Capture(model, {}):
        recorded: dict[str, torch.Tensor] = {}

        def recorder(name: str):
            def fn(z: torch.Tensor) -> None:
                recorded[name] = z
            return fn

        with _hooks(model, {paths[n]: recorder(n) for n in order}):
            out = model(handle.normalize(transform.apply(images, t)))
        total = d_dt(corrected(OUTPUT, out), t)
        layer_sq = {n: _sq(d_dt(corrected(n, recorded[n]), t)) for n in order}
        norms = {n: _sq(recorded[n].detach()) for n in order}
        vectors["total"] = total.detach()

        ends = [*order, OUTPUT]
        plain = handle.normalize(images)
        for i, end in enumerate(ends):
            start = order[i - 1] if i > 0 else None
            actions: dict[str, Callable[[torch.Tensor], torch.Tensor | None]] = {}
            if start is not None:
                actions[paths[start]] = lambda z, s=start: act(s, z)
            if end != OUTPUT:
                actions[paths[end]] = lambda z, e=end: corrected(e, z)
            inputs = handle.normalize(transform.apply(images, t)) if start is None else plain
            with _hooks(model, actions):
                out = model(inputs)
            y = corrected(OUTPUT, out) if end == OUTPUT else out
            vectors[end] = d_dt(y, t).detach()
    parts = {e: _sq(vectors[e]) for e in ends}
    flat_total = vectors["total"].double().flatten(1)
    dots = {e: (vectors[e].double().flatten(1) * flat_total).sum(1) for e in ends}
    summed = sum(vectors[e].double() for e in ends)
    closure = _sq(summed - vectors["total"].double())
    return LieResult(_sq(vectors["total"]), parts, dots, closure, layer_sq, norms), vectors
