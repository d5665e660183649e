"""A first layer learned on natural images by ICA, with a linear readout.

The first layer ``v1`` is a bank of filters learned without labels by independent
component analysis of whitened natural image patches, the objective that gives
localised, oriented, band-pass (Gabor-like) filters (Bell & Sejnowski, "The
'independent components' of natural scenes are edge filters", Vision Research 37,
1997; van Hateren & van der Schaaf 1998; the same family of solutions as Olshausen &
Field's sparse coding, Nature 381, 1996). Patches come from the natural images
bundled with scikit-image and scikit-learn (the ``natural`` data set's images;
nothing is downloaded). ``probe train`` runs the ICA as the architecture's
``prepare`` step, then keeps ``v1`` fixed and fits the readout by backprop on the
recipe's labelled data (digits by default).

Recipe (:func:`learn_ica_filters`): ``patches`` luminance patches of ``kernel_size``
pixels at seeded positions, each patch's mean removed; PCA whitening keeping the
``filters`` leading components (which also low-passes, as in the papers); symmetric
FastICA with the log-cosh contrast (Hyvärinen 1999; an ML/infomax estimate for
super-Gaussian sources like Bell & Sejnowski's). The filters are the rows of the
unmixing matrix mapped back to pixels, unit-norm.

Layers: ``v1`` (the rectified filter responses ``|w·x|``), ``c1`` (2×2 max pooling),
``pool`` (4×4 average), ``output``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from probe import ArchitectureSpec, Option, Register, TrainingStep, TrainRecipe, hookimpl

#: ITU-R 601 luminance weights, applied to RGB inputs.
LUMINANCE = (0.299, 0.587, 0.114)


def whiten(patches: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA whitening of ``Tensor[n, p]`` zero-mean rows, keeping ``dims`` components.

    Returns ``(z, to_white, from_white)``: ``z = patches @ to_white`` is ``Tensor[n, dims]``
    with identity covariance; ``from_white`` maps whitened vectors back to pixels.
    """
    cov = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(cov)
    values, vectors = values.flip(0)[:dims], vectors.flip(1)[:, :dims]
    to_white = vectors / values.sqrt()
    return patches @ to_white, to_white, vectors * values.sqrt()


def fast_ica_steps(z: torch.Tensor, iterations: int, generator: torch.Generator,
                   tol: float = 1e-6) -> Iterator[tuple[int, float, torch.Tensor]]:
    """Symmetric FastICA (log-cosh contrast) of whitened ``Tensor[n, d]`` data, step by step.

    Yields ``(iteration, change, unmixing)`` after each fixed-point iteration, where
    ``change`` is ``max |1 − |diag(W_new W_oldᵀ)||`` and ``unmixing`` the orthogonal
    ``Tensor[d, d]`` (rows = components); stops after ``iterations`` or when the
    change falls below ``tol``. Starts from a random orthogonal matrix drawn from
    ``generator``.
    """
    d = z.shape[1]
    w, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    w = w.to(z)

    def decorrelate(m: torch.Tensor) -> torch.Tensor:  # (m mᵀ)^(-1/2) m
        values, vectors = torch.linalg.eigh(m @ m.T)
        return vectors @ torch.diag(values.clamp_min(1e-12).rsqrt()) @ vectors.T @ m

    w = decorrelate(w)
    for iteration in range(1, iterations + 1):
        g = torch.tanh(z @ w.T)  # [n, d]
        new = g.T @ z / len(z) - torch.diag((1 - g * g).mean(0)) @ w
        new = decorrelate(new)
        change = float((torch.diagonal(new @ w.T).abs() - 1).abs().max())
        w = new
        yield iteration, change, w
        if change < tol:
            break


def fast_ica(z: torch.Tensor, iterations: int, generator: torch.Generator,
             tol: float = 1e-6) -> torch.Tensor:
    """Symmetric FastICA of whitened ``Tensor[n, d]`` data: the final unmixing ``Tensor[d, d]``.

    See :func:`fast_ica_steps` for the iteration.
    """
    last = None
    for step in fast_ica_steps(z, iterations, generator, tol):
        last = step
    assert last is not None  # iterations >= 1
    return last[2]


def ica_filter_steps(kernel_size: int, filters: int, patches: int, iterations: int,
                     generator: torch.Generator
                     ) -> Iterator[tuple[int, float, torch.Tensor | None]]:
    """:func:`learn_ica_filters` step by step: ``(iteration, change, None)`` per FastICA
    iteration, then ``(iteration, change, bank)`` with the unit-norm filters
    ``Tensor[filters, k, k]`` (float64)."""
    from probe.plugins.analyses.filters.natural import sample_patches

    seed = int(torch.randint(2 ** 31 - 1, (1,), generator=generator))
    x = torch.from_numpy(np.ascontiguousarray(
        sample_patches(kernel_size, patches, seed=seed)[:, 0].reshape(patches, -1)))
    x = x - x.mean(1, keepdim=True)
    z, to_white, _ = whiten(x, filters)
    iteration, change, unmixing = 0, float("nan"), torch.empty(0)
    for step in fast_ica_steps(z, iterations, generator):
        iteration, change, unmixing = step
        yield iteration, change, None
    bank = (unmixing @ to_white.T).reshape(filters, kernel_size, kernel_size)
    yield iteration, change, bank / bank.flatten(1).norm(dim=1).view(-1, 1, 1)


def learn_ica_filters(kernel_size: int, filters: int, patches: int, iterations: int,
                      generator: torch.Generator) -> torch.Tensor:
    """ICA filters of natural luminance patches, ``Tensor[filters, k, k]`` (float64, unit norm)."""
    last = None
    for step in ica_filter_steps(kernel_size, filters, patches, iterations, generator):
        last = step
    assert last is not None and last[2] is not None
    return last[2]


class Abs(nn.Module):
    """``|x|``: both polarities of a filter's response (full-wave rectification)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


class NaturalV1(nn.Module):
    """ICA first layer → |·| → 2×2 max → 4×4 average → linear readout."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, kernel_size: int = 12,
                 filters: int = 64, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, filters, kernel_size, stride,
                               padding=kernel_size // 2, bias=False)
        self.conv1.weight.requires_grad_(False)  # learned by ICA, not by backprop
        self.v1 = Abs()
        self.c1 = nn.MaxPool2d(2)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.output = nn.Linear(filters * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.c1(self.v1(self.conv1(x))))
        return self.output(x.flatten(1))


#: Layer name → module path.
NATURAL_V1_LAYERS = {"v1": "v1", "c1": "c1", "pool": "pool", "output": "output"}


def build_natural_v1(num_classes: int, in_channels: int, input_size: int, kernel_size: int,
                     filters: int, stride: int, patches: int, iterations: int) -> NaturalV1:
    """Build the model (``v1`` random until ``probe train`` runs the ICA)."""
    if filters > kernel_size ** 2:
        from probe.errors import OptionError

        raise OptionError(f"arch natural_v1 option filters must be <= kernel_size² "
                          f"({kernel_size ** 2}), got {filters}")
    model = NaturalV1(num_classes, in_channels, kernel_size, filters, stride)
    model.ica_options = {"patches": patches, "iterations": iterations}  # for prepare
    return model


def prepare_natural_v1(model: NaturalV1, batches: Iterable[torch.Tensor],
                       generator: torch.Generator, *, patches: int,
                       iterations: int) -> Iterator[TrainingStep]:
    """Learn ``v1`` by ICA on natural patches (the training batches are not used).

    Yields a :class:`probe.TrainingStep` (stage ``ica``) per FastICA iteration with
    its ``change`` (the convergence measure; the iteration stops below 1e-6).
    """
    weight = model.conv1.weight
    bank = None
    for iteration, change, bank in ica_filter_steps(weight.shape[-1], weight.shape[0],
                                                    patches, iterations, generator):
        if bank is None:
            yield TrainingStep("ica", iteration, iterations, {"change": change})
    assert bank is not None
    channels = weight.shape[1]
    mix = torch.tensor(LUMINANCE if channels == 3 else (1.0,) * channels, dtype=bank.dtype)
    with torch.no_grad():
        weight.copy_((bank[:, None] * mix.view(1, -1, 1, 1)).to(weight))


def _prepare(model: nn.Module, batches: Iterable[torch.Tensor],
             generator: torch.Generator) -> Iterator[TrainingStep]:
    options = model.ica_options  # type: ignore[attr-defined]
    return prepare_natural_v1(model, batches, generator, **options)  # type: ignore[arg-type]


@hookimpl
def probe_register_architectures(register: Register) -> None:
    register(ArchitectureSpec(
        name="natural_v1",
        build=build_natural_v1,
        task="classification",
        family="natural_v1",
        input_size=32,
        in_channels=1,
        options=(
            Option("num_classes", int, 10, "number of output classes", minimum=2),
            Option("in_channels", int, 1, "input channels (RGB filters see luminance)",
                   minimum=1),
            Option("input_size", int, 32, "input side in pixels", minimum=8),
            Option("kernel_size", int, 12, "first-layer filter side", minimum=5, maximum=32),
            Option("filters", int, 64, "first-layer filters = whitened PCA dimensions kept",
                   minimum=1),
            Option("stride", int, 2, "first-layer stride", minimum=1),
            Option("patches", int, 50000, "natural patches for the ICA", minimum=1000),
            Option("iterations", int, 200, "FastICA iterations", minimum=1),
        ),
        layers=lambda model: NATURAL_V1_LAYERS,
        description="first layer learned by ICA on natural image patches, linear readout",
        train=TrainRecipe(dataset="digits", dataset_options={"split": "train"}, epochs=10,
                          batch_size=64, lr=3e-3),
        prepare=_prepare,
    ))

