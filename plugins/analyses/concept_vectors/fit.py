"""The batched Net2Vec fit: every concept of a layer in one optimisation.

For ``C`` concepts and a layer of ``K`` units, the parameters are ``W [C, K]`` and
``b [C]``. One step takes a mini-batch of ``B`` sample images:

1. ``Z = W @ X`` — one matrix product over the batch's unit inputs ``X [K, B·h·w]``
   (Net2Vec's inputs: the units' threshold indicators ``I(a_k > T_k)``, or
   standardised activations), giving ``Z [C, B, h, w]`` at the layer's resolution;
2. ``S = R_y · Z · R_xᵀ + b`` — the resize to the mask size as two matrix products
   whose taps are dissection's resizing rule (:func:`resize_matrix`); resizing is
   linear, so this is ``Σ_k w_k · resize(x_k) + b``, the weighted sum of the resized
   unit maps, at a ``K``-th of the cost;
3. the gradient of the class-balanced per-pixel loss of ``σ(S)`` against the concept
   masks (:func:`pixel_loss`), a mean over the batch's images and pixels per concept
   (an image outside a concept's scope adds nothing), summed over concepts.

The gradient is written out (:func:`gradients`) rather than taken by autograd: for
binary targets it is ``c·(σ(S) − t)`` per pixel (``c`` the class weight), so a
step is a handful of passes over the ``C·B·H·W`` logits and the same matrix
products backwards, with no graph kept. The per-pixel coefficients of the training
images are computed once per layer when they fit :data:`CACHE_VALUES`.

No Python loop runs over concepts or units; the only loops are over epochs and
mini-batches. A step's temporaries are ``C·B·H·W`` values, so the batch is cut to
keep them under :data:`STEP_VALUES` (the effective batch is reported).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from probe.plugins.analyses.compositional.bits import unpack_bits
from probe.plugins.analyses.dissection.upsample import taps

from .inputs import InputSource

#: Largest ``C·B·H·W`` of one step (values per temporary; about 64 MiB in float32).
STEP_VALUES = 2**24
#: Largest ``C·S_train·H·W`` whose loss coefficients are kept for the whole fit (two
#: float32 tensors of that many values); above it they are rebuilt per batch.
CACHE_VALUES = 2**25

#: Loss forms (see :func:`pixel_loss`).
LOSSES = ("bce", "linear")
#: Optimisers: Adam (default) or the authors' SGD with momentum 0.9.
OPTIMIZERS = ("adam", "sgd")

_BYTE_BITS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class FitSettings:
    """How the vectors are trained.

    Attributes:
        loss: ``"bce"`` (class-balanced binary cross-entropy) or ``"linear"``
            (the authors' code: the same weights on ``σ`` instead of ``log σ``).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9, as the authors).
        lr: Learning rate.
        epochs: Passes over the training images.
        batch_size: Images per step (cut to :data:`STEP_VALUES`).
        seed: Seed of the initial weights and the batch order.
    """

    loss: str = "bce"
    optimizer: str = "adam"
    lr: float = 0.05
    epochs: int = 30
    batch_size: int = 16
    seed: int = 0


@dataclass
class FitResult:
    """Fitted vectors of one layer.

    Attributes:
        weights: ``Tensor[C, K]`` float32 (on the inputs as fitted).
        bias: ``Tensor[C]`` float32.
        steps: Optimiser steps taken.
        batch: Effective images per step.
    """

    weights: torch.Tensor
    bias: torch.Tensor
    steps: int
    batch: int


def resize_matrix(n_in: int, n_out: int, downsample: str,
                  device: torch.device) -> torch.Tensor:
    """``Tensor[n_out, n_in]`` float32: dissection's resize of one axis as a matrix.

    The taps are :func:`dissection.upsample.taps` (two-tap bilinear,
    ``align_corners=False``, where the axis grows; PIL's antialiased triangle where
    it shrinks under ``"antialias"``), so ``R @ column`` resizes a column as
    dissection resizes a unit map (without its clip to the largest tap, which only
    guards rounding and is not linear).
    """
    plan = taps(n_in, n_out, downsample, torch.device("cpu"))
    out = torch.zeros((n_out, n_in), dtype=torch.float64)
    out.scatter_add_(1, plan.index, plan.weight)
    return out.float().to(device)


def step_batch(batch_size: int, concepts: int, pixels: int) -> int:
    """Images per step: ``batch_size``, cut so ``concepts·images·pixels <= STEP_VALUES``."""
    fit = max(1, STEP_VALUES // max(1, concepts * pixels))
    return max(1, min(batch_size, fit))


def unpack_masks(packed: torch.Tensor, pixels: int) -> torch.Tensor:
    """``Tensor[..., pixels]`` bool from packed words (as ``compositional.bits.unpack_bits``,
    through the words' bytes: eight times fewer operations on little-endian machines)."""
    if sys.byteorder != "little":
        return unpack_bits(packed, pixels)
    masks = torch.tensor(_BYTE_BITS, dtype=torch.uint8, device=packed.device)
    octets = packed.contiguous().view(torch.uint8)
    return ((octets.unsqueeze(-1) & masks) != 0).reshape(*packed.shape[:-1], -1)[..., :pixels]


def resize(maps: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``Tensor[N, H, W]`` contiguous: ``rows [H, h] · maps[n] · colsᵀ`` for
    ``maps [N, h, w]``, as two large matrix products (not ``N`` small ones); the
    copies are of the input and of the half-resized maps, never of the output."""
    n, h, w = maps.shape
    flat = maps.transpose(0, 1).reshape(h, n * w)                 # [h, N·w]
    tall = (rows @ flat).view(rows.shape[0], n, w).transpose(0, 1)  # [N, H, w]
    return (tall.reshape(-1, w) @ cols.T).view(n, rows.shape[0], cols.shape[0])


def resize_adjoint(grads: torch.Tensor, rows: torch.Tensor,
                   cols: torch.Tensor) -> torch.Tensor:
    """``Tensor[N, h, w]``: ``rowsᵀ · grads[n] · cols`` for ``grads [N, H, W]`` (the
    adjoint of :func:`resize`), columns first so the large input is never copied."""
    n, big_h, _ = grads.shape
    narrow = grads @ cols                                         # [N, H, w]
    flat = narrow.transpose(0, 1).reshape(big_h, -1)              # [H, N·w]
    return (rows.T @ flat).view(rows.shape[1], n, cols.shape[1]).transpose(0, 1)


def logits(weights: torch.Tensor, bias: torch.Tensor, inputs: torch.Tensor,
           rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``Tensor[C, B, H, W]`` logits of the vectors on ``inputs [B, K, h, w]``.

    ``rows [H, h]`` and ``cols [W, w]`` resize the weighted sums (one matrix product
    over units, two over the axes).
    """
    batch, units, h, w = inputs.shape
    concepts = weights.shape[0]
    flat = inputs.transpose(0, 1).reshape(units, batch * h * w)
    z = (weights @ flat).view(concepts * batch, h, w)
    up = resize(z, rows, cols).view(concepts, batch, rows.shape[0], cols.shape[0])
    return up.add_(bias.view(-1, 1, 1, 1))


def class_weights(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` weights ``α`` and ``1 − α`` per concept; both 1 where
    ``α = 0`` (the concept fills every training image it is in), as the authors do."""
    zero = alpha <= 0
    return (torch.where(zero, torch.ones_like(alpha), alpha),
            torch.where(zero, torch.ones_like(alpha), 1 - alpha))


def pixel_loss(scores: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor,
               form: str) -> torch.Tensor:
    """Per-pixel class-balanced loss, ``Tensor[C, B, P]`` (``scores`` are logits).

    ``bce``: ``−(α·t·log σ + (1 − α)·(1 − t)·log(1 − σ))``; ``linear`` (the authors'
    ``BCELoss2d``): ``−(α·t·σ + (1 − α)·(1 − t)·(1 − σ))``. The reference for
    :func:`gradients` (which the fit uses).
    """
    pos, neg = (w.view(-1, 1, 1) for w in class_weights(alpha))
    t = target.to(scores.dtype)
    if form == "bce":
        return -(pos * t * torch.nn.functional.logsigmoid(scores)
                 + neg * (1 - t) * torch.nn.functional.logsigmoid(-scores))
    if form == "linear":
        p = torch.sigmoid(scores)
        return -(pos * t * p + neg * (1 - t) * (1 - p))
    raise ValueError(f"loss must be one of {list(LOSSES)}, got {form!r}")


def coefficients(target: torch.Tensor, keep: torch.Tensor,
                 alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, N)``, each ``Tensor[C, B, P]`` float32: the class weight of every pixel
    (``α`` on positives, ``1 − α`` on negatives, 0 outside the scope ``keep [C, B]``) and
    minus its positive part, so that the ``bce`` gradient is ``A·σ + N``."""
    pos, neg = (w.to(torch.float32).view(-1, 1, 1) for w in class_weights(alpha))
    inside = keep.to(torch.float32).unsqueeze(-1)
    a = torch.where(target, pos, neg) * inside
    return a, -(target * a)


def gradients(weights: torch.Tensor, bias: torch.Tensor, inputs: torch.Tensor,
              coef: tuple[torch.Tensor, torch.Tensor], form: str, rows: torch.Tensor,
              cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂L/∂W, ∂L/∂b)`` of ``L = Σ_c (1/(B·P)) Σ_{b,p} pixel_loss`` on one batch.

    ``coef`` is :func:`coefficients` of the batch. Per pixel, ``∂ℓ/∂s`` is
    ``A·σ(s) + N`` for ``bce`` (``α·(σ − 1)`` on a positive, ``(1 − α)·σ`` on a negative)
    and ``(A + 2N)·σ·(1 − σ)`` for ``linear``; it goes back through the resize
    (the adjoint matrices) and the matrix product over units.
    """
    batch, units, h, w = inputs.shape
    concepts = weights.shape[0]
    pixels = rows.shape[0] * cols.shape[0]
    flat = inputs.transpose(0, 1).reshape(units, batch * h * w)
    grad = torch.sigmoid_(logits(weights, bias, inputs, rows, cols)).view(
        concepts, batch, pixels)
    a, n = coef
    if form == "bce":
        grad.mul_(a).add_(n)
    elif form == "linear":
        grad.mul_(1 - grad).mul_(a + 2 * n)
    else:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {form!r}")
    scale = 1.0 / (batch * pixels)
    grad_bias = grad.sum((1, 2)) * scale
    low = resize_adjoint(grad.view(concepts * batch, rows.shape[0], cols.shape[0]), rows,
                         cols)
    grad_weights = (low.reshape(concepts, batch * h * w) @ flat.T) * scale
    return grad_weights, grad_bias


def initial_vectors(concepts: int, units: int, seed: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' start: ``w ~ U(−1/√K, 1/√K)`` (seeded on the CPU), ``b = 0``."""
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(max(1, units))
    weights = (torch.rand((concepts, units), generator=gen, dtype=torch.float64) * 2 - 1) \
        * bound
    return weights.float().to(device), torch.zeros(concepts, device=device)


class _Coefficients:
    """The loss coefficients of the training batches: all at once, in batch order (each
    batch a slice, no copy), when they fit :data:`CACHE_VALUES`; else rebuilt per batch
    from the packed masks."""

    def __init__(self, targets: torch.Tensor, scope: torch.Tensor, alpha: torch.Tensor,
                 order: torch.Tensor, pixels: int) -> None:
        self.targets, self.scope, self.alpha, self.pixels = targets, scope, alpha, pixels
        self.cached: tuple[torch.Tensor, torch.Tensor] | None = None
        if targets.shape[0] * len(order) * pixels <= CACHE_VALUES:
            self.cached = self._build(order)

    def _build(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = unpack_masks(self.targets[:, idx], self.pixels)
        return coefficients(target, self.scope[:, idx], self.alpha)

    def batch(self, idx: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Coefficients of the batch ``idx``, at position ``start`` of the order."""
        if self.cached is None:
            return self._build(idx)
        stop = start + len(idx)
        return self.cached[0][:, start:stop], self.cached[1][:, start:stop]


def fit_vectors(inputs: InputSource, targets: torch.Tensor, scope: torch.Tensor,
                alpha: torch.Tensor, train: torch.Tensor, settings: FitSettings,
                mask_size: tuple[int, int], downsample: str) -> FitResult:
    """Fit every concept's vector of one layer together.

    Args:
        inputs: The layer's unit inputs of the sample (:class:`InputSource`).
        targets: ``Tensor[C, S, words]`` packed concept masks of the sample.
        scope: ``Tensor[C, S]`` bool: the images each concept is trained on.
        alpha: ``Tensor[C]`` class-balancing weights.
        train: ``Tensor[n]`` int64 sample positions of the training images.
        settings: Loss, optimiser and schedule.
        mask_size: ``(H, W)`` of the masks.
        downsample: dissection's rule where an axis shrinks.
    """
    if settings.loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {settings.loss!r}")
    device = targets.device
    concepts, units = targets.shape[0], inputs.units
    h, w = inputs.map_size
    pixels = mask_size[0] * mask_size[1]
    rows = resize_matrix(h, mask_size[0], downsample, device)
    cols = resize_matrix(w, mask_size[1], downsample, device)
    weights, bias = initial_vectors(concepts, units, settings.seed, device)
    params = [weights.requires_grad_(True), bias.requires_grad_(True)]
    optimizer: torch.optim.Optimizer = (
        torch.optim.Adam(params, lr=settings.lr) if settings.optimizer == "adam"
        else torch.optim.SGD(params, lr=settings.lr, momentum=0.9))
    batch = step_batch(settings.batch_size, concepts, pixels)
    gen = torch.Generator().manual_seed(settings.seed + 1)
    train = train.to(device)
    steps = 0
    if not concepts or not len(train):
        return FitResult(weights.detach(), bias.detach(), steps, batch)
    # the batches are drawn once (a seeded shuffle) and visited in a fresh seeded order
    # every epoch, so each batch's coefficients are one slice of the cache
    order = train[torch.randperm(len(train), generator=gen).to(device)]
    starts = list(range(0, len(order), batch))
    coef = _Coefficients(targets, scope, alpha.to(device), order, pixels)
    with torch.no_grad():
        for _ in range(settings.epochs):
            for j in torch.randperm(len(starts), generator=gen).tolist():
                idx = order[starts[j]:starts[j] + batch]
                weights.grad, bias.grad = gradients(weights, bias, inputs.batch(idx),
                                                    coef.batch(idx, starts[j]),
                                                    settings.loss, rows, cols)
                optimizer.step()
                steps += 1
    return FitResult(weights.detach(), bias.detach(), steps, batch)
