"""HMAX, the "standard model" of Serre, Wolf, Bileschi, Riesenhuber & Poggio.

Sources: T. Serre, L. Wolf & T. Poggio, "Object recognition with features inspired
by visual cortex", CVPR 2005; T. Serre, L. Wolf, S. Bileschi, M. Riesenhuber &
T. Poggio, "Robust object recognition with cortex-like mechanisms", IEEE PAMI
29(3), 2007, Table 1 (:data:`S1_TABLE`, :data:`C1_TABLE`).

* **S1**: a fixed bank of Gabor filters ``G = exp(−(X² + γ²Y²)/(2σ²))·cos(2πX/λ)``,
  ``X = x cosθ + y sinθ``, ``Y = −x sinθ + y cosθ`` (``x`` along columns, ``y`` along
  rows, downwards, from the kernel centre), 16 sizes 7–37 px, 4 orientations, each
  filter zero-mean and unit-norm; the response is ``|⟨x, g⟩| / ‖x‖`` over the
  filter's window (the normalised dot product of the authors' code).
* **C1**: for each of 8 bands, the max over its two adjacent S1 sizes and over an
  ``N×N`` grid of positions moved by ``N − overlap = N/2`` pixels.
* **S2**: Gaussian radial-basis units ``exp(−β‖X − P‖²)`` of ``n×n×4`` C1 patches to
  prototypes ``P`` imprinted from C1 maps of random training images
  (:func:`imprint`, run by ``probe train`` as the architecture's ``prepare`` step).
* **C2**: the global max per prototype over all positions and bands, then a linear
  readout (fitted by ``probe train``; the paper used an SVM or boosting).

Everything but the prototypes and the readout is fixed. One convolution per S1
size, one max-pool per C1 band and one convolution per (band, patch size) for the
S2 distances; no loop over positions or prototypes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from probe import ArchitectureSpec, Option, Register, TrainingStep, TrainRecipe, hookimpl
from probe.errors import ProbeError

#: Serre et al. (2007), Table 1, S1: (filter size px, σ, λ) for the 16 scales.
S1_TABLE: tuple[tuple[int, float, float], ...] = (
    (7, 2.8, 3.5), (9, 3.6, 4.6), (11, 4.5, 5.6), (13, 5.4, 6.8),
    (15, 6.3, 7.9), (17, 7.3, 9.1), (19, 8.2, 10.3), (21, 9.2, 11.5),
    (23, 10.2, 12.7), (25, 11.3, 14.1), (27, 12.3, 15.4), (29, 13.4, 16.8),
    (31, 14.6, 18.2), (33, 15.8, 19.7), (35, 17.0, 21.2), (37, 18.2, 22.8),
)
#: Serre et al. (2007), Table 1, C1: (grid size N, overlap Δs) for the 8 bands;
#: band ``b`` pools S1 sizes ``2b`` and ``2b + 1`` and moves by ``N − Δs``.
C1_TABLE: tuple[tuple[int, int], ...] = (
    (8, 4), (10, 5), (12, 6), (14, 7), (16, 8), (18, 9), (20, 10), (22, 11),
)
#: The aspect ratio γ and the orientations (degrees) of S1.
GAMMA = 0.3
ORIENTATIONS = (0.0, 45.0, 90.0, 135.0)


def gabor_filter(size: int, sigma: float, wavelength: float, theta: float,
                 gamma: float = GAMMA, aperture: bool = False) -> torch.Tensor:
    """One S1 filter, ``Tensor[size, size]`` (float64), zero-mean and unit-norm.

    ``theta`` in radians, ``x`` along columns and ``y`` along rows from the centre
    ``((size − 1)/2, (size − 1)/2)``. ``aperture`` zeroes the pixels farther than
    ``size/2`` from the centre before normalising, as the authors' released code does
    (the paper's formula has no aperture).
    """
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    big_x = x * math.cos(theta) + y * math.sin(theta)
    big_y = -x * math.sin(theta) + y * math.cos(theta)
    g = torch.exp(-(big_x ** 2 + gamma ** 2 * big_y ** 2) / (2 * sigma ** 2)) * \
        torch.cos(2 * math.pi * big_x / wavelength)
    if aperture:
        g = torch.where(x ** 2 + y ** 2 <= (size / 2) ** 2, g, torch.zeros_like(g))
    g = g - g.mean()
    return g / g.norm()


def pool_geometry(size: int, grid: int, overlap: int, circular: bool) -> tuple[int, int, int]:
    """``(step, output size, right pad)`` of one C1 band on ``size`` S1 positions.

    Circular: ``ceil(size/step)`` cells, the map wrapped by ``right pad`` positions;
    otherwise valid pooling (no pad), ``0`` cells when the map is smaller than the grid.
    """
    step = grid - overlap
    if circular:
        cells = -(-size // step)
        return step, cells, (cells - 1) * step + grid - size
    return step, max((size - grid) // step + 1, 0), 0


class S1Scale(nn.Module):
    """S1 at one filter size: ``|conv(x, g)| / ‖x‖_window`` for the 4 orientations."""

    def __init__(self, size: int, sigma: float, wavelength: float, circular: bool,
                 aperture: bool) -> None:
        super().__init__()
        self.size = size
        self.conv = nn.Conv2d(1, len(ORIENTATIONS), size, padding=(size - 1) // 2, bias=False,
                              padding_mode="circular" if circular else "zeros")
        bank = torch.stack([gabor_filter(size, sigma, wavelength, math.radians(t),
                                         aperture=aperture) for t in ORIENTATIONS])
        with torch.no_grad():
            self.conv.weight.copy_(bank[:, None].float())
        self.conv.weight.requires_grad_(False)
        self.circular = circular
        self.out = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.size - 1) // 2
        squared = F.pad(x * x, (pad,) * 4, mode="circular" if self.circular else "constant")
        window = torch.ones(1, 1, self.size, self.size, dtype=x.dtype, device=x.device)
        norm = F.conv2d(squared, window).clamp_min(0).sqrt().clamp_min(1e-6)
        return self.out(self.conv(x).abs() / norm)


class C1Band(nn.Module):
    """C1 for one band: max over two S1 maps, then over an ``N×N`` grid moved by ``N/2``.

    ``kernel_size``/``stride``/``padding`` describe the pooling grid for receptive-field
    arithmetic (cell ``i`` pools S1 positions ``i·step … i·step + N − 1``).
    """

    def __init__(self, grid: int, overlap: int, circular: bool) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = grid, grid - overlap, 0
        self.overlap, self.circular = overlap, circular

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        both = torch.maximum(first, second)
        if self.circular:
            bottom, right = (pool_geometry(side, self.kernel_size, self.overlap, True)[2]
                             for side in both.shape[-2:])
            both = F.pad(both, (0, right, 0, bottom), mode="circular")
        return F.max_pool2d(both, self.kernel_size, self.stride)


class S2(nn.Module):
    """Gaussian RBF units ``exp(−β‖X − P‖²)`` on C1 patches, one prototype set per size.

    ``kernel_size``/``stride``/``padding`` give the largest patch's window for
    receptive-field arithmetic (a unit of a smaller patch sees part of it).

    Prototypes of size ``n`` are the buffer ``prototypes_n`` (``Tensor[P, 4, n, n]``).
    ``‖X − P‖² = Σ X² − 2⟨X, P⟩ + ‖P‖²`` with two convolutions per patch size. With
    zero padding only the valid positions respond; the maps are zero-padded (0 = no
    match, below every response) to the C1 size so all sizes share one map.
    """

    def __init__(self, patch_sizes: tuple[int, ...], per_size: int, beta: float,
                 circular: bool) -> None:
        super().__init__()
        self.patch_sizes, self.beta, self.circular = patch_sizes, beta, circular
        # receptive-field arithmetic: the largest patch, whose window (lead (n − 1) // 2
        # cells before the centre) holds every smaller one's: the union over prototypes
        largest = max(patch_sizes)
        self.kernel_size, self.stride, self.padding = largest, 1, (largest - 1) // 2
        for n in patch_sizes:  # seeded placeholders until imprinted
            self.register_buffer(f"prototypes_{n}", torch.rand(per_size, len(ORIENTATIONS), n, n))

    def prototypes(self, n: int) -> torch.Tensor:
        """The ``Tensor[P, 4, n, n]`` prototypes of patch size ``n``."""
        return getattr(self, f"prototypes_{n}")

    def forward(self, c1: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, 4, h, w]`` C1 band → ``Tensor[B, P_total, h, w]`` S2 responses."""
        h, w = c1.shape[-2:]
        maps = []
        for n in self.patch_sizes:
            protos = self.prototypes(n).to(c1.dtype)
            lead = (n - 1) // 2
            if self.circular:
                x = F.pad(c1, (lead, n - 1 - lead, lead, n - 1 - lead), mode="circular")
            elif h < n or w < n:
                maps.append(c1.new_zeros(c1.shape[0], protos.shape[0], h, w))
                continue
            else:
                x = c1
            window = torch.ones(1, c1.shape[1], n, n, dtype=c1.dtype, device=c1.device)
            dist = F.conv2d(x * x, window) - 2 * F.conv2d(x, protos) + \
                protos.pow(2).sum((1, 2, 3)).view(1, -1, 1, 1)
            response = torch.exp(-self.beta * dist.clamp_min(0))
            if not self.circular:
                response = F.pad(response, (lead, w - response.shape[-1] - lead,
                                            lead, h - response.shape[-2] - lead))
            maps.append(response)
        return torch.cat(maps, 1)


class HMAX(nn.Module):
    """HMAX for ``Tensor[batch, in_channels, H, W]`` inputs (RGB is averaged to grey)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 64,
                 bands: int = 8, patch_sizes: tuple[int, ...] = (4, 8, 12, 16),
                 prototypes: int = 250, beta: float = 1.0, circular: bool = False,
                 aperture: bool = False) -> None:
        super().__init__()
        self.in_channels, self.bands = in_channels, bands
        self.s1 = nn.ModuleDict({
            f"k{size}": S1Scale(size, sigma, lam, circular, aperture)
            for size, sigma, lam in S1_TABLE[:2 * bands]})
        self.c1 = nn.ModuleList(C1Band(grid, overlap, circular)
                                for grid, overlap in C1_TABLE[:bands])
        self.s2 = S2(tuple(patch_sizes), prototypes, beta, circular)
        self.s2_out = nn.ModuleList(nn.Identity() for _ in range(bands))
        self.c2 = nn.Identity()
        self.readout = nn.Linear(prototypes * len(patch_sizes), num_classes)

    def c1_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The C1 map of every band, ``[Tensor[B, 4, h_b, w_b]]``."""
        if x.shape[1] != 1:
            x = x.mean(1, keepdim=True)
        s1 = [scale(x) for scale in self.s1.values()]
        return [band(s1[2 * b], s1[2 * b + 1]) for b, band in enumerate(self.c1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s2 = [out(self.s2(c1)) for out, c1 in zip(self.s2_out, self.c1_maps(x), strict=True)]
        c2 = torch.stack([m.amax((-2, -1)) for m in s2], 0).amax(0)
        return self.readout(self.c2(c2))


def hmax_layers(model: HMAX) -> dict[str, str]:
    """``s1_<size>`` per filter size, ``c1_<band>``, ``s2_<band>`` per band, ``c2``, ``output``."""
    layers = {f"s1_{scale.size}": f"s1.{key}.out" for key, scale in model.s1.items()}
    layers.update({f"c1_{b + 1}": f"c1.{b}" for b in range(model.bands)})
    layers.update({f"s2_{b + 1}": f"s2_out.{b}" for b in range(model.bands)})
    layers.update({"c2": "c2", "output": "readout"})
    return layers


@torch.no_grad()
def imprint(model: HMAX, batches: Iterable[torch.Tensor], generator: torch.Generator
            ) -> Iterator[TrainingStep]:
    """Imprint the S2 prototypes from C1 patches of training images (Serre et al. 2007).

    Prototype ``i`` of each size comes from a distinct training image (cycling when
    there are fewer images than prototypes), a random band whose C1 map holds the
    patch, and a random position in it. ``batches`` yields normalised
    ``Tensor[B, C, H, W]`` inputs; only as many images as prototypes are read.
    Yields a :class:`probe.TrainingStep` per patch size (stage ``s2_N``) with the
    prototypes ``imprinted`` and the C1 ``bands`` they were drawn from.
    """
    per_size = model.s2.prototypes(model.s2.patch_sizes[0]).shape[0]
    images: list[torch.Tensor] = []
    count = 0
    for batch in batches:
        images.append(batch)
        count += len(batch)
        if count >= per_size:
            break
    if not images:
        raise ProbeError("hmax: no training images to imprint the S2 prototypes from")
    pool = torch.cat(images)
    chosen = torch.arange(per_size) % len(pool)
    c1 = model.c1_maps(pool[chosen])
    sizes = model.s2.patch_sizes
    for done, n in enumerate(sizes, start=1):
        fits = [b for b, m in enumerate(c1) if min(m.shape[-2:]) >= n]
        if not fits:  # this size has no position in any band: it keeps its placeholders
            yield TrainingStep(f"s2_{n}", done, len(sizes), {"imprinted": 0, "bands": 0})
            continue
        band = torch.tensor(fits)[torch.randint(len(fits), (per_size,), generator=generator)]
        target = model.s2.prototypes(n)
        for b in fits:  # one gather per band, over all its prototypes at once
            rows = (band == b).nonzero().flatten()
            if not len(rows):
                continue
            patches = F.unfold(c1[b][rows], n)  # [k, 4·n·n, L]
            pick = torch.randint(patches.shape[-1], (len(rows),), generator=generator)
            found = patches[torch.arange(len(rows)), :, pick]
            target[rows.to(target.device)] = found.view(-1, *target.shape[1:]).to(target.dtype)
        yield TrainingStep(f"s2_{n}", done, len(sizes),
                           {"imprinted": per_size, "bands": len(set(band.tolist()))})


def build_hmax(num_classes: int, in_channels: int, input_size: int, bands: int,
               patch_sizes: tuple[int, ...], prototypes: int, beta: float, circular: bool,
               aperture: bool) -> HMAX:
    """Build HMAX; checks that some S2 patch fits some C1 band at ``input_size``."""
    sizes = [pool_geometry(input_size, g, o, circular)[1] for g, o in C1_TABLE[:bands]]
    if any(n < 1 for n in patch_sizes):
        raise ProbeError(f"arch hmax option patch_sizes must be >= 1, got {patch_sizes}")
    if circular and (2 * bands > 0 and (S1_TABLE[2 * bands - 1][0] - 1) // 2 > input_size):
        raise ProbeError(f"arch hmax: circular padding needs input_size >= half the largest "
                         f"filter, got {input_size}; lower bands")
    if circular and max(patch_sizes) > min(sizes):
        raise ProbeError(f"arch hmax: with circular padding every patch must fit every C1 "
                         f"band (C1 sizes {sizes} at {input_size} px); lower patch_sizes "
                         f"or bands")
    if max(sizes) < min(patch_sizes):
        raise ProbeError(f"arch hmax: no S2 patch size {tuple(patch_sizes)} fits a C1 band "
                         f"(C1 sizes {sizes} at {input_size} px); lower patch_sizes or bands")
    return HMAX(num_classes, in_channels, input_size, bands, tuple(patch_sizes), prototypes,
                beta, circular, aperture)


@hookimpl
def probe_register_architectures(register: Register) -> None:
    register(ArchitectureSpec(
        name="hmax",
        build=build_hmax,
        task="classification",
        family="hmax",
        input_size=64,
        in_channels=1,
        options=(
            Option("num_classes", int, 10, "number of output classes", minimum=2),
            Option("in_channels", int, 1, "input channels (RGB is averaged to grey)",
                   minimum=1),
            Option("input_size", int, 64, "input side in pixels", minimum=8),
            Option("bands", int, 8, "C1 scale bands (2 S1 sizes each, Table 1 from the "
                   "smallest); fewer for small inputs", minimum=1, maximum=8),
            Option("patch_sizes", tuple, (4, 8, 12, 16), "S2 patch sizes in C1 cells",
                   item_type=int),
            Option("prototypes", int, 250, "S2 prototypes per patch size", minimum=1),
            Option("beta", float, 1.0, "S2 tuning sharpness β", minimum=0.0),
            Option("circular", bool, False, "circular (wrap-around) padding in S1, C1 and "
                   "S2 instead of zero padding / valid pooling"),
            Option("aperture", bool, False, "zero S1 filters outside their inscribed disc "
                   "(the authors' code)"),
        ),
        layers=hmax_layers,
        description="HMAX standard model (Serre et al. 2007): Gabor S1, max C1, RBF S2, C2",
        train=TrainRecipe(dataset="digits", dataset_options={"split": "train"}, epochs=15,
                          batch_size=64, lr=1e-2,
                          arch_options={"bands": 2, "patch_sizes": (4,), "prototypes": 200,
                                        "beta": 5.0}),
        prepare=imprint,
    ))
